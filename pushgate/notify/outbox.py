"""The outbox: a durable spool of notifications in the data directory, shared by every process.

`enqueue` (called by `pushgate.notify.emit` in a push or a reconcile) only writes files; the
dispatcher threads of the git server workers and of the reconciler deliver them. Any number of
dispatchers may run over one spool: a dispatcher claims a notification by renaming its file,
which exactly one of them can do, so none is delivered twice by two dispatchers.

    DATA/notify/
      tmp/       files being written (renamed into pending/ once whole: readers never see half)
      pending/   <due ms>-<destination>-<event id>.json   due time first: a sorted listing is the
                                                          order of delivery, read without opening
      inflight/  <claim ms>~<claimer>~<pending name>      claimed (rename); a claim older than
                                                          LEASE (its claimer died) goes back
      dead/      <dead ms>-<destination>-<event id>.json  given up on; the newest MAX_DEAD kept

A retry or a burial rewrites the claimed file in place, then moves it with one rename, so a
crash at any point leaves one copy of the notification (delivered at least once, never lost
once enqueued; a receiver deduplicates by the event id).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pushgate.notify import events

DIR = "notify"
LEASE = 120.0  # seconds a claim holds; well above the longest attempt (settings.MAX_TIMEOUT)
MAX_DEAD = 1000
_PENDING = re.compile(r"^(\d{15})-([a-z0-9-]+)-([0-9a-f]{32})\.json$")
_INFLIGHT = re.compile(r"^(\d{15})~[A-Za-z0-9_-]*~(.+)$")
_CLAIMER = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]

wakeup = threading.Event()  # set by enqueue: this process's dispatcher looks at once


@dataclass
class Claim:
    """A notification this dispatcher holds: its inflight path and its record (None if the file
    could not be read)."""

    path: str
    name: str  # its pending name
    record: dict[str, Any] | None

    @property
    def destination(self) -> str:
        return destination_of(self.name)


def destination_of(name: str) -> str:
    """The destination a pending file is for, from its name ("" if it is not one of ours)."""
    m = _PENDING.match(name)
    return m.group(2) if m else ""


def root(data_dir: str) -> str:
    return os.path.join(data_dir, DIR)


def _dir(data_dir: str, which: str) -> str:
    return os.path.join(root(data_dir), which)


def _ms(t: float) -> str:
    return f"{int(t * 1000):015d}"


def _write(data_dir: str, doc: dict[str, Any], durable: bool) -> str:
    """`doc` in a new file under tmp/, whole before anyone can see it; its path."""
    tmp_dir = _dir(data_dir, "tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".n-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, sort_keys=True)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def enqueue(data_dir: str, destination: str, event: events.Event, now: float | None = None) -> str:
    """Spool `event` for `destination`, due now; the pending file's name."""
    now = time.time() if now is None else now
    record = {"destination": destination, "event": events.stored(event), "attempts": 0,
              "created": now, "lastAttempt": 0.0, "lastError": ""}
    pending = _dir(data_dir, "pending")
    os.makedirs(pending, exist_ok=True)
    name = f"{_ms(now)}-{destination}-{event.id}.json"
    tmp = _write(data_dir, record, durable=True)
    os.replace(tmp, os.path.join(pending, name))
    wakeup.set()
    return name


def due(data_dir: str, now: float | None = None) -> list[str]:
    """Names of the pending notifications due by `now`, earliest first."""
    limit = _ms(time.time() if now is None else now)
    try:
        names = sorted(os.listdir(_dir(data_dir, "pending")))
    except FileNotFoundError:
        return []
    return [n for n in names if _PENDING.match(n) and n[:15] <= limit]


def claim(data_dir: str, name: str, now: float | None = None) -> Claim | None:
    """Take `name` for this thread, or None when another dispatcher took it first."""
    inflight = _dir(data_dir, "inflight")
    os.makedirs(inflight, exist_ok=True)
    claimer = f"{_CLAIMER}-{os.getpid()}-{threading.get_ident()}"
    path = os.path.join(inflight, f"{_ms(time.time() if now is None else now)}~{claimer}~{name}")
    try:
        os.rename(os.path.join(_dir(data_dir, "pending"), name), path)
    except FileNotFoundError:
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = None
    return Claim(path, name, record if isinstance(record, dict) else None)


