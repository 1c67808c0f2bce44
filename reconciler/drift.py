"""Drift: out-of-band changes to the objects pushgate manages, found by watching them.

Called by the loop. One watch per group/version/kind in the inventory, filtered by our ApplySet
label, feeds a queue the loop drains between passes (so drift work never races an apply). A watch
that ends is resumed from its last resourceVersion; one that ends with 410 Gone (the client does
not retry that for a timed watch) re-lists and checks every object, then watches from the list.

Drift is a live object that differs, in what pushgate manages, from a dry-run server-side apply of
the committed object: status and server-set metadata are ignored and defaulted fields are not
drift, because the dry-run has them too. A cheap comparison against the last state we saw rules
out most events (status updates) without any API call. An object opted out with
`pushgate.io/reconcile: "false"` is left alone by the rule the applier follows
(`apply.reconcile_disabled`); once the opt-out is lifted, the difference is drift and corrected.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from reconciler import apply, errors, inventory
from reconciler.cluster import Cluster
from reconciler.inventory import Entry

log = logging.getLogger(__name__)
_SERVER_META = ("resourceVersion", "generation", "managedFields", "uid", "creationTimestamp",
                "selfLink", "deletionGracePeriodSeconds")


def normalise(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_META}
    out["metadata"] = meta
    return out


def changed_paths(want: Any, have: Any, prefix: str = "") -> list[str]:
    """Dotted paths where `have` differs from `want` (both normalised)."""
    if isinstance(want, dict) and isinstance(have, dict):
        out: list[str] = []
        for key in sorted(set(want) | set(have)):
            out += changed_paths(want.get(key), have.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        out = []
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            out += changed_paths(w, h, f"{prefix}.{i}")
        return out
    return [] if want == have else [prefix or "."]


@dataclass
class DriftEvent:
    ref: str
    fields: list[str]
    corrected: bool
    time: float = field(default_factory=time.time)
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "fields": self.fields[:20], "corrected": self.corrected,
                "time": self.time, "message": self.message}


class Watches:
    """Watch threads for the managed kinds; events land in `events` as (Entry, live-or-None)."""

    relists_total = 0  # over every Watches of this process: re-lists after 410 Gone and restarts

    def __init__(self, cluster: Cluster, applyset_id: str, timeout: int = 60) -> None:
        self.cluster = cluster
        self.selector = f"{inventory.PART_OF}={applyset_id}"
        self.timeout = timeout
        self.events: queue.Queue[tuple[Entry, dict[str, Any] | None]] = queue.Queue()
        self._threads: dict[tuple[str, str], threading.Thread] = {}
        self._stop = threading.Event()
        self.relists = 0  # how often a watch had to re-list (410 Gone and the like)

    def ensure(self, entries: list[Entry]) -> None:
        for key in sorted({(e.api_version, e.kind) for e in entries}):
            t = self._threads.get(key)
            if t is None or not t.is_alive():
                t = threading.Thread(target=self._watch, args=key, daemon=True,
                                     name=f"watch-{key[1]}")
                self._threads[key] = t
                t.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, api_version: str, kind: str) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                res = self.cluster.resource(api_version, kind)
                if rv is None:
                    rv = self._relist(res, api_version, kind)
                for ev in self._stream(res, rv):
                    raw = ev.get("raw_object") or {}
                    if ev.get("type") == "ERROR":
                        code = raw.get("code")
                        raise errors.ClusterError(str(raw.get("message", "")), code=int(code or 0))
                    rv = (raw.get("metadata") or {}).get("resourceVersion", rv)
                    if ev.get("type") == "BOOKMARK":
                        continue
                    live = None if ev.get("type") == "DELETED" else raw
                    self.events.put((Entry.of(raw, res.namespaced), live))
            except errors.ClusterError as e:
                if e.code == 410:
                    rv = None  # expired: re-list and check everything
                    continue
                log.info("watch %s/%s interrupted: %s", api_version, kind, e.message)
                self._stop.wait(2)
            except Exception as e:
                code = getattr(e, "status", None)
                if code == 410:
                    rv = None
                    continue
                log.info("watch %s/%s interrupted: %s", api_version, kind, type(e).__name__)
                self._stop.wait(2)

    def _relist(self, res: Any, api_version: str, kind: str) -> str:
        self.relists += 1
        Watches.relists_total += 1
        listed = res.get(label_selector=self.selector).to_dict()
        for item in listed.get("items", []):
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            self.events.put((Entry.of(item, res.namespaced), item))
        return str(listed["metadata"]["resourceVersion"])

    def _stream(self, res: Any, rv: str) -> Iterator[dict[str, Any]]:
        for ev in self.cluster.watch(res, label_selector=self.selector, resource_version=rv,
                                     timeout=self.timeout):
            if self._stop.is_set():
                return
            yield ev


class DriftChecker:
    """Decides whether a live object drifted and corrects it (or only reports it)."""

    def __init__(self, cluster: Cluster, mode: str = "correct") -> None:
        self.cluster = cluster
        self.mode = mode  # "correct" | "detect"
        self.desired: dict[str, dict[str, Any]] = {}  # entry id -> labelled committed object
        self.seen: dict[str, dict[str, Any] | None] = {}  # entry id -> last normalised live state
        self.written_rv: dict[str, int] = {}  # entry id -> resourceVersion of our last write

    def set_desired(self, objects: dict[str, dict[str, Any]],
                    applied: dict[str, dict[str, Any]]) -> None:
        self.desired = objects
        self.seen = {k: normalise(v) for k, v in applied.items()}
        self.written_rv = {k: _rv(v) for k, v in applied.items()}

    def check(self, entry: Entry, live: dict[str, Any] | None) -> DriftEvent | None:
        want = self.desired.get(entry.id)
        if want is None:
            return None
        if live is not None:
            if _rv(live) < self.written_rv.get(entry.id, 0):
                return None  # an event from before our last write: already handled
            if apply.reconcile_disabled(want, live, self.cluster.field_manager):
                return None  # opted out: the same rule the applier follows
            if normalise(live) == self.seen.get(entry.id):
                return None
        if live is None:
            fields = ["<deleted>"]
        else:
            dry = self.cluster.apply(want, dry_run=True)
            fields = changed_paths(normalise(dry), normalise(live))
            if not fields:
                self.seen[entry.id] = normalise(live)
                return None
        if self.mode != "correct":
            self.seen[entry.id] = normalise(live)
            return DriftEvent(entry.ref, fields, False, message="detect-only: not corrected")
        result = self.cluster.apply(want)
        self.seen[entry.id] = normalise(result)
        self.written_rv[entry.id] = _rv(result)
        return DriftEvent(entry.ref, fields, True, message="re-applied")


def _rv(obj: dict[str, Any] | None) -> int:
    """resourceVersion as a number where it is one (etcd revisions are), else 0 (no ordering)."""
    raw = ((obj or {}).get("metadata") or {}).get("resourceVersion", "")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0
