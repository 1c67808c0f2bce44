"""Merge the small packs that pushes leave behind into one, in the background.

Called by `receive` after an accepted push. Every push adds a pack; after a few hundred pushes
every object lookup (the gate reading the tree, `history` checking what a push brings, a
fetch) probed a hundred pack indexes in turn: a 10-file push to a 5,000-manifest repository
spent a third of its time there (bench/RESULTS.md, gate_incremental). When `TRIGGER` packs of at
most `SMALL` objects and `SMALL_BYTES` bytes have gathered, their objects are written into one
new pack and the old ones removed, as `git repack --geometric` keeps the count of packs low
without rewriting the big ones.

Safe alongside everything else: the objects of the packs stay exactly the same set (no
reachability decided here, nothing dropped), the new pack is written in a quarantine and moved
in complete (.pack, then its .idx) before any old one is removed, a reader that has a pack
open keeps reading it, and one process at a time does it (a lock file; others skip). Killed
while writing, nothing changed (the start-up sweep removes the quarantine); killed after, the
repository only has some objects twice, which the next merge folds together.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from typing import Any

from gitserver import quarantine
from pushgate import faults

log = logging.getLogger(__name__)

SMALL = 1000  # objects: packs up to this size are merged...
SMALL_BYTES = 4 << 20  # ...and up to this many bytes: the merge holds their objects in memory
TRIGGER = 16  # small packs before a merge
LOCK = "pushgate-consolidate.lock"  # in the repository's own directory, next to its journal

_running: set[str] = set()
_guard = threading.Lock()


def pack_dir(objects_dir: str) -> str:
    return os.path.join(objects_dir, "pack")


def _pack_names(objects_dir: str) -> list[str]:
    """Base paths (no extension) of the packs with both files present."""
    d = pack_dir(objects_dir)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted(os.path.join(d, n[:-5]) for n in names
                  if n.endswith(".pack") and n[:-5] + ".idx" in names)


def needed(objects_dir: str) -> bool:
    """Cheap first test (a directory listing): could a merge be due?"""
    return len(_pack_names(objects_dir)) >= TRIGGER


def consolidate(objects_dir: str) -> int:
    """Merge the small packs if `TRIGGER` of them are there; the number of packs merged (0: not
    due, or another process is at it)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(objects_dir)), LOCK), "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        return _merge(objects_dir)


def _merge(objects_dir: str) -> int:
    from dulwich.object_store import DiskObjectStore
    from dulwich.pack import Pack

    store = DiskObjectStore(objects_dir)
    small: list[tuple[str, Any]] = []
    try:
        for base in _pack_names(objects_dir):
            pack = Pack(base, object_format=store.object_format)
            try:
                if len(pack) <= SMALL and os.path.getsize(base + ".pack") <= SMALL_BYTES:
                    small.append((base, pack))
                    continue
            except FileNotFoundError:
                pass  # removed under us: not ours to merge
            pack.close()
        if len(small) < TRIGGER:
            return 0
        objects: dict[bytes, Any] = {}
        for _base, pack in small:
            for obj in pack.iterobjects():
                objects.setdefault(obj.id, obj)
        # Written in a quarantine and moved in whole (.idx last), as a push's pack is: a merge
        # killed while writing leaves no half pack in the repository (the start-up sweep
        # removes the quarantine).
        q = quarantine.Quarantine(objects_dir)
        try:
            merged = q.store.add_objects([(obj, None) for obj in objects.values()])
            new_name = merged.name() if merged is not None else None
            faults.crashpoint("consolidate-writing")
            q.migrate()
        finally:
            q.close()
        keep = {base for base, pack in small if pack.name() == new_name}
        faults.crashpoint("consolidate-written")
    finally:
        for _base, pack in small:
            pack.close()
        store.close()
    removed = 0
    for base, _pack in small:
        if base in keep:
            continue  # the same objects made the same pack: it is the new one
        for ext in (".pack", ".idx"):  # .pack first: a directory scan no longer lists it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(base + ext)
        removed += 1
    log.info("packs: %d small packs (%d objects) merged into one", removed, len(objects))
    return removed


def in_background(objects_dir: str) -> bool:
    """Start a merge in a thread of this process if one may be due and none is running here."""
    if not needed(objects_dir):
        return False
    with _guard:
        if objects_dir in _running:
            return False
        _running.add(objects_dir)

    def run() -> None:
        try:
            consolidate(objects_dir)
        except Exception:  # a failed merge leaves every pack in place: log, go on
            log.exception("merging the small packs of %s failed", objects_dir)
        finally:
            with _guard:
                _running.discard(objects_dir)

    threading.Thread(target=run, daemon=True, name="pack-consolidate").start()
    return True
