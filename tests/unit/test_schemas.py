"""Unit tests of `pushgate.gate.schemas`: offline validation against the bundled strict schemas.

Pure and fast (no cluster): real schemas from the kubernetes-validate wheel, plain dict objects.
"""

from __future__ import annotations

import copy
import datetime
import threading
import time
from typing import Any

import pytest

from pushgate.core import violations
from pushgate.gate import schemas

# Lines keyed by dotted path, so each test can check which path a violation's line came from.
LINES = {
    "": 1,
    "spec.replicas": 7,
    "spec.template.spec.containers.0": 20,
    "spec.template.spec.containers.0.imagePullPolicyy": 23,
    "data.password": 5,
}


def line_of(dotted: str) -> int:
    return LINES.get(dotted, 99)


def check(
    objs: schemas.SchemaSet, obj: dict[str, Any], ref: str = "Kind/ns/name"
) -> list[violations.Violation]:
    return objs.validate(obj, path="m.yaml", line_of=line_of, ref=ref)


@pytest.fixture(scope="module")
def k8s() -> schemas.SchemaSet:
    return schemas.SchemaSet("1.37")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                     "annotations": {"example.com/owner": "team-a"}, "creationTimestamp": None},
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "serviceAccountName": "web",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "web",
                        "image": "registry.example.com/web:1.4.2",
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["--port=8080"],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [
                            {"name": "MODE", "value": "prod"},
                            {"name": "DB_PASSWORD", "valueFrom": {
                                "secretKeyRef": {"name": "db", "key": "password"}}},
                        ],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                      "limits": {"cpu": 1, "memory": "128Mi",
                                                 "ephemeral-storage": 0.5}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                           "periodSeconds": 5},
                        "livenessProbe": {"tcpSocket": {"port": 8080}},
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
        "status": {},
    }


VALID: dict[str, dict[str, Any]] = {
    "deployment": deployment(),
    "service": {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090},
        ]},
    },
    "configmap": {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"},
        "data": {"app.yaml": "mode: prod\n", "LEVEL": "info"},
        "binaryData": {"logo.png": "iVBORw0KGgo="},
    },
    "secret": {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "db", "namespace": "shop"},
        "data": {"password": "aHVudGVyMg==", "multiline": "aHVu\ndGVyMg=="},
        "stringData": {"user": "admin"},
    },
    "namespace": {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop",
                     "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    },
    "cronjob": {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "backup", "namespace": "shop"},
        "spec": {
            "schedule": "0 3 * * *", "concurrencyPolicy": "Forbid", "timeZone": "Etc/UTC",
            "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "backup", "image": "busybox:1.36",
                                "command": ["sh", "-c", "echo ok"],
                                "resources": {"limits": {"cpu": "250m", "memory": "32Mi"}}}],
            }}}},
        },
    },
    "ingress": {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "shop",
                     "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/"}},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [{"host": "shop.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                {"path": "/metrics", "pathType": "Exact",
                 "backend": {"service": {"name": "web", "port": {"name": "metrics"}}}},
            ]}}],
        },
    },
    "hpa-v2": {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": 70}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {
                    "type": "AverageValue", "averageValue": "500Mi"}}},
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Pods", "value": 1,
                                                     "periodSeconds": 60}]}},
        },
    },
    "pvc": {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "shop"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                 "resources": {"requests": {"storage": "1Gi"}}},
    },
    "networkpolicy": {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "dns", "namespace": "shop"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": "dns-tcp"}]},
        ]},
    },
    "resourcequota": {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "shop"},
        "spec": {"hard": {"requests.cpu": 4, "requests.memory": "8Gi", "pods": "20"}},
    },
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_objects_pass(k8s: schemas.SchemaSet, name: str) -> None:
    assert check(k8s, VALID[name]) == []


