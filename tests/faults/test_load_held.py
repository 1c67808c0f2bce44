"""The remote stays answerable under a load meant to take it down: 200 connections that send
their request heads a byte at a time, and 20 `git push -o wait` following deploys, open at once.
A legitimate clone and push still complete within 2 s (the request heads are read by the front's
event loop, not by worker threads; waiting pushes are capped per worker below its thread count),
and the slow heads are answered 408 once their time is up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pushgate import datadir
from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

SLOW_HEADS = 200
WAITING_PUSHES = 20
HEAD_TIMEOUT = 8.0


def _slow_head(port: int, answers: list[bytes], stop: threading.Event) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(b"GET /cluster.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                sock.sendall(b"X")  # a header name that never ends
            except OSError:
                break
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            answers.append(data)
            break
    finally:
        sock.close()


@pytest.mark.parametrize("workers", [1, 2])  # `pushgate serve`'s default, and the test bed's
def test_slow_heads_and_waiting_pushes_do_not_take_the_remote(
        git: Git, server_factory: Callable[..., Server], tmp_path: Path, workers: int) -> None:
    server = server_factory(f"--workers={workers}", env={"PUSHGATE_HEAD_TIMEOUT": str(HEAD_TIMEOUT)})
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace(), "cm.yaml": samples.configmap()})
    git.commit_all(work, "seed")
    git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    # A reconciler's status file with no verdict: every `-o wait` follows its deploy to the end.
    status = Path(datadir.status_path(str(server.data_dir), "main"))
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(json.dumps({"branch": "main", "history": [], "conditions": []}))

    stop = threading.Event()
    answers: list[bytes] = []
    slow = [threading.Thread(target=_slow_head, args=(server.port, answers, stop), daemon=True)
            for _ in range(SLOW_HEADS)]
    for t in slow:
        t.start()
    waiting: list[subprocess.Popen[str]] = []
    try:
        for i in range(WAITING_PUSHES):
            git.write(work, {f"cm-{i}.yaml": samples.configmap(name=f"cm-{i}")})
            sha = git.commit_all(work, f"waits {i}")
            waiting.append(subprocess.Popen(
                ["git", "push", "-o", "wait=120", server.url("writer"), "HEAD:refs/heads/main"],
                cwd=work, env=git.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True))  # git and its remote helper: killed together
            deadline = time.monotonic() + 30
            while server.refs().get("refs/heads/main") != sha:  # accepted, now waiting
                assert time.monotonic() < deadline, "a push was not accepted"
                time.sleep(0.05)
        time.sleep(1.0)
        ended = [p.communicate()[1] for p in waiting if p.poll() is not None]
        assert not ended, ended[:2]

        start = time.monotonic()
        git.run("clone", "-q", "--no-checkout", server.url("reader"), str(tmp_path / "clone"))
        clone_s = time.monotonic() - start
        other = git.init(tmp_path / "other")
        git.write(other, {"x.yaml": samples.configmap(name="x")})
        git.commit_all(other, "an unrelated branch")
        start = time.monotonic()
        git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/feature", cwd=other)
        push_s = time.monotonic() - start
        assert clone_s < 2.0 and push_s < 2.0, (clone_s, push_s)
        assert sum(t.is_alive() for t in slow) > SLOW_HEADS * 0.9, "the slow heads were still open"

        # the slow heads get their answer once the head time is up
        deadline = time.monotonic() + HEAD_TIMEOUT + 10
        while len(answers) < SLOW_HEADS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(answers) == SLOW_HEADS, len(answers)
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:20] for a in answers}
    finally:
        stop.set()
        for p in waiting:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
