"""kstatus's rules for the built-in kinds it knows (its `core.go`), and the status-field readers
they share with `health`. Pure: no I/O.

Called by `health.assess` only when the generic rules (deletion, observedGeneration, the
`Reconciling` / `Stalled` conditions) decided nothing. A rule returns (status, message); the
checks and their order are kstatus's, the messages pushgate's. Where pushgate is stricter than
kstatus, `health`'s docstring says so and why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"
MAX_INT32 = 2**31 - 1  # spec.progressDeadlineSeconds meaning "no deadline" to the controller
SCHEDULE_WINDOW = 15.0  # seconds a Pod may be Unschedulable before it is Failed (kstatus's)

Rule = Callable[[dict[str, Any], float], tuple[str, str]]


def conditions(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`status.conditions`, in the object's order, skipping entries that are not objects."""
    found = (obj.get("status") or {}).get("conditions")
    if isinstance(found, list):
        yield from (c for c in found if isinstance(c, dict))


def described(head: str, c: dict[str, Any]) -> str:
    return ": ".join(str(p) for p in (head, c.get("reason"), c.get("message")) if p)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(d: dict[str, Any], key: str, default: int) -> int:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _parts(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return obj.get("spec") or {}, obj.get("status") or {}


def _observed(obj: dict[str, Any]) -> tuple[str, str] | None:
    """kstatus's `checkGenerationSet`: a workload's controller always writes observedGeneration,
    so until it has, empty counts say nothing (a new StatefulSet of 0 replicas looks done)."""
    if not is_int((obj.get("metadata") or {}).get("generation")):
        return IN_PROGRESS, "metadata.generation not set yet"
    if not is_int((obj.get("status") or {}).get("observedGeneration")):
        return IN_PROGRESS, "not yet observed by its controller"
    return None


def _always(obj: dict[str, Any], now: float) -> tuple[str, str]:
    return CURRENT, "nothing to wait for"


def _deployment(obj: dict[str, Any], now: float) -> tuple[str, str]:
    if (waiting := _observed(obj)) is not None:
        return waiting
    spec, st = _parts(obj)
    # Without a deadline the controller never reports NewReplicaSetAvailable: do not wait for it.
    progressed = _int(spec, "progressDeadlineSeconds", MAX_INT32) == MAX_INT32
    available = False
    for c in conditions(obj):
        if c.get("type") == "Progressing":
            if c.get("reason") == "ProgressDeadlineExceeded":
                return FAILED, f"progress deadline exceeded: {c.get('message', '')}".rstrip(": ")
            if c.get("status") == "True" and c.get("reason") == "NewReplicaSetAvailable":
                progressed = True
        elif c.get("type") == "Available" and c.get("status") == "True":
            available = True
    want, replicas = _int(spec, "replicas", 1), _int(st, "replicas", 0)
    updated, ready = _int(st, "updatedReplicas", 0), _int(st, "readyReplicas", 0)
    avail = _int(st, "availableReplicas", 0)
    if want > replicas:
        return IN_PROGRESS, f"{replicas}/{want} replicas created"
    if want > updated:
        return IN_PROGRESS, f"{updated}/{want} replicas updated"
    if replicas > want:
        return IN_PROGRESS, f"{replicas - want} old replicas pending termination"
    if updated > avail:
        return IN_PROGRESS, f"{avail}/{updated} replicas available"
    if want > ready:
        return IN_PROGRESS, f"{ready}/{want} replicas ready"
    if not progressed:
        return IN_PROGRESS, "rollout not complete: the new ReplicaSet is not available yet"
    if not available:
        return IN_PROGRESS, "the Deployment is not Available"
    return CURRENT, f"{avail}/{want} replicas available"


def _replicaset(obj: dict[str, Any], now: float) -> tuple[str, str]:
    if (waiting := _observed(obj)) is not None:
        return waiting
    for c in conditions(obj):
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            return IN_PROGRESS, described("replica failure", c)
    spec, st = _parts(obj)
    want, replicas = _int(spec, "replicas", 1), _int(st, "replicas", 0)
    for field, label in (("fullyLabeledReplicas", "labelled"), ("availableReplicas", "available"),
                         ("readyReplicas", "ready")):
        if want > _int(st, field, 0):
            return IN_PROGRESS, f"{_int(st, field, 0)}/{want} replicas {label}"
    if replicas > want:
        return IN_PROGRESS, f"{replicas - want} old replicas pending termination"
    return CURRENT, f"{_int(st, 'availableReplicas', 0)}/{want} replicas available"


def _statefulset(obj: dict[str, Any], now: float) -> tuple[str, str]:
    if (waiting := _observed(obj)) is not None:
        return waiting
    spec, st = _parts(obj)
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return CURRENT, "OnDelete update strategy: pods are replaced by the user"
    want, replicas, ready = _int(spec, "replicas", 1), _int(st, "replicas", 0), _int(st, "readyReplicas", 0)
    updated, current = _int(st, "updatedReplicas", 0), _int(st, "currentReplicas", 0)
    partition = _int(strategy.get("rollingUpdate") or {}, "partition", -1)
    if want > replicas:
        return IN_PROGRESS, f"{replicas}/{want} replicas created"
    if want > ready:
        return IN_PROGRESS, f"{ready}/{want} replicas ready"
    if replicas > want:
        return IN_PROGRESS, f"{replicas - want} replicas pending termination"
    if partition != -1:
        if updated < want - partition:
            return IN_PROGRESS, f"{updated}/{want - partition} replicas updated (partition {partition})"
        return CURRENT, f"partitioned rollout complete: {updated} replicas updated"
    if want > current:
        return IN_PROGRESS, f"{current}/{want} replicas at the current revision"
    if st.get("currentRevision", "") != st.get("updateRevision", ""):
        return IN_PROGRESS, "rolling update in progress: current revision is not the update revision"
    return CURRENT, f"{ready}/{want} replicas ready"


def _daemonset(obj: dict[str, Any], now: float) -> tuple[str, str]:
    if (waiting := _observed(obj)) is not None:
        return waiting
    st = obj.get("status") or {}
    desired = _int(st, "desiredNumberScheduled", -1)
    if desired == -1:
        return IN_PROGRESS, "desiredNumberScheduled not reported yet"
    for field, label in (("currentNumberScheduled", "scheduled"), ("updatedNumberScheduled", "updated"),
                         ("numberAvailable", "available"), ("numberReady", "ready")):
        if desired > _int(st, field, 0):
            return IN_PROGRESS, f"{_int(st, field, 0)}/{desired} pods {label}"
    return CURRENT, f"{desired} pods scheduled and available"


def _pvc(obj: dict[str, Any], now: float) -> tuple[str, str]:
    phase = (obj.get("status") or {}).get("phase") or "unknown"
    if phase == "Bound":
        return CURRENT, "bound"
    if phase == "Lost":
        return FAILED, "volume lost"
    return IN_PROGRESS, f"not bound: phase {phase}"


def _waiting_reasons(st: dict[str, Any], reason: str | None = None) -> list[str]:
    found = []
    for cs in st.get("containerStatuses") or []:
        waiting = ((cs or {}).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and (reason is None or waiting["reason"] == reason):
            found.append(f"{cs.get('name', '?')}: {waiting['reason']}")
    return found


def _pod(obj: dict[str, Any], now: float) -> tuple[str, str]:
    st = obj.get("status") or {}
    phase = st.get("phase") or ""
    if phase == "Succeeded":
        return CURRENT, "completed successfully"
    if phase == "Failed":  # kstatus: a Pod that ran to completion is done, whatever its exit
        return CURRENT, "completed, not successfully"
    if phase == "Running":
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions(obj)):
            return CURRENT, "ready"
        looping = _waiting_reasons(st, "CrashLoopBackOff")
        if looping:
            return FAILED, "containers crash-looping: " + ", ".join(looping)
        return IN_PROGRESS, "running, not ready"
    if phase == "Pending":
        for c in conditions(obj):
            if c.get("type") == "PodScheduled" and c.get("status") == "False" \
                    and c.get("reason") == "Unschedulable":
                born = _created_at(obj)
                if born is not None and now - SCHEDULE_WINDOW < born:
                    return IN_PROGRESS, "not scheduled yet"
                return FAILED, described("unschedulable", c)
        return IN_PROGRESS, "; ".join(["pending", *_waiting_reasons(st)])
    if not phase:
        return IN_PROGRESS, "phase not reported yet"
    return IN_PROGRESS, f"phase {phase}"  # kstatus: an error (Unknown); pushgate waits on it


def _created_at(obj: dict[str, Any]) -> float | None:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if isinstance(stamp, dt.datetime):  # the kubernetes client's `to_dict()` may have parsed it
        return stamp.timestamp()
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _job(obj: dict[str, Any], now: float) -> tuple[str, str]:
    spec, st = _parts(obj)
    completions = _int(spec, "completions", _int(spec, "parallelism", 1))
    succeeded, active, failed = _int(st, "succeeded", 0), _int(st, "active", 0), _int(st, "failed", 0)
    for c in conditions(obj):
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return CURRENT, f"job complete: {succeeded}/{completions} succeeded"
        if c.get("type") == "Failed":
            return FAILED, described(f"job failed: {failed} pod(s) failed", c)
        if c.get("type") == "Suspended":
            return CURRENT, "job suspended"
    if not st.get("startTime"):
        return IN_PROGRESS, "job not started"
    # kstatus: a started Job is Current (its pods run for as long as they need).
    return CURRENT, f"job running: {succeeded} succeeded, {active} active, {failed} failed"


def _service(obj: dict[str, Any], now: float) -> tuple[str, str]:
    spec = obj.get("spec") or {}
    if spec.get("type") == "LoadBalancer" and not spec.get("clusterIP"):
        return IN_PROGRESS, "no cluster IP yet"
    # kstatus does not wait for a load balancer's address: a cluster without a load-balancer
    # controller would hold every such commit Progressing until the health timeout.
    return CURRENT, "service ready"


def _crd(obj: dict[str, Any], now: float) -> tuple[str, str]:
    for c in conditions(obj):
        if c.get("type") == "NamesAccepted" and c.get("status") == "False":
            return FAILED, described("names not accepted", c)
        if c.get("type") == "Established":
            if c.get("status") == "False" and c.get("reason") != "Installing":
                return FAILED, described("not established", c)
            if c.get("status") == "True":
                return CURRENT, "established"
    return IN_PROGRESS, "not established yet"


RULES: dict[str, Rule] = {
    "Service": _service, "Pod": _pod, "Secret": _always, "ConfigMap": _always,
    "PersistentVolumeClaim": _pvc,
    "apps/StatefulSet": _statefulset,
    "apps/DaemonSet": _daemonset, "extensions/DaemonSet": _daemonset,
    "apps/Deployment": _deployment, "extensions/Deployment": _deployment,
    "apps/ReplicaSet": _replicaset, "extensions/ReplicaSet": _replicaset,
    "policy/PodDisruptionBudget": _always, "batch/CronJob": _always, "batch/Job": _job,
    "apiextensions.k8s.io/CustomResourceDefinition": _crd,
}
