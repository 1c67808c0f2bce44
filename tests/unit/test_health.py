"""kstatus-style health of live objects and the verdict of a commit (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler import health


def _dep(want: int = 2, gen: int = 2, seen: int = 2, **status: Any) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"generation": gen}, "spec": {"replicas": want},
            "status": {"observedGeneration": seen, **status}}


@pytest.mark.parametrize(("obj", "want", "words"), [
    (_dep(updatedReplicas=2, availableReplicas=2, replicas=2), "Current", "2/2 replicas available"),
    (_dep(seen=1, updatedReplicas=2, availableReplicas=2, replicas=2), "InProgress", "not yet observed"),
    (_dep(updatedReplicas=1, availableReplicas=2, replicas=3), "InProgress", "1/2 replicas updated"),
    (_dep(updatedReplicas=2, availableReplicas=1, replicas=2), "InProgress", "1/2 replicas available"),
    (_dep(updatedReplicas=2, availableReplicas=2, replicas=3), "InProgress", "pending termination"),
    (_dep(conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                       "message": "took too long"}]), "Failed", "progress deadline exceeded"),
    ({"kind": "StatefulSet", "spec": {"replicas": 2}, "status": {"readyReplicas": 2,
      "currentRevision": "a", "updateRevision": "b"}}, "InProgress", "rolling update"),
    ({"kind": "StatefulSet", "spec": {"replicas": 2}, "status": {"readyReplicas": 2,
      "currentRevision": "b", "updateRevision": "b"}}, "Current", "2/2"),
    ({"kind": "DaemonSet", "status": {"desiredNumberScheduled": 3, "updatedNumberScheduled": 3,
                                      "numberAvailable": 2}}, "InProgress", "numberAvailable"),
    ({"kind": "DaemonSet", "status": {"desiredNumberScheduled": 3, "updatedNumberScheduled": 3,
                                      "numberAvailable": 3}}, "Current", "3 scheduled"),
    ({"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}}, "Current",
     "complete"),
    ({"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True",
                                               "reason": "BackoffLimitExceeded"}]}}, "Failed", "Backoff"),
    ({"kind": "Job", "status": {}}, "InProgress", "running"),
    ({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}}, "Current", "bound"),
    ({"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}, "InProgress", "Pending"),
    ({"kind": "PersistentVolumeClaim", "status": {"phase": "Lost"}}, "Failed", "lost"),
    ({"kind": "Service", "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1"}}, "Current", ""),
    ({"kind": "Service", "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"}}, "InProgress",
     "load balancer"),
    ({"kind": "ConfigMap"}, "Current", ""),
    ({"kind": "ConfigMap", "metadata": {"deletionTimestamp": "x"}}, "InProgress", "deleted"),
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
    ([], 0, "Ready"),
])
def test_verdict(statuses: list[str], failures: int, want: str) -> None:
    assert health.verdict([health.Health(s) for s in statuses], failures)[0] == want
