"""Policy modules, their entry points, and the engine seam.

Called by `pushgate.gate.gate` (to evaluate objects) and by the engines (`embedded`, `opaserver`)
to know what to evaluate. Policies come only from the server's policy directory, never from the
pushed tree, so a pusher cannot weaken them. conftest's contract: rules named `deny`,
`violation` (errors) and `warn` (warnings, never blocking) in any package, yielding strings or
objects with `msg` (and optionally `field`, a dotted path used to find the line).

Policies also see the push as `data.pushgate.push`: `pusher`, `role`, `ref`, `changed_paths`
and `files` (object reference "Kind/namespace/name" -> file path).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pushgate.core import violations as pv

RULES = ("deny", "violation", "warn")
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)\s*$", re.M)
_RULE_HEAD = re.compile(r"^(deny|violation|warn)\b", re.M)
# Rego v0 rule heads that OPA 1.x refuses but regopy silently accepts (with other meaning).
_V0_HEADS = (
    re.compile(r"^[ \t]*[A-Za-z_]\w*\s*\[[^\]]*\]\s*\{", re.M),  # deny[msg] {
    re.compile(r"^[ \t]*[A-Za-z_]\w*\s*\{", re.M),  # allow {
)
# `with input as` in a policy module aborts regopy 1.5.2 when it compiles the policies, so every
# push would be refused as "engine crashed"; refuse it at start-up instead (tests may use it).
_WITH_INPUT = re.compile(r"\bwith\s+input\b[\w.\[\]\"]*\s+as\b")


class PolicyError(Exception):
    """A policy directory that cannot be loaded; the message names the file and the problem."""


class EngineUnavailable(Exception):
    """The engine could not decide (down, crashed, timed out, bad output): the push is refused."""


class EngineTimeout(EngineUnavailable):
    """The engine did not decide within the time it was given (the gate's time limit)."""


@dataclass(frozen=True)
class Module:
    path: str  # relative to the policy directory
    package: str
    source: str
    rules: tuple[str, ...]  # which of RULES it defines


@dataclass(frozen=True)
class PolicySet:
    directory: str
    modules: tuple[Module, ...]

    @property
    def entrypoints(self) -> list[str]:
        """"pkg/path/rule" for every package that defines one of RULES, sorted."""
        seen = {(m.package, r) for m in self.modules for r in m.rules}
        return sorted(f"{pkg.replace('.', '/')}/{rule}" for pkg, rule in seen)

    @property
    def uses_push_context(self) -> bool:
        return any("data.pushgate.push" in m.source for m in self.modules)


def load(directory: str) -> PolicySet:
    """Every `*.rego` under `directory` except `*_test.rego`; v0 syntax refused with its line."""
    if not os.path.isdir(directory):
        raise PolicyError(f"policy directory {directory} does not exist")
    modules = []
    for root, dirs, files in os.walk(directory):
        # A ConfigMap volume holds each file twice (via hidden "..<timestamp>" dirs): skip those.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(".rego") or name.endswith("_test.rego"):
                continue
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory)
            try:
                with open(full, encoding="utf-8") as f:
                    src = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise PolicyError(f"{rel}: cannot read: {e}") from e
            modules.append(_parse(rel, src))
    if not modules:
        raise PolicyError(f"policy directory {directory} holds no .rego policies")
    return PolicySet(directory, tuple(modules))


def _parse(rel: str, src: str) -> Module:
    code = "\n".join(line.split("#", 1)[0] for line in src.splitlines())
    pkg = _PACKAGE.search(code)
    if pkg is None:
        raise PolicyError(f"{rel}: no package declaration")
    for pattern in _V0_HEADS:
        m = pattern.search(code)
        if m:
            line = code.count("\n", 0, m.start()) + 1
            raise PolicyError(
                f"{rel}:{line}: not valid Rego v1: rule head {m.group(0).strip()!r} needs "
                f"'contains'/'if' (e.g. 'deny contains msg if {{')")
    m = _WITH_INPUT.search(code)
    if m:
        line = code.count("\n", 0, m.start()) + 1
        raise PolicyError(f"{rel}:{line}: 'with input as' is not allowed in a policy (it crashes the "
                          f"embedded engine): read input directly; only *_test.rego may use 'with'")
    rules = tuple(sorted({m.group(1) for m in _RULE_HEAD.finditer(code)}))
    return Module(rel, pkg.group(1), src, rules)


class PolicyEngine(Protocol):
    """Evaluates every entry point for each object; returns, per object, (entrypoint, result)."""

    def evaluate(self, objects: Sequence[dict[str, Any]], push: dict[str, Any],
                 timeout: float) -> list[list[tuple[str, Any]]]: ...

    def close(self) -> None: ...


def to_violations(entrypoint: str, results: Any, *, path: str, ref: str,
                  line_of: Any) -> list[pv.Violation]:
    """conftest's result shapes (set/list of strings or of objects with `msg`) as Violations."""
    rule = entrypoint.rsplit("/", 1)[-1]
    name = entrypoint.replace("/", ".").rsplit(".", 1)[0] + "/" + rule
    make = pv.warning if rule == "warn" else pv.error
    if results is None:
        return []
    items = results if isinstance(results, list) else [results]
    out = []
    for item in items:
        if isinstance(item, str):
            msg, field = item, ""
        elif isinstance(item, dict) and isinstance(item.get("msg"), str):
            msg, field = item["msg"], str(item.get("field") or "")
        else:
            out.append(pv.error(path, 0, ref, name, f"policy result without a 'msg': {str(item)[:120]}"))
            continue
        out.append(make(path, line_of(field) if field else line_of(""), ref, name, msg))
    return out
