"""The gate: build every object of a tree and check it (YAML, schemas, duplicates, policies).

Called by the git server for each gated ref of a push, by `pushgate validate` for a working
directory, and by the reconciler (`build` only: the objects it applies are exactly the ones the
gate accepted). Reports every problem, never only the first.
"""

from __future__ import annotations

import functools
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pushgate.core import manifests
from pushgate.core import violations as pv
from pushgate.gate import kustomize, policies, schemas
from pushgate.gate.sources import MODE_SUBMODULE, MODE_SYMLINK, Entry, SourceTree


class GateTimeout(Exception):
    pass


@dataclass(frozen=True)
class GateConfig:
    include: tuple[str, ...] = ("*.yaml", "*.yml", "*.json")
    exclude: tuple[str, ...] = ()
    limits: manifests.Limits = field(default_factory=manifests.Limits)
    kubernetes_version: str = "1.37"
    missing_schema: str = "error"  # or "warning"
    timeout: float = 30.0


@dataclass
class Build:
    manifests: list[manifests.Manifest]
    problems: list[pv.Violation]
    files: int = 0
    # Per manifest, the identity of its source content ("<blob>#<n>"), "" when rendered: what
    # the result caches are keyed by, so a push that changes 10 of 5,000 files checks 10.
    keys: list[str] = field(default_factory=list)


