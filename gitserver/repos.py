"""The repositories pushgate serves, under the data directory, and their ref transactions.

Called by `app` (open and create repositories, start-up recovery) and `receive` (the per-repo
lock and the multi-ref compare-and-swap). A ref transaction is journaled: the journal is written
and fsynced before the first ref moves and removed after the last, so a crash in between is
rolled forward at start-up (`recover()`); refs are fsynced before the client hears `ok`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dulwich.repo import Repo

from gitserver import quarantine
from gitserver.errors import BadRepoName
from pushgate import datadir, faults, locks

DEFAULT_REPO = datadir.REPO
ZERO = b"0" * 40
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.git$")
_LOCK = locks.REPO_LOCK
_JOURNAL = "pushgate-journal.json"
_RECENT = "pushgate-recent-tips"
RECENT_TIPS = 200
FF_WALK_LIMIT = 10_000  # commits walked to tell a fast-forward; beyond, not remembered


@dataclass(frozen=True)
class RefUpdate:
    ref: bytes
    old: bytes
    new: bytes

    @property
    def is_delete(self) -> bool:
        return self.new == ZERO

    @property
    def is_create(self) -> bool:
        return self.old == ZERO


def check_name(name: str) -> str:
    """The repository name from a URL path, or BadRepoName. Never resolves outside the data dir."""
    name = name.strip("/")
    if not _NAME.match(name) or ".." in name:
        raise BadRepoName(f"no repository named {name[:100]!r}")
    return name


def repo_path(data_dir: str, name: str) -> str:
    return os.path.join(data_dir, check_name(name))


def ensure(data_dir: str, name: str = DEFAULT_REPO) -> str:
    """Create the bare repository if missing, HEAD on main, and recover it. Returns its path."""
    path = repo_path(data_dir, name)
    if not os.path.exists(os.path.join(path, "HEAD")):
        os.makedirs(path, exist_ok=True)
        repo = Repo.init_bare(path)
        refs: Any = repo.refs
        refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
        # Refuse pack input beyond this at the protocol level too (dulwich honours it).
        cfg = repo.get_config()
        cfg.set((b"receive",), b"maxInputSize", b"0")
        cfg.write_to_path()
        repo.close()
    recover(path)
    return path


@contextmanager
def locked(path: str, timeout: float = 60.0) -> Iterator[None]:
    with locks.exclusive(os.path.join(path, _LOCK), timeout):
        yield


def recover(path: str) -> list[str]:
    """Start-up repair: roll a journaled ref transaction forward, remove unlocked quarantines."""
    notes = []
    with locked(path):
        journal = os.path.join(path, _JOURNAL)
        if os.path.exists(journal):
            with open(journal) as f:
                updates = [RefUpdate(u["ref"].encode(), u["old"].encode(), u["new"].encode())
                           for u in json.load(f)]
            # A writer killed inside dulwich's ref update leaves `<ref>.lock` behind, and the
            # roll forward would fail on it for good (the server would not start). Every writer
            # of these refs holds the repository lock, which we hold: such a lock is stale.
            stale = [os.path.join(path, u.ref.decode() + ".lock") for u in updates]
            if any(u.is_delete for u in updates):
                stale.append(os.path.join(path, "packed-refs.lock"))
            for lock in stale:
                if os.path.exists(lock):
                    os.unlink(lock)
                    notes.append(f"removed the stale lock {os.path.relpath(lock, path)}")
            repo = Repo(path)
            try:
                _write_refs(repo, path, updates, roll_forward=True)
            finally:
                repo.close()
            os.unlink(journal)
            locks.fsync_dir(path)
            notes.append(f"rolled forward {len(updates)} ref update(s)")
        removed = quarantine.sweep(os.path.join(path, "objects"))
        if removed:
            notes.append(f"removed {len(removed)} stale quarantine(s)")
    return notes


def stale(repo: Any, updates: Sequence[RefUpdate]) -> list[RefUpdate]:
    """The updates whose `old` no longer matches the ref (someone else pushed first)."""
    refs: Any = repo.refs
    out = []
    for u in updates:
        try:
            current = refs[u.ref]
        except KeyError:
            current = ZERO
        if current != u.old:
            out.append(u)
    return out


def commit(repo: Any, path: str, updates: Sequence[RefUpdate]) -> None:
    """Apply every update (caller holds `locked(path)` and checked `stale`). Journaled, durable."""
    # Before any ref moves: a fetch that saw the old tip may ask for it the very next moment.
    _remember_tips(path, [u.old for u in updates if _still_reachable(repo, u)])
    journal = os.path.join(path, _JOURNAL)
    tmp = journal + ".tmp"
    with open(tmp, "w") as f:
        json.dump([{"ref": u.ref.decode(), "old": u.old.decode(), "new": u.new.decode()}
                   for u in updates], f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, journal)
    locks.fsync_dir(path)
    faults.crashpoint("between-journal-and-refs")
    _write_refs(repo, path, updates, roll_forward=False)
    os.unlink(journal)
    locks.fsync_dir(path)


def _still_reachable(repo: Any, u: RefUpdate) -> bool:
    """Whether the ref's old tip stays reachable from its new one (a fast-forward). Only those
    are remembered: C git serves a stateless want that current refs reach, never the tip of a
    deleted or force-pushed-away history (a commit pushed by mistake and removed on purpose)."""
    if u.is_create or u.is_delete:
        return False
    from gitserver import history  # history imports this module

    return history.is_ancestor(repo.object_store, u.old, u.new, limit=FF_WALK_LIMIT)


def _remember_tips(path: str, olds: Sequence[bytes]) -> None:
    """Keep the last tips each ref had: a fetch whose advertisement predates a push still asks
    for them in its second, stateless request (C git answers those by reachability)."""
    if not olds:
        return
    f = os.path.join(path, _RECENT)
    try:
        with open(f, "rb") as fh:
            lines = fh.read().split()
    except FileNotFoundError:
        lines = []
    lines = (lines + list(olds))[-RECENT_TIPS:]
    tmp = f + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    os.replace(tmp, f)


def recent_tips(path: str) -> dict[bytes, bytes]:
    """Former tips as pseudo-refs, for the want check of a stateless fetch (never advertised)."""
    try:
        with open(os.path.join(path, _RECENT), "rb") as fh:
            shas = [x for x in fh.read().split() if len(x) == 40]
    except FileNotFoundError:
        return {}
    return {b"refs/pushgate/recent/%d" % i: sha for i, sha in enumerate(shas)}


class ServedRepo(Repo):
    """A repository as served to one request; with `stateless` (the second request of a fetch
    over HTTP), its former tips widen the want check, never the advertisement."""

    stateless = False

    def former_tips(self) -> dict[bytes, bytes]:
        """The former tips a stateless request's wants may name besides the refs; read after
        the refs, never before: a tip is remembered before its ref moves (`commit`), so a tip
        the client saw is in one or the other. Read the other way round (or once, when the
        request began), a push landing between the two reads made a fetch's want invalid."""
        return recent_tips(self.path) if self.stateless else {}

    def find_missing_objects(self, determine_wants: Any, *args: Any, **kwargs: Any) -> Any:
        if self.stateless:
            inner = determine_wants

            def determine_wants(refs: Any, depth: Any = None) -> Any:
                return inner({**self.former_tips(), **refs}, depth)  # refs read first

        return super().find_missing_objects(determine_wants, *args, **kwargs)


