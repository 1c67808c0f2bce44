"""Errors from the real API server and client, as the adapter types them: an object the client
refuses (a namespaced object without a namespace) is a permanent ClientError saying so, never
"API server unreachable"; the applier reports it as that object's failure and applies the rest."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from reconciler import errors
from reconciler.apply import Applier
from reconciler.cluster import Cluster
from tests.bed.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def _cm(name: str, namespace: str | None) -> dict[str, Any]:
    meta = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"value": "1"}}


@pytest.fixture
def cluster(control_plane: ControlPlane) -> Cluster:
    return Cluster.from_kubeconfig(str(control_plane.kubeconfig))


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_namespaced_object_without_a_namespace_is_a_permanent_client_error(cluster: Cluster,
                                                                             dry_run: bool) -> None:
    with pytest.raises(errors.ClusterError) as info:
        cluster.apply(_cm("no-namespace", None), dry_run=dry_run)
    err = info.value
    assert type(err) is errors.ClientError and err.permanent, err
    assert not isinstance(err, errors.Temporary)
    assert err.reason == "ClientError"
    assert err.message == "ValueError: Namespace is required for v1.ConfigMap"
    assert isinstance(err.__cause__, ValueError)


def test_the_applier_reports_it_as_that_objects_permanent_failure(cluster: Cluster,
                                                                  namespace: str) -> None:
    applier = Applier(cluster, branch=f"errors-{secrets.token_hex(3)}", inventory_namespace=namespace)
    report = applier.apply([_cm("no-namespace", None), _cm("fine", namespace)], "r1")
    rows = {r.entry.name: r for r in report.results}
    bad = rows["no-namespace"]
    assert (bad.action, bad.reason, bad.permanent) == ("failed", "ClientError", True)
    assert bad.message == "dry-run: ValueError: Namespace is required for v1.ConfigMap"
    assert "unreachable" not in bad.line().lower()
    assert rows["fine"].action == "applied"
    assert cluster.get("v1", "ConfigMap", "fine", namespace) is not None


def test_api_answers_keep_their_types(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(errors.NotFound) as info:
        cluster.apply({"apiVersion": "nope.example.com/v1", "kind": "Widget",
                       "metadata": {"name": "w", "namespace": namespace}})
    assert info.value.reason == "NoKind"
    bad = {**_cm("Bad_Name", namespace)}  # not a DNS subdomain: the server refuses it
    with pytest.raises(errors.Invalid) as invalid:
        cluster.apply(bad, dry_run=True)
    assert invalid.value.code == 422 and "Bad_Name" in invalid.value.message
