"""Helpers for tests of an attached pushgate: wait on its deploy status, read notes and refs."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.bed.server import Server


def status(server: Server, user: str = "reader", branch: str | None = None) -> dict[str, Any]:
    query = "" if branch is None else "?branch=" + urllib.parse.quote(branch, safe="")
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/v1/status{query}")
    cred = base64.b64encode(f"{user}:{server.tokens[user]}".encode()).decode()
    req.add_header("Authorization", f"Basic {cred}")
    with urllib.request.urlopen(req, timeout=10) as r:
        doc: dict[str, Any] = json.load(r)
        return doc


def _get(server: Server, path: str, user: str = "reader") -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}")
    cred = base64.b64encode(f"{user}:{server.tokens[user]}".encode()).decode()
    req.add_header("Authorization", f"Basic {cred}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return bytes(r.read())


def page(server: Server, branch: str | None = None) -> str:
    query = "" if branch is None else "?branch=" + urllib.parse.quote(branch, safe="")
    return _get(server, f"/{query}").decode()


def pushes(server: Server) -> list[dict[str, Any]]:
    """The push log through the API, newest first."""
    doc: dict[str, Any] = json.loads(_get(server, "/api/v1/pushes"))
    return list(doc["pushes"])


def wait_status(server: Server, pred: Callable[[dict[str, Any]], bool], timeout: float = 90,
                what: str = "status", branch: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = status(server, branch=branch)
        if pred(doc):
            return doc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last status:\n{json.dumps(doc, indent=1)[:4000]}")


def verdict_for(revision: str) -> Callable[[dict[str, Any]], bool]:
    def pred(doc: dict[str, Any]) -> bool:
        return any(h.get("revision") == revision and h.get("result") != "Progressing"
                   for h in doc.get("history", []))
    return pred


def result_of(doc: dict[str, Any], revision: str) -> dict[str, Any]:
    return next(h for h in doc.get("history", []) if h.get("revision") == revision)
