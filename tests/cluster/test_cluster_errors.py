"""Errors from the real API server and client, as the adapter types them: an object the client
refuses (a namespaced object without a namespace) is a permanent ClientError saying so, never
"API server unreachable"; the applier reports it as that object's failure and applies the rest."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

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


@pytest.mark.parametrize(("name", "ns"), [("..", None), (".", None), ("a/b", None), ("x", ".."),
                                          ("50%2F", None)])
def test_a_name_that_is_not_a_path_segment_never_reaches_the_server(
        cluster: Cluster, namespace: str, control_plane: ControlPlane, name: str, ns: str | None) -> None:
    # Sent as it was, ".." made the PATCH of a ConfigMap go to its namespace's own URL.
    before = cluster.get("v1", "Namespace", namespace)
    for dry_run in (True, False):
        with pytest.raises(errors.ClientError) as info:
            cluster.apply(_cm(name, ns or namespace), dry_run=dry_run)
        assert info.value.permanent and "is not a URL path segment" in info.value.message
    with pytest.raises(errors.ClientError):
        cluster.get("v1", "ConfigMap", name, ns or namespace)
    after = cluster.get("v1", "Namespace", namespace)
    assert before and after and before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]


def test_requests_answer_plain_dicts_and_errors_with_status_body_and_headers(
        cluster: Cluster, namespace: str) -> None:
    applied = cluster.apply(_cm("plain", namespace))
    assert type(applied) is dict and applied["data"] == {"value": "1"}
    assert applied["metadata"]["managedFields"][0]["manager"] == cluster.field_manager
    got = cluster.get("v1", "ConfigMap", "plain", namespace)
    assert got is not None and got["metadata"]["uid"] == applied["metadata"]["uid"]
    dry = cluster.apply({**_cm("plain", namespace), "data": {"value": "2"}}, dry_run=True)
    assert dry["data"] == {"value": "2"}
    assert cluster.get("v1", "ConfigMap", "plain", namespace)["data"] == {"value": "1"}  # type: ignore[index]
    assert cluster.get("v1", "ConfigMap", "absent", namespace) is None
    with pytest.raises(ApiException) as info:  # raw, as the kubernetes client raises
        cluster.send("GET", f"/api/v1/namespaces/{namespace}/configmaps/absent", [])
    e = info.value
    assert e.status == 404 and '"reason":"NotFound"' in e.body
    assert e.headers["Content-Type"] == "application/json"


def test_a_refused_token_answers_401_through_the_lean_request_path(control_plane: ControlPlane,
                                                                   namespace: str) -> None:
    good = Cluster.from_kubeconfig(str(control_plane.kubeconfig))
    good._auth = (time.monotonic(), {"authorization": "Bearer not-the-token"})  # as if just asked
    with pytest.raises(errors.ClusterError) as info:
        good.get("v1", "ConfigMap", "x", namespace)
    assert info.value.code == 401 and info.value.message == "Unauthorized"


def test_found_kinds_are_remembered_until_discovery_is_invalidated(cluster: Cluster) -> None:
    asked: list[tuple[str, str]] = []
    real = cluster.dyn.resources.get

    def counting(*, prefix: str, api_version: str, kind: str) -> Any:
        asked.append((api_version, kind))
        return real(prefix=prefix, api_version=api_version, kind=kind)

    cluster.dyn.resources.get = counting
    first = cluster.resource("v1", "ConfigMap")
    assert cluster.resource("v1", "ConfigMap") is first and cluster.namespaced("v1", "ConfigMap")
    assert asked == [("v1", "ConfigMap")]
    for _ in range(2):  # a miss is not remembered: the next lookup asks (and re-reads) again
        with pytest.raises(errors.NotFound):
            cluster.resource("nope.example.com/v1", "Widget")
    assert asked.count(("nope.example.com/v1", "Widget")) == 2
    cluster.invalidate_discovery()
    assert cluster.resource("v1", "ConfigMap").kind == "ConfigMap"
    assert asked.count(("v1", "ConfigMap")) == 2


def test_a_core_kinds_lookup_reads_no_other_groups_resources(cluster: Cluster) -> None:
    """A lookup of "v1" once searched every group that has a "v1" version, loading each one's
    resources: one answering 404 (a CRD deleted since discovery was read) failed the lookup of
    ConfigMap itself (seen in CI as "no resource type" for a ConfigMap)."""
    read: list[tuple[str, str, str]] = []
    real = cluster.dyn.resources.get_resources_for_api_version

    def recording(prefix: str, group: str, version: str, preferred: bool) -> Any:
        read.append((prefix, group, version))
        return real(prefix, group, version, preferred)

    cluster.dyn.resources.get_resources_for_api_version = recording
    cluster.invalidate_discovery()
    assert cluster.resource("v1", "ConfigMap").kind == "ConfigMap"
    assert read and {prefix for prefix, _, _ in read} == {"api"}, read
    read.clear()
    assert cluster.resource("apps/v1", "Deployment").kind == "Deployment"
    assert {(prefix, group) for prefix, group, _ in read} == {("apis", "apps")}, read