def with_change(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(base or deployment())
    *parents, last = path.split(".")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return obj


@pytest.mark.parametrize(("field", "parent"), [
    ("spec.template.spec.containers.0.imagePullPolicyy", "spec.template.spec.containers.0"),
    ("metadata.label", "metadata"),
    ("spec.selector.matchLabel", "spec.selector"),
    ("specc", ""),
])
def test_unknown_field_is_named(k8s: schemas.SchemaSet, field: str, parent: str) -> None:
    found = check(k8s, with_change(field, "x"))
    name = field.rpartition(".")[2]
    assert [(v.rule, v.line, v.is_error) for v in found] == [
        (f"schema:{field}", line_of(field), True)]
    assert f'unknown field "{name}"' in found[0].message
    assert found[0].message.startswith(f"{parent}: " if parent else "unknown")
    assert found[0].obj == "Kind/ns/name" and found[0].path == "m.yaml"


@pytest.mark.parametrize(("path", "value", "message"), [
    ("spec.replicas", "three", 'spec.replicas: "three" is not of type integer'),
    ("spec.paused", "yes", 'spec.paused: "yes" is not of type boolean'),
    ("spec.template.spec.containers", {"name": "web"},
     'spec.template.spec.containers: {"name": "web"} is not of type array'),
    ("metadata.labels.app", 1, "metadata.labels.app: 1 is not of type string"),
    ("spec.template.spec.containers.0.ports.0.containerPort", "8080",
     'spec.template.spec.containers.0.ports.0.containerPort: "8080" is not of type integer'),
    ("spec.strategy.rollingUpdate.maxSurge", [1],
     "spec.strategy.rollingUpdate.maxSurge: [1] is not of type string or integer"),
    ("spec.template.spec.containers.0.resources.limits.cpu", {"n": 1},
     'spec.template.spec.containers.0.resources.limits.cpu: {"n": 1} is not of type string or '
     "number"),
    ("spec.replicas", 2**31, "spec.replicas: must fit in 32 bits (got 2147483648)"),
    ("spec.replicas", True, "spec.replicas: true is not of type integer"),
    # An unquoted date in YAML loads as a date, which no Kubernetes field accepts.
    ("metadata.annotations.built", datetime.date(2024, 5, 1),
     'metadata.annotations.built: "2024-05-01" is not of type string'),
    ("spec.replicas", {datetime.date(2024, 5, 1): 1},
     "spec.replicas: {datetime.date(2024, 5, 1): 1} is not of type integer"),
])
def test_wrong_type_is_reported(
    k8s: schemas.SchemaSet, path: str, value: Any, message: str
) -> None:
    found = check(k8s, with_change(path, value))
    assert [(v.rule, v.message) for v in found] == [(f"schema:{path}", message)]
    assert found[0].line == line_of(path)


def test_null_int_or_string_and_quantity_are_accepted(k8s: schemas.SchemaSet) -> None:
    obj = with_change("spec.strategy.rollingUpdate.maxSurge", None)
    obj = with_change("spec.template.spec.containers.0.resources.limits.cpu", None, obj)
    assert check(k8s, obj) == []


def test_every_error_of_one_object_is_reported(k8s: schemas.SchemaSet) -> None:
    obj = with_change("spec.replicas", "three")
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicyy"] = "Always"
    container["oops"] = 1
    del container["name"]
    del obj["spec"]["selector"]
    obj["spec"]["template"]["spec"]["restartPolicy"] = 7
    found = check(k8s, obj)
    c = "spec.template.spec.containers.0"
    assert {v.rule: v.line for v in found} == {
        "schema:spec.replicas": 7,
        f"schema:{c}.imagePullPolicyy": 23,
        f"schema:{c}.oops": 99,
        f"schema:{c}.name": 20,  # a missing field's line is its parent's
        "schema:spec.selector": 99,
        "schema:spec.template.spec.restartPolicy": 99,
    }
    assert f'{c}: missing required field "name"' in {v.message for v in found}
    assert [v.line for v in found] == sorted(v.line for v in found)


@pytest.mark.parametrize(("mode", "severity"), [
    ("error", violations.Severity.ERROR), ("warning", violations.Severity.WARNING),
])
@pytest.mark.parametrize(("api_version", "kind"), [
    ("example.com/v1", "Widget"),
    ("apps/v1", "Widget"),
    ("apps.example.com/v1", "Deployment"),  # named like apps/v1's file, but another group
    ("apps/v1beta1", "Deployment"),  # removed long before 1.37
    ("v1", "../../../etc/passwd"),
    ("apps/v1", "deployment"),
])
def test_missing_schema_is_an_error_or_a_warning(
    mode: schemas.MissingSchema, severity: violations.Severity, api_version: str, kind: str
) -> None:
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "w"}, "spec": {"a": 1}}
    found = check(schemas.SchemaSet("v1.37.0", missing_schema=mode), obj)
    assert [(v.rule, v.line, v.severity) for v in found] == [("schema", 1, severity)]
    assert found[0].message == (f"no schema for {api_version} {kind} in Kubernetes 1.37 "
                                "(and no CRD in this push defines it)")


@pytest.mark.parametrize("obj", [{"kind": "ConfigMap"}, {"apiVersion": "v1", "kind": 3}, {}])
def test_object_without_api_version_or_kind(k8s: schemas.SchemaSet, obj: dict[str, Any]) -> None:
    assert [v.rule for v in check(k8s, obj)] == ["schema"]


