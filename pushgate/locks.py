"""File locks shared by threads and worker processes (flock on a lock file).

Used by gitserver.repos and the reconciler (one lock per repository, `REPO_LOCK`, held while
refs, packs and notes move) and gitserver.quarantine
(one lock per quarantine directory, held while it is in use, so start-up cleanup of another
replica never removes a live push). flock locks belong to an open file description, so two
threads that each open the file exclude each other just like two processes do.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

REPO_LOCK = "pushgate.lock"  # in the bare repository directory


@contextmanager
def exclusive(path: str, timeout: float = 60.0) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"lock {os.path.basename(path)} busy for {timeout:.0f}s") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)


def try_exclusive(path: str) -> int | None:
    """Take the lock without waiting; return the fd holding it, or None if someone holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
