"""Racing pushers never lose a commit: exactly the consistent updates win, losers get git's
"fetch first" rejection, and the repository stays consistent while clients clone and fetch."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

PUSHERS = 20
FETCHERS = 20


def test_racing_pushers_and_fetchers(git: Git, server: Server, tmp_path: Path) -> None:
    seed = git.init(tmp_path / "seed")
    git.write(seed, {"ns.yaml": samples.namespace()})
    git.commit_all(seed, "seed")
    git.run("push", "-q", server.url(), "main", cwd=seed)

    clones = []
    for i in range(PUSHERS):
        c = tmp_path / f"pusher-{i}"
        git.run("clone", "-q", server.url("writer"), str(c))
        # A fast-forward chain of two commits per pusher.
        for j in range(2):
            git.write(c, {f"apps/cm-{i}.yaml": samples.configmap(name=f"cm-{i}", value=str(j))})
            git.commit_all(c, f"pusher {i} commit {j}")
        clones.append(c)

    results: dict[int, subprocess.CompletedProcess[str]] = {}
    readers_ok: list[bool] = []
    reader_errors: list[str] = []
    start = threading.Barrier(PUSHERS + FETCHERS)

    def push(i: int) -> None:
        start.wait()
        results[i] = git.run("push", "origin", "main", cwd=clones[i], check=False)

    def fetch(i: int) -> None:
        start.wait()
        dest = tmp_path / f"reader-{i}"
        steps = (("clone", "-q", server.url("reader"), str(dest)), ("-C", str(dest), "fsck", "--full"),
                 ("-C", str(dest), "fetch", "-q", "origin"))
        for args in steps:
            res = git.run(*args, check=False)
            if res.returncode != 0:
                reader_errors.append(f"git {args[0]}..: {res.stderr[-500:]}")
                readers_ok.append(False)
                return
        readers_ok.append(True)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(PUSHERS)]
    threads += [threading.Thread(target=fetch, args=(i,)) for i in range(FETCHERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)

    accepted = [i for i, r in results.items() if r.returncode == 0]
    refused = [i for i, r in results.items() if r.returncode != 0]
    print(f"\nrace: {PUSHERS} pushers, {len(accepted)} accepted, {len(refused)} refused; "
          f"{FETCHERS} concurrent clone+fetch, {sum(readers_ok)} ok")
    assert len(results) == PUSHERS
    assert accepted, "no pusher won"
    for i in refused:
        err = results[i].stderr
        assert "fetch first" in err, err
    # Every accepted commit is reachable from the final head; nothing else moved it.
    head = server.refs()["refs/heads/main"]
    for i in accepted:
        tip = git.rev_parse(clones[i], "HEAD")
        anc = subprocess.run(["git", "-C", str(server.repo), "merge-base", "--is-ancestor", tip, head],
                             check=False)
        assert anc.returncode == 0, f"accepted commit of pusher {i} lost"
    # All pushers started from the same base, so only one can be a fast-forward.
    assert len(accepted) == 1
    assert all(readers_ok) and len(readers_ok) == FETCHERS, reader_errors[:3]
    assert server.fsck().returncode == 0, server.fsck().stderr
    assert server.quarantines() == []
