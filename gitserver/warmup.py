"""Keeps one server worker's gate warm: its policy engine started, its caches on the gated heads.

Called by `gitserver.app` (each gunicorn worker's `PushgateApp` starts one `GateWarmer`; the
app's gate adapter tells it about every head it checked itself). Each worker process has its own
gate caches, so without this the first push a worker sees after another worker took a big push
is a full check (seconds to minutes for thousands of manifests). The warmer follows the gated
refs of the repository and, once the worker has been idle for a moment, checks in the background
a head that differs from what its caches hold by many files (a first push, a big merge); a push
that arrives meanwhile waits for that check (one check at a time per gate) and then finds
everything cached. For a head a few files away (another worker's push) it only prefetches those
files (`Gate.prefetch`: parsed, their results decided in the last check's context), which costs
milliseconds, where a whole check costs the O(repository) build and would take a core from the
worker taking the next push.

It also keeps garbage collection out of the push path: a worker's caches hold millions of small
objects, and every full collection walks all of them (~0.3 s per 5,000 cached manifests). After
the caches have grown by a few thousand entries the warmer collects once and freezes what is
left (`gc.freeze()`), so later collections only look at what is new. Cached values hold no
reference cycles and are still freed by reference counting when evicted.

When the worker's caches hold the current heads it logs `gate warm: <ref> at <sha> ...`, naming
the worker's pid (the benchmarks wait for that line from every worker).
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from dulwich.repo import Repo

from pushgate.build.sources import GitTree
from pushgate.gate import gate as gatemod

log = logging.getLogger(__name__)

FREEZE_GROWTH = 2000  # cache entries added since the last freeze before collecting again
LAG = 200  # changed files between the cached head and the new one that make it worth a check
RETRY = 60.0  # seconds before a head whose background check failed is tried again


class GateWarmer:
    def __init__(self, gate: gatemod.Gate, repo_path: str, gated_refs: Sequence[str], *,
                 interval: float = 0.25, idle: float = 1.0, prefetch_idle: float = 0.2,
                 delay: float = 0.3) -> None:
        self.gate = gate
        self.repo_path = repo_path
        self.refs = list(gated_refs)
        self.interval, self.idle, self.prefetch_idle, self.delay = interval, idle, prefetch_idle, delay
        # Longer than a push may take: a cold check of a big repository on a busy machine.
        self.timeout = max(600.0, 10 * gate.config.timeout)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {}  # ref -> the head whose results the caches hold
        self._announced: dict[str, str] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # ref -> (head, when) of a failed check
        self._fetched: dict[str, str] = {}  # ref -> the head whose changed files were prefetched
        self._announced_size = -FREEZE_GROWTH
        self._last_push = 0.0
        self._frozen_at = 0  # gate.cache_size() at the last freeze
        self._thread = threading.Thread(target=self._run, name="gate-warmer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def checked(self, ref: str, sha: str) -> None:
        """A push of this worker has just checked `sha` for `ref`: its results are cached."""
        with self._lock:
            self._seen[ref] = self._fetched[ref] = sha
            self._last_push = time.monotonic()

    def _run(self) -> None:
        # `pushgate serve` builds (and at once closes) the app in gunicorn's master to check the
        # configuration: nothing may start there, and no thread may run when it forks.
        if self._stop.wait(self.delay):
            return
        self.gate.warm()
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as e:  # a failed warm-up costs speed only: the push checks itself
                log.warning("gate warm-up failed: %s: %s", type(e).__name__, str(e)[:300])
            self._stop.wait(self.interval)

    def _follow(self) -> None:
        heads = self._heads()
        background = False
        for ref, sha in heads.items():
            with self._lock:
                seen, fetched = self._seen.get(ref), self._fetched.get(ref)
                idle = time.monotonic() - self._last_push
            if sha in (seen, fetched) or idle < self.prefetch_idle:
                continue
            failed = self._failed.get(ref)
            if failed is not None and failed[0] == sha and time.monotonic() - failed[1] < RETRY:
                continue
            if self._stop.is_set():
                return
            base = fetched or seen
            changed = self._changes(base, sha) if base else None
            if changed is None and idle < self.idle:
                continue
            started = time.monotonic()
            repo = Repo(self.repo_path)
            try:
                tree = GitTree(repo.object_store, sha.encode())
                if changed is not None:
                    n = self.gate.prefetch(tree, changed, time.monotonic() + 60.0)
                    log.debug("gate prefetched %d objects of %s at %s in %.3fs", n, ref, sha[:12],
                              time.monotonic() - started)
                else:
                    built, _found = self.gate.check(
                        tree, {"pusher": "", "role": "", "ref": ref, "changed_paths": []},
                        time.monotonic() + self.timeout)
                    log.info("gate checked %s at %s in the background: %d objects in %.2fs", ref,
                             sha[:12], len(built.manifests), time.monotonic() - started)
            except Exception:
                self._failed[ref] = (sha, time.monotonic())
                raise
            finally:
                repo.close()
            with self._lock:
                self._fetched[ref] = sha
                if changed is None:
                    self._seen[ref] = sha
                    background = True
        self._settle()
        with self._lock:
            warm = {ref: sha for ref, sha in heads.items() if self._seen.get(ref) == sha}
        # Said once a worker is warm after a big change (a first push, a background check), not
        # after every push.
        size = self.gate.cache_size()
        if not background and abs(size - self._announced_size) < FREEZE_GROWTH:
            self._announced.update(warm)
            return
        for ref, sha in warm.items():
            if self._announced.get(ref) != sha:
                self._announced[ref] = sha
                self._announced_size = size
                log.info("gate warm: %s at %s (worker %d, %d cached results)", ref, sha, os.getpid(), size)

    def _changes(self, old: str, new: str) -> list[str] | None:
        """The paths that differ between two commits (as in `new`), or None when there are LAG
        or more (or the old commit is gone): then a whole check is worth it."""
        from dulwich.diff_tree import tree_changes

        repo = Repo(self.repo_path)
        try:
            store: Any = repo.object_store
            changes = tree_changes(store, store[old.encode()].tree, store[new.encode()].tree)
            paths = [c.new.path.decode("utf-8", "surrogateescape")
                     for c in itertools.islice(changes, LAG) if c.new is not None and c.new.path]
            return paths if len(paths) < LAG else None
        except KeyError:  # a rewritten history: the old commit is gone
            return None
        finally:
            repo.close()

    def _heads(self) -> dict[str, str]:
        repo = Repo(self.repo_path)
        refs: Any = repo.refs  # dulwich types ref names as its own NewType
        try:
            out = {}
            for ref in self.refs:
                try:
                    out[ref] = refs[ref.encode()].decode()
                except KeyError:
                    continue
            return out
        finally:
            repo.close()

    def _settle(self) -> None:
        size = self.gate.cache_size()
        if size < self._frozen_at:  # a cache was emptied (bounded): start counting again
            self._frozen_at = size
        if size - self._frozen_at >= FREEZE_GROWTH:
            gc.collect()
            gc.freeze()
            self._frozen_at = size
