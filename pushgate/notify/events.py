"""What pushgate notifies about: the event types, their severities and the JSON every provider
starts from. Pure: no I/O.

Built by `pushgate.notify.emit` (called by the git server's push record, the reconcile loop and
whoever changes policies), stored in the outbox and rendered by `providers`. The JSON is
pushgate's own shape, not Flux's `Event` (see the README's "Notifications"):

    {"id": "9f0c...", "event": "push-refused", "severity": "error", "reason": "PushRefused",
     "branch": "main", "commit": "<sha>", "message": "...", "summary": "",
     "details": {...}, "timestamp": "2026-11-29T10:00:00.000Z", "reportingController": "pushgate"}

`id` is the same on every retry and for every destination: a receiver deduplicates by it
(delivery is at-least-once).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

INFO, ERROR = "info", "error"

# name -> (severity, Flux-style CamelCase reason)
TYPES: dict[str, tuple[str, str]] = {
    "push-refused": (ERROR, "PushRefused"),
    "commit-applied": (INFO, "CommitApplied"),
    "health-degraded": (ERROR, "HealthDegraded"),
    "health-failed": (ERROR, "HealthFailed"),
    "drift-corrected": (INFO, "DriftCorrected"),
    "image-bump-committed": (INFO, "ImageBumpCommitted"),
    "image-bump-refused": (ERROR, "ImageBumpRefused"),
    "policy-change": (INFO, "PolicyChanged"),
    "revert-committed": (ERROR, "RevertCommitted"),
    "revert-refused": (ERROR, "RevertRefused"),
}
MAX_MESSAGE = 2000
MAX_DETAIL_LINES = 20  # of a report: the first lines, the rest is in the push log


class UnknownEvent(ValueError):
    """A caller named an event type pushgate does not define (a bug, not an operator error)."""


@dataclass(frozen=True)
class Event:
    type: str
    message: str
    branch: str = ""
    commit: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0
    id: str = ""

    @property
    def severity(self) -> str:
        return TYPES[self.type][0]

    @property
    def reason(self) -> str:
        return TYPES[self.type][1]

    def to_json(self, summary: str = "") -> dict[str, Any]:
        """The document a generic receiver gets (`summary` is the destination's own)."""
        return {"id": self.id, "event": self.type, "severity": self.severity, "reason": self.reason,
                "branch": self.branch, "commit": self.commit, "message": self.message,
                "summary": summary, "details": self.details, "timestamp": timestamp(self.time),
                "reportingController": "pushgate"}


def new(type_: str, message: str, *, branch: str = "", commit: str = "",
        details: dict[str, Any] | None = None, now: float | None = None) -> Event:
    if type_ not in TYPES:
        raise UnknownEvent(f"unknown notification event {type_!r} (known: {', '.join(TYPES)})")
    return Event(type_, message[:MAX_MESSAGE], branch, commit, dict(details or {}),
                 time.time() if now is None else now, secrets.token_hex(16))


def stored(event: Event) -> dict[str, Any]:
    """The event as the outbox keeps it (`from_stored` reads it back)."""
    return {"type": event.type, "message": event.message, "branch": event.branch,
            "commit": event.commit, "details": event.details, "time": event.time, "id": event.id}


def from_stored(doc: Any) -> Event:
    if not isinstance(doc, dict) or doc.get("type") not in TYPES or not isinstance(doc.get("id"), str):
        raise ValueError("not a stored notification event")
    details = doc.get("details")
    return Event(str(doc["type"]), str(doc.get("message", "")), str(doc.get("branch", "")),
                 str(doc.get("commit", "")), details if isinstance(details, dict) else {},
                 float(doc.get("time", 0.0)), doc["id"])


def timestamp(t: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Flux's events carry."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def branch_of_ref(ref: str) -> str:
    """The short name of a branch ref; any other ref (a tag, a note) keeps its full name, so a
    branch filter never matches it by accident."""
    return ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref
