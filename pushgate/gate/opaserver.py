"""The `opa` policy engine: an OPA server (`--opa-url`) queried through opa-python-client.

Called by the gate through the `PolicyEngine` protocol. One ad-hoc query per push evaluates the
requested entry points for every object (`with input as` each object, conftest-style, and the
push context as `data.pushgate.push`). The entry points are the policy set's, found by compiling
the same directory (`policies.load`): at first use, and again after any failure, the server must
show every one of those rules in its loaded policies, and a package it lacks makes the query
undefined; both are refused rather than read as "no denials".
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from opa_client.opa import OpaClient

from pushgate.gate.policies import EngineUnavailable, PolicySet


class OpaServerEngine:
    def __init__(self, url: str, policies: PolicySet, token: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--opa-url {url!r} is not an http(s) URL")
        self.url = url
        self.policies = policies
        self._client_args: dict[str, Any] = {
            "host": parts.hostname, "port": parts.port or (443 if parts.scheme == "https" else 80),
            "ssl": parts.scheme == "https", "token": token, "retries": 0,
        }
        self._verified = False
        self._lock = threading.Lock()

    def _query(self, eps: Sequence[str]) -> str:
        exists = [f"_ = data.{pkg}" for pkg in sorted({ep.rsplit('/', 1)[0].replace('/', '.')
                                                        for ep in eps})]
        evals = ["p := input.push"] + [
            f"r{i} := [[j, r] | some j, o in input.objects; "
            f"r := data.{ep.replace('/', '.')} with input as o with data.pushgate.push as p]"
            for i, ep in enumerate(eps)
        ]
        return "; ".join(exists + evals)

    def _verify(self, client: OpaClient) -> None:
        """Every entry point of the policy set is a rule the server has loaded."""
        loaded: set[str] = set()
        for info in client.get_policies_info().values():
            for url in info.get("rules", []):
                loaded.add(str(url).split("/data/", 1)[-1])
        missing = [ep for ep in self.policies.entrypoints if ep not in loaded]
        if missing:
            raise EngineUnavailable(f"OPA at {self.url} has not loaded the policy rules "
                                    f"{', '.join(missing)} (it must serve {self.policies.directory})")

    def evaluate(self, objects: Sequence[dict[str, Any]], push: dict[str, Any], timeout: float,
                 entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]:
        eps = list(entrypoints) if entrypoints is not None else self.policies.entrypoints
        if not eps or not objects:
            return [[] for _ in objects]
        client = OpaClient(**self._client_args, timeout=max(0.5, timeout))
        try:
            with self._lock:
                if not self._verified:
                    self._verify(client)
                    self._verified = True
            reply = client.ad_hoc_query(self._query(eps), {"objects": list(objects), "push": push})
        except EngineUnavailable:
            raise
        except Exception as e:  # requests/OPA errors of every kind: fail closed, say why
            self._verified = False
            raise EngineUnavailable(f"OPA at {self.url} failed: {_short(e)}") from e
        finally:
            client.close_connection()
        rows = reply.get("result") or []
        if not rows:
            self._verified = False
            raise EngineUnavailable(
                f"OPA at {self.url} has not loaded every policy package ({', '.join(eps)})")
        bindings = rows[0]
        out: list[list[tuple[str, Any]]] = [[] for _ in objects]
        for i, ep in enumerate(eps):
            for j, value in bindings.get(f"r{i}", []):
                out[j].append((ep, value))
        return out

    def close(self) -> None:
        pass


def _short(e: Exception) -> str:
    text = str(e)
    resp = getattr(e, "response", None)
    if resp is not None:
        with contextlib.suppress(ValueError):
            text = json.loads(resp.text).get("message", text)
    return text.splitlines()[0][:300] if text else type(e).__name__
