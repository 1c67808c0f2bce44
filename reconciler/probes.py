"""The reconciler's own /healthz and /readyz (it has no web server otherwise).

Started by `pushgate reconcile --probe-listen`. Live while the loop keeps passing; ready when the
last pass reached the API server (in the deploy, the git server's readiness never depends on it).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(listen: str, loop: Any) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                ok = time.monotonic() - loop.last_pass < max(30.0, loop.poll * 10)
                body = {"alive": ok}
            elif self.path == "/readyz":
                ok = loop.cluster is not None and (loop.doc.get("cluster") or {}).get("reachable", True)
                body = {"ready": ok}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="probes").start()
    return server
