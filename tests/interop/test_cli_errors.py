"""Operator errors: one clear line naming what to fix, exit code 2, nothing started or created."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.bed import procs
from tests.bed.server import PUSHGATE


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PUSHGATE, "serve", f"--data-dir={tmp_path / 'data'}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def _users(tmp_path: Path) -> Path:
    users = tmp_path / "users.json"
    subprocess.run([PUSHGATE, "user", "add", "--users", str(users), "a", "--role", "admin"],
                   capture_output=True, check=True)
    return users


@pytest.mark.parametrize(("make_args", "needle"), [
    (lambda t: [f"--users={t / 'missing.json'}"], "missing.json does not exist"),
    (lambda t: [f"--users={_bad(t, 'users.json', '{not json')}"], "is not readable JSON"),
    (lambda t: ["--users=" + str(_bad(t, "users.json", '{"users": [{"name": "x"}]}'))], "role"),
    (lambda t: [f"--users={_users(t)}", "--listen=nonsense"], "--listen"),
    (lambda t: [f"--users={_users(t)}", "--workers=two"], "--workers 'two' is not a whole number"),
    (lambda t: [f"--users={_users(t)}", "--kubernetes-version=9.99"], "--kubernetes-version"),
    (lambda t: [f"--users={_users(t)}", f"--policies={t}"], "--policies"),
    (lambda t: [f"--users={_users(t)}", f"--kubeconfig={t / 'nope'}"], "--kubeconfig"),
    (lambda t: [f"--users={_users(t)}", f"--kubeconfig={_bad(t, 'kc', 'apiVersion: [')}"],
     "is not usable"),
    (lambda t: [f"--users={_users(t)}", "--opa-url=ftp://x"], "--opa-url"),
])
def test_operator_error_is_one_line_exit_2(tmp_path: Path, make_args: object, needle: str) -> None:
    assert callable(make_args)
    res = _serve(tmp_path, f"--listen=127.0.0.1:{procs.free_port()}", *make_args(tmp_path))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pushgate: "), res.stderr
    assert needle in lines[0]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "data" / "cluster.git").exists()


def test_port_in_use_is_an_operator_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = _serve(tmp_path, f"--users={_users(tmp_path)}", f"--listen=127.0.0.1:{port}")
    assert res.returncode == 2 and "cannot listen there" in res.stderr
    assert not (tmp_path / "data" / "cluster.git").exists()


def _bad(tmp_path: Path, name: str, content: str) -> Path:
    p = tmp_path / name
    p.write_text(content)
    return p