def _write_refs(repo: Any, path: str, updates: Sequence[RefUpdate], *, roll_forward: bool) -> None:
    refs: Any = repo.refs  # dulwich's NewTypes (Ref, ObjectID) are plain bytes at runtime
    for i, u in enumerate(updates):
        if i == 1:
            faults.crashpoint("between-ref-writes")
        try:
            current = refs[u.ref]
        except KeyError:
            current = ZERO
        if current == u.new:
            continue  # already done (roll forward after a crash)
        if current != u.old:
            if roll_forward:
                continue  # moved on since: the journal's intent no longer applies
            raise RuntimeError(f"ref {u.ref.decode()} moved under the repository lock")
        if u.is_delete:
            ok = refs.remove_if_equals(u.ref, u.old)
        else:
            ok = (refs.add_if_new(u.ref, u.new) if u.is_create
                  else refs.set_if_equals(u.ref, u.old, u.new))
        if not ok:
            raise RuntimeError(f"compare-and-swap of {u.ref.decode()} failed under the lock")
        ref_file = os.path.join(path, u.ref.decode())
        if os.path.exists(ref_file):
            fd = os.open(ref_file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        locks.fsync_dir(os.path.dirname(ref_file) if os.path.isdir(os.path.dirname(ref_file)) else path)
