"""Running a renderer (kustomize, helm, the Jsonnet worker) on pushed input, within bounds.

Called by `pushgate.build.kustomize`, `pushgate.build.helm` and `pushgate.build.jsonnet`. The
input is hostile by assumption: a chart or a Jsonnet file can loop or print without end, so a
render is cut at the build deadline and when its output passes a byte limit, and the whole
process group is killed either way (helm and kustomize start children of their own). Output
is read incrementally: nothing unbounded is ever held in memory.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_STDERR_MAX = 64 * 1024  # more than any real error message; the rest is dropped


class RenderError(Exception):
    """A renderer failed, timed out or printed too much; the message is for the pusher.
    `partial` is what it printed before it was cut."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes


def minimal_env(home: str, **extra: str) -> dict[str, str]:
    """An environment that names nothing of the server's: no credentials, no kubeconfig, caches
    and configuration under the render's own temporary directory."""
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
           "XDG_CACHE_HOME": os.path.join(home, ".cache"),
           "XDG_CONFIG_HOME": os.path.join(home, ".config"),
           "XDG_DATA_HOME": os.path.join(home, ".local", "share")}
    env.update(extra)
    return env


def run(argv: Sequence[str], *, env: Mapping[str, str], cwd: str, timeout: float, max_output: int,
        what: str) -> Result:
    """Run `argv`; raise RenderError when it outlives `timeout` or prints over `max_output`."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(env), cwd=cwd, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RenderError(f"{what} did not finish within {timeout:.0f}s (the build's "
                                      f"time limit)", bytes(out))
                for key, _ in sel.select(min(left, 1.0)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf: bytearray = key.data
                    if buf is out:
                        out.extend(chunk)
                        if len(out) > max_output:
                            raise RenderError(f"{what} printed more than {max_output} bytes (the "
                                              f"build's limit on rendered output)", bytes(out))
                    elif len(err) < _STDERR_MAX:
                        err.extend(chunk[: _STDERR_MAX - len(err)])
        code = proc.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as e:
        raise RenderError(f"{what} did not finish within {timeout:.0f}s (the build's time limit)",
                          bytes(out)) from e
    finally:
        if proc.poll() is None:
            _kill(proc)
        proc.stdout.close()
        proc.stderr.close()
    return Result(code, bytes(out), bytes(err))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def clean_message(stderr: bytes, tmp: str, limit: int = 500) -> str:
    """A renderer's error output as one line, without the temporary directory's path."""
    text = stderr.decode("utf-8", "replace").replace(tmp + "/", "").replace(tmp, ".")
    return " ".join(text.split())[:limit]
