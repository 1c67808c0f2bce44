"""The gate's policy cache: a result is reused only where nothing it depends on changed. Entry
points that cannot read the push context are cached by object content, path and policy
version; those that can are cached only for an identical push context, so a decision made for
an admin's push is never reused for a writer's.

Adapter tests: an in-memory tree keyed by content like a git tree, a recording engine, and the
real embedded engine for the end-to-end case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pushgate.build.sources import MODE_FILE, Entry
from pushgate.gate import gate as gatemod
from pushgate.gate import policies
from pushgate.gate.embedded import EmbeddedEngine

POLICY = """\
package main

import data.pushgate

deny_static contains "static" if input.kind == "Pod"

deny_role contains msg if {
\tpushgate.push.role == "write"
\tmsg := concat("", ["writers may not push ", input.metadata.name])
}

exception contains ["static"] if input.metadata.name == "legacy"
"""
ADMIN = {"pusher": "root", "role": "admin", "ref": "refs/heads/main", "changed_paths": []}
WRITER = {**ADMIN, "pusher": "bob", "role": "write"}


def configmap(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: shop\ndata:\n  k: v\n"


def pod(name: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n"
            f"  containers:\n    - name: c\n      image: nginx:1.27\n")


class Recording:
    """Answers like the policy above would, and records what it was asked."""

    def __init__(self, ps: policies.PolicySet) -> None:
        self.policies = ps
        self.calls: list[tuple[list[str], list[str]]] = []  # (object names, entry points)

    def evaluate(self, objects: Sequence[dict[str, Any]], push: dict[str, Any], timeout: float,
                 entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]:
        eps = list(entrypoints) if entrypoints is not None else self.policies.entrypoints
        self.calls.append(([o["metadata"]["name"] for o in objects], sorted(eps)))
        out = []
        for o in objects:
            values = {"main/deny_static": ["static"] if o["kind"] == "Pod" else [],
                      "main/deny_role": [f"writers may not push {o['metadata']['name']}"]
                      if push.get("role") == "write" else [],
                      "main/exception": [["static"]] if o["metadata"]["name"] == "legacy" else []}
            out.append([(ep, values[ep]) for ep in eps])
        return out

    def close(self) -> None:
        pass


def policy_set(tmp_path: Path) -> policies.PolicySet:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "main.rego").write_text(POLICY)
    return policies.load(str(d))


class Tree:
    """A commit's tree: every file keyed by its content, as git keys blobs."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = {path: text.encode() for path, text in files.items()}

    def entries(self) -> Iterator[Entry]:
        for path, data in sorted(self.files.items()):
            yield Entry(path, MODE_FILE, hashlib.sha1(data, usedforsecurity=False).hexdigest())

    def read(self, entry: Entry) -> bytes:
        return self.files[entry.path]


def rules(found: list[Any]) -> list[str]:
    return sorted(f"{v.path} {v.rule} {v.message}" for v in found if v.rule.startswith("main/"))


def test_push_dependent_results_are_never_reused_across_push_contexts(tmp_path: Path) -> None:
    ps = policy_set(tmp_path)
    assert ps.push_entrypoints == {"main/deny_role"}
    engine = Recording(ps)
    g = gatemod.Gate(gatemod.GateConfig(), engine=engine, kustomize_bin=None)
    t = Tree({"a.yaml": configmap("a"), "b.yaml": pod("b")})
    every = ["main/deny_role", "main/deny_static", "main/exception"]

    _, found = g.check(t, ADMIN)
    assert rules(found) == ["b.yaml main/deny_static static"]
    assert engine.calls == [(["a", "b"], every)]

    engine.calls.clear()
    _, found = g.check(t, WRITER)  # same objects, another pusher: only the push-dependent rule
    assert rules(found) == ["a.yaml main/deny_role writers may not push a",
                            "b.yaml main/deny_role writers may not push b", "b.yaml main/deny_static static"]
    assert engine.calls == [(["a", "b"], ["main/deny_role"])]

    engine.calls.clear()
    _, again = g.check(t, WRITER)  # the very same push context: everything from the cache
    assert engine.calls == [] and rules(again) == rules(found)

    engine.calls.clear()
    _, found = g.check(t, ADMIN)  # back to the admin: the writer's decision is not reused
    assert rules(found) == ["b.yaml main/deny_static static"]
    assert engine.calls == []  # the admin's own context was seen before


def test_changed_content_or_path_is_evaluated_again(tmp_path: Path) -> None:
    engine = Recording(policy_set(tmp_path))
    g = gatemod.Gate(gatemod.GateConfig(), engine=engine, kustomize_bin=None)
    g.check(Tree({"a.yaml": configmap("a"), "b.yaml": pod("b")}), ADMIN)

    engine.calls.clear()
    g.check(Tree({"a.yaml": configmap("a"), "b.yaml": pod("b2")}), ADMIN)
    # b changed; the push context changed too (its `files` map names b2), so a's push-dependent
    # rule is evaluated again while its static rules come from the cache
    assert sorted(engine.calls) == [(["a"], ["main/deny_role"]),
                                    (["b2"], ["main/deny_role", "main/deny_static", "main/exception"])]

    engine.calls.clear()
    _, found = g.check(Tree({"moved.yaml": configmap("a"), "b.yaml": pod("b2")}), ADMIN)
    # same content at another path: evaluated again, and reported at its new path
    assert (["a"], ["main/deny_role", "main/deny_static", "main/exception"]) in engine.calls
    assert (["b2"], ["main/deny_role"]) in engine.calls
    assert rules(found) == ["b.yaml main/deny_static static"]


def test_exceptions_are_counted_not_failed(tmp_path: Path) -> None:
    engine = Recording(policy_set(tmp_path))
    g = gatemod.Gate(gatemod.GateConfig(), engine=engine, kustomize_bin=None)
    _, found = g.check(Tree({"legacy.yaml": pod("legacy"), "b.yaml": pod("b")}), ADMIN)
    assert rules(found) == ["b.yaml main/deny_static static"]
    assert isinstance(found, policies.Findings)
    assert [str(e) for e in found.exceptions] == [
        "exception: legacy.yaml:1 Pod/shop/legacy [main/deny_static] exempted by main/exception"]
    assert found.summary() == "1 error, 0 warnings, 1 exception in 1 file"


def test_a_writer_is_refused_after_an_admin_with_the_real_engine(tmp_path: Path) -> None:
    ps = policy_set(tmp_path)
    engine = EmbeddedEngine(ps)
    g = gatemod.Gate(gatemod.GateConfig(), engine=engine, kustomize_bin=None)
    try:
        t = Tree({"a.yaml": configmap("a")})
        assert rules(g.check(t, ADMIN)[1]) == []
        assert rules(g.check(t, WRITER)[1]) == ["a.yaml main/deny_role writers may not push a"]
        assert rules(g.check(t, ADMIN)[1]) == []
    finally:
        g.close()
