"""Scopes (pure): one scope must allow the whole push; absent fields allow everything."""

from __future__ import annotations

import pytest

from gitserver import scopes
from gitserver.scopes import Object, Scope

TEAM_A = Scope(paths=("apps/team-a/*",), namespaces=("team-a", "team-a-*"), refs=("refs/heads/main",),
               cluster_kinds=())
CRDS = Scope(paths=("crds/*",), cluster_kinds=("CustomResourceDefinition.apiextensions.k8s.io",))


def test_no_scopes_means_the_role_decides() -> None:
    assert scopes.problems([], "refs/heads/x", ["anything"], [Object("a", "A/x", "", "Node", "")]) == []


def test_one_scope_must_allow_everything() -> None:
    assert scopes.problems([TEAM_A], "refs/heads/main", ["apps/team-a/x/y.yaml"]) == []
    assert scopes.problems([TEAM_A, CRDS], "refs/heads/main", ["crds/w.yaml"],
                           [Object("crds/w.yaml", "CustomResourceDefinition/w.example.com", "",
                                   "CustomResourceDefinition", "apiextensions.k8s.io")]) == []
    # each part is allowed by one scope, but no single scope allows both
    assert scopes.problems([TEAM_A, CRDS], "refs/heads/main", ["apps/team-a/a.yaml", "crds/w.yaml"]) == [
        "no single one of your scopes allows all of this push together"]


def test_what_is_outside_is_named() -> None:
    objects = [Object("apps/team-a/a.yaml", "ConfigMap/team-b/a", "team-b", "ConfigMap", ""),
               Object("apps/team-a/b.yaml", "Namespace/x", "", "Namespace", ""),
               Object("apps/team-a/unchanged.yaml", "ConfigMap/prod/z", "prod", "ConfigMap", "")]
    got = scopes.problems([TEAM_A], "refs/heads/main",
                          ["apps/team-a/a.yaml", "apps/team-a/b.yaml", "README.md"], objects)
    assert got == ["README.md: path outside your scopes",
                   "apps/team-a/a.yaml: ConfigMap/team-b/a: namespace team-b is outside your scopes",
                   "apps/team-a/b.yaml: Namespace/x: cluster-scoped kind Namespace is outside your scopes"]
    assert scopes.problems([TEAM_A], "refs/heads/dev", []) == ["refs/heads/dev is outside your scopes"]


@pytest.mark.parametrize("doc", [[], {"paths": "a/*"}, {"paths": [""]}, {"pathz": ["a"]}])
def test_bad_scopes_are_refused(doc: object) -> None:
    with pytest.raises(ValueError, match="users"):
        scopes.parse(doc, "users file: user a: scopes[0]")
