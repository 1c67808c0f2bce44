"""A served request leaves nothing of the repository open: no pack file descriptor, no pack
mapped, once the answer is done (gitserver/app.py `_Backend.close`). dulwich's handlers never
close the repository they open; left to the garbage collector, each push's and each fetch's
packs stayed open and mapped (packs since deleted by the merge among them) until a full
collection, and the server's memory and descriptors grew with the pushes."""

from __future__ import annotations

import time
from pathlib import Path

from tests.bed import procs, samples
from tests.bed.gitcli import Git
from tests.bed.server import Server


def _held(server: Server) -> list[str]:
    """Every pack file a server process has open or mapped: "pid fd|map path"."""
    assert server.proc is not None
    packs = str((server.repo / "objects" / "pack").resolve())
    found = []
    for pid in procs.tree(server.proc.pid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        except OSError:
            continue  # gone meanwhile
        for fd in fds:
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target.startswith(packs):
                found.append(f"{pid} fd {target}")
        found.extend(f"{pid} map {line}" for line in maps if packs in line)
    return found


def _settled(server: Server, timeout: float = 20.0) -> list[str]:
    """What is still held once background work (a pack merge, a worker warming its gate) had
    the time to end."""
    end = time.monotonic() + timeout
    while True:
        held = _held(server)
        if not held or time.monotonic() > end:
            return held
        time.sleep(0.2)


def test_no_pack_stays_open_after_pushes_clones_and_fetches(git: Git, server: Server,
                                                            tmp_path: Path) -> None:
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace()})
    git.commit_all(work, "base")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    clone = tmp_path / "clone"
    git.run("clone", "-q", server.url("reader"), str(clone))
    # More pushes than the merge's trigger, so packs are merged and deleted meanwhile.
    for i in range(20):
        git.write(work, {f"apps/cm-{i}.yaml": samples.configmap(name=f"cm-{i}", value=str(i))})
        git.commit_all(work, f"push {i}")
        git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
        if i % 5 == 0:
            git.run("fetch", "-q", "origin", cwd=clone)
            git.run("ls-remote", server.url("reader"))
    git.write(work, {"bad.yaml": "kind: [\n"})  # a refused push opens the repository too
    git.commit_all(work, "bad")
    refused = git.run("push", server.url("writer"), "HEAD:refs/heads/main", cwd=work, check=False)
    assert refused.returncode != 0
    git.run("clone", "-q", "--no-checkout", server.url("reader"), str(tmp_path / "again"))
    git.run("fetch", "-q", "origin", cwd=clone)
    assert len(list((server.repo / "objects" / "pack").glob("*.pack"))) < 16, "no merge happened"
    assert _settled(server) == []
