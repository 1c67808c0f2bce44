"""The OPA server fixture is a real `opa run --server` that has loaded pushgate's policies."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.bed.opa import OpaServer

pytestmark = pytest.mark.opa


def _decide(opa: OpaServer, path: str, obj: dict[str, Any]) -> Any:
    req = urllib.request.Request(f"{opa.url}/v1/data/{path}", data=json.dumps({"input": obj}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)["result"]


def _pod(image: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app.kubernetes.io/name": "p"}},
            "spec": {"containers": [{"name": "web", "image": image}]}}


def test_opa_decides_with_a_loaded_policy(opa_server: OpaServer) -> None:
    denied = _decide(opa_server, "pushgate/k8s/images/deny", _pod("nginx:latest"))
    assert any("latest" in d["msg"] for d in denied)
    assert _decide(opa_server, "pushgate/k8s/images/deny", _pod("nginx:1.27.3")) == []
