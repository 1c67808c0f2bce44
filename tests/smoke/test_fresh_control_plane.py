"""A private control plane can be stopped and restarted, keeps its data in etcd across an
apiserver restart, and leaves no process behind once stopped."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.dynamic import DynamicClient

from tests.bed.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_apiserver_restart_keeps_data_and_stop_leaves_nothing(
        fresh_control_plane: Callable[..., ControlPlane]) -> None:
    cp = fresh_control_plane()
    dyn: Any = DynamicClient(cp.api_client())
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    cms.create(namespace="default", body={"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": {"name": "kept"}, "data": {"k": "v"}})
    cp.stop_apiserver()
    with pytest.raises(OSError):
        cp.request("/readyz")
    cp.start_apiserver()
    dyn = DynamicClient(cp.api_client())
    got = dyn.resources.get(api_version="v1", kind="ConfigMap").get(name="kept", namespace="default")
    assert got.data.k == "v"
    pids = [p.pid for p in (cp.etcd, cp.apiserver) if p is not None]
    cp.stop()
    assert not any(_alive(pid) for pid in pids)
