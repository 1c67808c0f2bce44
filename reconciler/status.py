"""The deploy status document: conditions, revisions, history, per-object results, drift.

Written by the loop (atomically, once at the end of each pass) to `<data-dir>/status/<branch>.json`;
read by the git server's `/api/v1/status`, the status page, `git push -o wait` and `pushgate
status`, which never import the reconciler: this file is the contract.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

HISTORY = 20
DRIFT = 50


def path(data_dir: str, branch: str) -> str:
    return os.path.join(data_dir, "status", f"{branch.replace('/', '-')}.json")


def load(data_dir: str, branch: str) -> dict[str, Any]:
    try:
        with open(path(data_dir, branch)) as f:
            doc: dict[str, Any] = json.load(f)
            return doc
    except (FileNotFoundError, ValueError):
        return {"branch": branch, "conditions": [], "history": [], "objects": [], "drift": []}


def save(data_dir: str, branch: str, doc: dict[str, Any]) -> None:
    target = path(data_dir, branch)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    doc["updated"] = time.time()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".status-")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, target)


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
