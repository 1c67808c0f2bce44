"""The shared control plane is a real kube-apiserver + etcd + kube-controller-manager."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.bed import tools
from tests.bed.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def _deployment(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
                 **spec},
    }


def test_version_is_the_pinned_release(control_plane: ControlPlane) -> None:
    status, body = control_plane.request("/version")
    assert status == 200
    assert json.loads(body)["gitVersion"] == tools.versions()["KUBERNETES_VERSION"]


def test_server_side_apply_records_managed_fields(dynamic: Any, namespace: str) -> None:
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    dynamic.server_side_apply(deployments, body=_deployment(namespace, "web"),
                              namespace=namespace, field_manager="bed-smoke")
    live = deployments.get(name="web", namespace=namespace).to_dict()
    managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
    assert ("bed-smoke", "Apply") in managers
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    ns = dynamic.resources.get(api_version="v1", kind="Namespace").get(name=namespace).to_dict()
    assert ns["status"]["phase"] == "Active"


def test_invalid_object_is_refused_with_422(dynamic: Any, namespace: str) -> None:
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    bad = _deployment(namespace, "bad")
    del bad["spec"]["selector"]
    with pytest.raises(ApiException) as e:
        dynamic.server_side_apply(deployments, body=bad, namespace=namespace,
                                  field_manager="bed-smoke")
    assert e.value.status == 422
    assert "selector" in str(e.value.body)


def test_rbac_is_enforced(control_plane: ControlPlane, dynamic: Any, namespace: str) -> None:
    sas = dynamic.resources.get(api_version="v1", kind="ServiceAccount")
    sas.create(namespace=namespace, body={"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": "nobody"}})
    token_api = dynamic.resources.get(api_version="v1", kind="ServiceAccount").subresources["token"]
    tr = token_api.create(namespace=namespace, name="nobody", body={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600}})
    token = tr.status.token
    assert control_plane.request(f"/api/v1/namespaces/{namespace}/pods", token=token)[0] == 403
    assert control_plane.request(f"/api/v1/namespaces/{namespace}/pods")[0] == 200


def test_controllers_and_kubelet_make_a_deployment_available(dynamic: Any, namespace: str) -> None:
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    dynamic.server_side_apply(deployments, body=_deployment(namespace, "api"),
                              namespace=namespace, field_manager="bed-smoke")
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = deployments.get(name="api", namespace=namespace).to_dict().get("status", {})
        if status.get("availableReplicas") == 2 and status.get("updatedReplicas") == 2:
            break
        time.sleep(0.5)
    assert status.get("availableReplicas") == 2, status
    pods = dynamic.resources.get(api_version="v1", kind="Pod").get(namespace=namespace).to_dict()
    assert len(pods["items"]) == 2
    assert all(p["status"]["phase"] == "Running" for p in pods["items"])


def test_namespace_deletion_is_finalised(dynamic: Any) -> None:
    ns_api = dynamic.resources.get(api_version="v1", kind="Namespace")
    name = f"gone-{int(time.time() * 1000) % 10**8}"
    ns_api.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    ns_api.delete(name=name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ns_api.get(name=name)
        except ApiException as e:
            assert e.status == 404
            return
        time.sleep(0.5)
    pytest.fail(f"namespace {name} still present after 60 s (no namespace controller?)")
