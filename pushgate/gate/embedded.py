"""The embedded policy engine (default): regopy in a supervised worker process.

Called by the gate through the `PolicyEngine` protocol. One worker per server process, used by
one request at a time (a lock); a crash, a timeout or garbage on the pipe refuses the push with
the reason (fail closed), and the next call starts a fresh worker, so the server stays up. The
worker gets the entry points split by whether they can read the push context (from the policy
set's compiled plan), so only those are rebuilt with each new push.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from pushgate.gate.policies import EngineTimeout, EngineUnavailable, PolicySet


class EmbeddedEngine:
    def __init__(self, policies: PolicySet) -> None:
        self.policies = policies
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def _start(self, timeout: float) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pushgate.gate.regoworker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._proc = proc
        modules = [[m.path, m.source] for m in self.policies.modules]
        pushed = self.policies.push_entrypoints
        self._call(proc, {"op": "load", "modules": modules,
                          "static": [ep for ep in self.policies.entrypoints if ep not in pushed],
                          "push": [ep for ep in self.policies.entrypoints if ep in pushed]}, timeout)
        return proc

    def _call(self, proc: subprocess.Popen[bytes], req: dict[str, Any], timeout: float) -> Any:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(req).encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            self._kill(proc)
            raise EngineUnavailable(f"embedded policy engine died ({self._exit(proc)})") from e
        deadline = time.monotonic() + timeout
        buf = b""
        fd = proc.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._kill(proc)
                raise EngineTimeout(f"policy evaluation exceeded {timeout:.0f}s")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self._kill(proc)
                raise EngineUnavailable(f"embedded policy engine crashed ({self._exit(proc)})")
            buf += chunk
        try:
            reply = json.loads(buf)
        except ValueError as e:
            self._kill(proc)
            raise EngineUnavailable("embedded policy engine returned garbage") from e
        if not reply.get("ok"):
            raise EngineUnavailable(f"policy evaluation failed: {reply.get('error', '?')}")
        return reply

    @staticmethod
    def _exit(proc: subprocess.Popen[bytes]) -> str:
        try:
            code = proc.wait(2)
        except subprocess.TimeoutExpired:
            return "not exiting"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        _reap(proc)
        if self._proc is proc:
            self._proc = None
            self.restarts += 1

    def evaluate(self, objects: Sequence[dict[str, Any]], push: dict[str, Any], timeout: float,
                 entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]:
        with self._lock:
            deadline = time.monotonic() + timeout
            proc = self._proc if self._proc and self._proc.poll() is None else None
            if proc is None:
                proc = self._start(timeout)
            eps = list(entrypoints) if entrypoints is not None else None
            # The push goes only where a policy can read it: it changes with every push.
            ctx = push if self.policies.push_entrypoints & set(eps or self.policies.entrypoints) else {}
            reply = self._call(proc, {"op": "eval", "push": ctx, "objects": list(objects),
                                      "entrypoints": eps},
                               max(0.1, deadline - time.monotonic()))
            return [[(ep, value) for ep, value in row] for row in reply["results"]]

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                _reap(self._proc)
                self._proc = None


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill the worker and close our ends of its pipes (else each restart leaks two fds)."""
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
