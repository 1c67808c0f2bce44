"""A deadline on reading request bodies, so that a client trickling its upload (slow loris)
cannot hold a worker thread for ever.

Called by `app` (the WSGI guard, for every request that carries a body). gunicorn's gthread
worker bounds only the wait for a request's first bytes: once the headers are in, reading the
body blocks on the socket with no timeout, and a per-read socket timeout would not help (one
`read(n)` loops over many small receives). So a watchdog timer shuts the read side of the
connection once the body is late: it may take `grace` seconds plus one second per MIN_RATE bytes
received so far. Every blocked read then returns at once, the read raises `BodyTimeout`, and
`guard_response` ends the response with one log line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)
MIN_RATE = 16 * 1024  # bytes per second on average: far below any real git client


class BodyTimeout(Exception):
    """The request body did not arrive in time; the connection no longer reads from the client."""


class Watchdog:
    def __init__(self, sock: socket.socket, grace: float, expected: int | None) -> None:
        self.sock, self.grace, self.expected = sock, grace, expected
        self.start = time.monotonic()
        self.received = 0
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def left(self) -> float:
        return self.start + self.grace + self.received / MIN_RATE - time.monotonic()

    def arm(self) -> None:
        with self._lock:
            if self._done:
                return
            self._timer = threading.Timer(max(0.05, self.left()), self._check)
            self._timer.daemon = True
            self._timer.start()

    def _check(self) -> None:
        if self.left() > 0:
            self.arm()  # bytes arrived meanwhile: the deadline moved
            return
        with self._lock:
            if self._done:
                return
            self.expired = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)

    def count(self, data: bytes) -> None:
        self.received += len(data)
        if not data or (self.expected is not None and self.received >= self.expected):
            self.cancel()  # the whole body is in: the response may take as long as it needs

    def cancel(self) -> None:
        with self._lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()

    def timeout(self) -> BodyTimeout:
        return BodyTimeout(f"request body not received in time ({self.received} bytes in "
                           f"{time.monotonic() - self.start:.0f} s); connection closed")


class DeadlineInput:
    """`wsgi.input`, watched: reads count towards the deadline and fail once it has passed."""

    def __init__(self, inner: Any, watchdog: Watchdog) -> None:
        self._inner, self._watchdog = inner, watchdog

    def _read(self, method: str, size: int) -> bytes:
        if self._watchdog.expired:
            raise self._watchdog.timeout()
        try:
            data: bytes = getattr(self._inner, method)(size)
        except Exception as e:
            if self._watchdog.expired:
                raise self._watchdog.timeout() from e
            raise
        if self._watchdog.expired:
            raise self._watchdog.timeout()
        self._watchdog.count(data)
        return data

    def read(self, size: int = -1) -> bytes:
        return self._read("read", size)

    def readline(self, size: int = -1) -> bytes:
        return self._read("readline", size)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def watch(environ: dict[str, Any], grace: float) -> Watchdog | None:
    """Put a deadline on this request's body, if it has one and the server gave us its socket."""
    sock = environ.get("gunicorn.socket")
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
    if not isinstance(sock, socket.socket) or not ((length.isdigit() and int(length) > 0) or chunked):
        return None
    watchdog = Watchdog(sock, grace, int(length) if length.isdigit() else None)
    environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], watchdog)
    watchdog.arm()
    return watchdog


def guard_response(result: Iterable[bytes], watchdog: Watchdog) -> Iterator[bytes]:
    """The response, ended quietly if the body timed out while it was being produced."""
    try:
        yield from result
    except BodyTimeout as e:
        log.warning("%s", e)
    finally:
        watchdog.cancel()
        close = getattr(result, "close", None)
        if close is not None:
            close()
