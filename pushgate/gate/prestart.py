"""Worker processes started ahead of need: the one that compiles a policy set's plan, and the
embedded engine's primary worker.

`pushgate.gate.policies` takes the compiler for its next compile, `pushgate.gate.embedded` an
engine worker for its next spawn; `pushgate.launch` starts both before the `pushgate validate`
command imports anything heavy, so their start-up (Python and regopy's imports, ~0.15 s each)
runs on the core the command's own imports leave idle. A worker waits on its stdin for its
first request, and exits when this process does (its stdin closes). Imports only the standard
library: whatever this module costs to import delays the start it exists for.

Given the policy directory the command will most likely load (`plan_ahead`), the compiler is
also sent that directory's modules at once: it compiles them while the command imports the gate
(~0.2 s of each on its own core), instead of after. The plan is used only when the modules the
loader asks for are exactly those sent (`regofiles` lists them for both); any other request gets
a compiler of its own, so a wrong guess costs time, never a wrong plan. A directory with
Gatekeeper files is not guessed: the loader adds the templates' modules, which only it can make.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from pushgate.gate import regofiles

_compiler: subprocess.Popen[str] | None = None
# The modules the prestarted compiler was sent ([[path, source], ...]), and what sends them
# (it says whether they were sent whole).
_sent: list[list[str]] | None = None
_sender: threading.Thread | None = None
_delivered: list[bool] = []
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


def plan_ahead(directory: str) -> None:
    """Send the prestarted compiler, unless it has been asked already, the modules of
    `directory` to plan, from a thread: the request can be larger than the pipe holds before
    the worker reads it."""
    global _sent, _sender
    with _lock:
        proc = _compiler
        if proc is None or _sent is not None:
            return
        try:
            if any(regofiles.GATEKEEPER_MARK in _read(full)
                   for _, full in regofiles.documents(directory)):
                return
            modules = [[rel, _text(full)] for rel, full in regofiles.paths(directory)]
        except (OSError, UnicodeDecodeError):
            return  # the loader reports it
        if not modules:
            return
        line = json.dumps({"op": "plan", "modules": modules}) + "\n"
        stdin = proc.stdin
        assert stdin is not None

        def send() -> None:
            try:
                stdin.write(line)
                stdin.flush()
            except (OSError, ValueError):
                return  # the worker died: the loader gets a compiler of its own
            _delivered.append(True)

        _delivered.clear()
        _sent, _sender = modules, threading.Thread(target=send, name="plan-ahead", daemon=True)
        _sender.start()


def take_compiler(modules: list[list[str]]) -> tuple[subprocess.Popen[str], bool]:
    """A compiler for `modules` ([[path, source], ...]): the prestarted one, and whether it has
    been sent exactly these to plan (then its reply to them is its only one), or a new one."""
    global _compiler, _sent, _sender
    with _lock:
        proc, sent, sender = _compiler, _sent, _sender
        _compiler, _sent, _sender = None, None, None
    if proc is not None and sent is not None:
        if sender is not None:
            sender.join()
        if sent == modules and _delivered:  # its answer, or its crash, is these modules'
            return proc, True
        proc.kill()  # planning other modules: not worth waiting for
        proc.communicate()
        proc = None
    return proc or compiler(), False


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


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _text(path: str) -> str:
    with open(path, encoding="utf-8") as f:  # as the loader reads it (newlines translated)
        return f.read()