class Gate:
    def __init__(self, config: GateConfig, *, engine: policies.PolicyEngine | None,
                 kustomize_bin: str | None) -> None:
        self.config = config
        self.engine = engine
        self.kustomize_bin = kustomize_bin
        self.schemas = schemas.SchemaSet(config.kubernetes_version,
                                         missing_schema=config.missing_schema)  # type: ignore[arg-type]
        # Parsed files by content: a push that changes 10 of 5,000 files re-parses 10.
        self._parsed: dict[str, manifests.LoadResult] = {}
        self._schema_results: dict[tuple[str, str], list[pv.Violation]] = {}
        self._policy_rows: dict[str, list[tuple[str, Any]]] = {}
        policy_set = getattr(engine, "policies", None)
        # Results depend on the object only when no policy reads the push context.
        self._cache_policies = policy_set is not None and not policy_set.uses_push_context

    # -- building -------------------------------------------------------------------------------
    def build(self, tree: SourceTree, deadline: float | None = None) -> Build:
        deadline = deadline or time.monotonic() + self.config.timeout
        problems: list[pv.Violation] = []
        files: dict[str, Entry] = {}
        for e in tree.entries():
            if e.mode == MODE_SUBMODULE:
                problems.append(pv.error(e.path, 0, "", "tree.submodule",
                                         "submodules are not allowed in a gated repository"))
            elif e.mode == MODE_SYMLINK:
                problems.append(pv.error(e.path, 0, "", "tree.symlink",
                                         "symlinks are not allowed (they may point outside the "
                                         "repository); commit the file itself"))
            elif e.is_file:
                files[e.path] = e
        readers: dict[str, Callable[[], bytes]] = {
            p: functools.partial(tree.read, e) for p, e in files.items()}
        kplan = kustomize.plan(readers)
        for path, msg in kplan.problems:
            problems.append(pv.error(path, 0, "", "kustomize", msg))

        built: list[manifests.Manifest] = []
        keys: list[str] = []
        count = 0
        for path, entry in sorted(files.items()):
            if kplan.covers(path) or not manifests.is_manifest_path(
                    path, self.config.include, self.config.exclude):
                continue
            _check_deadline(deadline)
            count += 1
            result = self._load(entry, path, tree)
            built.extend(result.manifests)
            keys.extend(f"{entry.key}#{i}" if entry.key else "" for i in range(len(result.manifests)))
            problems.extend(result.problems)
        for root in kplan.roots:
            _check_deadline(deadline)
            count += 1
            ms, ps = self._render(root, readers, deadline)
            built.extend(ms)
            keys.extend("" for _ in ms)
            problems.extend(ps)
        problems.extend(manifests.find_duplicates(built))
        return Build(built, problems, count, keys)

    def _load(self, entry: Entry, path: str, tree: SourceTree) -> manifests.LoadResult:
        if entry.key and entry.key in self._parsed:
            cached = self._parsed[entry.key]
            if all(m.path == path for m in cached.manifests) and all(
                    v.path == path for v in cached.problems):
                return cached
        result = manifests.load(path, tree.read(entry), self.config.limits)
        if entry.key:
            if len(self._parsed) > 50_000:
                self._parsed.clear()
            self._parsed[entry.key] = result
        return result

    def _render(self, root: kustomize.Kustomization, readers: dict[str, Callable[[], bytes]],
                deadline: float) -> tuple[list[manifests.Manifest], list[pv.Violation]]:
        if self.kustomize_bin is None:
            return [], [pv.error(root.file, 0, "", "kustomize",
                                 "kustomize is not available on this server")]
        try:
            out = kustomize.render(self.kustomize_bin, root, readers,
                                   max(1.0, deadline - time.monotonic()))
        except kustomize.RenderError as e:
            return [], [pv.error(root.file, 0, "", "kustomize", f"kustomize build failed: {e}")]
        rendered = manifests.load(root.file, out, self.config.limits)
        ms: list[manifests.Manifest] = []
        for m in rendered.manifests:
            origin = kustomize.origin_of(m.obj, root.dir) or root.file
            line = self._origin_line(origin, m, readers)
            ms.append(manifests.Manifest(origin, line, m.index, m.obj))
        return ms, list(rendered.problems)

    def _origin_line(self, origin: str, m: manifests.Manifest,
                     readers: dict[str, Callable[[], bytes]]) -> int:
        read = readers.get(origin)
        if read is None:
            return 1
        for src in manifests.load(origin, read(), self.config.limits).manifests:
            if src.kind == m.kind and (src.name == m.name or m.name.endswith(src.name)
                                       or src.name in m.name):
                return src.line
        return 1

    # -- checking -------------------------------------------------------------------------------
    def check(self, tree: SourceTree, push: dict[str, Any] | None = None,
              deadline: float | None = None) -> tuple[Build, list[pv.Violation]]:
        """Everything wrong with the tree. Raises policies.EngineUnavailable or GateTimeout when
        the gate cannot decide (the caller refuses, fail closed)."""
        deadline = deadline or time.monotonic() + self.config.timeout
        b = self.build(tree, deadline)
        found = list(b.problems)
        crds = [m.obj for m in b.manifests if m.kind == "CustomResourceDefinition"
                and m.api_version.startswith("apiextensions.k8s.io/")]
        schema_set = self.schemas.with_crds(crds) if crds else self.schemas
        crd_key = _crd_key(crds)
        for m, key in zip(b.manifests, b.keys, strict=True):
            _check_deadline(deadline)
            cached = self._schema_results.get((key, crd_key)) if key else None
            if cached is None:
                cached = schema_set.validate(m.obj, path=m.path, line_of=m.line_of, ref=m.ref)
                if key:
                    _bounded(self._schema_results)[(key, crd_key)] = cached
            found.extend(cached)
        if self.engine is not None and b.manifests:
            for m, row in zip(b.manifests, self._evaluate(b, push, deadline), strict=True):
                for ep, value in row:
                    found.extend(policies.to_violations(ep, value, path=m.path, ref=m.ref,
                                                        line_of=m.line_of))
        return b, _redact_secrets(found, b.manifests)

    def _evaluate(self, b: Build, push: dict[str, Any] | None,
                  deadline: float) -> list[list[tuple[str, Any]]]:
        """Policy results per manifest, from the cache where the content was seen before."""
        assert self.engine is not None
        rows: list[list[tuple[str, Any]] | None] = [
            self._policy_rows.get(k) if (k and self._cache_policies) else None for k in b.keys]
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:
            ctx = dict(push or {})
            ctx["files"] = {m.ref: m.path for m in b.manifests}
            left = deadline - time.monotonic()
            if left <= 0:
                raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded")
            try:
                fresh = self.engine.evaluate([b.manifests[i].obj for i in todo], ctx, left)
            except policies.EngineTimeout as e:
                # by type, not by text: an unreachable OPA says "Max retries exceeded" too
                raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded "
                                  f"(policy evaluation)") from e
            for i, row in zip(todo, fresh, strict=True):
                rows[i] = row
                if b.keys[i] and self._cache_policies:
                    _bounded(self._policy_rows)[b.keys[i]] = row
        return [r or [] for r in rows]

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
