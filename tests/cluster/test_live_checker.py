"""The live gate on the real API server: what a dry-run server-side apply refuses (a
ValidatingAdmissionPolicy, a quota, an immutable field, a custom resource its cluster-only CRD
rejects), what it cannot check in order (the members of a Namespace the push creates), the plan
against live state (create, update with changed fields, unchanged, prune from a real applier's
inventory; a Secret's values never shown), that none of it writes (resourceVersions, the audit
log), and the reconciler's socket: 401 without the token, 503 with the API server down, 200."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reconciler import live, liveserver
from reconciler.apply import Applier
from reconciler.cluster import Cluster
from tests.bed import procs
from tests.bed.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


# -- helpers ------------------------------------------------------------------------------------
def _cm(ns: str, name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": data}


def _deploy(ns: str, name: str, replicas: int, app: str = "") -> dict[str, Any]:
    labels = {"app": app or name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}


def _secret(ns: str, name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "type": "Opaque", "stringData": data}


class _Bed:
    """A checker on the shared control plane with a user agent of its own, so the audit log
    (writes only) tells its requests apart; `writer` is another client, for setting the scene."""

    def __init__(self, control_plane: ControlPlane, ns: str) -> None:
        self.cp = control_plane
        self.ns = ns
        self.agent = f"pushgate-live-{secrets.token_hex(4)}"
        api = control_plane.api_client()
        api.user_agent = self.agent
        self.cluster = Cluster(api)
        self.writer = Cluster(control_plane.api_client())
        self.checker = live.LiveChecker(lambda: self.cluster, inventory_namespace=ns)
        self.since = time.time()

    def check(self, objects: list[dict[str, Any]], branch: str = "main") -> live.LiveReport:
        return self.checker.check(branch, objects, 30)

    def our_writes(self) -> list[str]:
        """Requests of the checker the audit log recorded that were not dry-runs."""
        events = self.cp.audit_events(self.agent, self.since)
        return [f"{e['verb']} {e['requestURI']}" for e in events if "dryRun=All" not in e["requestURI"]]

    def dry_runs(self) -> int:
        return len(self.cp.audit_events(self.agent, self.since))

    def snapshot(self) -> dict[str, str]:
        """resourceVersion of every object of the kinds these tests touch, in the namespace."""
        out = {}
        for kind in ("ConfigMap", "Secret", "ResourceQuota"):
            for item in self.writer.dyn.resources.get(api_version="v1", kind=kind).get(
                    namespace=self.ns).to_dict()["items"]:
                out[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        for item in self.writer.dyn.resources.get(api_version="apps/v1", kind="Deployment").get(
                namespace=self.ns).to_dict()["items"]:
            out[f"Deployment/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        return out


@pytest.fixture
def bed(control_plane: ControlPlane, namespace: str) -> Iterator[_Bed]:
    b = _Bed(control_plane, namespace)
    yield b
    b.checker.close()


def _rows(report: live.LiveReport) -> list[tuple[str, str, int]]:
    return [(r.outcome, r.reason, r.code) for r in report.results]


# -- refusals -----------------------------------------------------------------------------------
def test_a_validating_admission_policy_refuses_with_its_own_message(bed: _Bed, dynamic: Any) -> None:
    tag = secrets.token_hex(3)
    vap_api = dynamic.resources.get(api_version="admissionregistration.k8s.io/v1",
                                    kind="ValidatingAdmissionPolicy")
    binding_api = dynamic.resources.get(api_version="admissionregistration.k8s.io/v1",
                                        kind="ValidatingAdmissionPolicyBinding")
    dynamic.resources.get(api_version="v1", kind="Namespace").patch(
        name=bed.ns, body={"metadata": {"labels": {"live-test": tag}}},
        content_type="application/merge-patch+json")
    name = f"max-replicas-{tag}"
    vap_api.create(body={
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{
            "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
            "resources": ["deployments"]}]},
            "validations": [{"expression": "object.spec.replicas <= 3",
                             "message": f"at most 3 replicas here ({tag})"}]}})
    binding_api.create(body={
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"live-test": tag}}}}})
    try:
        push = [_deploy(bed.ns, "big", 5), _deploy(bed.ns, "small", 3)]
        # The API server loads a new policy within a second or so.
        procs.wait_until(lambda: bed.check(push).results[0].outcome == "refused", 30,
                         "the ValidatingAdmissionPolicy to take effect")
        big, small = bed.check(push).results
        assert (big.outcome, big.reason, big.code) == ("refused", "Invalid", 422)
        assert big.message == (f'deployments.apps "big" is forbidden: ValidatingAdmissionPolicy '
                               f"'{name}' with binding '{name}' denied request: "
                               f"at most 3 replicas here ({tag})")
        assert small.outcome == "ok"
    finally:
        with contextlib.suppress(Exception):
            binding_api.delete(name=name)
        with contextlib.suppress(Exception):
            vap_api.delete(name=name)
    assert bed.our_writes() == []
    assert not [ref for ref in bed.snapshot() if ref.startswith("Deployment/")]


def test_a_quota_that_would_be_exceeded_refuses(bed: _Bed) -> None:
    bed.writer.apply({"apiVersion": "v1", "kind": "ResourceQuota",
                      "metadata": {"name": "cms", "namespace": bed.ns},
                      "spec": {"hard": {"configmaps": "2"}}})

    def used() -> str:
        live_quota = bed.writer.get("v1", "ResourceQuota", "cms", bed.ns) or {}
        return str(((live_quota.get("status") or {}).get("used") or {}).get("configmaps", ""))

    # The controller manager computes usage; kube-root-ca.crt, which it publishes, counts.
    procs.wait_until(lambda: used() == "1", 30, "the quota's usage")
    # One slot left: each new ConfigMap alone fits, and a dry-run is judged alone (two new ones
    # in one push both pass, though the apply would refuse the second: a limit of the check).
    assert _rows(bed.check([_cm(bed.ns, "a"), _cm(bed.ns, "b")])) == [("ok", "", 0)] * 2
    bed.writer.apply(_cm(bed.ns, "existing", k="v"))
    procs.wait_until(lambda: used() == "2", 30, "the quota's usage to count the new ConfigMap")
    before = bed.snapshot()
    report = bed.check([_cm(bed.ns, "existing", k="w"), _cm(bed.ns, "one-too-many")])
    ok, over = report.results
    assert ok.outcome == "ok"
    assert (over.outcome, over.reason, over.code) == ("refused", "Forbidden", 403)
    assert over.message.startswith('configmaps "one-too-many" is forbidden: exceeded quota: cms')
    assert report.plan.create == (f"ConfigMap/{bed.ns}/one-too-many",)
    assert [(u.ref, u.changes) for u in report.plan.update] == [
        (f"ConfigMap/{bed.ns}/existing", ("data.k: v -> w",))]
    assert bed.snapshot() == before and bed.our_writes() == []


def test_an_immutable_field_refuses(bed: _Bed) -> None:
    bed.writer.apply(_deploy(bed.ns, "web", 1))
    report = bed.check([_deploy(bed.ns, "web", 1, app="other")])
    (row,) = report.results
    assert (row.outcome, row.reason, row.code) == ("refused", "Invalid", 422)
    assert "spec.selector" in row.message and "field is immutable" in row.message
    assert report.plan.update == (live.plan.Update(f"Deployment/{bed.ns}/web", ()),)
    assert bed.our_writes() == []


def _crd(group: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"gadgets.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget",
                               "listKind": "GadgetList"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                             "type": "object", "required": ["size"],
                             "properties": {"size": {"type": "integer", "maximum": 10}}}}}}}]}}


def _gadget(group: str, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


@pytest.fixture
def crd_group(bed: _Bed, dynamic: Any) -> Iterator[str]:
    """A CRD that exists only in the cluster (never pushed), established."""
    group = f"g{secrets.token_hex(3)}.example.com"
    bed.writer.apply(_crd(group))

    def established() -> bool:
        conds = ((bed.writer.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                                 f"gadgets.{group}") or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    procs.wait_until(established, 30, "the CRD to be established")
    yield group
    with contextlib.suppress(Exception):
        dynamic.resources.get(api_version="apiextensions.k8s.io/v1",
                              kind="CustomResourceDefinition").delete(name=f"gadgets.{group}")


def test_custom_resources_of_a_cluster_only_crd_are_checked_by_its_schema(bed: _Bed,
                                                                           crd_group: str) -> None:
    push = [_gadget(crd_group, bed.ns, "fine", {"size": 3}),
            _gadget(crd_group, bed.ns, "too-big", {"size": 11}),
            _gadget(crd_group, bed.ns, "no-size", {}),
            _gadget(crd_group, bed.ns, "a-string", {"size": "big"}),
            _gadget(crd_group, bed.ns, "unknown-field", {"size": 1, "colour": "red"}),
            {"apiVersion": f"{crd_group}/v9", "kind": "Gadget",
             "metadata": {"name": "no-such-version", "namespace": bed.ns}}]
    results = bed.check(push).results
    assert _rows(bed.check(push)) == [("ok", "", 0), ("refused", "Invalid", 422), ("refused", "Invalid", 422),
                                      ("refused", "BadRequest", 500), ("refused", "BadRequest", 500),
                                      ("refused", "NotFound", 404)]
    assert "spec.size in body should be less than or equal to 10" in results[1].message
    assert "spec.size: Required value" in results[2].message
    assert results[3].message.endswith(".spec.size: expected numeric (int or float), got string")
    assert results[4].message.endswith(".spec.colour: field not declared in schema")
    assert bed.our_writes() == []


# -- what cannot be checked in order ------------------------------------------------------------
def test_a_namespace_and_its_members_in_one_push(bed: _Bed, crd_group: str) -> None:
    new_ns = f"live-new-{secrets.token_hex(3)}"
    push = [_deploy(new_ns, "web", 1),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": new_ns}},
            _gadget(crd_group, new_ns, "g", {"size": 1}), _cm(bed.ns, "elsewhere")]
    report = bed.check(push)
    assert _rows(report) == [("static", "NamespaceInPush", 0), ("ok", "", 0),
                             ("static", "NamespaceInPush", 0), ("ok", "", 0)]
    assert report.plan.create == (f"Deployment/{new_ns}/web", f"Namespace/{new_ns}",
                                  f"Gadget/{new_ns}/g", f"ConfigMap/{bed.ns}/elsewhere")
    assert bed.writer.get("v1", "Namespace", new_ns) is None
    assert bed.our_writes() == [] and bed.dry_runs() == 2


def test_a_crd_and_its_resources_in_one_push(bed: _Bed) -> None:
    group = f"g{secrets.token_hex(3)}.example.com"
    report = bed.check([_crd(group), _gadget(group, bed.ns, "g", {"size": 1})])
    assert _rows(report) == [("ok", "", 0), ("static", "CRDInPush", 0)]
    assert bed.writer.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"gadgets.{group}") is None
    assert bed.our_writes() == []


# -- the plan -----------------------------------------------------------------------------------
def test_the_plan_against_live_state_and_an_applied_inventory(bed: _Bed) -> None:
    branch = f"feature/live-{secrets.token_hex(3)}"
    ns = bed.ns
    first = [_deploy(ns, "web", 2), _cm(ns, "same", k="v"), _cm(ns, "gone", k="v"),
             _secret(ns, "creds", password="first-password-1")]
    applied = Applier(bed.writer, branch=branch, inventory_namespace=ns).apply(first, "r1")
    assert not applied.failures

    def rolled_out() -> bool:
        dep = bed.writer.get("apps/v1", "Deployment", "web", ns) or {}
        st = dep.get("status") or {}
        return (st.get("observedGeneration") == dep["metadata"]["generation"]
                and st.get("updatedReplicas") == st.get("availableReplicas") == 2)

    # The controllers write the Deployment's status until it is rolled out: not ours to count.
    procs.wait_until(rolled_out, 60, "the Deployment to roll out")
    time.sleep(1)
    before = bed.snapshot()
    push = [_deploy(ns, "web", 3), _cm(ns, "same", k="v"), _cm(ns, "new", url="first-password-1"),
            _secret(ns, "creds", password="second-password-2")]
    report = bed.check(push, branch)
    doc = report.to_json()
    assert [r["outcome"] for r in doc["results"]] == ["ok"] * 4
    p = doc["plan"]
    assert p["create"] == [f"ConfigMap/{ns}/new"]
    assert p["update"] == [{"ref": f"Deployment/{ns}/web", "changes": ["spec.replicas: 2 -> 3"]},
                           {"ref": f"Secret/{ns}/creds", "changes": ["data.password: changed"]}]
    assert p["unchanged"] == [f"ConfigMap/{ns}/same"]
    assert p["prune"] == [{"ref": f"ConfigMap/{ns}/gone", "group": "", "kind": "ConfigMap",
                           "namespace": ns, "name": "gone", "protected": False, "optedOut": False,
                           "owned": True, "willDelete": True}]
    assert p["managed"] == 4
    text = json.dumps(doc)
    for value in ("first-password-1", "second-password-2"):
        assert value not in text and base64.b64encode(value.encode()).decode() not in text
    # Nothing written: no resourceVersion moved, no object added, the audit log has dry-runs only.
    assert bed.snapshot() == before
    assert bed.our_writes() == [] and bed.dry_runs() == 4


# -- the socket ---------------------------------------------------------------------------------
class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def _call(run_dir: str, method: str, path: str, body: bytes | None = None,
          token: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = _Unix(liveserver.socket_path(run_dir))
    try:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def _token(run_dir: str) -> str:
    with open(liveserver.token_path(run_dir)) as f:
        return f.read()


@pytest.fixture
def run_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="pgl-", dir="/tmp")  # a socket path has at most 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _check_body(objects: list[dict[str, Any]], timeout: float = 20) -> bytes:
    return json.dumps({"branch": "main", "objects": objects, "timeout": timeout}).encode()


def test_the_socket_wants_the_token_and_answers_checks(bed: _Bed, run_dir: str) -> None:
    # A stale socket from an earlier run is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(liveserver.socket_path(run_dir))
    stale.close()
    server = liveserver.serve(run_dir, bed.checker)
    try:
        token = _token(run_dir)
        assert len(token) >= 43
        for path in (liveserver.token_path(run_dir), liveserver.socket_path(run_dir)):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        assert _call(run_dir, "GET", "/v1/health")[0] == 401
        assert _call(run_dir, "GET", "/v1/health", token=token[:-1] + "x")[0] == 401
        assert _call(run_dir, "POST", "/v1/check", _check_body([]), token="nope")[0] == 401
        assert _call(run_dir, "GET", "/v1/health", token=token) == (200, {"ok": True, "connected": True})
        status, doc = _call(run_dir, "POST", "/v1/check",
                            _check_body([_cm(bed.ns, "c", k="v"), _deploy(bed.ns, "d", 9, app="x")]),
                            token=token)
        assert status == 200, doc
        assert [r["outcome"] for r in doc["results"]] == ["ok", "ok"]
        assert doc["plan"]["create"] == [f"ConfigMap/{bed.ns}/c", f"Deployment/{bed.ns}/d"]
        assert set(doc) == {"results", "plan", "seconds"}
        # Malformed requests.
        assert _call(run_dir, "POST", "/v1/check", b"{nope", token=token)[0] == 400
        no_branch = json.dumps({"objects": []}).encode()
        assert _call(run_dir, "POST", "/v1/check", no_branch, token=token)[0] == 400
        assert _call(run_dir, "POST", "/v1/check", _check_body([{"kind": "X"}]), token=token)[0] == 400
        status, doc = _call(run_dir, "POST", "/v1/check", token=token,
                            headers={"Content-Length": str(liveserver.MAX_BODY + 1)})
        assert status == 413 and "64 MiB" in doc["error"]
        assert _call(run_dir, "GET", "/v1/nothing", token=token)[0] == 404
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(liveserver.socket_path(run_dir))
            raw.sendall(f"POST /v1/check HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            assert raw.recv(4096).startswith(b"HTTP/1.1 400 ")  # no Content-Length
    finally:
        server.stop()
    assert not os.path.exists(liveserver.socket_path(run_dir))
    assert bed.our_writes() == []


def test_the_socket_answers_503_with_the_api_server_down(fresh_control_plane: Callable[..., ControlPlane],
                                                         run_dir: str) -> None:
    cp = fresh_control_plane()
    cluster = Cluster.from_kubeconfig(str(cp.kubeconfig))
    checker = live.LiveChecker(lambda: cluster, inventory_namespace="pushgate-system")
    server = liveserver.serve(run_dir, checker)
    try:
        token = _token(run_dir)
        body = _check_body([_cm("default", "c", k="v")], timeout=10)
        status, doc = _call(run_dir, "POST", "/v1/check", body, token=token)
        assert status == 200 and doc["results"][0]["outcome"] == "ok", doc
        # Too slow: a frozen API server answers nothing; the check gives up at its timeout.
        assert cp.apiserver is not None
        cp.apiserver.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            status, doc = _call(run_dir, "POST", "/v1/check", _check_body([_cm("default", "c")], 2),
                                token=token)
            assert status == 503, doc
            assert 1.5 < time.monotonic() - started < 5, doc
        finally:
            cp.apiserver.signal(signal.SIGCONT)
        cp.stop_apiserver()
        started = time.monotonic()
        status, doc = _call(run_dir, "POST", "/v1/check", body, token=token)
        assert status == 503, doc
        assert "unreachable" in doc["error"].lower() and "Traceback" not in doc["error"]
        assert time.monotonic() - started < 10
        # Not connected at all: also 503, and health says so.
        server.stop()
        server = liveserver.serve(run_dir, live.LiveChecker(lambda: None, inventory_namespace="x"))
        token = _token(run_dir)
        assert _call(run_dir, "GET", "/v1/health", token=token) == (200, {"ok": True, "connected": False})
        assert _call(run_dir, "POST", "/v1/check", body, token=token)[0] == 503
    finally:
        server.stop()
        checker.close()
