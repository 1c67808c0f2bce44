"""Authentication: tokens hashed at rest, Basic challenge, roles, rate limiting of failures."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server


def _get(server: Server, path: str, user: str | None = None,
         token: str | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}")
    if user is not None:
        cred = base64.b64encode(f"{user}:{token}".encode()).decode()
        req.add_header("Authorization", f"Basic {cred}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


def test_user_add_prints_one_token_and_stores_only_its_hash(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    res = subprocess.run([PUSHGATE, "user", "add", "--users", str(users), "alice", "--role", "write"],
                         capture_output=True, text=True, check=True)
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) > 30
    token = lines[0]
    stored = users.read_text()
    assert token not in stored
    entry = json.loads(stored)["users"][0]
    assert entry["name"] == "alice" and entry["role"] == "write" and len(entry["token_sha256"]) == 64
    assert users.stat().st_mode & 0o077 == 0


def test_bad_role_is_a_one_line_error(tmp_path: Path) -> None:
    res = subprocess.run([PUSHGATE, "user", "add", "--users", str(tmp_path / "u.json"), "bob",
                          "--role", "root"], capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "root" in res.stderr


def test_anonymous_is_challenged_and_wrong_token_refused(server: Server) -> None:
    status, headers, _ = _get(server, "/cluster.git/info/refs?service=git-upload-pack")
    assert status == 401
    assert headers.get("WWW-Authenticate") == 'Basic realm="pushgate"'
    assert _get(server, "/cluster.git/info/refs?service=git-upload-pack", "admin", "pg_wrong")[0] == 401
    assert _get(server, "/cluster.git/info/refs?service=git-upload-pack", "nobody", "x")[0] == 401
    ok = _get(server, "/cluster.git/info/refs?service=git-upload-pack", "reader", server.tokens["reader"])
    assert ok[0] == 200


def test_git_without_credentials_fails_cleanly(git: Git, server: Server, tmp_path: Path) -> None:
    res = git.run("clone", server.url(None), str(tmp_path / "c"), check=False)
    assert res.returncode != 0
    assert "Authentication failed" in res.stderr or "could not read Username" in res.stderr


def test_reader_may_clone_but_not_push(git: Git, server: Server, tmp_path: Path) -> None:
    status, _, body = _get(server, "/cluster.git/info/refs?service=git-receive-pack",
                           "reader", server.tokens["reader"])
    assert status == 403
    assert "has role read" in body and "needs role write" in body
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace()})
    git.commit_all(work, "x")
    res = git.run("push", server.url("reader"), "main", cwd=work, check=False)
    assert res.returncode != 0 and "403" in res.stderr
    assert server.refs() == {}


def test_failed_logins_are_rate_limited(server: Server) -> None:
    codes = [_get(server, "/cluster.git/info/refs?service=git-upload-pack", "admin", f"bad{i}")[0]
             for i in range(20)]
    assert codes[0] == 401
    assert 429 in codes, codes
    # Once limited, even the right token from that address waits.
    assert _get(server, "/cluster.git/info/refs?service=git-upload-pack", "admin",
                server.tokens["admin"])[0] == 429


@pytest.mark.parametrize("path", ["/api/v1/pushes", "/cluster.git/info/refs"])
def test_api_needs_read_role_but_probes_do_not(server: Server, path: str) -> None:
    assert _get(server, path)[0] == 401
    assert _get(server, "/healthz")[0] == 200


def test_tokens_never_reach_the_log(git: Git, server: Server, tmp_path: Path) -> None:
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(), "bad.yaml": "kind: [\n"})
    git.commit_all(work, "x")
    git.run("push", server.url("admin"), "main", cwd=work, check=False)
    _get(server, "/cluster.git/info/refs", "admin", "pg_guessed-token-value")
    log = server.log()
    for token in server.tokens.values():
        assert token not in log
    assert "pg_guessed-token-value" not in log
