"""The deploy status document: conditions, revisions, history, per-object results, drift.

Written by the loop (atomically, once at the end of each pass) to the branch's status file
(`pushgate.datadir.status_path`, the shared contract with its `StatusDoc` type); read by the git
server's `/api/v1/status`, the status page, `git push -o wait` and `pushgate status`, which
never import the reconciler.
"""

from __future__ import annotations

import time
from typing import Any

from pushgate import datadir

HISTORY = 20
DRIFT = 50


def path(data_dir: str, branch: str) -> str:
    return datadir.status_path(data_dir, branch)


def load(data_dir: str, branch: str) -> dict[str, Any]:
    doc = datadir.read_status(data_dir, branch)
    return dict(doc) if doc is not None else dict(datadir.empty_status(branch))


def save(data_dir: str, branch: str, doc: dict[str, Any]) -> None:
    datadir.write_status(data_dir, branch, doc)  # type: ignore[arg-type]


def set_condition(doc: dict[str, Any], type_: str, status: bool, reason: str, message: str) -> None:
    conds = [c for c in doc.get("conditions", []) if c.get("type") != type_]
    old = next((c for c in doc.get("conditions", []) if c.get("type") == type_), None)
    value = "True" if status else "False"
    since = old["lastTransitionTime"] if old and old.get("status") == value else time.time()
    conds.append({"type": type_, "status": value, "reason": reason, "message": message[:500],
                  "lastTransitionTime": since})
    doc["conditions"] = sorted(conds, key=lambda c: c["type"])


def condition(doc: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in doc.get("conditions", []) if c.get("type") == type_), None)


def record_commit(doc: dict[str, Any], entry: dict[str, Any]) -> None:
    history = [h for h in doc.get("history", []) if h.get("revision") != entry["revision"]]
    doc["history"] = ([entry, *history])[:HISTORY]


def record_drift(doc: dict[str, Any], event: dict[str, Any]) -> None:
    doc["drift"] = ([event, *doc.get("drift", [])])[:DRIFT]
