"""Custom resources judged as the API server judges them: RE2 `pattern`s (kube-prometheus'
PrometheusRule pattern is valid), int-or-string, preserve-unknown-fields, embedded resources,
null for a non-nullable field (refused, as server-side apply does), and CEL rules named as
checked by the live check only, never a refusal.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pushgate.core import violations
from pushgate.gate import schemas

SPEC: dict[str, Any] = {
    "type": "object",
    "properties": {
        # kube-prometheus' PrometheusRule: valid in Go's RE2, an error in Python's re
        "partialResponseStrategy": {"type": "string", "pattern": "^(?i)(abort|warn)?$"},
        "name": {"type": "string", "pattern": "^\\p{Lu}\\pL*$"},  # Unicode classes, RE2 style
        "port": {"x-kubernetes-int-or-string": True,
                 "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "size": {"x-kubernetes-int-or-string": True},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "level": {"type": "string", "enum": ["low", "high"], "nullable": True},
        "count": {"type": "integer", "format": "int32"},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "closed": {"type": "object", "properties": {"x": {"type": "string"}}},
        "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                     "x-kubernetes-preserve-unknown-fields": True},
        "rules": {"type": "array", "items": {"type": "string"},
                  "x-kubernetes-validations": [{"rule": "self.size() < 3", "message": "too many"}]},
    },
}

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "rules.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"kind": "Rule", "plural": "rules"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "properties": {"spec": SPEC}}}}]},
}


def rule(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Rule",
            "metadata": {"name": "r", "namespace": "ns"}, "spec": spec}


@pytest.fixture(scope="module")
def rules() -> schemas.SchemaSet:
    return schemas.SchemaSet("1.37").with_crds([CRD])


def check(s: schemas.SchemaSet, obj: dict[str, Any]) -> list[violations.Violation]:
    return s.validate(obj, path="r.yaml", line_of=lambda _: 1, ref="Rule/ns/r")


ACCEPTED: list[dict[str, Any]] = [
    {"partialResponseStrategy": "WARN"}, {"partialResponseStrategy": "abort"},
    {"partialResponseStrategy": ""}, {"name": "Émile"},
    {"port": 80}, {"port": "http"}, {"size": 3}, {"size": "3Gi"},
    {"extra": {"anything": {"goes": [1, 2]}}},
    {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}}},
    {"level": "low"},
    {"rules": ["a", "b", "c", "d"]},  # CEL: the live check's to judge, not a static refusal
]


@pytest.mark.parametrize("spec", ACCEPTED)
def test_accepted_as_the_api_server_accepts(rules: schemas.SchemaSet, spec: dict[str, Any]) -> None:
    assert check(rules, rule(**spec)) == []


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"partialResponseStrategy": "retry"}, "spec.partialResponseStrategy",
     "spec.partialResponseStrategy: \"retry\" does not match '^(?i)(abort|warn)?$'"),
    ({"name": "émile"}, "spec.name", "spec.name: \"émile\" does not match '^\\\\p{Lu}\\\\pL*$'"),
    ({"port": 1.5}, "spec.port", "spec.port: 1.5 is not of type integer or string"),
    ({"mode": "c"}, "spec.mode", "spec.mode: \"c\" is not one of ['a', 'b']"),
    ({"count": 2 ** 40}, "spec.count", "spec.count: must fit in 32 bits (got 1099511627776)"),
    ({"closed": {"y": 1}}, "spec.closed.y", 'spec.closed: unknown field "y"'),
    # null where a field is not nullable: server-side apply refuses it ("must be of type")
    ({"mode": None}, "spec.mode", "spec.mode: null is not of type string"),
    # nullable, yet null must still be one of the enum's values
    ({"level": None}, "spec.level", "spec.level: null is not one of ['low', 'high']"),
    ({"template": {"metadata": {"name": "p"}}}, "spec.template.apiVersion",
     'spec.template: missing required field "apiVersion"'),
    ({"template": {"apiVersion": "", "kind": "Pod"}}, "spec.template.apiVersion",
     "spec.template.apiVersion: \"\" should be non-empty"),
]


@pytest.mark.parametrize(("spec", "rule_path", "message"), REFUSED)
def test_refused_as_the_api_server_refuses(rules: schemas.SchemaSet, spec: dict[str, Any],
                                           rule_path: str, message: str) -> None:
    found = check(rules, rule(**spec))
    assert [(v.rule, v.message) for v in found][:1] == [(f"schema:{rule_path}", message)]


def test_an_invalid_re2_pattern_names_the_crd(rules: schemas.SchemaSet) -> None:
    bad = copy.deepcopy(CRD)
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = {
        "type": "object", "properties": {"x": {"type": "string", "pattern": "(a)\\1"}}}
    [found] = check(schemas.SchemaSet("1.37").with_crds([bad]), rule(x="a"))
    assert found.message == (
        "the schema of example.com/v1 Rule in CustomResourceDefinition rules.example.com is invalid: "
        "pattern \"(a)\\\\1\" is not a valid regex: invalid escape sequence: \\1 (RE2 syntax, as the API "
        "server reads it)")


def test_a_crd_with_cel_rules_says_the_live_check_applies_them() -> None:
    found = schemas.SchemaSet("1.37").validate(CRD, path="crd.yaml", line_of=lambda _: 7,
                                               ref="CustomResourceDefinition/rules.example.com")
    assert [str(v) for v in found] == [
        "warning: crd.yaml:7 CustomResourceDefinition/rules.example.com [schema.cel] its "
        "x-kubernetes-validations (CEL) rules are not evaluated by the static check: the live check "
        "(server-side dry-run) applies them, or the API server at apply"]
    plain = copy.deepcopy(CRD)
    del plain["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["rules"]["x-kubernetes-validations"]
    assert schemas.SchemaSet("1.37").validate(plain, path="crd.yaml", line_of=lambda _: 7, ref="x") == []