@pytest.mark.parametrize(("given", "minor"), [
    ("1.37", "1.37"), ("1.37.0", "1.37"), ("v1.37.0", "1.37"), ("v1.30", "1.30"),
    ("1.25.9", "1.25"), (" 1.37 ", "1.37"),
])
def test_version_spellings(given: str, minor: str) -> None:
    assert schemas.SchemaSet(given).kubernetes_version == minor


@pytest.mark.parametrize("given", ["1.24", "1.38", "2.0", "latest", "", "1", "v1.37.0-local"])
def test_unknown_version_raises_listing_supported(given: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported Kubernetes version .*1\.25, .*1\.37"):
        schemas.SchemaSet(given)


def test_bad_missing_schema_mode_raises() -> None:
    with pytest.raises(ValueError, match="missing_schema"):
        schemas.SchemaSet(missing_schema="ignore")  # type: ignore[arg-type]


def test_older_version_lacks_newer_kinds() -> None:
    # ValidatingAdmissionPolicy went GA (admissionregistration.k8s.io/v1) in 1.30.
    obj = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
           "metadata": {"name": "p"}, "spec": {}}
    assert check(schemas.SchemaSet("1.37"), obj) == []
    assert [v.rule for v in check(schemas.SchemaSet("1.29"), obj)] == ["schema"]


CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [
            {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1, "maximum": 10},
                            "color": {"type": "string", "enum": ["red", "blue"]},
                            "level": {"type": "integer", "enum": [1, 2]},
                            "port": {"x-kubernetes-int-or-string": True},
                            "note": {"type": "string", "nullable": True, "maxLength": 20},
                            "extra": {"type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True,
                                      "properties": {"known": {"type": "string"}}},
                            "labels": {"type": "object",
                                       "additionalProperties": {"type": "string"}},
                            "choice": {"type": "object",
                                       "properties": {"a": {"type": "string"},
                                                      "b": {"type": "string"}},
                                       "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
                        },
                    },
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }}},
            {"name": "v1alpha1", "served": False, "storage": False,
             "schema": {"openAPIV3Schema": {"type": "object"}}},
            {"name": "v2", "served": True, "storage": False,
             "schema": {"openAPIV3Schema": {"type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True}}},
        ],
    },
}


def widget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "shop", "labels": {"a": "b"}},
            "spec": {"size": 3, **spec}}


@pytest.fixture(scope="module")
def with_widgets(k8s: schemas.SchemaSet) -> schemas.SchemaSet:
    return k8s.with_crds([VALID["configmap"], CRD])


@pytest.mark.parametrize("obj", [
    widget(),
    widget(color="red", port=8080, note=None, labels={"x": "y"}, choice={"a": "1"}),
    widget(port="http", extra={"known": "k", "anything": {"goes": [1, 2]}}),
    widget(level=2.0),  # the fast check refuses 2.0 for enum [1, 2]; jsonschema rightly accepts
    {**widget(), "status": {"whatever": True}},
    {"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": "w"}, "free": 1},
])
def test_crd_in_the_push_validates_good_custom_resources(
    with_widgets: schemas.SchemaSet, obj: dict[str, Any]
) -> None:
    assert check(with_widgets, obj) == []


@pytest.mark.parametrize(("obj", "rule", "message"), [
    (widget(colour="red"), "spec.colour", 'spec: unknown field "colour"'),
    ({**widget(), "extra": 1}, "extra", 'unknown field "extra"'),
    (widget(size="3"), "spec.size", 'spec.size: "3" is not of type integer'),
    (widget(size=0), "spec.size", "spec.size: 0 is less than the minimum of 1"),
    (widget(size=11), "spec.size", "spec.size: 11 is greater than the maximum of 10"),
    (widget(color="green"), "spec.color", "spec.color: \"green\" is not one of ['red', 'blue']"),
    (widget(port=[1]), "spec.port", "spec.port: [1] is not of type integer or string"),
    (widget(note="n" * 21), "spec.note", f'spec.note: "{"n" * 21}" is too long'),
    (widget(labels={"x": 1}), "spec.labels.x", "spec.labels.x: 1 is not of type string"),
    (widget(extra={"known": 5}), "spec.extra.known", "spec.extra.known: 5 is not of type string"),
    (widget(choice={"a": "1", "b": "2"}), "spec.choice",
     'spec.choice: does not match exactly one of the allowed schemas (got {"a": "1", "b": "2"})'),
    ({**widget(), "spec": {}}, "spec.size", 'spec: missing required field "size"'),
    ({**widget(), "metadata": {"name": "w", "labels": {"a": 1}}}, "metadata.labels.a",
     "metadata.labels.a: 1 is not of type string"),
    ({**widget(), "metadata": {"name": "w", "lables": {}}}, "metadata.lables",
     'metadata: unknown field "lables"'),
])
def test_crd_in_the_push_refuses_bad_custom_resources(
    with_widgets: schemas.SchemaSet, obj: dict[str, Any], rule: str, message: str
) -> None:
    found = check(with_widgets, obj)
    assert [(v.rule, v.message, v.is_error) for v in found] == [(f"schema:{rule}", message, True)]


