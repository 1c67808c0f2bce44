"""pushgate's own commits go through its own gate: made on the branch head from the repository
on disk, pushed over HTTP as the configured automation user, accepted or refused exactly like a
human push (nothing stored when refused), and reverts that undo a commit path by path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pushgate.automation import botpush
from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import DEFAULT_USERS, Server

USERS = (*DEFAULT_USERS, ("bot", "write"))


def automation(workdir: Path) -> str:
    return (f"automation:\n  user: bot\n  tokenFile: {workdir / 'tokens' / 'bot'}\n"
            f"  author: pushgate-bot <bot@pushgate.test>\n")


@pytest.fixture
def server(server_factory: Callable[..., Server], tmp_path: Path) -> Server:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "tags.rego").write_text(
        'package tags\n\ndeny contains msg if {\n\tsome c in input.spec.template.spec.containers\n'
        '\tendswith(c.image, ":bad")\n\tmsg := sprintf("image %s is not allowed", [c.image])\n}\n')
    return server_factory(f"--policies={policies}", users=USERS, config=automation)


def seed(git: Git, server: Server, tmp_path: Path) -> tuple[Path, str]:
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace(), "web.yaml": samples.deployment(image="nginx:1.27")})
    head = git.commit_all(work, "seed")
    git.run("push", server.url("admin"), "HEAD:refs/heads/main", cwd=work)
    return work, head


def test_an_accepted_commit_lands_with_the_bots_identity(git: Git, server: Server, tmp_path: Path) -> None:
    work, head = seed(git, server, tmp_path)
    data = str(server.data_dir)
    assert botpush.head(data, "main") == head
    web = samples.deployment(image="nginx:1.28").encode()
    res = botpush.push_changes(data, "main", {"web.yaml": web},
                               "bump nginx\n\nweb.yaml: nginx:1.27 -> 1.28", base=head)
    assert res.accepted, (res.reason, res.lines)
    assert any(line.startswith("pushgate: 0 errors") for line in res.lines), res.lines
    assert botpush.head(data, "main") == res.commit
    git.run("fetch", "-q", server.url("reader"), "main", cwd=work)
    assert git.run("log", "-1", "--format=%an <%ae>|%s|%P", "FETCH_HEAD", cwd=work).stdout.strip() == \
        f"pushgate-bot <bot@pushgate.test>|bump nginx|{head}"
    assert git.run("show", "FETCH_HEAD:web.yaml", cwd=work).stdout.encode() == web
    assert "bot" in server.log()  # the push is logged as the bot's


def test_a_refused_commit_is_not_stored(git: Git, server: Server, tmp_path: Path) -> None:
    _, head = seed(git, server, tmp_path)
    before = server.refs(), server.object_files()
    bad = samples.deployment(image="nginx:bad").encode()
    res = botpush.push_changes(str(server.data_dir), "main", {"web.yaml": bad}, "bump", base=head)
    assert not res.accepted
    assert any("[tags/deny] image nginx:bad is not allowed" in line for line in res.lines), res.lines
    assert res.reason == "pushgate: 1 problem found, see above", res.reason
    assert (server.refs(), server.object_files()) == before
    assert server.quarantines() == []


def test_a_moved_branch_is_never_forced(git: Git, server: Server, tmp_path: Path) -> None:
    work, head = seed(git, server, tmp_path)
    git.write(work, {"other.yaml": samples.configmap("other")})
    moved = git.commit_all(work, "someone else")
    git.run("push", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    with pytest.raises(botpush.BotPushError, match="moved"):
        botpush.push_changes(str(server.data_dir), "main", {"x.yaml": b"a: 1\n"}, "late", base=head)
    assert botpush.head(str(server.data_dir), "main") == moved


def test_revert_undoes_a_commit_path_by_path(git: Git, server: Server, tmp_path: Path) -> None:
    work, head = seed(git, server, tmp_path)
    git.write(work, {"web.yaml": samples.deployment(image="nginx:1.29"), "cm.yaml": samples.configmap("cm")})
    bad = git.commit_all(work, "upgrade")
    git.run("push", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    res = botpush.revert(str(server.data_dir), "main", bad, f'Revert "upgrade"\n\nThis reverts commit {bad}.',
                         base=bad)
    assert res.accepted, (res.reason, res.lines)
    git.run("fetch", "-q", server.url("reader"), "main", cwd=work)
    assert git.run("diff", "--stat", head, "FETCH_HEAD", cwd=work).stdout == ""  # back to the seed tree
    # a path changed again since the commit: no merge is guessed
    git.run("reset", "-q", "--hard", "FETCH_HEAD", cwd=work)
    git.write(work, {"web.yaml": samples.deployment(image="nginx:1.30")})
    again = git.commit_all(work, "again")
    git.run("push", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    git.write(work, {"web.yaml": samples.deployment(image="nginx:1.31")})
    later = git.commit_all(work, "later")
    git.run("push", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    with pytest.raises(botpush.BotPushError, match="changed again"):
        botpush.revert(str(server.data_dir), "main", again, "Revert", base=later)


def test_serve_refuses_an_automation_user_it_does_not_know(tmp_path: Path) -> None:
    import subprocess

    from tests.bed import procs
    from tests.bed.server import PUSHGATE

    subprocess.run([PUSHGATE, "user", "add", "--users", str(tmp_path / "users.json"), "admin", "--role",
                    "admin"], capture_output=True, check=True)
    (tmp_path / "token").write_text("pg_wrong\n")
    (tmp_path / "c.yaml").write_text(f"automation:\n  user: ghost\n  tokenFile: {tmp_path / 'token'}\n")
    res = subprocess.run([PUSHGATE, "serve", f"--data-dir={tmp_path / 'data'}",
                          f"--users={tmp_path / 'users.json'}", f"--listen=127.0.0.1:{procs.free_port()}",
                          f"--config={tmp_path / 'c.yaml'}"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 2, res.stderr
    assert "automation.user 'ghost' is not in the users file" in res.stderr, res.stderr
