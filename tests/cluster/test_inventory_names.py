"""Names with "_" (and the other characters RBAC names may hold) in the inventory, on the real
API server: a Role named `read_only` is applied, recorded, and pruned when it leaves the set;
an inventory a v1 pushgate wrote (joined with "_", unescaped) is read, pruned from and rewritten."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from reconciler import inventory
from reconciler.apply import Applier
from reconciler.cluster import Cluster
from reconciler.inventory import Entry
from tests.bed.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

RBAC = "rbac.authorization.k8s.io"
# Legal RBAC names (path segments: no "/" or "%", not "." or "..") that break a "_"-joined format.
NAMES = ["read_only", "ops:read_only@team", "Read_Only.V2", "__", "x_y_z_w_v"]


def _role(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}


def _cm(ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns},
            "data": {"value": "1"}}


def _parent(cluster: Cluster, applier: Applier) -> dict[str, Any]:
    parent = cluster.get("v1", "ConfigMap", applier.parent_name, applier.ns)
    assert parent is not None
    return parent


@pytest.fixture
def cluster(control_plane: ControlPlane) -> Cluster:
    return Cluster.from_kubeconfig(str(control_plane.kubeconfig))


def test_a_role_named_read_only_is_recorded_and_pruned(cluster: Cluster, namespace: str) -> None:
    names = NAMES
    applier = Applier(cluster, branch=f"names-{secrets.token_hex(3)}", inventory_namespace=namespace)
    report = applier.apply([*(_role(n, namespace) for n in names), _cm(namespace)], "r1")
    assert report.failures == [], [r.line() for r in report.failures]
    for n in names:
        role = cluster.get(f"{RBAC}/v1", "Role", n, namespace)
        assert role is not None and role["metadata"]["labels"][inventory.PART_OF] == applier.id
    text = _parent(cluster, applier)["data"]["inventory"]
    assert text.split("\n")[0] == inventory.HEADER
    assert f"{namespace}_read%5Fonly_{RBAC}_Role_v1" in text.split("\n")
    assert set(inventory.decode(text)) == {*(Entry(namespace, n, RBAC, "Role", "v1") for n in names),
                                           Entry(namespace, "settings", "", "ConfigMap", "v1")}

    report = applier.apply([_cm(namespace)], "r2")
    assert report.failures == [], [r.line() for r in report.failures]
    pruned = {r.entry.name for r in report.results if r.action == "pruned"}
    assert pruned == set(names)
    for n in names:
        assert cluster.get(f"{RBAC}/v1", "Role", n, namespace) is None
    assert inventory.decode(_parent(cluster, applier)["data"]["inventory"]) == [
        Entry(namespace, "settings", "", "ConfigMap", "v1")]
    assert cluster.get("v1", "ConfigMap", "settings", namespace) is not None


def test_a_v1_inventory_is_read_pruned_from_and_rewritten_as_v2(cluster: Cluster, namespace: str) -> None:
    applier = Applier(cluster, branch=f"v1-{secrets.token_hex(3)}", inventory_namespace=namespace)
    # The state a v1 pushgate left: its members labelled, its inventory joined with "_".
    for obj in (_role("read_only", namespace), _cm(namespace)):
        cluster.apply(applier.labelled(obj))
    v1 = "\n".join([f"{namespace}_read_only_{RBAC}_Role_v1", f"{namespace}_settings__ConfigMap_v1"])
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": applier.parent_name, "namespace": namespace,
                                "labels": {inventory.APPLYSET_ID: applier.id}},
                   "data": {"inventory": v1, "revision": "r0"}})
    assert set(applier.read_inventory()) == {Entry(namespace, "read_only", RBAC, "Role", "v1"),
                                             Entry(namespace, "settings", "", "ConfigMap", "v1")}

    report = applier.apply([_cm(namespace)], "r1")
    assert report.failures == [], [r.line() for r in report.failures]
    assert [(r.ref, r.action) for r in report.results if r.action != "applied"] == [
        (f"Role/{namespace}/read_only", "pruned")]
    assert cluster.get(f"{RBAC}/v1", "Role", "read_only", namespace) is None
    text = _parent(cluster, applier)["data"]["inventory"]
    assert text.split("\n") == [inventory.HEADER, f"{namespace}_settings__ConfigMap_v1"]