def test_crd_views_do_not_leak(k8s: schemas.SchemaSet, with_widgets: schemas.SchemaSet) -> None:
    assert [v.rule for v in check(k8s, widget())] == ["schema"]
    unserved = {**widget(), "apiVersion": "example.com/v1alpha1"}
    assert "no CRD in this push" in check(with_widgets, unserved)[0].message
    assert check(with_widgets, VALID["deployment"]) == []
    assert with_widgets.kubernetes_version == "1.37"


@pytest.mark.parametrize(("bad", "why"), [
    ({"type": "string", "pattern": "[unclosed"}, 'pattern "[unclosed" is not a valid regex'),
    ({"type": "strnig"}, 'unknown type "strnig"'),
    ({"type": "object", "required": "name"}, 'required is not of the right type ("name")'),
    ({"type": "object", "properties": {"a": "string"}}, 'must be an object, not "string"'),
])
def test_crd_with_invalid_schema_reports_it(
    k8s: schemas.SchemaSet, bad: dict[str, Any], why: str
) -> None:
    broken = copy.deepcopy(CRD)
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = {
        "type": "object", "properties": {"name": bad}}
    objs = k8s.with_crds([broken])
    found = check(objs, widget())
    assert [(v.rule, v.is_error) for v in found] == [("schema", True)]
    assert found[0].message.startswith("the schema of example.com/v1 Widget in "
                                       "CustomResourceDefinition widgets.example.com is invalid: ")
    assert why in found[0].message
    assert check(objs, {**widget(), "apiVersion": "example.com/v2"}) == []  # other versions work


def test_crd_object_itself_validates(k8s: schemas.SchemaSet) -> None:
    assert check(k8s, CRD) == []
    assert [v.rule for v in check(k8s, with_change("spec.scope", 1, CRD))] == ["schema:spec.scope"]


SECRET_VALUE = "hunter2-very-secret"


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("data.password", SECRET_VALUE + "!!", "must be a base64 string"),
    ("data.password", {"v": SECRET_VALUE}, "must be of type string"),
    ("stringData.token", [SECRET_VALUE], "must be of type string"),
    ("data", SECRET_VALUE, "must be of type object"),
    ("immutable", SECRET_VALUE, "must be of type boolean"),
    ("metadata.labels.app", {"k": SECRET_VALUE}, "must be of type string"),
])
def test_secret_values_never_appear(
    k8s: schemas.SchemaSet, field: str, value: Any, problem: str
) -> None:
    found = check(k8s, with_change(field, value, VALID["secret"]), ref="Secret/shop/db")
    assert [(v.rule, v.message) for v in found] == [(f"schema:{field}", f"{field}: {problem}")]
    assert SECRET_VALUE not in str(found[0])


def test_values_of_other_kinds_are_shown_but_truncated(k8s: schemas.SchemaSet) -> None:
    assert check(k8s, with_change("binaryData.logo", "!!", VALID["configmap"]))[0].message == (
        'binaryData.logo: must be a base64 string (got "!!")')
    found = check(k8s, with_change("spec.replicas", "x" * 5000))
    assert len(found[0].message) < 120
    assert found[0].message.endswith('… is not of type integer')


def test_thread_safety_smoke() -> None:
    # A set of its own in a version no other test compiles, so the threads race on first use.
    objs = schemas.SchemaSet("1.33").with_crds([CRD])
    cases = [*VALID.values(), with_change("spec.replicas", "three"), widget(size="x"),
             with_change("data.password", "!!", VALID["secret"])]
    start = threading.Barrier(4)
    results: list[list[list[str]]] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            results.append([[str(v) for v in check(objs, c)] for c in cases * 20])
        except BaseException as e:  # surfaced below: a thread's exception is otherwise lost
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    serial = schemas.SchemaSet("1.33").with_crds([CRD])
    expected = [[str(v) for v in check(serial, c)] for c in cases]
    assert any(expected) and not all(expected)
    assert results == [expected * 20] * 4


