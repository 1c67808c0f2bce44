"""The live gate's socket: the reconciler answers the git server's live checks over a Unix socket.

Started by the reconciler's loop (`serve(run_dir, checker)`), which owns the cluster connection;
the git-serving process of the same pod holds no cluster credentials and asks here instead. It
connects to `<run-dir>/live.sock` and proves itself with the token in `<run-dir>/live.token`,
written anew at every start. Both files are 0600: only the pod's own user can read the token or
connect, and the token keeps out anything else that can reach the directory (a shared volume).

HTTP/1.1, JSON bodies (at most 64 MiB, Content-Length required), `Authorization: Bearer <token>`
on every request, else 401:

    GET  /v1/health  200 {"ok": true, "connected": bool}
    POST /v1/check   {"branch": str, "objects": [obj, ...], "timeout": seconds (at most 600 used)}
                     200 `live.LiveReport.to_json()`: {"results": [...], "plan": {...}, "seconds"}
                     503 {"error": str}  the API server unreachable or too slow, or not connected
                     400 {"error": str}  a malformed request; 413 a body over the limit

Errors are answered as JSON, never as a traceback (that is logged).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import socketserver
import stat
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from pushgate import datadir
from reconciler import errors
from reconciler.live import LiveChecker

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
MAX_TIMEOUT = 600.0
DEFAULT_TIMEOUT = 30.0
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, NUL included


def token_path(run_dir: str) -> str:
    return os.path.join(run_dir, datadir.LIVE_TOKEN)


def socket_path(run_dir: str) -> str:
    return os.path.join(run_dir, datadir.LIVE_SOCKET)


class BadRequest(ValueError):
    """A request this server cannot act on; its message is the 400 answer's error."""


class _TooLarge(ValueError):
    """A body over MAX_BODY: 413, and the connection closed unread."""


@dataclass(frozen=True)
class CheckRequest:
    branch: str
    objects: list[dict[str, Any]]
    timeout: float


def parse_check(doc: Any) -> CheckRequest:
    """The body of POST /v1/check, validated just enough that the checker cannot trip on it."""
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object")
    branch, objects = doc.get("branch"), doc.get("objects")
    timeout = doc.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(branch, str) or not branch:
        raise BadRequest("branch: a non-empty string is required")
    if not isinstance(objects, list):
        raise BadRequest("objects: a list is required")
    for i, obj in enumerate(objects):
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not (isinstance(obj, dict) and isinstance(obj.get("apiVersion"), str)
                and isinstance(obj.get("kind"), str) and isinstance(meta, dict)
                and isinstance(meta.get("name"), str) and meta["name"]):
            raise BadRequest(f"objects[{i}]: an object with apiVersion, kind and metadata.name "
                             "is required")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise BadRequest("timeout: a positive number of seconds is required")
    return CheckRequest(branch, objects, min(float(timeout), MAX_TIMEOUT))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, token: str, checker: LiveChecker) -> None:
        super().__init__(path, _Handler, bind_and_activate=False)
        self.token = token.encode()
        self.checker = checker
        try:
            self.server_bind()
            # Before listen(): until then nobody can connect, whatever the umask made of it.
            os.chmod(path, 0o600)
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The base class prints a traceback to stderr (a client that hung up mid-answer, say).
        log.warning("live socket: a request failed", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pushgate-live/1"
    timeout = 60  # a client that stops sending mid-request does not hold a thread forever
    server: _Server

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path != "/v1/health":
            self._error(404, f"no such endpoint: GET {self.path}")
            return
        self._send(200, {"ok": True, "connected": self.server.checker.connected()})

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if self.path != "/v1/check":
            self._error(404, f"no such endpoint: POST {self.path}")
            return
        try:
            req = parse_check(self._body())
        except BadRequest as e:
            self._error(400, str(e))
            return
        except _TooLarge as e:
            self._error(413, str(e))
            return
        try:
            report = self.server.checker.check(req.branch, req.objects, req.timeout)
        except errors.Temporary as e:
            log.info("live check of %s unavailable: %s", req.branch, e.message)
            self._send(503, {"error": e.message})
            return
        except Exception:
            log.exception("live check of %s failed", req.branch)
            self._error(500, "internal error in the live check (see the reconciler's log)")
            return
        self._send(200, report.to_json())

    # -- plumbing -------------------------------------------------------------------------------
    def _authorised(self) -> bool:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.server.token):
            return True
        self._drain()
        self._error(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        return False

    def _drain(self, limit: int = 1 << 20) -> None:
        """Read a small unread body before answering early, so a client still sending it gets
        the answer instead of a broken pipe."""
        raw = self.headers.get("Content-Length", "")
        if raw.strip().isdigit() and 0 < int(raw) <= limit:
            self.rfile.read(int(raw))

    def _body(self) -> Any:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest("chunked bodies are not accepted: send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None or not raw.strip().isdigit():
            raise BadRequest("Content-Length is required")
        length = int(raw)
        if length > MAX_BODY:
            raise _TooLarge(f"the body is larger than {MAX_BODY // (1024 * 1024)} MiB")
        data = self.rfile.read(length)
        if len(data) != length:
            raise BadRequest("the body ended before Content-Length bytes")
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as e:
            raise BadRequest(f"the body is not JSON: {type(e).__name__}") from e

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        # Whatever body we did not read is still on the wire: this connection is done.
        self.close_connection = True
        self._send(code, {"error": message}, headers)

    def _send(self, code: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"  # a Unix socket peer has no address; the base class would index into ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("live socket: " + format, *args)


class LiveServer:
    """A running server; `stop()` closes it and removes its socket and token."""

    def __init__(self, run_dir: str, checker: LiveChecker) -> None:
        self.run_dir = run_dir
        self.socket_path = socket_path(run_dir)
        self.token_path = token_path(run_dir)
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise ValueError(f"{self.socket_path}: longer than a Unix socket path can be "
                             f"({_MAX_SOCKET_PATH} bytes): use a shorter run directory")
        os.makedirs(run_dir, mode=0o700, exist_ok=True)
        _remove_stale_socket(self.socket_path)
        self.token = secrets.token_urlsafe(32)
        _write_private(self.token_path, self.token)
        self._server = _Server(self.socket_path, self.token, checker)
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-socket",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        for path in (self.socket_path, self.token_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def serve(run_dir: str, checker: LiveChecker) -> LiveServer:
    """Write a fresh token, listen on the socket, and answer in daemon threads until `stop()`."""
    return LiveServer(run_dir, checker)


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket: not removing it")
    # A socket left by an earlier run of this process (the pod restarted it): nobody listens.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _write_private(path: str, text: str) -> None:
    """`text` to `path`, mode 0600 from the first byte, replacing any old file atomically."""
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # exactly: the umask may have taken bits away
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

