"""A tiny HTTP -> CGI bridge in front of C git's `git http-backend` (smart HTTP), for comparisons.

    python -m bench.cgibridge --port P --root DATA_DIR

Each request runs one `git http-backend` process with the CGI variables (RFC 3875) and every
request header as HTTP_* (so `Git-Protocol: version=2` reaches it); its output is streamed back
unbuffered, HTTP/1.0, connection closed. Its overhead (a Python thread per request, one fork/exec,
copying the body) is C git's handicap in a benchmark, not pushgate's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

CHUNK = 1 << 16


class Handler(BaseHTTPRequestHandler):
    root = ""
    git = "git"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _cgi(self) -> None:
        url = urlsplit(self.path)
        body = self._body() if self.command == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1", "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.0", "SERVER_SOFTWARE": "bench-cgibridge",
            "REQUEST_METHOD": self.command, "PATH_INFO": url.path, "QUERY_STRING": url.query,
            "REMOTE_ADDR": self.client_address[0], "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "HOME": self.root,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"):
                env[name] = value
        proc = subprocess.Popen([self.git, "http-backend"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=_feed, args=(proc.stdin, body), daemon=True)
        feeder.start()
        status, headers = "200 OK", []
        while True:
            line = proc.stdout.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
            if key.lower() == "status":
                status = value.strip()
            else:
                headers.append((key, value.strip()))
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason or None)
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        while chunk := proc.stdout.read1(CHUNK):
            self.wfile.write(chunk)
        proc.wait()
        feeder.join()


def _feed(pipe: Any, body: bytes) -> None:
    try:
        pipe.write(body)
    except BrokenPipeError:
        pass
    finally:
        pipe.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cgibridge")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True, help="GIT_PROJECT_ROOT: the directory of bare repositories")
    opts = p.parse_args(argv)
    Handler.root = os.path.abspath(opts.root)
    Handler.git = shutil.which("git") or "git"
    server = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    server.daemon_threads = True
    print(f"cgibridge: git http-backend for {Handler.root} on http://127.0.0.1:{opts.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
