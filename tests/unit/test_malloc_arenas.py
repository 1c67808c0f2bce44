"""`pushgate serve` caps glibc's malloc arenas before gunicorn forks its workers, so request
threads that take turns share two arenas instead of each fragmenting one of its own. Checked
in a fresh interpreter: 8 threads allocate at once, and glibc's own report (malloc_info) counts
the arenas, with and without the cap."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import ctypes, sys, threading
from gitserver import wsgi

capped = wsgi.limit_malloc_arenas() if sys.argv[1] == "cap" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
ready, done = threading.Barrier(9), threading.Event()

def work():
    ready.wait()  # all 8 alive at once: each would get an arena of its own
    for _ in range(100):
        libc.malloc(4096)
    done.wait()

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
ready.wait()
fp = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
done.set()
for t in threads:
    t.join()
print(capped)
"""


def _arenas(tmp_path: Path, mode: str) -> tuple[int, str]:
    report = tmp_path / f"{mode}.xml"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    res = subprocess.run([sys.executable, "-c", PROBE, mode, str(report)], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    return len(re.findall(r'<heap nr="\d+"', report.read_text())), res.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and malloc_info")
def test_serve_caps_malloc_arenas(tmp_path: Path) -> None:
    free, _ = _arenas(tmp_path, "free")
    capped, answer = _arenas(tmp_path, "cap")
    assert answer == "True"  # glibc took the setting
    assert free > 2  # the probe does make threads take arenas of their own
    assert capped <= 2, (free, capped)


def test_an_explicit_environment_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from gitserver import wsgi

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert wsgi.limit_malloc_arenas() is False


def test_serve_caps_before_gunicorn_forks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gitserver import wsgi
    from gitserver.settings import Settings

    calls: list[object] = []
    monkeypatch.setattr(wsgi, "limit_malloc_arenas", lambda: calls.append("cap") or True)

    class Gunicorn:  # stands in for gunicorn's arbiter: records when it would fork
        def __init__(self, factory: object, options: dict[str, object]) -> None:
            calls.append(("arbiter", options["workers"]))

        def run(self) -> None:
            calls.append("fork workers")

    monkeypatch.setattr(wsgi, "_Server", Gunicorn)
    wsgi.serve(Settings(data_dir=str(tmp_path)), lambda: None, bind="unix:/nonexistent.sock")
    assert calls == ["cap", ("arbiter", 1), "fork workers"]  # one worker unless told otherwise
