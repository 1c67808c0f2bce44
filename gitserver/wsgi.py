"""Serving the app with gunicorn (pre-forked workers, threads), the production WSGI server.

Called by `pushgate serve`. Each worker builds its own app (and its own policy worker) after the
fork; repository recovery runs once in the master before any worker starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from gitserver.settings import Settings


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._factory()


def backend_socket(run_dir: str) -> str:
    """gunicorn's private Unix socket (the front forwards to it): in the run dir, or a private
    temporary directory when that path is too long for a socket address."""
    path = os.path.join(os.path.abspath(run_dir), "git.sock")
    if len(path.encode()) > 100:
        path = os.path.join(tempfile.mkdtemp(prefix="pushgate-"), "git.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale one from a killed server
    return path


# glibc gives each thread that allocates its own malloc arena (up to 8 per core), and memory
# freed in one arena is not reused by the others: a worker whose request threads take turns kept
# growing by fragments, push after push (bench/RESULTS.md, rss). Two arenas, as
# MALLOC_ARENA_MAX=2 in the environment would give; the GIL serialises most allocation anyway.
M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process and the workers it forks. False where the C
    library is not glibc, or MALLOC_ARENA_MAX in the environment has chosen already."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


def serve(settings: Settings, factory: Callable[[], Any],
          on_starting: Callable[[], None] | None = None, bind: str | None = None) -> None:
    limit_malloc_arenas()  # before gunicorn forks its workers, which inherit it
    options = {
        "bind": bind or settings.listen, "workers": settings.workers, "threads": settings.threads,
        "worker_class": "gthread", "timeout": int(settings.request_timeout),
        "graceful_timeout": 10, "accesslog": None, "errorlog": "-", "loglevel": "warning",
        "proc_name": "pushgate", "preload_app": False,
        # The git protocol streams big bodies; never cap request lines below git's needs.
        "limit_request_line": 8190,
    }
    if on_starting is not None:
        options["when_ready"] = lambda _server: on_starting()
    _Server(factory, options).run()