def done(claim: Claim) -> None:
    """Delivered: forget it."""
    # Not there: recovered past the lease by another dispatcher, so it goes out again.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(claim.path)


def retry(data_dir: str, claim: Claim, record: dict[str, Any], at: float) -> None:
    """Back to pending, due at `at`, with the updated `record` (attempts, last error)."""
    m = _PENDING.match(claim.name)
    assert m is not None
    _rewrite(data_dir, claim, record)
    _move(claim, os.path.join(_dir(data_dir, "pending"), f"{_ms(at)}-{m.group(2)}-{m.group(3)}.json"))


def bury(data_dir: str, claim: Claim, record: dict[str, Any] | None, why: str,
         now: float | None = None) -> None:
    """Given up on: into dead/, with why; the oldest dead letters past MAX_DEAD are dropped."""
    now = time.time() if now is None else now
    m = _PENDING.match(claim.name)
    rest = claim.name[16:] if m else f"unknown-{os.path.basename(claim.path)[-40:]}"
    doc = dict(record or {"unreadable": True})
    doc.update(deadAt=now, reason=why)
    _rewrite(data_dir, claim, doc)
    dead = _dir(data_dir, "dead")
    os.makedirs(dead, exist_ok=True)
    _move(claim, os.path.join(dead, f"{_ms(now)}-{rest}"))
    names = sorted(os.listdir(dead))
    for old in names[:max(0, len(names) - MAX_DEAD)]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(dead, old))


def _rewrite(data_dir: str, claim: Claim, doc: dict[str, Any]) -> None:
    tmp = _write(data_dir, doc, durable=False)
    os.replace(tmp, claim.path)


def _move(claim: Claim, to: str) -> None:
    with contextlib.suppress(FileNotFoundError):  # recovered past the lease: theirs now
        os.rename(claim.path, to)


def recover(data_dir: str, now: float | None = None, lease: float = LEASE) -> int:
    """Claims older than `lease` (their dispatcher died mid-delivery) back to pending."""
    now = time.time() if now is None else now
    inflight = _dir(data_dir, "inflight")
    try:
        names = os.listdir(inflight)
    except FileNotFoundError:
        return 0
    moved = 0
    for n in names:
        m = _INFLIGHT.match(n)
        if m is None or int(m.group(1)) / 1000 > now - lease or not _PENDING.match(m.group(2)):
            continue
        try:
            os.rename(os.path.join(inflight, n), os.path.join(_dir(data_dir, "pending"), m.group(2)))
            moved += 1
        except FileNotFoundError:
            pass
    return moved


def clean_tmp(data_dir: str, older_than: float = 3600.0) -> None:
    """Files a crashed writer left in tmp/ (never renamed, so never seen by anyone)."""
    tmp_dir = _dir(data_dir, "tmp")
    try:
        names = os.listdir(tmp_dir)
    except FileNotFoundError:
        return
    for n in names:
        p = os.path.join(tmp_dir, n)
        try:
            if os.stat(p).st_mtime < time.time() - older_than:
                os.unlink(p)
        except FileNotFoundError:
            pass


def counts(data_dir: str, names: Iterable[str] = ()) -> dict[str, dict[str, int]]:
    """destination -> {"pending", "inflight", "dead"}, from the file names alone; `names` are
    listed even with nothing spooled."""
    out: dict[str, dict[str, int]] = {n: {"pending": 0, "inflight": 0, "dead": 0} for n in names}
    for which in ("pending", "inflight", "dead"):
        try:
            names = os.listdir(_dir(data_dir, which))
        except FileNotFoundError:
            continue
        for n in names:
            if which == "inflight":
                m = _INFLIGHT.match(n)
                n = m.group(2) if m else ""
            m2 = _PENDING.match(n)
            if m2:
                row = out.setdefault(m2.group(2), {"pending": 0, "inflight": 0, "dead": 0})
                row[which] += 1
    return out


def dead_letters(data_dir: str) -> list[dict[str, Any]]:
    """The dead letters, newest first."""
    dead = _dir(data_dir, "dead")
    try:
        names = sorted(os.listdir(dead), reverse=True)
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        try:
            with open(os.path.join(dead, n)) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out
