"""Image automation's status document, `DATA/automation/images.json`.

Written by `scanner` once at the end of every scan (atomically); read back by the next scan (the
last refusal, so the same refused bump is not pushed again and again), by `pushgate status` and
by the server's `/api/v1/status` (`images`).
"""

from __future__ import annotations

from typing import Any, TypedDict

from pushgate import datadir


class Refusal(TypedDict):
    time: float
    base: str  # the branch head the bump was made on
    commit: str  # the refused commit (never stored)
    reason: str
    bumps: list[str]
    lines: list[str]  # the gate's report, as the server printed it


class Committed(TypedDict):
    time: float
    commit: str
    bumps: list[str]


class ImagesStatus(TypedDict, total=False):
    updated: float
    branch: str
    scans: int
    head: str
    # unchanged | committed | refused | held (the same refused bump, not pushed again yet)
    # | failed (not pushed: the server, the branch moved, a rewrite) | no-branch
    result: str
    message: str
    bumps: list[str]  # what the last scan proposed
    containers: list[dict[str, Any]]
    errors: list[str]
    lastCommit: Committed
    lastRefusal: Refusal


def read(data_dir: str) -> ImagesStatus:
    doc = datadir.read_json(datadir.images_status_path(data_dir))
    return doc if isinstance(doc, dict) else {}  # type: ignore[return-value]


def write(data_dir: str, doc: ImagesStatus) -> None:
    datadir.write_json(datadir.images_status_path(data_dir), doc)


def summary(doc: ImagesStatus) -> list[str]:
    """What `pushgate status` prints about image automation."""
    if not doc:
        return []
    out = [f"images         {doc.get('result', '-')}: {doc.get('message', '')}"]
    out += [f"  bump {line}" for line in doc.get("bumps", [])]
    refusal = doc.get("lastRefusal")
    if refusal:
        out.append(f"  last refusal ({refusal['reason']}):")
        out += [f"    {line}" for line in refusal["lines"][:20]]
    out += [f"  error {e}" for e in doc.get("errors", [])[:20]]
    return out
