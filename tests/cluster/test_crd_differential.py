"""The static CRD check agrees with the API server: prometheus-operator's CRDs and examples (from
its pinned Go module, fetched into the Go module cache, never copied here), plus resources
generated from them (unknown fields, wrong scalar types, nulls, RE2 patterns), judged by
`pushgate.gate.schemas` and by the real kube-apiserver's server-side dry-run (what the live
check and the apply send): the same verdict for every one. CEL rules are the one designed gap:
a resource refused only by one would be the live check's to refuse (none of these is).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushgate.core import manifests
from pushgate.gate import schemas
from tests.bed import procs, tools
from tests.bed.controlplane import ControlPlane
from tests.unit import test_crd_schemas as unit

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

GROUP = "monitoring.coreos.com"


def _module() -> Path:
    version = tools.versions()["PROMETHEUS_OPERATOR_VERSION"]
    cache = Path(os.environ.get("PUSHGATE_CACHE") or Path.home() / ".cache" / "pushgate")
    env = {**os.environ, "GOMODCACHE": str(cache / "go" / "mod"), "GOFLAGS": "-mod=mod",
           "GOTOOLCHAIN": "local"}
    res = subprocess.run(["go", "mod", "download", "-json",
                          f"github.com/prometheus-operator/prometheus-operator@{version}"],
                         capture_output=True, text=True, env=env, timeout=600, check=True, cwd="/")
    return Path(json.loads(res.stdout)["Dir"])


def _docs(path: Path) -> list[dict[str, Any]]:
    # pushgate's own reader: PyYAML's SafeLoader fails on `- =` (a YAML 1.1 "value" tag)
    limits = manifests.Limits(max_file_bytes=64 * 1024 * 1024, max_documents=10_000)
    return [m.obj for m in manifests.load(path.name, path.read_bytes(), limits).manifests]


@pytest.fixture(scope="module")
def module() -> Path:
    return _module()


@pytest.fixture(scope="module")
def crds(module: Path) -> list[dict[str, Any]]:
    found = [d for p in sorted((module / "example" / "prometheus-operator-crd").glob("*.yaml"))
             for d in _docs(p) if d.get("kind") == "CustomResourceDefinition"]
    assert len(found) >= 10
    return found


def _examples(module: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for p in sorted((module / "example").rglob("*.yaml")):
        if "prometheus-operator-crd" in p.parts:
            continue
        for d in _docs(p):
            if str(d.get("apiVersion", "")).startswith(GROUP + "/"):
                out.append((str(p.relative_to(module)), d))
    return out


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


def _set(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    node: Any = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def _variants(name: str, obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield f"{name}", obj
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    yield f"{name} +unknown field", _set(obj, ("spec", "notAField"), 1)
    for key in list(spec)[:3]:
        yield f"{name} spec.{key}=null", _set(obj, ("spec", key), None)
    swaps = {str: 12345, int: "twelve", bool: "yes", float: "x"}
    for path, value in list(_leaves(spec, ("spec",)))[:6]:
        if type(value) in swaps:
            yield f"{name} {'.'.join(map(str, path))} wrong type", _set(obj, path, swaps[type(value)])
    if obj.get("kind") == "PrometheusRule":
        for strategy in ("warn", "ABORT", "", "retry"):
            group = {"name": "g", "partial_response_strategy": strategy, "rules": []}
            yield f"{name} partial_response_strategy={strategy!r}", _set(obj, ("spec", "groups"), [group])


def _static(s: schemas.SchemaSet, obj: dict[str, Any]) -> list[str]:
    return [str(v) for v in s.validate(obj, path="x.yaml", line_of=lambda _: 0, ref="x") if v.is_error]


def _live(dynamic: Any, obj: dict[str, Any]) -> str:
    from kubernetes.client.exceptions import ApiException

    res = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    try:
        dynamic.server_side_apply(res, body=obj, name=obj["metadata"]["name"],
                                  namespace=obj["metadata"]["namespace"], field_manager="pushgate-diff",
                                  force_conflicts=True, dry_run="All")
    except ApiException as e:
        message = str(json.loads(e.body).get("message", e.body))
        # server-side apply answers 500 for a field its typed schema does not declare
        if e.status not in (400, 422) and "failed to create typed patch object" not in message:
            raise
        return message[:400]
    return ""


def test_static_verdict_equals_the_api_servers(control_plane: ControlPlane, dynamic: Any, module: Path,
                                               crds: list[dict[str, Any]]) -> None:
    ns = f"crd-diff-{secrets.token_hex(3)}"
    crd_api = dynamic.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    ns_api = dynamic.resources.get(api_version="v1", kind="Namespace")
    ns_api.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    names = [c["metadata"]["name"] for c in crds]
    try:
        for crd in crds:
            dynamic.server_side_apply(crd_api, body=crd, name=crd["metadata"]["name"],
                                      field_manager="pushgate-diff", force_conflicts=True)

        def established() -> bool:
            return all(any(c.type == "Established" and c.status == "True"
                           for c in (crd_api.get(name=n).status.conditions or [])) for n in names)

        procs.wait_until(established, 60, "the CRDs to be established")
        dynamic.resources.invalidate_cache()
        static = schemas.SchemaSet("1.37").with_crds(crds)

        cases: list[tuple[str, dict[str, Any]]] = []
        for where, example in _examples(module):
            example = copy.deepcopy(example)
            example["metadata"] = {"name": f"x{len(cases)}", "namespace": ns}
            cases.extend(_variants(f"{where} {example['kind']}", example))
        assert len(cases) > 150, len(cases)
        # and the hand-written cases of the unit test, on its own CRD (CEL aside: by design)
        own = dynamic.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
        dynamic.server_side_apply(own, body=unit.CRD, name=unit.CRD["metadata"]["name"],
                                  field_manager="pushgate-diff", force_conflicts=True)
        names.append(unit.CRD["metadata"]["name"])
        procs.wait_until(established, 60, "the unit test's CRD to be established")
        dynamic.resources.invalidate_cache()
        static = static.with_crds([unit.CRD])
        for params in [*unit.ACCEPTED, *(spec for spec, _, _ in unit.REFUSED)]:
            if "rules" not in params:
                obj = unit.rule(**params)
                obj["metadata"] = {"name": f"u{len(cases)}", "namespace": ns}
                cases.append((f"unit case {params}", obj))

        disagree = []
        counts = {"accepted": 0, "refused": 0}
        for name, obj in cases:
            mine, theirs = _static(static, obj), _live(dynamic, obj)
            counts["refused" if theirs else "accepted"] += 1
            if bool(mine) != bool(theirs):
                disagree.append(f"{name}: static {mine or 'accepts'}; API server {theirs or 'accepts'}")
        assert disagree == [], "\n".join(disagree)
        # the designed gap: a CEL rule is the API server's (the live check's) alone to apply
        cel = unit.rule(rules=["a", "b", "c", "d"])
        cel["metadata"] = {"name": "cel", "namespace": ns}
        assert _static(static, cel) == [] and "too many" in _live(dynamic, cel)
        # the generated cases exercise both sides of every verdict
        assert counts["accepted"] > 40 and counts["refused"] > 40, counts
    finally:
        ns_api.delete(name=ns)
        for n in names:
            with contextlib.suppress(Exception):  # best-effort cleanup
                crd_api.delete(name=n)
