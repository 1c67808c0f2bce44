"""Gatekeeper's match semantics, input shape and the refusals at load, as pure logic (the
verdicts themselves are compared with gator in tests/interop/test_gatekeeper_differential.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pushgate.gate import gatekeeper as gk
from pushgate.gate import policies


def constraint(match: dict[str, Any]) -> gk.Constraint:
    return gk.Constraint("K", "c", "c.yaml", 1, match, {}, "deny")


def obj(kind: str = "Pod", name: str = "web", ns: str | None = "shop", api: str = "v1",
        labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, **meta}
    if ns:
        m["namespace"] = ns
    if labels:
        m["labels"] = labels
    return {"apiVersion": api, "kind": kind, "metadata": m}


NS_PROD = obj("Namespace", "shop", None, labels={"env": "prod"})


@pytest.mark.parametrize(("match", "o", "ns", "expected"), [
    ({}, obj(), None, True),
    ({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}, obj(), None, True),
    ({"kinds": [{"apiGroups": ["apps"], "kinds": ["Pod"]}]}, obj(), None, False),
    ({"kinds": [{"apiGroups": ["*"], "kinds": []}]}, obj("Deployment", api="apps/v1"), None, True),
    ({"kinds": [{"kinds": ["Deployment"]}]}, obj("Deployment", api="apps/v1"), None, True),
    ({"scope": "Cluster"}, obj(), None, False),
    ({"scope": "Cluster"}, obj("ClusterRole", ns=None, api="rbac.authorization.k8s.io/v1"), None, True),
    ({"scope": "Cluster"}, NS_PROD, None, True),
    ({"scope": "Namespaced"}, NS_PROD, None, False),
    ({"scope": "Namespaced"}, obj(), None, True),
    ({"namespaces": ["sh*"]}, obj(), None, True),
    ({"namespaces": ["*op"]}, obj(), None, True),
    ({"namespaces": ["*ho*"]}, obj(), None, True),
    ({"namespaces": ["other"]}, obj(), None, False),
    ({"namespaces": ["shop"]}, NS_PROD, None, True),  # a Namespace by its own name
    ({"namespaces": ["other"]}, obj("ClusterRole", ns=None), None, True),  # no namespace: not ruled out
    ({"excludedNamespaces": ["shop"]}, obj(), None, False),
    ({"excludedNamespaces": ["kube-*"]}, obj(), None, True),
    ({"labelSelector": {"matchLabels": {"app": "web"}}}, obj(labels={"app": "web"}), None, True),
    ({"labelSelector": {"matchLabels": {"app": "web"}}}, obj(), None, False),
    ({"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}},
     obj(labels={"tier": "x"}), None, False),
    ({"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}},
     obj(), None, True),
    ({"namespaceSelector": {"matchLabels": {"env": "prod"}}}, obj(), NS_PROD, True),
    ({"namespaceSelector": {"matchLabels": {"env": "dev"}}}, obj(), NS_PROD, False),
    ({"namespaceSelector": {"matchLabels": {"env": "prod"}}}, NS_PROD, None, True),
    # the Namespace is not in the pushed tree: applied (fail closed)
    ({"namespaceSelector": {"matchLabels": {"env": "dev"}}}, obj(), None, True),
    ({"namespaceSelector": {"matchLabels": {"env": "dev"}}}, obj("ClusterRole", ns=None), None, True),
    ({"name": "web-*"}, obj(name="web-1"), None, True),
    ({"name": "web-*"}, obj(name="api"), None, False),
    ({"name": "web-*"}, obj(name="", generateName="web-"), None, True),
    ({"source": "Generated"}, obj(), None, False),
    ({"source": "All"}, obj(), None, True),
])
def test_match(match: dict[str, Any], o: dict[str, Any], ns: dict[str, Any] | None, expected: bool) -> None:
    assert gk.matches(constraint(match), o, ns) is expected


def test_review_is_an_admission_request_for_a_create() -> None:
    r = gk.review(obj(), NS_PROD)
    assert r["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert (r["name"], r["namespace"], r["operation"]) == ("web", "shop", "CREATE")
    assert r["object"] == obj() and r["namespaceObject"] == NS_PROD and r["oldObject"] is None
    assert "namespace" not in gk.review(obj("ClusterRole", ns=None), None)


def test_inventory_is_shaped_like_gatekeepers_cache() -> None:
    inv = gk.inventory([obj(), NS_PROD, obj("Deployment", "d", api="apps/v1")])
    assert inv["namespace"]["shop"]["v1"]["Pod"]["web"] == obj()
    assert inv["namespace"]["shop"]["apps/v1"]["Deployment"]["d"]["kind"] == "Deployment"
    assert inv["cluster"]["v1"]["Namespace"]["shop"] == NS_PROD


def test_scoped_enforcement_actions() -> None:
    rule = [{"action": "warn", "enforcementPoints": [{"name": "gator.gatekeeper.sh"}]},
            {"action": "deny", "enforcementPoints": [{"name": "validation.gatekeeper.sh"}]}]
    assert gk._scoped_action("x", rule) == "warn"
    assert gk._scoped_action("x", [{"action": "deny", "enforcementPoints": [{"name": "*"}]}]) == "deny"
    assert gk._scoped_action("x", rule[1:]) == "dryrun"  # not for push: reported only


def test_parameter_defaults_from_the_schema() -> None:
    schema = {"type": "object", "properties": {
        "prefix": {"type": "string", "default": "team-"},
        "rules": {"type": "array", "items": {"type": "object", "properties": {
            "on": {"type": "boolean", "default": True}}}}}}
    assert gk._with_defaults(schema, {"rules": [{}, {"on": False}]}) == {
        "prefix": "team-", "rules": [{"on": True}, {"on": False}]}


TEMPLATE = """\
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: {name}
spec:
  crd:
    spec:
      names:
        kind: {kind}
      validation:
        openAPIV3Schema:
          type: object
          properties:
            n: {{type: integer}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
{rego}
"""
GOOD_REGO = 'package x\nviolation[{"msg": "m"}] { input.review.object.kind == "Pod" }'


def write(d: Path, name: str, text: str) -> None:
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)


def template(kind: str = "PgT", rego: str = GOOD_REGO, name: str | None = None) -> str:
    body = "\n".join("        " + line for line in rego.splitlines())
    return TEMPLATE.format(name=name or kind.lower(), kind=kind, rego=body)


@pytest.mark.parametrize(("files", "why"), [
    ({"t.yaml": template(rego='package x\nviolation[{"msg": m}] {\n'
                              ' m := external_data({"provider": "p", "keys": []})\n}')},
     "calls external_data"),
    ({"t.yaml": template(rego='package x\nviolation[{"msg": "m"}] { data.other.x }')},
     "reads data other than data.lib and data.inventory"),
    ({"t.yaml": template(name="wrong")}, "must be the lowercase of its kind"),
    ({"t.yaml": template(rego="package x\ndeny[m] { m := 1 }")}, "no rule named violation"),
    ({"t.yaml": template(rego="package x\nviolation[{{")}, "not valid Rego"),
    ({"t.yaml": template(), "c.yaml": "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: PgT\n"
      "metadata: {name: c}\nspec:\n  parameters: {n: notanumber}\n"}, "spec.parameters.n"),
    ({"t.yaml": template(), "c.yaml": "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: Other\n"
      "metadata: {name: c}\n"}, "no ConstraintTemplate defines kind 'Other'"),
    ({"t.yaml": template(), "c.yaml": "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: PgT\n"
      "metadata: {name: c}\nspec:\n  match: {namespaceSelector:\n"
      "    {matchExpressions: [{key: a, operator: Near}]}}\n"},
     "spec.match.namespaceSelector"),
    ({"t.yaml": template(), "c.yaml": "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: PgT\n"
      "metadata: {name: c}\nspec:\n  enforcementAction: audit\n"}, "enforcementAction 'audit'"),
    ({"m.yaml": "apiVersion: mutations.gatekeeper.sh/v1\nkind: Assign\nmetadata: {name: a}\n"},
     "does not evaluate mutation"),
    ({"e.yaml": "apiVersion: expansion.gatekeeper.sh/v1beta1\nkind: ExpansionTemplate\n"
               "metadata: {name: e}\n"},
     "expansion templates"),
    ({"t.yaml": template(), "t2.yaml": template(rego='package y\nviolation[{"msg": "other"}] { true }')},
     "a second template for kind PgT"),
])
def test_what_pushgate_cannot_evaluate_is_refused_at_load(tmp_path: Path, files: dict[str, str],
                                                          why: str) -> None:
    for name, text in files.items():
        write(tmp_path / "p", name, text)
    with pytest.raises(policies.PolicyError, match=why.replace("(", r"\(").replace(")", r"\)")):
        policies.load(str(tmp_path / "p"))


def test_libs_and_v1_templates_load(tmp_path: Path) -> None:
    lib = 'package lib.util\nis_pod(o) { o.kind == "Pod" }'
    t = template(rego='package x\nimport data.lib.util\n'
                      'violation[{"msg": "pod"}] { util.is_pod(input.review.object) }')
    t += "      libs:\n        - |\n" + "\n".join("          " + line for line in lib.splitlines()) + "\n"
    write(tmp_path / "p", "t.yaml", t)
    ps = policies.load(str(tmp_path / "p"))
    assert ps.gatekeeper is not None
    src = dict(ps.gatekeeper.templates[0].modules)
    assert any("package pushgate.gatekeeper.PgT.lib.util" in s for s in src.values())
    assert any("data.pushgate.gatekeeper.PgT.lib.util" in s for s in src.values())
    assert [r.entrypoint for r in ps.gatekeeper_rules] == ["pushgate/gatekeeper/PgT/violation"]
    assert ps.entrypoints == []  # no conftest rule: a template's rule is never asked as one


def test_unification_rewrite_keeps_outer_variables() -> None:
    """`x = e` becomes `x := e` only where `x` is local; an outer `val` stays a comparison."""
    src = ("package x\n\nimport rego.v1\n\nviolation contains m if {\n"
           "\tval := input.v\n"
           "\tvs := {val | o := input.objs[_]; val = o.v}\n"
           "\tgood := [g | r = input.rs[_]; g = startswith(val, r)]\n"
           "\tm := sprintf(\"%v %v\", [vs, good])\n}\n")
    from pushgate.build import tools
    out = gk._assignments(src, tools.default_opa())
    assert "val = o.v" in out
    assert "r := input.rs[_]" in out and "g := startswith(val, r)" in out


def test_violation_results_that_are_not_a_set_are_problems_not_passes() -> None:
    assert gk.messages([{"msg": "m", "details": {"a": 1}}]) == [("m", {"a": 1})]
    assert gk.messages([]) == []
    assert "without msg" in gk.messages([{"note": "x"}])[0][0]
    assert "not a set of results" in gk.messages({"msg": "m"})[0][0]
    assert "not a set of results" in gk.messages("m")[0][0]
