"""kstatus-style health of live objects and the verdict of a commit (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler import health


def _dep(want: int = 2, gen: int = 2, seen: int = 2, **status: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generation": gen},
            "spec": {"replicas": want}, "status": {"observedGeneration": seen, **status}}


_ROLLED_OUT = [{"type": "Available", "status": "True"},
               {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
_sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1},
        "spec": {"replicas": 2}}
_sts_ok = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "currentReplicas": 2,
           "updatedReplicas": 2}
_ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1}}
_ds_ok = {"observedGeneration": 1, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
          "updatedNumberScheduled": 3, "numberAvailable": 3, "numberReady": 3}
_pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim"}


@pytest.mark.parametrize(("obj", "want", "words"), [
    (_dep(updatedReplicas=2, availableReplicas=2, readyReplicas=2, replicas=2, conditions=_ROLLED_OUT),
     "Current", "2/2 replicas available"),
    (_dep(seen=1, updatedReplicas=2, availableReplicas=2, replicas=2), "InProgress", "not yet observed"),
    (_dep(updatedReplicas=1, availableReplicas=2, replicas=3), "InProgress", "1/2 replicas updated"),
    (_dep(updatedReplicas=2, availableReplicas=1, replicas=2), "InProgress", "1/2 replicas available"),
    (_dep(updatedReplicas=2, availableReplicas=2, replicas=3), "InProgress", "pending termination"),
    (_dep(conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                       "message": "took too long"}]), "Failed", "progress deadline exceeded"),
    ({**_sts, "status": {**_sts_ok, "currentRevision": "a", "updateRevision": "b"}}, "InProgress",
     "rolling update"),
    ({**_sts, "status": {**_sts_ok, "currentRevision": "b", "updateRevision": "b"}}, "Current", "2/2"),
    ({**_ds, "status": {**_ds_ok, "numberAvailable": 2}}, "InProgress", "2/3 pods available"),
    ({**_ds, "status": _ds_ok}, "Current", "3 pods scheduled"),
    ({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [
        {"type": "Complete", "status": "True"}]}}, "Current", "complete"),
    ({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}, "Failed", "Backoff"),
    ({"apiVersion": "batch/v1", "kind": "Job", "status": {}}, "InProgress", "not started"),
    ({**_pvc, "status": {"phase": "Bound"}}, "Current", "bound"),
    ({**_pvc, "status": {"phase": "Pending"}}, "InProgress", "Pending"),
    ({**_pvc, "status": {"phase": "Lost"}}, "Failed", "lost"),
    ({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1"}},
     "Current", ""),
    # kstatus does not wait for a load balancer's address (see reconciler/kinds.py).
    ({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"}},
     "Current", ""),
    ({"apiVersion": "v1", "kind": "ConfigMap"}, "Current", ""),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"deletionTimestamp": "x"}}, "Terminating",
     "deletion"),
    (None, "Failed", "not found"),
])
def test_assess(obj: dict[str, Any] | None, want: str, words: str) -> None:
    h = health.assess(obj)
    assert h.status == want
    assert words in h.message


@pytest.mark.parametrize(("statuses", "failures", "want"), [
    (["Current", "Current"], 0, "Ready"),
    (["Current", "InProgress"], 0, "Progressing"),
    (["Current", "Current"], 1, "Degraded"),
    (["Failed", "InProgress"], 1, "Failed"),
    (["Current", "Terminating"], 0, "Progressing"),
    ([], 0, "Ready"),
])
def test_verdict(statuses: list[str], failures: int, want: str) -> None:
    assert health.verdict([health.Health(s) for s in statuses], failures)[0] == want
