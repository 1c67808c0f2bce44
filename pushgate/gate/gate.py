"""The gate: check every object of a tree (YAML, schemas, duplicates, policies).

Called by the git server for each gated ref of a push and by `pushgate validate` for a working
directory. The objects come from the build (`pushgate.build`), the same step the reconciler
runs before it applies, so what the gate checks is what gets applied. Reports every problem,
never only the first.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pushgate import faults
from pushgate.build import build as buildmod
from pushgate.build.build import Build
from pushgate.build.config import BuildConfig
from pushgate.build.sources import SourceTree
from pushgate.core import manifests
from pushgate.core import violations as pv
from pushgate.gate import policies, schemas

__all__ = ["Build", "Gate", "GateConfig", "GateTimeout"]


class GateTimeout(Exception):
    pass


@dataclass(frozen=True)
class GateConfig:
    build: BuildConfig = field(default_factory=BuildConfig)
    missing_schema: str = "error"  # or "warning"
    timeout: float = 30.0


class Gate:
    def __init__(self, config: GateConfig, *, engine: policies.PolicyEngine | None,
                 kustomize_bin: str | None) -> None:
        self.config = config
        self.engine = engine
        self.builder = buildmod.Builder(config.build, kustomize_bin=kustomize_bin)
        self.schemas = schemas.SchemaSet(config.build.kubernetes_version,
                                         missing_schema=config.missing_schema)  # type: ignore[arg-type]
        # Keyed by (source key, path, CRD set): a renamed file is reported at its new path.
        self._schema_results: dict[tuple[str, str, str], list[pv.Violation]] = {}
        # Policy results per object, keyed by everything they depend on: ("static", source key,
        # path, policy version) for the entry points that cannot read the push context (the
        # compiled plan says which); ("push", ..., digest of the whole push context) for the rest.
        self._policy_rows: dict[tuple[str, ...], list[tuple[str, Any]]] = {}
        self._policy_set: policies.PolicySet | None = getattr(engine, "policies", None)

    def build(self, tree: SourceTree, deadline: float | None = None) -> Build:
        deadline = deadline or time.monotonic() + self.config.timeout
        try:
            return self.builder.build(tree, deadline)
        except buildmod.BuildTimeout as e:
            raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded") from e

    # -- checking -------------------------------------------------------------------------------
    def check(self, tree: SourceTree, push: dict[str, Any] | None = None,
              deadline: float | None = None) -> tuple[Build, policies.Findings]:
        """Everything wrong with the tree. Raises policies.EngineUnavailable or GateTimeout when
        the gate cannot decide (the caller refuses, fail closed)."""
        deadline = deadline or time.monotonic() + self.config.timeout
        faults.fail("gate-check")
        b = self.build(tree, deadline)
        found = list(b.problems)
        crds = [m.obj for m in b.manifests if m.kind == "CustomResourceDefinition"
                and m.api_version.startswith("apiextensions.k8s.io/")]
        schema_set = self.schemas.with_crds(crds) if crds else self.schemas
        crd_key = _crd_key(crds)
        for m, key in zip(b.manifests, b.keys, strict=True):
            _check_deadline(deadline)
            cached = self._schema_results.get((key, m.path, crd_key)) if key else None
            if cached is None:
                cached = schema_set.validate(m.obj, path=m.path, line_of=m.line_of, ref=m.ref)
                if key:
                    _bounded(self._schema_results)[(key, m.path, crd_key)] = cached
            found.extend(cached)
        exceptions: list[policies.PolicyException] = []
        if self.engine is not None and b.manifests:
            eps = self._policy_set.entrypoints if self._policy_set is not None else []
            for m, row in zip(b.manifests, self._evaluate(b, push, deadline), strict=True):
                result = policies.outcome(row, eps, path=m.path, ref=m.ref, line_of=m.line_of)
                found.extend(result.violations)
                exceptions.extend(result.exceptions)
        # A list of Violations, as before, that also carries the exceptions granted.
        return b, policies.Findings(_redact_secrets(found, b.manifests), exceptions)

    def _evaluate(self, b: Build, push: dict[str, Any] | None,
                  deadline: float) -> list[list[tuple[str, Any]]]:
        """Policy results per manifest, from the cache where the same decision was made before."""
        assert self.engine is not None
        ctx = dict(push or {})
        ctx["files"] = {m.ref: m.path for m in b.manifests}
        ps = self._policy_set
        if ps is None:  # an engine that does not say what it evaluates: nothing is cached
            return self._run(list(range(len(b.manifests))), b, ctx, None, deadline)
        reads_push = ps.push_entrypoints
        pushed = [ep for ep in ps.entrypoints if ep in reads_push]
        static = [ep for ep in ps.entrypoints if ep not in reads_push]
        push_key = policies.context_key(ctx)
        groups: list[tuple[str, list[str]]] = [("static", static), ("push", pushed)]

        def key(group: str, i: int) -> tuple[str, ...]:
            base = (group, b.keys[i], b.manifests[i].path, ps.version)
            return (*base, push_key) if group == "push" else base

        rows: list[list[tuple[str, Any]]] = [[] for _ in b.manifests]
        todo: dict[tuple[str, ...], list[int]] = {}  # the groups still to evaluate -> manifests
        for i in range(len(b.manifests)):
            missing = []
            for group, eps in groups:
                cached = self._policy_rows.get(key(group, i)) if eps and b.keys[i] else None
                if cached is not None:
                    rows[i].extend(cached)
                elif eps:
                    missing.append(group)
            if missing:
                todo.setdefault(tuple(missing), []).append(i)
        for wanted, indices in todo.items():
            eps = [ep for group, group_eps in groups if group in wanted for ep in group_eps]
            for i, row in zip(indices, self._run(indices, b, ctx, eps, deadline), strict=True):
                rows[i].extend(row)
                if b.keys[i]:
                    for group, group_eps in groups:
                        if group in wanted:
                            _bounded(self._policy_rows)[key(group, i)] = [
                                (ep, v) for ep, v in row if ep in group_eps]
        return rows

    def _run(self, indices: list[int], b: Build, ctx: dict[str, Any], eps: list[str] | None,
             deadline: float) -> list[list[tuple[str, Any]]]:
        assert self.engine is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded")
        try:
            return self.engine.evaluate([b.manifests[i].obj for i in indices], ctx, left, eps)
        except policies.EngineTimeout as e:
            # by type, not by text: an unreachable OPA says "Max retries exceeded" too
            raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded "
                              f"(policy evaluation)") from e

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def _crd_key(crds: Sequence[dict[str, Any]]) -> str:
    if not crds:
        return ""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(crds, sort_keys=True).encode()).hexdigest()[:16]


_T = TypeVar("_T")


def _bounded(cache: _T) -> _T:
    """The cache itself, emptied first when it grew past what a big repository needs."""
    if isinstance(cache, dict) and len(cache) > 200_000:
        cache.clear()
    return cache


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise GateTimeout("gate time limit exceeded")


def _redact_secrets(found: Sequence[pv.Violation],
                    ms: Sequence[manifests.Manifest]) -> list[pv.Violation]:
    """No report may carry a Secret's data: drop any message that quotes one of its values."""
    values: set[str] = set()
    for m in ms:
        if m.kind == "Secret":
            for key in ("data", "stringData"):
                d = m.obj.get(key)
                if isinstance(d, dict):
                    values.update(str(v) for v in d.values() if v is not None and len(str(v)) >= 4)
    if not values:
        return list(found)
    out = []
    for v in found:
        msg = v.message
        for secret in values:
            if secret in msg:
                msg = msg.replace(secret, "<redacted>")
        out.append(pv.Violation(v.path, v.line, v.obj, v.rule, msg, v.severity))
    return out


def relpath(path: str) -> str:
    return posixpath.normpath(path)
