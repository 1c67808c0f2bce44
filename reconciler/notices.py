"""The reconciler's notifications: commit applied, health degraded or failed, drift corrected.

Called by the loop (the leader only) at transitions, never every pass: `commit-applied` when a
commit is first fully applied (not when the same head is applied again after a restart or a
change of leader), `health-degraded` / `health-failed` when a commit's result becomes Degraded
or Failed (an object unhealthy, or the commit not applicable at all: BuildFailed,
VerdictMismatch, an apply the cluster refuses), and one `drift-corrected` per batch of
corrections. Spooling only (`pushgate.notify.emit`): an apply never waits on a receiver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pushgate import notify
from pushgate.notify import events

_RESULTS = {"Degraded": "health-degraded", "Failed": "health-failed"}


def commit_applied(data_dir: str, branch: str, revision: str, actions: Sequence[str],
                   info: dict[str, str]) -> int:
    """`actions`: what the apply did per object (applied, skipped, pruned, ...)."""
    subject = info.get("message", "")
    counts = {a: sum(1 for x in actions if x == a) for a in ("applied", "skipped", "pruned")}
    return notify.emit(data_dir, "commit-applied",
                       f"{revision[:12]} applied to the cluster from {branch}"
                       + (f": {subject}" if subject else ""),
                       branch=branch, commit=revision,
                       details={"subject": subject, "author": info.get("author", ""), **counts})


def commit_result(data_dir: str, branch: str, revision: str, result: str, reason: str,
                  previous: str | None, detail: str = "") -> int:
    """`health-degraded` / `health-failed` when `revision`'s result becomes `result` (and was
    `previous` before: the same result again sends nothing)."""
    kind = _RESULTS.get(result)
    if kind is None or previous == result:
        return 0
    message = f"{revision[:12]} on {branch} is {result}: {reason}" + (f": {detail}" if detail else "")
    return notify.emit(data_dir, kind, message, branch=branch, commit=revision,
                       details={"result": result, "reason": reason, "detail": detail[:2000]})


def drift_corrected(data_dir: str, branch: str, revision: str,
                    corrected: Sequence[dict[str, Any]]) -> int:
    """One event for the corrections found in one pass (`DriftEvent.as_dict()`s)."""
    if not corrected:
        return 0
    refs = [str(c.get("ref", "")) for c in corrected]
    shown = ", ".join(refs[:5]) + (f" and {len(refs) - 5} more" if len(refs) > 5 else "")
    return notify.emit(data_dir, "drift-corrected",
                       f"drift on {branch} corrected: {shown}", branch=branch, commit=revision,
                       details={"objects": [{"ref": c.get("ref"), "fields": list(c.get("fields", []))[:20]}
                                            for c in corrected[:events.MAX_DETAIL_LINES]],
                                "count": len(corrected)})


def previous_result(doc: dict[str, Any], revision: str) -> str | None:
    """The result the status history holds for `revision` (before it is recorded again)."""
    return next((h.get("result") for h in doc.get("history", []) if h.get("revision") == revision), None)
