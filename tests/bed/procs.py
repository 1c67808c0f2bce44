"""Starting and stopping test-bed processes so that none outlives the test run.

Every process gets its own process group (so a stop kills its children too) and
PR_SET_PDEATHSIG=SIGKILL (so it dies with pytest even when pytest itself is SIGKILLed and no
teardown runs). `Registry.stop_all()` is called from fixture teardown and from atexit.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(root: int) -> list[int]:
    """`root` and all its descendants (through /proc parent links), `root` first."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return out


class Proc:
    """A started process with its log file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._logf = open(log, "ab")  # noqa: SIM115 - lives as long as the process
        self.popen = subprocess.Popen(
            self.argv, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # The group may still hold children even after the leader exited.
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._logf.close()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._logf.close()


class Registry:
    """All processes the test run started; stops every one of them at the end."""

    def __init__(self) -> None:
        self._procs: list[Proc] = []
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def start(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Proc:
        p = Proc(name, argv, log, env, cwd)
        with self._lock:
            self._procs.append(p)
        return p

    def stop_all(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, []
        for p in reversed(procs):
            p.stop()


REGISTRY = Registry()


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.1,
               on_timeout: object = None) -> None:
    """Poll `predicate()` until truthy; on timeout raise with `on_timeout()`'s text appended."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as e:
            last = e
        time.sleep(interval)
    extra = on_timeout() if callable(on_timeout) else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last!r})\n{extra}")
