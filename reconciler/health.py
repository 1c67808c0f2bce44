"""Health of live objects, the kstatus way, and of a commit as a whole. Pure: no I/O.

Called by the loop after an apply. Each object is Current, InProgress or Failed with a message;
a commit is Ready (all Current), Progressing (some InProgress), Degraded (some objects could not
be applied) or Failed (some object Failed, e.g. a Deployment past its progress deadline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CURRENT, IN_PROGRESS, FAILED = "Current", "InProgress", "Failed"


@dataclass(frozen=True)
class Health:
    status: str
    message: str = ""


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def _generation_seen(obj: dict[str, Any]) -> bool:
    gen = (obj.get("metadata") or {}).get("generation")
    seen = (obj.get("status") or {}).get("observedGeneration")
    return gen is None or (seen is not None and seen >= gen)


def assess(obj: dict[str, Any] | None) -> Health:
    if obj is None:
        return Health(FAILED, "not found in the cluster")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return Health(IN_PROGRESS, "being deleted")
    kind = obj.get("kind", "")
    fn = _ASSESSORS.get(kind)
    return fn(obj) if fn else Health(CURRENT, "")


def _deployment(obj: dict[str, Any]) -> Health:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    progressing = _cond(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(FAILED, f"progress deadline exceeded: {progressing.get('message', '')}")
    if not _generation_seen(obj):
        return Health(IN_PROGRESS, "new generation not yet observed")
    want = spec.get("replicas", 1)
    updated, available = st.get("updatedReplicas", 0), st.get("availableReplicas", 0)
    if updated < want:
        return Health(IN_PROGRESS, f"{updated}/{want} replicas updated")
    if st.get("replicas", 0) > updated:
        return Health(IN_PROGRESS, f"{st.get('replicas', 0) - updated} old replicas pending termination")
    if available < want:
        return Health(IN_PROGRESS, f"{available}/{want} replicas available")
    return Health(CURRENT, f"{available}/{want} replicas available")


def _statefulset(obj: dict[str, Any]) -> Health:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    if not _generation_seen(obj):
        return Health(IN_PROGRESS, "new generation not yet observed")
    want = spec.get("replicas", 1)
    ready = st.get("readyReplicas", 0)
    if ready < want:
        return Health(IN_PROGRESS, f"{ready}/{want} replicas ready")
    strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy == "RollingUpdate" and st.get("updateRevision") and \
            st.get("currentRevision") != st.get("updateRevision"):
        return Health(IN_PROGRESS, "rolling update in progress")
    return Health(CURRENT, f"{ready}/{want} replicas ready")


def _daemonset(obj: dict[str, Any]) -> Health:
    st = obj.get("status") or {}
    if not _generation_seen(obj):
        return Health(IN_PROGRESS, "new generation not yet observed")
    want = st.get("desiredNumberScheduled", 0)
    for field in ("updatedNumberScheduled", "numberAvailable"):
        if st.get(field, 0) < want:
            return Health(IN_PROGRESS, f"{st.get(field, 0)}/{want} {field}")
    return Health(CURRENT, f"{want} scheduled and available")


def _job(obj: dict[str, Any]) -> Health:
    failed = _cond(obj, "Failed")
    if failed and failed.get("status") == "True":
        return Health(FAILED, f"job failed: {failed.get('reason', '')} {failed.get('message', '')}".strip())
    done = _cond(obj, "Complete")
    if done and done.get("status") == "True":
        return Health(CURRENT, "job complete")
    return Health(IN_PROGRESS, "job running")


def _pvc(obj: dict[str, Any]) -> Health:
    phase = (obj.get("status") or {}).get("phase", "")
    if phase == "Bound":
        return Health(CURRENT, "bound")
    if phase == "Lost":
        return Health(FAILED, "volume lost")
    return Health(IN_PROGRESS, f"phase {phase or 'Pending'}")


def _service(obj: dict[str, Any]) -> Health:
    spec = obj.get("spec") or {}
    if spec.get("type") == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        if not ingress:
            return Health(IN_PROGRESS, "waiting for a load balancer address")
    if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
        return Health(IN_PROGRESS, "no cluster IP yet")
    return Health(CURRENT, "")


def _crd(obj: dict[str, Any]) -> Health:
    est = _cond(obj, "Established")
    if est and est.get("status") == "True":
        return Health(CURRENT, "established")
    return Health(IN_PROGRESS, "not established yet")


_ASSESSORS = {"Deployment": _deployment, "StatefulSet": _statefulset, "DaemonSet": _daemonset,
              "Job": _job, "PersistentVolumeClaim": _pvc, "Service": _service,
              "CustomResourceDefinition": _crd}


def verdict(healths: list[Health], apply_failures: int) -> tuple[str, str]:
    """(Ready | Progressing | Degraded | Failed, reason) for a commit."""
    failed = sum(1 for h in healths if h.status == FAILED)
    waiting = sum(1 for h in healths if h.status == IN_PROGRESS)
    if failed:
        return "Failed", f"{failed} object(s) failed"
    if waiting:
        return "Progressing", f"{waiting} object(s) in progress"
    if apply_failures:
        return "Degraded", f"{apply_failures} object(s) could not be applied"
    return "Ready", "all objects applied and healthy"
