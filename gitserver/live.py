"""The live gate, git-server side: ask the reconciler to dry-run a push and plan it, then judge.

Called by `receive` (through the `LiveGate` protocol) for the reconciled branch once the static
gate has passed. The git server holds no cluster credentials: it sends the build's objects to
the reconciler of the same pod over a Unix socket, authenticated with the per-pod token the
reconciler wrote into the run directory (`reconciler.liveserver`), and turns the answer into
report lines (`path:line Kind/namespace/name [live] <the API server's message>`), the plan in
the style of `kapp deploy`, and the prune guard's verdict.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pushgate import datadir
from pushgate.core import manifests, pruneguard
from pushgate.core import violations as pv

MAX_PLAN_LINES = 200


STARTING_GRACE = 15.0  # seconds a push waits for a reconciler that is starting


class LiveUnavailable(Exception):
    """The reconciler could not answer (down, starting, cluster unreachable, too slow)."""


class _NotListening(LiveUnavailable):
    """Nobody answers on the socket (yet)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class LiveClient:
    """POST /v1/check to the reconciler's live socket in `run_dir`."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir

    def check(self, branch: str, objects: Sequence[dict[str, Any]], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        # A reconciler that is still starting (or restarting) gets a moment to open its socket.
        wait_until = time.monotonic() + min(STARTING_GRACE, timeout / 2)
        while True:
            try:
                return self._check(branch, objects, deadline - time.monotonic())
            except _NotListening as e:
                if time.monotonic() >= wait_until:
                    raise LiveUnavailable(str(e)) from e
                time.sleep(0.2)

    def _check(self, branch: str, objects: Sequence[dict[str, Any]], timeout: float) -> dict[str, Any]:
        try:
            with open(os.path.join(self.run_dir, datadir.LIVE_TOKEN)) as f:
                token = f.read().strip()
        except OSError as e:
            raise _NotListening(f"no reconciler is serving live checks ({e.strerror}: "
                                f"{os.path.join(self.run_dir, datadir.LIVE_TOKEN)})") from e
        body = json.dumps({"branch": branch, "objects": list(objects),
                           "timeout": max(0.5, timeout - 0.5)}).encode()
        conn = _UnixConnection(os.path.join(self.run_dir, datadir.LIVE_SOCKET), timeout)
        try:
            conn.connect()
        except (FileNotFoundError, ConnectionRefusedError) as e:
            conn.close()
            raise _NotListening(f"no reconciler is listening on {conn.unix_path} ({e.strerror})") from e
        try:
            conn.request("POST", "/v1/check", body=body,
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise LiveUnavailable(f"the reconciler did not answer: {type(e).__name__}: {e}") from e
        finally:
            conn.close()
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise LiveUnavailable(f"the reconciler answered {resp.status} with garbage") from e
        if resp.status != 200 or not isinstance(doc, dict):
            why = doc.get("error") if isinstance(doc, dict) else None
            raise LiveUnavailable(f"{why or f'HTTP {resp.status}'}")
        return doc


@dataclass
class LiveOutcome:
    """What the live gate found for one ref: problems (the push is refused if any is an error),
    the plan's lines and document, and why the prune guard holds the push (if it does)."""

    problems: list[pv.Violation] = field(default_factory=list)
    plan_lines: list[str] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    guard: list[str] = field(default_factory=list)
    unavailable: str = ""
    static_only: int = 0


class RefLiveGate:
    """The `LiveGate` the receive handler sees: which refs, how strict, and the judgement."""

    def __init__(self, client: LiveClient, branch: str, mode: str, rules: pruneguard.Rules,
                 prune_roles: Sequence[str]) -> None:
        self.client = client
        self.branch = branch
        self.mode = mode  # required | best-effort
        self.rules = rules
        self.prune_roles = set(prune_roles)

    def applies(self, ref: bytes) -> bool:
        return ref == f"refs/heads/{self.branch}".encode()

    def check(self, built: Sequence[manifests.Manifest], deadline: float) -> LiveOutcome:
        left = deadline - time.monotonic()
        if left <= 0:
            return LiveOutcome(unavailable="the gate's time limit was spent before the live check")
        try:
            doc = self.client.check(self.branch, [m.obj for m in built], left)
        except LiveUnavailable as e:
            return LiveOutcome(unavailable=str(e))
        return judge(doc, built, self.rules)

    def may_prune(self, role: str, options: Sequence[str]) -> bool:
        return role in self.prune_roles and "allow-prune" in options


def judge(doc: dict[str, Any], built: Sequence[manifests.Manifest], rules: pruneguard.Rules) -> LiveOutcome:
    """The reconciler's answer as report lines, the plan and the prune guard's reasons."""
    out = LiveOutcome(plan=dict(doc.get("plan") or {}))
    static: list[str] = []
    for r in doc.get("results") or []:
        i = r.get("index")
        if not isinstance(i, int) or not 0 <= i < len(built):
            continue
        m = built[i]
        if r.get("outcome") == "refused":
            out.problems.append(pv.error(m.path, m.line, m.ref, "live", str(r.get("message") or
                                                                            r.get("reason") or "refused")))
        elif r.get("outcome") == "static":
            static.append(f"{m.ref} ({_why_static(str(r.get('reason', '')))})")
    if static:
        out.static_only = len(static)
        shown = ", ".join(static[:20]) + (f" and {len(static) - 20} more" if len(static) > 20 else "")
        out.plan_lines.append(f"checked statically only: {shown}")
    plan = out.plan
    remaining = {m.namespace for m in built if m.namespace}
    out.guard = pruneguard.reasons(plan.get("prune") or [], int(plan.get("managed") or 0), remaining, rules)
    out.plan_lines.extend(plan_lines(plan))
    return out


def _why_static(reason: str) -> str:
    return {"NamespaceInPush": "its namespace arrives in this push",
            "CRDInPush": "its CRD arrives or changes in this push",
            "Skipped": "pushgate.io/reconcile is false on the live object"}.get(reason, reason or "?")


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """The plan, kapp-style: one line per change, unchanged objects counted, a summary last."""
    lines: list[str] = []
    for ref in plan.get("create") or []:
        lines.append(f"  create    {ref}")
    for u in plan.get("update") or []:
        changes = list(u.get("changes") or [])
        detail = "; ".join(changes[:6]) + (f"; +{len(changes) - 6} more" if len(changes) > 6 else "")
        lines.append(f"  update    {u.get('ref')}" + (f"  {detail}" if detail else ""))
    for p in plan.get("prune") or []:
        if p.get("willDelete"):
            lines.append(f"  prune     {p.get('ref')}")
        else:
            why = ("opted out" if p.get("optedOut") else "protected kind: kept" if p.get("protected")
                   else "not ours: left alone" if not p.get("owned") else "kept")
            lines.append(f"  release   {p.get('ref')}  ({why})")
    if len(lines) > MAX_PLAN_LINES:
        lines = [*lines[:MAX_PLAN_LINES], f"  ... {len(lines) - MAX_PLAN_LINES} more"]
    counts = plan_counts(plan)
    lines.append(f"plan: {counts['create']} to create, {counts['update']} to update, "
                 f"{counts['prune']} to prune, {counts['unchanged']} unchanged")
    return lines


def plan_counts(plan: dict[str, Any]) -> dict[str, int]:
    return {"create": len(plan.get("create") or []), "update": len(plan.get("update") or []),
            "prune": sum(1 for p in plan.get("prune") or [] if p.get("willDelete")),
            "unchanged": len(plan.get("unchanged") or [])}
