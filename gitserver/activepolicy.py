"""The active policy set of one server worker, and the switch to a new one.

Called by `gitserver.app` (each worker's `PushgateApp` holds one `Holder`; every receive asks it
for the current gate) and by `gitserver.policyrepo` (the active set is what a policy push is
compared with). The active set is `main` of `policies.git` once it has a commit; until then it
is the `--policies` directory (the bootstrap source). `main` only ever moves through the policy
push check, which materialises the commit under `DATA/policies/<commit>/` before the ref moves,
so the ref itself is the pointer every worker follows: no second pointer can disagree with it.

Noticing a new commit costs one ref read per receive (and a background poll once a second, so
the switch is usually made before the next push arrives). The switch loads the commit's policy
set (compiled once per process), builds a new gate and warmer through the app's factory, and
retires the old generation: its warmer stops at once, its gate (and policy engine) is closed only
after every push that may still be using it is past its time limit. A commit that cannot be
loaded leaves the worker failing closed (every gated push refused with the reason) and is tried
again after a while; it is never replaced by an older set.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo

from gitserver import receive, repos, warmup
from pushgate import datadir
from pushgate.build.sources import GitTree
from pushgate.gate import gate as gatemod
from pushgate.gate import policies, policysource, policytree

log = logging.getLogger(__name__)

RETRY = 10.0  # seconds before a commit that failed to load is tried again


@dataclass
class Generation:
    """One active policy set with the gate built on it (or, failed, the reason pushes are refused)."""

    source: policysource.Source | None
    gate: gatemod.Gate | None
    ref_gate: receive.RefGate
    warmer: warmup.GateWarmer | None = None
    error: str = ""

    def close(self) -> None:
        if self.warmer is not None:
            self.warmer.stop(timeout=0)
        if self.gate is not None:
            self.gate.close()
        if self.warmer is not None:
            self.warmer.stop()


class Unavailable:
    """The `RefGate` of a worker whose active policy commit does not load: refuses, fail closed."""

    def __init__(self, message: str, gated_refs: Sequence[str]) -> None:
        self.message = message
        self.gated_refs = {r.encode() for r in gated_refs}

    def gated(self, ref: bytes) -> bool:
        return ref in self.gated_refs

    def check(self, store: Any, update: repos.RefUpdate, pusher: receive.Pusher,
              changed: Sequence[str], deadline: float) -> receive.GateResult:
        raise receive.GateUnavailable(self.message, receive.Refusal.ENGINE)

    def record(self, verdict: datadir.Verdict) -> None:
        raise AssertionError("nothing is accepted without an active policy set")


Factory = Callable[[policysource.Source], Generation]


def active_commit(data_dir: str) -> str:
    """`main` of policies.git ("" while it has none, or while the repository does not exist)."""
    try:
        repo = Repo(datadir.policy_repo_path(data_dir))
    except (NotGitRepository, FileNotFoundError):
        return ""
    refs: Any = repo.refs
    try:
        return str(refs[datadir.POLICY_BRANCH].decode())
    except KeyError:
        return ""
    finally:
        repo.close()


def commit_directory(data_dir: str, commit: str) -> str:
    """The directory of an accepted policy commit, written out again from policies.git if it is
    missing (a data directory restored without it, say)."""
    path = datadir.policy_tree_path(data_dir, commit)
    if os.path.isdir(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    work = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=STAGING_PREFIX)
    repo = Repo(datadir.policy_repo_path(data_dir))
    try:
        policytree.materialise(GitTree(repo.object_store, commit.encode()), os.path.join(work, "tree"))
        publish(os.path.join(work, "tree"), path)
    finally:
        repo.close()
        shutil.rmtree(work, ignore_errors=True)
    return path


STAGING_PREFIX = ".incoming-"


def publish(tree_dir: str, path: str) -> None:
    """Move a written-out commit to its place (atomic; a commit's content never changes, so one
    already there is kept)."""
    try:
        os.rename(tree_dir, path)
    except OSError:
        if not os.path.isdir(path):
            raise


def sweep(data_dir: str, max_age: float = 3600.0) -> None:
    """Remove staging directories a crashed worker left (old enough not to be in use)."""
    root = os.path.join(data_dir, datadir.POLICY_TREES)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    for name in names:
        full = os.path.join(root, name)
        try:
            if name.startswith(STAGING_PREFIX) and time.time() - os.stat(full).st_mtime > max_age:
                shutil.rmtree(full, ignore_errors=True)
        except FileNotFoundError:
            continue


class Holder:
    def __init__(self, data_dir: str, bootstrap_dir: str, namespaces: Sequence[str] | None,
                 gated_refs: Sequence[str], make: Factory, *, grace: float, poll: float = 1.0,
                 delay: float = 0.3) -> None:
        self.data_dir, self.bootstrap_dir = data_dir, bootstrap_dir
        self.namespaces, self.gated_refs = namespaces, gated_refs
        self._started = False
        self._make = make
        self.grace, self.poll, self.delay = grace, poll, delay
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._retired: list[tuple[float, Generation]] = []
        self._failed_at = 0.0
        self._key = active_commit(data_dir)
        # At start an active set that does not load is the operator's to fix: raised (exit 2).
        self._gen = make(self._load(self._key))
        self._thread = threading.Thread(target=self._run, name="policy-watch", daemon=True)

    def _load(self, commit: str) -> policysource.Source:
        if not commit:
            return policysource.load(self.bootstrap_dir, self.namespaces)
        try:
            directory = commit_directory(self.data_dir, commit)
        except (policytree.TreeError, OSError, KeyError) as e:
            raise policies.PolicyError(f"cannot write out policies.git commit {commit[:12]}: {e}") from e
        return policysource.load(directory, self.namespaces, commit=commit)

    def current(self) -> Generation:
        """The generation to check the next push with, switched first if `main` moved."""
        key = active_commit(self.data_dir)
        with self._lock:
            if key == self._key and not (self._gen.error and time.monotonic() - self._failed_at > RETRY):
                return self._gen
            try:
                gen = self._make(self._load(key))
            except Exception as e:  # fail closed: never fall back to an older set
                log.exception("policy set %s does not load", key[:12] or self.bootstrap_dir)
                what = f"policies.git commit {key[:12]}" if key else f"policy directory {self.bootstrap_dir}"
                why = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
                gen = Generation(None, None, Unavailable(
                    f"the active policy set ({what}) does not load: {why}", self.gated_refs), error=why)
                self._failed_at = time.monotonic()
            old, self._gen, self._key = self._gen, gen, key
            if old.warmer is not None:
                old.warmer.stop(timeout=0)
            self._retired.append((time.monotonic() + self.grace, old))
            if gen.warmer is not None and self._started:
                gen.warmer.start()
            if gen.source is not None:
                log.info("policies switched: %s", gen.source.describe()[0])
            return gen

    def describe(self) -> list[str]:
        gen = self.current()
        if gen.source is None:
            return [f"policy source unavailable: {gen.error}"]
        return gen.source.describe()

    def start(self) -> None:
        with self._lock:
            self._started = True
            if self._gen.warmer is not None:
                self._gen.warmer.start()
        self._thread.start()

    def _run(self) -> None:
        # Not in gunicorn's master, which builds and at once closes the app (see warmup).
        if self._stop.wait(self.delay):
            return
        while not self._stop.wait(self.poll):
            try:
                self.current()
                self._close_retired(time.monotonic())
            except Exception as e:  # the next receive checks again itself
                log.warning("policy watch failed: %s: %s", type(e).__name__, str(e)[:300])

    def _close_retired(self, now: float) -> None:
        with self._lock:
            due = [g for t, g in self._retired if t <= now]
            self._retired = [(t, g) for t, g in self._retired if t > now]
        for g in due:
            g.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)
        self._close_retired(float("inf"))
        self._gen.close()
