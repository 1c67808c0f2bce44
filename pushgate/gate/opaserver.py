"""The `opa` policy engine: an OPA server (`--opa-url`) queried through opa-python-client.

Called by the gate through the `PolicyEngine` protocol. A batch of objects is decided by ad-hoc
queries that evaluate, for each object (`with input as` it, conftest-style), every requested
entry point at once (`[v | v := data.<pkg>.<rule>]`: `[]` when undefined). The push context is
given as `data.pushgate.push` only when an entry point that can read it is asked for (a `with
data...` on every object costs OPA its caches). A big batch is cut into a few chunks sent
concurrently (OPA evaluates each request on its own goroutine, so they use the server's
cores); never one request per object. The entry points are the policy set's, found by
compiling the same directory (`policies.load`): at first use, and again after any failure, the
server must show every one of those rules in its loaded policies, and a package it lacks makes
the query undefined; both are refused rather than read as "no denials".
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pushgate.gate.policies import EngineUnavailable, PolicySet

if TYPE_CHECKING:  # the client pulls in aiohttp and requests (~0.7 s): imported at first use
    from opa_client.opa import OpaClient

CHUNK_MIN = 256  # objects per concurrent request, at least
MAX_REQUESTS = 4  # concurrent requests for one batch: this side encodes one while OPA evaluates others


class OpaServerEngine:
    def __init__(self, url: str, policies: PolicySet, token: str | None = None,
                 requests: int = MAX_REQUESTS) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--opa-url {url!r} is not an http(s) URL")
        self.url = url
        self.policies = policies
        self.requests = max(1, min(MAX_REQUESTS, requests))
        self._client_args: dict[str, Any] = {
            "host": parts.hostname, "port": parts.port or (443 if parts.scheme == "https" else 80),
            "ssl": parts.scheme == "https", "token": token, "retries": 0,
        }
        self._verified = False
        self._lock = threading.Lock()

    def _query(self, eps: Sequence[str], with_push: bool) -> str:
        exists = [f"_ = data.{pkg}" for pkg in sorted({ep.rsplit('/', 1)[0].replace('/', '.')
                                                        for ep in eps})]
        row = "[" + ", ".join(f"[v | v := data.{ep.replace('/', '.')}]" for ep in eps) + "]"
        push = " with data.pushgate.push as p" if with_push else ""
        evals = (["p := input.push"] if with_push else []) + [
            f"rows := [row | some o in input.objects; row := {row} with input as o{push}]"]
        return "; ".join(exists + evals)

    def _client(self, timeout: float) -> OpaClient:
        from opa_client.opa import OpaClient

        return OpaClient(**self._client_args, timeout=max(0.5, timeout))

    def _verify(self, client: OpaClient) -> None:
        """Every entry point of the policy set is a rule the server has loaded. Gatekeeper
        templates are pushgate's own translation (see `gatekeeper`): uploaded here, under
        `pushgate/gatekeeper/...` policy ids, so the server evaluates exactly what the embedded
        engine does."""
        gk = self.policies.gatekeeper
        for t in gk.templates if gk is not None else ():
            for name, src in t.modules:
                policy_id = "pushgate/gatekeeper/" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)
                try:
                    client.update_policy_from_string(src, policy_id, rego_compat=False)
                except Exception as e:
                    raise EngineUnavailable(f"OPA at {self.url} refused Gatekeeper template "
                                            f"{t.kind} ({name}): {_short(e)}") from e
        loaded: set[str] = set()
        for info in client.get_policies_info().values():
            for url in info.get("rules", []):
                loaded.add(str(url).split("/data/", 1)[-1])
        missing = [ep for ep in self.policies.engine_entrypoints if ep not in loaded]
        if missing:
            raise EngineUnavailable(f"OPA at {self.url} has not loaded the policy rules "
                                    f"{', '.join(missing)} (it must serve {self.policies.directory})")

    def evaluate(self, objects: Sequence[dict[str, Any]], push: dict[str, Any], timeout: float,
                 entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]:
        eps = list(entrypoints) if entrypoints is not None else self.policies.entrypoints
        if not eps or not objects:
            return [[] for _ in objects]
        objects = list(objects)
        query = self._query(eps, bool(self.policies.push_entrypoints & set(eps)))
        n = max(1, min(self.requests, len(objects) // CHUNK_MIN))
        size = -(-len(objects) // n)
        chunks = [objects[i:i + size] for i in range(0, len(objects), size)]
        try:
            with self._lock:
                if not self._verified:
                    client = self._client(timeout)
                    try:
                        self._verify(client)
                    finally:
                        client.close_connection()
                    self._verified = True
            if len(chunks) == 1:
                answers = [self._ask(query, chunks[0], push, timeout)]
            else:
                with ThreadPoolExecutor(len(chunks)) as pool:
                    answers = list(pool.map(lambda c: self._ask(query, c, push, timeout), chunks))
        except EngineUnavailable:
            self._verified = False
            raise
        except Exception as e:  # requests/OPA errors of every kind: fail closed, say why
            self._verified = False
            raise EngineUnavailable(f"OPA at {self.url} failed: {_short(e)}") from e
        out: list[list[tuple[str, Any]]] = []
        for chunk, rows in zip(chunks, answers, strict=True):
            if not isinstance(rows, list) or len(rows) != len(chunk):
                self._verified = False
                raise EngineUnavailable(f"OPA at {self.url} answered {len(rows)} rows for "
                                        f"{len(chunk)} objects")
            for row in rows:
                if not isinstance(row, list) or len(row) != len(eps) or any(
                        not isinstance(v, list) or len(v) > 1 for v in row):
                    self._verified = False
                    raise EngineUnavailable(f"OPA at {self.url} answered a malformed row")
                out.append([(ep, value[0]) for ep, value in zip(eps, row, strict=True) if value])
        return out

    def _ask(self, query: str, objects: list[dict[str, Any]], push: dict[str, Any],
             timeout: float) -> Any:
        client = self._client(timeout)
        try:
            reply = client.ad_hoc_query(query, {"objects": objects, "push": push})
        finally:
            client.close_connection()
        rows = reply.get("result") or []
        if not rows:
            raise EngineUnavailable(f"OPA at {self.url} has not loaded every policy package "
                                    f"({', '.join(self._packages(query))})")
        return rows[0].get("rows")

    @staticmethod
    def _packages(query: str) -> list[str]:
        return [part[len("_ = data."):] for part in query.split("; ") if part.startswith("_ = data.")]

    def close(self) -> None:
        pass


def _short(e: Exception) -> str:
    text = str(e)
    resp = getattr(e, "response", None)
    if resp is not None:
        with contextlib.suppress(ValueError):
            text = json.loads(resp.text).get("message", text)
    return text.splitlines()[0][:300] if text else type(e).__name__
