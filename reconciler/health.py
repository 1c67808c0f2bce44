"""Health of live objects, by kstatus's rules, and of a commit as a whole. Pure: no I/O.

Called by the loop after an apply and on every pass while it follows a commit. Each object is
Current, InProgress, Failed or Terminating, with a message; a commit is Ready (all Current),
Progressing (some InProgress or Terminating), Degraded (some objects could not be applied) or
Failed (some object Failed, e.g. a Deployment past its progress deadline, a resource Stalled).

The order is kstatus's (sigs.k8s.io/cli-utils/pkg/kstatus/status, `Compute`), for every kind:
  1. generic rules: `metadata.deletionTimestamp` -> Terminating; `status.observedGeneration`
     written and not `metadata.generation` -> InProgress (a condition, Stalled included, speaks
     of the generation observed, not of the one applied); then the first `Reconciling=True`
     (InProgress) or `Stalled=True` (Failed) condition, in the object's own order;
  2. the rule of a built-in kind, if it has one (`kinds`, keyed by group/Kind as kstatus keys them);
  3. otherwise the object's summary condition: `Ready` True -> Current, False or Unknown ->
     InProgress; then (pushgate's addition, below) `Available`, read the same way;
  4. otherwise Current: a kind that publishes none of these cannot be told apart from one that
     is done (a ConfigMap, a custom resource without a controller or without status).

Where pushgate is stricter than kstatus, on purpose:
  - `Available`: kstatus reads only `Ready`. Operators and built-ins that publish `Available`
    and no `Ready` (APIService, many operator-sdk resources) would otherwise be Current while
    their controller says they are unavailable. `Ready`, when present, still decides alone: it
    is the object's own summary, and an object kstatus calls Current stays Current here.
  - Deployment, ReplicaSet, StatefulSet (like kstatus's DaemonSet): an object whose controller
    has not written `status.observedGeneration` yet is InProgress, not judged by empty counts.
  - PersistentVolumeClaim `Lost` is Failed (kstatus: InProgress): no controller binds it again.
`now` is passed in (kstatus reads the clock) so that a Pod's 15-second scheduling grace is pure.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Any

from reconciler import kinds

CURRENT, IN_PROGRESS, FAILED, TERMINATING = kinds.CURRENT, kinds.IN_PROGRESS, kinds.FAILED, kinds.TERMINATING
SUMMARY_CONDITIONS = ("Ready", "Available")


@dataclass(frozen=True)
class Health:
    status: str
    message: str = ""


def assess(obj: dict[str, Any] | None, now: float | None = None,
           applied_at: float | None = None) -> Health:
    """The kstatus status of one live object (`None`: it is not in the cluster). `applied_at`:
    when the commit being judged was applied (wall clock), to tell a Deployment's progress
    deadline condition left from before it (stale) from one about it."""
    if obj is None:
        return Health(FAILED, "not found in the cluster")
    found = generic(obj)
    if found is not None:
        return found
    if applied_at is not None and _stale_deadline(obj, applied_at):
        # The controller keeps ProgressDeadlineExceeded after the spec changes until the new
        # rollout makes progress (it does not reset it for a rollback to an existing
        # ReplicaSet): not a verdict on this commit yet. The health timeout still bounds it.
        return Health(IN_PROGRESS, "rolling out (the progress deadline condition predates this "
                                   "commit)")
    rule = kinds.RULES.get(group_kind(obj))
    if rule is not None:
        status, message = rule(obj, time.time() if now is None else now)
        return Health(status, message)
    found = summary(obj)
    return found if found is not None else Health(CURRENT, "resource is current")


def _stale_deadline(obj: dict[str, Any], applied_at: float) -> bool:
    if group_kind(obj) != "apps/Deployment":
        return False
    for c in kinds.conditions(obj):
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            stamp = c.get("lastUpdateTime") or c.get("lastTransitionTime")
            try:
                updated = calendar.timegm(time.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ"))
            except ValueError:
                return False
            return updated < int(applied_at)
    return False


def group_kind(obj: dict[str, Any]) -> str:
    """`apps/Deployment`, or `Service` for the core group: kstatus's key for its kind rules."""
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    kind = str(obj.get("kind") or "")
    return f"{group}/{kind}" if group else kind


def generic(obj: dict[str, Any]) -> Health | None:
    """kstatus's `checkGenericProperties`: what decides for every kind, before its own rule."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Health(TERMINATING, "scheduled for deletion")
    gen, seen = meta.get("generation"), (obj.get("status") or {}).get("observedGeneration")
    if kinds.is_int(gen) and kinds.is_int(seen) and gen != seen:
        return Health(IN_PROGRESS, f"generation {gen} not yet observed (observed: {seen})")
    for c in kinds.conditions(obj):
        if c.get("status") != "True":
            continue
        if c.get("type") == "Reconciling":
            return Health(IN_PROGRESS, kinds.described("Reconciling", c))
        if c.get("type") == "Stalled":
            return Health(FAILED, kinds.described("Stalled", c))
    return None


def summary(obj: dict[str, Any]) -> Health | None:
    """kstatus's `checkReadyCondition`, extended to `Available` when there is no `Ready`."""
    for type_ in SUMMARY_CONDITIONS:
        for c in kinds.conditions(obj):
            if c.get("type") != type_:
                continue
            if c.get("status") == "True":
                return Health(CURRENT, f"{type_}=True")
            if c.get("status") in ("False", "Unknown"):
                return Health(IN_PROGRESS, kinds.described(f"{type_}={c['status']}", c))
    return None


def verdict(healths: list[Health], apply_failures: int) -> tuple[str, str]:
    """(Ready | Progressing | Degraded | Failed, reason) for a commit."""
    failed = sum(1 for h in healths if h.status == FAILED)
    waiting = sum(1 for h in healths if h.status == IN_PROGRESS)
    leaving = sum(1 for h in healths if h.status == TERMINATING)
    if failed:
        return "Failed", f"{failed} object(s) failed"
    if waiting or leaving:
        parts = [f"{waiting} object(s) in progress"] if waiting else []
        parts += [f"{leaving} object(s) terminating"] if leaving else []
        return "Progressing", ", ".join(parts)
    if apply_failures:
        return "Degraded", f"{apply_failures} object(s) could not be applied"
    return "Ready", "all objects applied and healthy"
