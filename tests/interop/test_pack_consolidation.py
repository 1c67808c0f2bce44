"""The small packs pushes leave behind are merged in the background (gitserver/consolidate.py):
the pack count stays low, the objects stay exactly the same set, and stock git clones and
fetches running all the while, and a worker killed in the middle of a merge, change nothing a
client can see (fsck --strict, every ref)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gitserver import consolidate
from tests.bed import procs, samples
from tests.bed.gitcli import Git
from tests.bed.server import Server


def _packs(server: Server) -> int:
    return len(list((server.repo / "objects" / "pack").glob("*.pack")))


def _objects(server: Server) -> set[str]:
    out = subprocess.run(["git", "-C", str(server.repo), "cat-file", "--batch-all-objects",
                          "--batch-check=%(objectname)"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _push(git: Git, server: Server, work: Path, i: int) -> str:
    git.write(work, {f"apps/cm-{i}.yaml": samples.configmap(name=f"cm-{i}", value=str(i) * 40)})
    sha = git.commit_all(work, f"push {i}")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    return sha


def _base(git: Git, server: Server, tmp_path: Path) -> Path:
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace()})
    git.commit_all(work, "base")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    return work


def test_small_packs_are_merged_and_nothing_changes_for_clients(git: Git, server: Server,
                                                                 tmp_path: Path) -> None:
    work = _base(git, server, tmp_path)
    failures: list[str] = []
    stop = threading.Event()

    def clones(n: int) -> None:
        k = 0
        while not stop.is_set():
            dest = tmp_path / f"clone-{n}-{k}"
            k += 1
            res = git.run("clone", "-q", "--no-checkout", server.url("reader"), str(dest), check=False)
            if res.returncode != 0:
                failures.append(res.stderr)
                continue
            fsck = git.run("fsck", "--strict", "--no-dangling", cwd=dest, check=False)
            if fsck.returncode != 0:
                failures.append(fsck.stdout + fsck.stderr)

    readers = [threading.Thread(target=clones, args=(n,)) for n in range(2)]
    for t in readers:
        t.start()
    try:
        most = 0
        for i in range(consolidate.TRIGGER * 2 + 4):
            head = _push(git, server, work, i)
            most = max(most, _packs(server))
        procs.wait_until(lambda: _packs(server) < consolidate.TRIGGER, 20, "the small packs merged")
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=60)
    assert not failures, (failures[:3], server.log()[-4000:])
    # never more than one merge's worth of packs at a time
    assert most <= consolidate.TRIGGER + 2, most
    assert server.fsck().returncode == 0
    assert server.refs()["refs/heads/main"] == head
    # every object a client could have asked for before is still there: a fresh clone of each
    # push's commit, and a fetch into an old clone
    final = tmp_path / "final"
    git.run("clone", "-q", "--no-checkout", server.url("reader"), str(final))
    git.run("fsck", "--strict", "--no-dangling", cwd=final)
    log = git.run("log", "--format=%H", "origin/main", cwd=final).stdout.split()
    assert log[0] == head and len(log) == consolidate.TRIGGER * 2 + 5


def test_the_object_set_is_exactly_kept(git: Git, server: Server, tmp_path: Path) -> None:
    work = _base(git, server, tmp_path)
    for i in range(consolidate.TRIGGER - 2):
        _push(git, server, work, i)
    time.sleep(1)  # a merge would have been started by now
    before = _objects(server)
    # the base's pack and one per push: one short of a merge
    assert _packs(server) == consolidate.TRIGGER - 1
    _push(git, server, work, 99)  # the TRIGGER-th pack: due
    procs.wait_until(lambda: _packs(server) == 1, 20, "the small packs merged into one")
    after = _objects(server)
    assert before <= after and len(after - before) == 4  # the last commit, 2 trees, its blob


@pytest.mark.parametrize(("point", "extra"), [("consolidate-writing", 0), ("consolidate-written", 1)])
def test_a_worker_killed_in_the_middle_of_a_merge(point: str, extra: int, git: Git,
                                                   server_factory: Callable[..., Server],
                                                   tmp_path: Path) -> None:
    marker = tmp_path / "crash-marker"
    server = server_factory(env={"PUSHGATE_CRASHPOINT": point,
                                 "PUSHGATE_CRASHPOINT_MARKER": str(marker)})
    work = _base(git, server, tmp_path)
    for i in range(consolidate.TRIGGER - 1):  # the base's pack and these: due
        _push(git, server, work, i)
    procs.wait_until(marker.exists, 20, f"the merge to die at {point}")
    assert point in marker.read_text()
    # killed while writing: nothing in the repository changed (the pack is in a quarantine);
    # after: the new pack is there next to the old ones, every object twice, nothing lost
    assert _packs(server) == consolidate.TRIGGER + extra
    pack_dir = server.repo / "objects" / "pack"
    assert all(p.with_suffix(".idx").exists() for p in pack_dir.glob("*.pack"))
    assert server.fsck().returncode == 0
    server.stop()
    server.env.pop("PUSHGATE_CRASHPOINT")
    server.start()
    assert server.quarantines() == []
    objects = _objects(server)
    head = _push(git, server, work, 100)  # due again: the next merge folds the duplicates
    procs.wait_until(lambda: _packs(server) == 1, 20, "the duplicates folded into one pack")
    assert _objects(server) >= objects and server.fsck().returncode == 0
    clone = tmp_path / "clone"
    git.run("clone", "-q", "--no-checkout", server.url("reader"), str(clone))
    git.run("fsck", "--strict", "--no-dangling", cwd=clone)
    assert git.rev_parse(clone, "origin/main") == head


def test_big_packs_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge holds the objects of the packs it merges: packs over SMALL_BYTES (a big file
    pushed on purpose or not) are never read into memory by it."""
    repo = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "receive.unpackLimit", "1"], check=True)
    work = tmp_path / "w"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.test"]
    for i in range(consolidate.TRIGGER + 1):
        data = os.urandom(64 * 1024) if i == 0 else f"{i}\n".encode()  # the first pack is big
        (work / f"f{i}").write_bytes(data)
        subprocess.run(["git", "-C", str(work), "add", "."], check=True)
        subprocess.run(["git", "-C", str(work), *ident, "commit", "-qm", str(i)], check=True)
        subprocess.run(["git", "-C", str(work), "push", "-q", str(repo), "HEAD:refs/heads/main"], check=True)
    packs = sorted((repo / "objects" / "pack").glob("*.pack"), key=lambda p: p.stat().st_size)
    big = packs[-1]
    monkeypatch.setattr(consolidate, "SMALL_BYTES", 32 * 1024)
    assert consolidate.consolidate(str(repo / "objects")) == consolidate.TRIGGER
    left = set((repo / "objects" / "pack").glob("*.pack"))
    assert big in left and len(left) == 2
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
