"""Quarantine: where a push's objects wait until the whole push is accepted.

Called by `receive`. A quarantine is a directory `objects/incoming-<random>/` of the repository,
on the same filesystem, so moving its packs in is an atomic rename. Its object store reads
through to the repository's (alternates), so thin-pack bases resolve and the gate sees old and
new objects alike. It holds an flock while in use; `sweep()` at start-up removes only unlocked
leftovers, so another replica's live push survives.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time

from dulwich.object_store import DiskObjectStore

from pushgate import locks

PREFIX = "incoming-"
_CREATING = ".creating-"
_LOCK = "quarantine.lock"


class Quarantine:
    def __init__(self, objects_dir: str) -> None:
        self.objects_dir = objects_dir
        name = secrets.token_hex(8)
        # Made and locked under a name `sweep()` ignores, then renamed: a worker starting up
        # (and sweeping) at the same moment never sees an incoming- directory without its lock.
        making = os.path.join(objects_dir, _CREATING + name)
        os.makedirs(os.path.join(making, "pack"))
        lock = os.path.join(making, _LOCK)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        self._lock_fd: int | None = locks.try_exclusive(lock)
        os.close(fd)
        if self._lock_fd is None:  # nobody else can know this fresh name
            raise RuntimeError(f"cannot lock new quarantine {making}")
        self.path = os.path.join(objects_dir, PREFIX + name)
        os.rename(making, self.path)
        self.store = DiskObjectStore(self.path, alternates=[objects_dir])

    def packs(self) -> list[str]:
        pack_dir = os.path.join(self.path, "pack")
        return sorted(f[:-5] for f in os.listdir(pack_dir) if f.endswith(".pack"))

    def migrate(self) -> None:
        """Move every pack into the repository: data files first, the `.idx` last, because the
        repository starts using a pack once its index appears. Durable before returning."""
        src_dir = os.path.join(self.path, "pack")
        dst_dir = os.path.join(self.objects_dir, "pack")
        os.makedirs(dst_dir, exist_ok=True)
        for base in self.packs():
            for ext in (".pack", ".rev", ".bitmap", ".idx"):
                src = os.path.join(src_dir, base + ext)
                if not os.path.exists(src):
                    continue
                fd = os.open(src, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(src, os.path.join(dst_dir, base + ext))
        locks.fsync_dir(dst_dir)

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            self.store.close()
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def sweep(objects_dir: str) -> list[str]:
    """Remove quarantines nobody holds (left by a crash). Returns the removed names."""
    removed = []
    for name in sorted(os.listdir(objects_dir)):
        if name.startswith(_CREATING):
            with contextlib.suppress(FileNotFoundError):
                # left by a crash between mkdir and rename (a live one is renamed within ms)
                if time.time() - os.stat(os.path.join(objects_dir, name)).st_mtime > 3600:
                    shutil.rmtree(os.path.join(objects_dir, name), ignore_errors=True)
                    removed.append(name)
            continue
        if not name.startswith(PREFIX):
            continue
        path = os.path.join(objects_dir, name)
        fd = locks.try_exclusive(os.path.join(path, _LOCK))
        if fd is None and os.path.exists(os.path.join(path, _LOCK)):
            continue  # a live push holds it
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
        finally:
            if fd is not None:
                os.close(fd)
    return removed
