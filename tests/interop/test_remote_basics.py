"""The stock git CLI against pushgate: clone, fetch, ls-remote, push; shallow clones; a
second clone sees exactly what was pushed. The server runs with two worker processes."""

from __future__ import annotations

from pathlib import Path

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server


def _seed(git: Git, server: Server, tmp_path: Path, commits: int = 3) -> Path:
    work = git.init(tmp_path / "seed")
    for i in range(commits):
        git.write(work, {"apps/web.yaml": samples.deployment(replicas=i + 1),
                         "apps/ns.yaml": samples.namespace()})
        git.commit_all(work, f"commit {i}")
    git.run("push", server.url(), "main", cwd=work)
    return work


def test_empty_repository_exists_with_head_on_main(git: Git, server: Server, tmp_path: Path) -> None:
    res = git.run("ls-remote", "--symref", server.url(), "HEAD")
    assert res.returncode == 0
    head = (server.repo / "HEAD").read_text().strip()
    assert head == "ref: refs/heads/main"


def test_push_clone_fetch_ls_remote(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    head = git.rev_parse(work, "HEAD")
    assert server.refs()["refs/heads/main"] == head
    ls = git.run("ls-remote", server.url()).stdout
    assert f"{head}\trefs/heads/main" in ls

    clone = tmp_path / "clone"
    git.run("clone", "-q", server.url("reader"), str(clone))
    assert git.rev_parse(clone, "HEAD") == head
    assert (clone / "apps" / "web.yaml").read_text() == samples.deployment(replicas=3)

    git.write(work, {"apps/cm.yaml": samples.configmap()})
    new = git.commit_all(work, "add configmap")
    push = git.run("push", server.url(), "main", cwd=work)
    assert "pushgate: 0 errors, 0 warnings" in push.stderr
    git.run("fetch", "-q", "origin", cwd=clone)
    assert git.rev_parse(clone, "origin/main") == new
    assert server.fsck().returncode == 0


def test_shallow_clone_fetch_and_push(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path, commits=4)
    shallow = tmp_path / "shallow"
    git.run("clone", "-q", "--depth", "1", server.url(), str(shallow))
    assert git.run("rev-list", "--count", "HEAD", cwd=shallow).stdout.strip() == "1"
    assert (shallow / ".git" / "shallow").exists()

    git.write(work, {"apps/cm.yaml": samples.configmap(value="2")})
    upstream = git.commit_all(work, "upstream change")
    git.run("push", "-q", server.url(), "main", cwd=work)
    git.run("fetch", "-q", "--depth", "1", "origin", cwd=shallow)
    assert git.rev_parse(shallow, "origin/main") == upstream

    git.run("reset", "-q", "--hard", "origin/main", cwd=shallow)
    git.write(shallow, {"apps/cm2.yaml": samples.configmap(name="more")})
    mine = git.commit_all(shallow, "from a shallow clone")
    res = git.run("push", "origin", "main", cwd=shallow, check=False)
    assert res.returncode == 0, res.stderr
    assert server.refs()["refs/heads/main"] == mine
    assert server.fsck().returncode == 0


def test_other_branches_are_not_gated(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path, commits=1)
    git.run("checkout", "-q", "-b", "scratch", cwd=work)
    git.write(work, {"notes.yaml": "not: [a manifest"})
    sha = git.commit_all(work, "wip")
    res = git.run("push", server.url(), "scratch", cwd=work, check=False)
    assert res.returncode == 0, res.stderr
    assert server.refs()["refs/heads/scratch"] == sha
