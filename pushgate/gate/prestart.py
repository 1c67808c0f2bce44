"""Worker processes started ahead of need: the one that compiles a policy set's plan, and the
embedded engine's primary worker.

`pushgate.gate.policies` takes the compiler for its next compile, `pushgate.gate.embedded` an
engine worker for its next spawn; `pushgate.launch` starts both before the `pushgate validate`
command imports anything heavy, so their start-up (Python and regopy's imports, ~0.15 s each)
runs on the core the command's own imports leave idle. A worker waits on its stdin for its
first request, and exits when this process does (its stdin closes). Imports only the standard
library: whatever this module costs to import delays the start it exists for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

_compiler: subprocess.Popen[str] | None = None
_engines: list[subprocess.Popen[bytes]] = []
_lock = threading.Lock()


def start(engines: int = 0) -> None:
    """Start a compiler and up to `engines` engine workers, unless started already."""
    global _compiler
    with _lock:
        if _compiler is None:
            _compiler = compiler()
        while len(_engines) < engines:
            _engines.append(engine())


def take_compiler() -> subprocess.Popen[str]:
    """The prestarted compiler, or a new one."""
    global _compiler
    with _lock:
        proc, _compiler = _compiler, None
    return proc or compiler()


def take_engine() -> subprocess.Popen[bytes]:
    """A prestarted engine worker that is still alive, or a new one."""
    with _lock:
        while _engines:
            proc = _engines.pop(0)
            if proc.poll() is None:
                return proc
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
    return engine()


def compiler() -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pushgate.gate.regoworker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def engine() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pushgate.gate.regoworker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