AGREEMENT = [
    *VALID.values(), with_change("spec.replicas", "three"), with_change("spec.replicas", None),
    with_change("spec.template.spec.containers.0.imagePullPolicyy", "x"),
    with_change("spec.template.spec.containers.0.resources.limits.cpu", True),
    with_change("data.password", "!!", VALID["secret"]),
    with_change("binaryData", {}, VALID["configmap"]),
    widget(), widget(size="3"), widget(level=3), widget(level=True), widget(extra={"x": 1}),
    widget(choice={"a": "1"}), widget(choice={}), {**widget(), "spec": {}},
]


@pytest.mark.parametrize("obj", AGREEMENT)
def test_fast_check_agrees_with_jsonschema(
    with_widgets: schemas.SchemaSet, obj: dict[str, Any]
) -> None:
    # The invariant behind skipping jsonschema for objects the fast check accepts.
    compiled = with_widgets._catalog.compiled(obj["apiVersion"], obj["kind"]) or \
        with_widgets._custom[(obj["apiVersion"], obj["kind"])]
    assert not isinstance(compiled, str)
    assert compiled.accepts(obj) == (not any(True for _ in compiled.validator.iter_errors(obj)))


@pytest.mark.slow
def test_validation_speed(k8s: schemas.SchemaSet, capsys: pytest.CaptureFixture[str]) -> None:
    obj = deployment()
    check(k8s, obj)  # compile outside the measurement
    n = 2000
    began = time.perf_counter()
    for _ in range(n):
        check(k8s, obj)
    per_object_ms = (time.perf_counter() - began) / n * 1000
    with capsys.disabled():
        print(f"\nschema validation: {per_object_ms:.3f} ms per Deployment ({n} runs)")
    # kubernetes_validate.validate takes ~8 ms; a regression to per-call $ref resolution fails.
    assert per_object_ms < 2.0


@pytest.mark.parametrize("node", [
    {"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "integer"}}},
    {"type": "object", "required": ["a", 7]},  # a name that is not a string (a broken schema)
    {"type": ["string", "null"], "enum": ["x", None, 1]},
    {"type": "number"},
    {"type": "integer"},
    {"type": "array", "items": {"type": "boolean"}},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"type": []},
])
def test_the_fast_predicate_never_accepts_what_jsonschema_refuses(node: dict[str, Any]) -> None:
    import jsonschema

    slow = jsonschema.Draft202012Validator({})
    accepts = schemas._accepts(node, slow, {})
    values: list[Any] = [None, True, 0, 1, 1.0, 1.5, "x", "y", [], [True], [True, 1], {}, {"a": 1},
                         {"a": 1, "b": 2}, {"a": "1", "b": 2}, {"a": 1, "b": "s"}, {"b": 1, 7: 1},
                         {"a": 1, 7: 1}, type("S", (str,), {})("x"), float("nan")]
    for v in values:
        if accepts(v):
            assert jsonschema.Draft202012Validator(node).is_valid(v), (node, v)
    # and it still accepts the plain values the schema takes (the fast path is the common one)
    assert any(accepts(v) for v in values) is (node != {"type": []})


def test_jsonschema_is_imported_only_to_explain_a_refusal() -> None:
    # ~0.06 s of every `pushgate validate`'s start-up, for what only a refusal needs
    import subprocess
    import sys

    script = """
import sys
from pushgate.gate import schemas
s = schemas.SchemaSet("1.37")
ok = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "resources": {"limits": {"cpu": "1"}}}]}}
crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "ws.example.com"},
       "spec": {"group": "example.com", "names": {"kind": "W", "plural": "ws"}, "scope": "Namespaced",
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "properties": {
                        "size": {"type": "integer"}}}}}}}]}}
for obj in (ok, pod):
    assert s.validate(obj, path="m.yaml", line_of=lambda p: 1, ref="r") == [], obj
w = {"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"}, "spec": {"size": 3}}
assert s.with_crds([crd]).validate(w, path="m.yaml", line_of=lambda p: 1, ref="r") == []
print("clean", "jsonschema" in sys.modules)
bad = dict(ok, data={"k": 1})
found = s.validate(bad, path="m.yaml", line_of=lambda p: 1, ref="r")
print("refused", "jsonschema" in sys.modules, [v.rule for v in found])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         check=True).stdout.splitlines()
    assert out == ["clean False", "refused True ['schema:data.k']"]
