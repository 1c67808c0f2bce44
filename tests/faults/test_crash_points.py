"""The git server killed in the middle of a push, at every named crash point and at random.

A push is all or nothing whatever the moment of death: after a restart on the same data dir the
refs point at complete commits (fsck clean), no quarantine or journal is left, an atomic push of
two refs moved both or neither, and every push the client saw succeed is on the server. Points
after the journal is written are rolled forward at start-up, so that push fully landed; points
before it left the refs untouched.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bed import procs, samples
from tests.bed.gitcli import Git
from tests.bed.server import Server
from tests.faults.figures import Figures

CRASH_ENV = ("PUSHGATE_CRASHPOINT", "PUSHGATE_CRASHPOINT_MARKER")
MAIN, FEATURE, MIRROR = "refs/heads/main", "refs/heads/feature", "refs/heads/mirror"
JOURNAL = "pushgate-journal.json"
RANDOM_PUSHES = 20
SEED = 20240607


# -- helpers ------------------------------------------------------------------------------------
def assert_consistent(server: Server) -> dict[str, str]:
    """The invariants that hold after any crash and restart; returns the refs."""
    fsck = server.fsck()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    refs = server.refs()
    for ref, sha in refs.items():
        # Every ref names a commit whose whole history is present (fsck --full walks it).
        kind = subprocess.run(["git", "-C", str(server.repo), "cat-file", "-t", sha],
                              capture_output=True, text=True, check=False)
        assert kind.stdout.strip() == "commit", f"{ref} -> {sha}: {kind.stdout}{kind.stderr}"
    assert server.quarantines() == [], "start-up left a quarantine behind"
    assert not (server.repo / JOURNAL).exists(), "start-up left the ref journal behind"
    return refs


def is_ancestor(server: Server, sha: str, head: str) -> bool:
    res = subprocess.run(["git", "-C", str(server.repo), "merge-base", "--is-ancestor", sha, head],
                         capture_output=True, check=False)
    return res.returncode == 0


def restart_clean(server: Server) -> None:
    """Start a new server process on the same data dir, without any crash point."""
    for key in CRASH_ENV:
        server.env.pop(key, None)
    server.start()


def _commit(git: Git, work: Path, branch: str, name: str) -> str:
    git.run("checkout", "-q", branch, cwd=work)
    git.write(work, {f"apps/{name}.yaml": samples.configmap(name=name)})
    return git.commit_all(work, f"{name} on {branch}")


# -- named crash points -------------------------------------------------------------------------
@pytest.mark.parametrize(("point", "lands"), [
    ("after-receive", False),
    ("after-gate", False),
    ("after-migrate", False),
    ("between-journal-and-refs", True),
    ("between-ref-writes", True),
])
def test_crash_point(point: str, lands: bool, git: Git, server_factory: Callable[..., Server],
                     tmp_path: Path, figures: Figures) -> None:
    server = server_factory()
    work = git.init(tmp_path / "work")
    git.write(work, {"apps/ns.yaml": samples.namespace()})
    git.commit_all(work, "base")
    git.run("branch", "feature", cwd=work)
    git.run("push", "-q", "--atomic", server.url(), "main", "feature", cwd=work)
    before = server.refs()
    assert set(before) == {MAIN, FEATURE}

    marker = tmp_path / "crash-marker"
    server.stop()
    server.env.update({"PUSHGATE_CRASHPOINT": point, "PUSHGATE_CRASHPOINT_MARKER": str(marker)})
    server.start()
    new_main = _commit(git, work, "main", "on-main")
    new_feature = _commit(git, work, "feature", "on-feature")
    started = time.monotonic()
    res = git.run("push", "--atomic", server.url(), "main", "feature", cwd=work, check=False,
                  timeout=60)
    assert res.returncode != 0, f"the push survived crash point {point}:\n{res.stderr}"
    procs.wait_until(marker.exists, 10, f"crash point {point} to be hit")
    assert point in marker.read_text().split(), marker.read_text()
    server.kill()
    if point == "between-ref-writes":
        # Torn on disk: one of the two refs moved, the journal says how to finish.
        torn = server.refs()
        assert sum(torn[ref] != before[ref] for ref in (MAIN, FEATURE)) == 1, torn
        assert (server.repo / JOURNAL).exists()

    restart_clean(server)
    recovered = time.monotonic() - started
    refs = assert_consistent(server)
    if lands:
        assert refs == {MAIN: new_main, FEATURE: new_feature}, "the journaled push was not rolled forward"
    else:
        assert refs == before, "a push that died before its journal moved a ref"

    # The server is fully usable again, and the client catches up with one more push.
    git.run("checkout", "-q", "main", cwd=work)
    head = _commit(git, work, "main", "after-restart")
    ok = git.run("push", "--atomic", server.url(), "main", "feature", cwd=work, check=False)
    assert ok.returncode == 0, ok.stderr
    refs = assert_consistent(server)
    assert refs[MAIN] == head and refs[FEATURE] == new_feature
    figures.record(f"crash point {point}",
                   f"push killed, {'fully landed (journal rolled forward)' if lands else 'nothing landed'}, "
                   f"restart + invariants in {recovered:.1f} s, next push accepted")


# -- random kills ----------------------------------------------------------------------------
def test_random_kills_never_lose_an_acknowledged_push(git: Git, server_factory: Callable[..., Server],
                                                      tmp_path: Path, figures: Figures) -> None:
    rng = random.Random(SEED)
    server = server_factory()
    work = git.init(tmp_path / "work")
    git.write(work, {"apps/ns.yaml": samples.namespace()})
    git.commit_all(work, "base")
    refspecs = ("main", f"main:{MIRROR}")
    git.run("push", "-q", "--atomic", server.url(), *refspecs, cwd=work)

    acknowledged: list[str] = []
    failed = crashes = landed_unacknowledged = 0
    kill_delays: list[float] = []
    push_seconds = 0.3  # how long an undisturbed push takes here, updated as we go
    for i in range(RANDOM_PUSHES):
        git.write(work, {f"apps/cm-{i:02}.yaml": samples.configmap(name=f"cm-{i:02}", value=str(i))})
        sha = git.commit_all(work, f"push {i}")
        killed = threading.Event()

        def kill(done: threading.Event = killed) -> None:
            done.set()
            server.kill()  # SIGKILL to the whole process group: master and both workers

        timer = None
        if rng.random() < 0.75:
            # A moment somewhere inside the push: advertisement, upload, gate, migrate, refs.
            delay = rng.uniform(0.0, 1.0) * push_seconds
            kill_delays.append(delay)
            timer = threading.Timer(delay, kill)
            timer.start()
        started = time.monotonic()
        res = git.run("push", "--atomic", server.url(), *refspecs, cwd=work, check=False, timeout=60)
        took = time.monotonic() - started
        if timer is not None:
            timer.cancel()
            timer.join()
        if res.returncode == 0:
            acknowledged.append(sha)
            if not killed.is_set():
                push_seconds = took
        else:
            failed += 1
            assert killed.is_set(), f"push {i} failed with no crash:\n{res.stderr}"
        if killed.is_set():
            crashes += 1
            server.start()
        refs = assert_consistent(server)
        assert refs[MAIN] == refs[MIRROR], f"an atomic push moved one ref only: {refs}"
        for ack in acknowledged:
            assert is_ancestor(server, ack, refs[MAIN]), f"acknowledged commit {ack} lost after push {i}"
        if res.returncode != 0 and is_ancestor(server, sha, refs[MAIN]):
            landed_unacknowledged += 1  # killed after the refs moved, before the client heard `ok`

    if acknowledged and acknowledged[-1] == sha:
        assert server.refs()[MAIN] == sha, "the last push was acknowledged but is not the head"
    assert crashes >= RANDOM_PUSHES // 4, f"only {crashes} crashes: the kills no longer hit the pushes"
    figures.record(
        "random SIGKILLs during pushes",
        f"{RANDOM_PUSHES} pushes (2 refs, --atomic), {len(acknowledged)} accepted, {failed} failed "
        f"({landed_unacknowledged} of them landed all the same, before the client heard ok), "
        f"{crashes} crashes survived ({len(kill_delays)} kills armed {min(kill_delays):.2f}-"
        f"{max(kill_delays):.2f} s into a push, seed {SEED}), 0 acknowledged commits lost, "
        f"invariants held after every restart")
