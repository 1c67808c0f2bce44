"""Drift: out-of-band edits, scales, label changes and deletes are caught by watch and undone
(or only reported in detect-only mode); an idle cluster causes no writes at all."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.bed import deploy, samples
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import Server

pytestmark = pytest.mark.cluster


def _push_app(git: Git, server: Server, tmp_path: Path, ns: str) -> str:
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "web.yaml": samples.deployment(namespace=ns),
                     "cm.yaml": samples.configmap(namespace=ns), "svc.yaml": samples.service(namespace=ns)})
    head = git.commit_all(work, "app")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(head), what="first apply")
    assert deploy.result_of(doc, head)["result"] == "Ready", doc
    return head


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _drift(server: Server, ref: str) -> list[dict[str, Any]]:
    return [d for d in deploy.status(server).get("drift", []) if d["ref"] == ref]


def test_idle_cluster_gets_no_drift_and_no_writes(git: Git, attached_server: Server,
                                                   control_plane: ControlPlane, tmp_path: Path) -> None:
    ns = f"idle-{secrets.token_hex(3)}"
    _push_app(git, attached_server, tmp_path, ns)
    time.sleep(3)  # let controllers settle (the Deployment controller annotates its object)
    since = time.time()
    time.sleep(30)
    doc = deploy.status(attached_server)
    assert [d for d in doc.get("drift", []) if ns in d["ref"]] == []
    # Lease renewals (leader election's heartbeat) are the only writes an idle reconciler makes.
    writes = [w for w in control_plane.audit_events("pushgate-reconciler", since)
              if "/leases/" not in w["requestURI"]]
    assert writes == [], [(w["verb"], w["requestURI"]) for w in writes][:10]
    leases = control_plane.audit_events("pushgate-reconciler", since)
    assert any("/leases/" in w["requestURI"] for w in leases)  # the filter hides something real


def test_edit_scale_label_and_delete_are_corrected(git: Git, attached_server: Server, dynamic: Any,
                                                   tmp_path: Path) -> None:
    ns = f"drift-{secrets.token_hex(3)}"
    _push_app(git, attached_server, tmp_path, ns)
    cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    deps = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    svcs = dynamic.resources.get(api_version="v1", kind="Service")

    cms.patch(name="settings", namespace=ns, body={"data": {"value": "edited"}},
              content_type="application/merge-patch+json")
    took = _wait(lambda: cms.get(name="settings", namespace=ns).data.value == "1", 20, "edit undone")
    print(f"\nedit corrected in {took:.2f}s")
    _wait(lambda: any("data.value" in d["fields"] and d["corrected"]
                      for d in _drift(attached_server, f"ConfigMap/{ns}/settings")), 10, "edit recorded")

    deps.patch(name="web", namespace=ns, body={"spec": {"replicas": 5}},
               content_type="application/merge-patch+json")
    _wait(lambda: deps.get(name="web", namespace=ns).spec.replicas == 2, 20, "scale undone")
    _wait(lambda: any("spec.replicas" in d["fields"]
                      for d in _drift(attached_server, f"Deployment/{ns}/web")), 10, "scale recorded")

    deps.patch(name="web", namespace=ns, body={"metadata": {"labels": {"app.kubernetes.io/name": "x"}}},
               content_type="application/merge-patch+json")
    _wait(lambda: deps.get(name="web", namespace=ns).metadata.labels["app.kubernetes.io/name"] == "web",
          20, "label undone")

    svcs.delete(name="web", namespace=ns)
    def recreated() -> bool:
        try:
            svcs.get(name="web", namespace=ns)
        except ApiException:
            return False
        return True
    _wait(recreated, 20, "deleted service recreated")
    _wait(lambda: any(d["fields"] == ["<deleted>"] for d in _drift(attached_server, f"Service/{ns}/web")),
          10, "delete recorded")


def test_detect_only_mode_and_per_object_opt_out(git: Git, server_factory: Callable[..., Server],
                                                 control_plane: ControlPlane, dynamic: Any,
                                                 tmp_path: Path) -> None:
    ns = f"detect-{secrets.token_hex(3)}"
    server = server_factory(f"--kubeconfig={control_plane.kubeconfig}",
                            env={"PUSHGATE_INVENTORY_NAMESPACE": f"pg-inv-{secrets.token_hex(3)}",
                                 "PUSHGATE_DRIFT": "detect"})
    _push_app(git, server, tmp_path, ns)
    cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    cms.patch(name="settings", namespace=ns, body={"data": {"value": "edited"}},
              content_type="application/merge-patch+json")
    _wait(lambda: bool(_drift(server, f"ConfigMap/{ns}/settings")), 20, "drift reported")
    event = _drift(server, f"ConfigMap/{ns}/settings")[0]
    assert event["corrected"] is False and "data.value" in event["fields"]
    time.sleep(2)
    assert cms.get(name="settings", namespace=ns).data.value == "edited"

    svcs = dynamic.resources.get(api_version="v1", kind="Service")
    svcs.patch(name="web", namespace=ns, content_type="application/merge-patch+json",
               body={"metadata": {"annotations": {"pushgate.io/reconcile": "false"}},
                     "spec": {"ports": [{"port": 81, "targetPort": 8080}]}})
    time.sleep(3)
    assert _drift(server, f"Service/{ns}/web") == []


def test_drift_still_caught_after_watch_expires(
        git: Git, fresh_control_plane: Callable[..., ControlPlane],
        server_factory: Callable[..., Server], tmp_path: Path) -> None:
    import json
    import urllib.request

    from kubernetes.dynamic import DynamicClient

    cp = fresh_control_plane()
    server = server_factory(f"--kubeconfig={cp.kubeconfig}")
    ns = f"gone-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns)})
    head = git.commit_all(work, "cm")
    git.run("push", server.url(), "main", cwd=work)
    deploy.wait_status(server, deploy.verdict_for(head), what="apply")
    before = deploy.status(server).get("watchRelists", 0)

    dyn: Any = DynamicClient(cp.api_client())
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    for i in range(20):  # history the watch would have to replay
        cms.create(namespace=ns, body={"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": f"noise-{i}"}})
    # Compact etcd to its current revision, then restart the apiserver: the reconciler's watch
    # resumes from a resourceVersion that no longer exists and gets 410 Gone.
    etcd = f"http://127.0.0.1:{cp.etcd_port}"
    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(etcd + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            doc: dict[str, Any] = json.load(r)
            return doc
    rev = post("/v3/kv/range", {"key": "YQ=="})["header"]["revision"]
    post("/v3/kv/compaction", {"revision": rev, "physical": True})
    cp.stop_apiserver()
    cp.start_apiserver()
    dyn = DynamicClient(cp.api_client())
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    _wait(lambda: deploy.status(server).get("watchRelists", 0) > before, 60, "watch re-listed")
    cms.patch(name="settings", namespace=ns, body={"data": {"value": "edited"}},
              content_type="application/merge-patch+json")
    _wait(lambda: cms.get(name="settings", namespace=ns).data.value == "1", 30, "edit undone after 410")
