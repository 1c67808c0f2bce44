"""A webhook receiver on loopback for the notification tests: records every request, checks the
HMAC signature the way a real receiver would, and answers with the statuses it is told to."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool | None  # None: no key to check against

    @property
    def doc(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int = 0
    key: bytes = b""
    # answered in turn (a status, or a status with headers such as Retry-After), then 200
    statuses: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                signed = None
                if outer.key:
                    want = "sha256=" + hmac.new(outer.key, body, hashlib.sha256).hexdigest()
                    signed = hmac.compare_digest(want, headers.get("x-signature", ""))
                with outer._lock:
                    outer.requests.append(Received(self.path, headers, body, signed))
                    answer = outer.statuses.pop(0) if outer.statuses else 200
                status, extra = answer if isinstance(answer, tuple) else (answer, {})
                if signed is False:
                    status = 401
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self, event: str | None = None) -> list[Received]:
        with self._lock:
            got = list(self.requests)
        return [r for r in got if event is None or r.headers.get("x-pushgate-event") == event]

    def wait(self, pred: Callable[[list[Received]], bool], timeout: float = 30.0,
             what: str = "notifications") -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.events()
            if pred(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; received: "
                             f"{[(r.path, r.body[:200]) for r in self.events()]}")
