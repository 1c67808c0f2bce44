"""The gate: check every object of a tree (YAML, schemas, duplicates, policies).

Called by the git server for each gated ref of a push and by `pushgate validate` for a working
directory. The objects come from the build (`pushgate.build`), the same step the reconciler
runs before it applies, so what the gate checks is what gets applied. Reports every problem,
never only the first.

A push that changes 10 files of 5,000 must cost about 10 files: results are cached per object
by everything they depend on (see `Gate.__init__`), the build caches parsed files and tree
listings, and what is left per object is a few dictionary lookups. A check that does have many
objects to decide (a first push, `pushgate validate`) has the policy engine work on them while
this process reads the tree (`stream`: each file's objects as soon as it is parsed) and then
checks the schemas.
"""

from __future__ import annotations

import contextlib
import gc
import posixpath
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pushgate import faults
from pushgate.build import build as buildmod
from pushgate.build.build import Build
from pushgate.build.config import BuildConfig
from pushgate.build.sources import SourceTree
from pushgate.core import manifests, scopes
from pushgate.core import violations as pv
from pushgate.core.gencache import GenCache
from pushgate.gate import feed, gatekeeper, policies, schemas, stream
from pushgate.gate.regoworker import UNDECIDABLE

__all__ = ["Build", "Gate", "GateConfig", "GateTimeout"]


class GateTimeout(Exception):
    pass


@dataclass(frozen=True)
class GateConfig:
    build: BuildConfig = field(default_factory=BuildConfig)
    missing_schema: str = "error"  # or "warning"
    timeout: float = 30.0


# A policy result per object: its violations and the exceptions granted to it.
_Outcome = tuple[tuple[pv.Violation, ...], tuple[policies.PolicyException, ...]]
_Rows = list[list[tuple[str, Any]]]


class Gate:
    def __init__(self, config: GateConfig, *, engine: policies.PolicyEngine | None,
                 kustomize_bin: str | None) -> None:
        self.config = config
        self.engine = engine
        self.builder = buildmod.Builder(config.build, kustomize_bin=kustomize_bin)
        self.schemas = schemas.SchemaSet(config.build.kubernetes_version,
                                         missing_schema=config.missing_schema)  # type: ignore[arg-type]
        # Keyed by (source key, path, CRD set): a renamed file is reported at its new path.
        # Every cache here keeps what the last few checks used (pushgate.core.gencache).
        self._schema_results: GenCache[tuple[str, str, str], list[pv.Violation]] = GenCache()
        # Policy results per object, keyed by everything they depend on: ("static", source key,
        # path, policy version, namespace) for the entry points that cannot read the push
        # context (the compiled plan says which); ("push", ..., digest of the whole push
        # context) for the rest. The namespace is the object's after the build gave it the
        # default one: whether it does depends on the CRDs of the whole tree (a custom kind
        # whose CRD says Cluster keeps none), so the same file can make two different objects.
        self._policy_rows: GenCache[tuple[str, ...], list[tuple[str, Any]]] = GenCache()
        # What those rows make of the object (its violations and exceptions), under the same
        # key with every group's parts: conftest's contract is applied once per result.
        self._outcomes: GenCache[tuple[str, ...], _Outcome] = GenCache()
        self._policy_set: policies.PolicySet | None = getattr(engine, "policies", None)
        # Gatekeeper results per (object, constraint), keyed like the policy outcomes plus the
        # constraint and the object's Namespace (its labels select, and the template sees it);
        # templates that read data.inventory depend on the whole tree and are never cached.
        self._gk_results: GenCache[tuple[str, ...], tuple[pv.Violation, ...]] = GenCache()
        self._last_crds: list[dict[str, Any]] = []  # the CRDs of the last tree checked (prefetch)
        # One check at a time: a check fills the caches the next one reads (a warm-up and a
        # push never do the same work twice), and the engine serves one caller anyway.
        self._checking = threading.Lock()

    def build(self, tree: SourceTree, deadline: float | None = None,
              on_file: buildmod.OnFile | None = None) -> Build:
        deadline = deadline or time.monotonic() + self.config.timeout
        try:
            return self.builder.build(tree, deadline, on_file)
        except buildmod.BuildTimeout as e:
            raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded") from e

    def cache_size(self) -> int:
        """Results held (schema and policy, one per object and context): how much a warm gate
        remembers, for whoever manages the process's memory."""
        return len(self._schema_results) + len(self._outcomes) + len(self._policy_rows)

    def warm(self) -> None:
        """Have the policy engine started (and compiled) now, without waiting for it."""
        start: Callable[[], None] | None = getattr(self.engine, "start", None)
        if start is not None:
            start()

    # -- checking -------------------------------------------------------------------------------
    def check(self, tree: SourceTree, push: dict[str, Any] | None = None,
              deadline: float | None = None, *, digest: bool = True) -> tuple[Build, policies.Findings]:
        """Everything wrong with the tree. Raises policies.EngineUnavailable or GateTimeout when
        the gate cannot decide (the caller refuses, fail closed). With `digest`, the Build's
        digest is computed while the engine decides (a verdict records it); `pushgate validate`
        records none, and its engine's workers need both cores (~0.1 s of CPU at 5,000)."""
        deadline = deadline or time.monotonic() + self.config.timeout
        faults.fail("gate-check")
        if not self._checking.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded "
                              f"(waiting for another check)")
        try:
            with gc_paused():
                return self._check(tree, push, deadline, digest)
        finally:
            self._checking.release()

    def _check(self, tree: SourceTree, push: dict[str, Any] | None,
               deadline: float, digest: bool) -> tuple[Build, policies.Findings]:
        self.warm()  # the engine starts while the tree is read
        for cache in (self._schema_results, self._policy_rows, self._outcomes, self._gk_results):
            cache.rotate()
        streamed = self._stream(deadline)
        if streamed is None:
            b = self.build(tree, deadline)
        else:
            try:
                b = self.build(tree, deadline, streamed.offer)
            except BaseException:
                streamed.feed.cancel()
                raise
            streamed.feed.close()
        found = list(b.problems)
        policy = self._policies(b, push, deadline, streamed)  # may run while the schemas are checked
        crds = [m.obj for m in b.manifests if m.obj.get("kind") == "CustomResourceDefinition"
                and m.api_version.startswith("apiextensions.k8s.io/")]
        schema_set = self.schemas.with_crds(crds) if crds else self.schemas
        crd_key = _crd_key(crds)
        self._last_crds = crds
        results = self._schema_results
        for m, key in zip(b.manifests, b.keys, strict=True):
            cached = results.get((key, m.path, crd_key)) if key else None
            if cached is None:
                _check_deadline(deadline)
                cached = schema_set.validate(m.obj, path=m.path, line_of=m.line_of, ref=m.ref)
                if key:
                    _bounded(results)[(key, m.path, crd_key)] = cached
            if cached:
                found.extend(cached)
        if digest:
            b.digest()  # remembered by the Build: the verdict needs it, and the engine is busy
        outcomes = policy()
        found.extend(self._gatekeeper(b, deadline))
        exceptions: list[policies.PolicyException] = []
        for violations, granted in outcomes:
            if violations:
                found.extend(violations)
            if granted:
                exceptions.extend(granted)
        # A list of Violations, as before, that also carries the exceptions granted.
        return b, policies.Findings(_redact_secrets(found, b.manifests), exceptions)

    def prefetch(self, tree: SourceTree, paths: Sequence[str], deadline: float) -> int:
        """Decide ahead what the next check of `tree` will ask about the files at `paths` (those
        another server worker's push changed): parse them, and cache their schema results and
        push-independent policy outcomes as they would be in the context of the last tree
        checked here (its CRDs, the default namespace). Everything is cached under its full key,
        so a guess the next check does not share (the CRDs changed; the file is rendered by
        kustomize, or excluded) is never looked up: correctness never depends on it. Returns how
        many objects were decided."""
        if not self._checking.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return 0
        try:
            return self._prefetch(tree, paths, deadline)
        finally:
            self._checking.release()

    def _prefetch(self, tree: SourceTree, paths: Sequence[str], deadline: float) -> int:
        wanted = set(paths)
        entries = [e for e in tree.entries() if e.path in wanted and e.is_file and e.key]
        crds = self._last_crds
        scopes_ = scopes.crd_scopes(crds)
        schema_set = self.schemas.with_crds(crds) if crds else self.schemas
        crd_key = _crd_key(crds)
        default_ns = self.config.build.default_namespace
        ms: list[manifests.Manifest] = []
        keys: list[str] = []
        for e in entries:
            loaded = self.builder.preload(e, tree)
            for i, m in enumerate(loaded):
                obj = scopes.with_default_namespace(m.obj, default_ns, scopes_)
                ms.append(m if obj is None else manifests.Manifest(m.path, m.line, m.index, obj, m.span))
                keys.append(f"{e.key}#{i}")
        for m, key in zip(ms, keys, strict=True):
            _check_deadline(deadline)
            if (key, m.path, crd_key) not in self._schema_results:
                _bounded(self._schema_results)[(key, m.path, crd_key)] = schema_set.validate(
                    m.obj, path=m.path, line_of=m.line_of, ref=m.ref)
        ps = self._policy_set
        if self.engine is None or ps is None or ps.push_entrypoints or not ms:
            return len(ms)  # push-dependent results need the push itself
        b = Build(ms, [], len(entries), keys)
        missing = [i for i, m in enumerate(ms)
                   if (keys[i], m.path, m.namespace, ps.version, "") not in self._outcomes]
        rows = self._rows(b, missing, {}, "", deadline) if missing else []
        for i, row in zip(missing, rows, strict=True):
            m = ms[i]
            _bounded(self._outcomes)[(keys[i], m.path, m.namespace, ps.version, "")] = _outcome(
                m, row, ps.entrypoints)
        return len(ms)

    def _stream(self, deadline: float) -> stream.Stream | None:
        """An engine that decides objects while the build still reads files, when its answer
        depends on the object alone (no rule reads the push context)."""
        ps = self._policy_set
        if ps is None or ps.push_entrypoints or not ps.entrypoints or not hasattr(
                self.engine, "evaluate_feed"):
            return None
        version, rows, outcomes = ps.version, self._policy_rows, self._outcomes
        eps = list(ps.entrypoints)

        def decided(key: str, path: str, obj: dict[str, Any]) -> bool:
            # under the parts `_policies` and `_rows` look up (no push context: push key "")
            ns = _namespace(obj)
            return (key, path, ns, version, "") in outcomes or ("static", key, path, version, ns) in rows

        return stream.Stream(self.config.build.default_namespace, decided,
                             lambda fed: self._run_inputs(fed, {}, eps, deadline))

    def _policies(self, b: Build, push: dict[str, Any] | None, deadline: float,
                  streamed: stream.Stream | None = None) -> Callable[[], list[_Outcome]]:
        """Each manifest's policy outcome, from the cache where the same decision was made
        before; what is left is decided by the engine, waited for on a thread of its own.
        Returns the function that waits for the answer (and raises what the engine raised)."""
        if self.engine is None or not b.manifests:
            return lambda: []
        ps = self._policy_set
        ms = b.manifests
        ctx: dict[str, Any] = {}
        if ps is None or ps.push_entrypoints:  # only worth building when a rule may read it
            ctx = dict(push or {})
            ctx["files"] = {m.ref: m.path for m in ms}
        if ps is None:  # an engine that does not say what it evaluates: nothing is cached
            rows = self._run(list(range(len(ms))), b, ctx, None, deadline)
            return lambda: [_outcome(m, row, []) for m, row in zip(ms, rows, strict=True)]
        push_key = policies.context_key(ctx) if ctx else ""
        outs: list[_Outcome | None] = [None] * len(ms)
        missing: list[int] = []
        version, cache = ps.version, self._outcomes
        for i, (m, key) in enumerate(zip(ms, b.keys, strict=True)):
            hit = cache.get((key, m.path, _namespace(m.obj), version, push_key)) if key else None
            if hit is None:
                missing.append(i)
            else:
                outs[i] = hit
        if not missing:
            return lambda: outs  # type: ignore[return-value]

        def decide() -> list[_Outcome]:
            eps = ps.entrypoints
            rows = self._rows(b, missing, ctx, push_key, deadline, streamed)
            for i, row in zip(missing, rows, strict=True):
                m = ms[i]
                out = _outcome(m, row, eps)
                outs[i] = out
                if b.keys[i]:
                    _bounded(cache)[(b.keys[i], m.path, m.namespace, version, push_key)] = out
            return outs  # type: ignore[return-value]

        # The engine works in other processes: this one goes on with the schemas meanwhile.
        return stream.background(decide)

    def _gatekeeper(self, b: Build, deadline: float) -> list[pv.Violation]:
        """Every Constraint against every object it matches, with Gatekeeper's input."""
        ps = self._policy_set
        gk = ps.gatekeeper if ps is not None else None
        if self.engine is None or gk is None or not gk.constraints or not b.manifests:
            return []
        assert ps is not None
        objs = [m.obj for m in b.manifests]
        nss = gatekeeper.namespaces(objs)
        ns_keys = {name: policies.context_key(ns) for name, ns in nss.items()}
        inventory: dict[str, Any] | None = None
        found: list[pv.Violation] = []
        for t in gk.templates:
            todo: list[tuple[int, gatekeeper.Constraint, tuple[str, ...]]] = []
            key: tuple[str, ...]
            for c in gk.constraints:
                if c.kind != t.kind:
                    continue
                for i, m in enumerate(b.manifests):
                    ns_name = m.name if m.kind == "Namespace" else m.namespace
                    ns_obj = nss.get(ns_name) if m.namespace else None
                    if not gatekeeper.matches(c, m.obj, ns_obj):
                        continue
                    key = (b.keys[i], m.path, m.namespace, ps.version, c.digest,
                           ns_keys.get(m.namespace, "") if m.namespace else "")
                    hit = None if t.reads_inventory or not b.keys[i] else self._gk_results.get(key)
                    if hit is None:
                        todo.append((i, c, key))
                    else:
                        found.extend(hit)
            if not todo:
                continue
            ctx: dict[str, Any] = {}
            if t.reads_inventory:
                if inventory is None:
                    inventory = gatekeeper.inventory(objs)
                ctx = {"inventory": inventory}
            inputs = []
            for i, c, _ in todo:
                m = b.manifests[i]
                ns_obj = nss.get(m.namespace) if m.namespace else None
                inputs.append({"review": gatekeeper.review(m.obj, ns_obj), "parameters": c.parameters})
            rows = self._run_inputs(inputs, ctx, [t.entrypoint], deadline)
            make = {"deny": pv.error, "warn": pv.warning, "dryrun": pv.dryrun}
            for (i, c, key), row in zip(todo, rows, strict=True):
                m = b.manifests[i]
                value = dict(row).get(t.entrypoint, [])
                out = tuple(make[c.action](m.path, m.line, m.ref, c.rule, msg)
                            for msg, _ in gatekeeper.messages(value))
                out += tuple(pv.error(m.path, m.line, m.ref, c.rule, f"not decided: {v}")
                             for ep, v in row if ep == UNDECIDABLE)
                if not t.reads_inventory and b.keys[i]:
                    _bounded(self._gk_results)[key] = out
                found.extend(out)
        return found

    def _run_inputs(self, inputs: list[dict[str, Any]] | feed.Feed, ctx: dict[str, Any],
                    eps: list[str] | None, deadline: float) -> _Rows:
        """The engine's rows for `inputs` (objects, or Gatekeeper reviews; or a feed of objects
        still being read, for an engine that takes one) within the deadline."""
        assert self.engine is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded")
        try:
            if isinstance(inputs, feed.Feed):
                rows: _Rows = self.engine.evaluate_feed(  # type: ignore[attr-defined]
                    inputs, ctx, left, eps)
                return rows
            return self.engine.evaluate(inputs, ctx, left, eps)
        except policies.EngineTimeout as e:
            # by type, not by text: an unreachable OPA says "Max retries exceeded" too
            raise GateTimeout(f"gate time limit of {self.config.timeout:.0f}s exceeded "
                              f"(policy evaluation)") from e

    def _rows(self, b: Build, indices: list[int], ctx: dict[str, Any], push_key: str,
              deadline: float, streamed: stream.Stream | None = None) -> _Rows:
        """Policy results for the manifests at `indices`, from the row cache where the same
        group of entry points was decided before, or from what `streamed` decided on the same
        object while the tree was read."""
        ps = self._policy_set
        assert ps is not None
        reads_push = ps.push_entrypoints
        pushed = [ep for ep in ps.entrypoints if ep in reads_push]
        static = [ep for ep in ps.entrypoints if ep not in reads_push]
        groups: list[tuple[str, list[str]]] = [("static", static), ("push", pushed)]

        def key(group: str, i: int) -> tuple[str, ...]:
            m = b.manifests[i]
            base = (group, b.keys[i], m.path, ps.version, m.namespace)
            return (*base, push_key) if group == "push" else base

        # Without a push group a row is worth no more than the outcome the caller caches under
        # the same parts: only rows of a set that has both groups are kept (~1.5 KB an object).
        keep = bool(pushed) and bool(static)
        rows: _Rows = [[] for _ in indices]
        todo: dict[tuple[str, ...], list[int]] = {}  # the groups still to evaluate -> positions
        for n, i in enumerate(indices):
            missing = []
            for group, eps in groups:
                cached = self._policy_rows.get(key(group, i)) if keep and eps and b.keys[i] else None
                if cached is None and eps and group == "static" and streamed is not None:
                    cached = streamed.row(b.manifests[i])
                    if cached is not None and keep and b.keys[i]:
                        _bounded(self._policy_rows)[key(group, i)] = cached
                if cached is not None:
                    rows[n].extend(cached)
                elif eps:
                    missing.append(group)
            if missing:
                todo.setdefault(tuple(missing), []).append(n)
        for wanted, positions in todo.items():
            eps = [ep for group, group_eps in groups if group in wanted for ep in group_eps]
            found = self._run([indices[n] for n in positions], b, ctx, eps, deadline)
            for n, row in zip(positions, found, strict=True):
                rows[n].extend(row)
                i = indices[n]
                if keep and b.keys[i]:
                    for group, group_eps in groups:
                        if group in wanted:
                            _bounded(self._policy_rows)[key(group, i)] = [
                                (ep, v) for ep, v in row if ep in group_eps]
        return rows

    def _run(self, indices: list[int], b: Build, ctx: dict[str, Any], eps: list[str] | None,
             deadline: float) -> _Rows:
        return self._run_inputs([b.manifests[i].obj for i in indices], ctx, eps, deadline)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


_T = TypeVar("_T")


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while checks run (in any thread of the process).
    A check allocates its objects by the hundred thousand, and each full collection walks every
    one of them and every cached one: 0.6-1.2 s of a 4-5 s cold check of 5,000 manifests
    (bench/RESULTS.md, gate_full). What a check keeps holds no reference cycles, and reference
    counting frees everything else; cycles made meanwhile are collected once the last check
    ends. Left as found if something else had turned collection off."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _namespace(obj: dict[str, Any]) -> str:
    """`Manifest.namespace`, without its property calls (it is read for every object)."""
    meta = obj.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    return ns if isinstance(ns, str) else ""


_CLEAN: _Outcome = ((), ())


def _outcome(m: manifests.Manifest, row: Sequence[tuple[str, Any]], eps: Sequence[str]) -> _Outcome:
    if policies.clean(row):  # most objects: ~30 us each saved
        return _CLEAN
    result = policies.outcome(row, eps, path=m.path, ref=m.ref, line_of=m.line_of)
    return tuple(result.violations), tuple(result.exceptions)


def _crd_key(crds: Sequence[dict[str, Any]]) -> str:
    if not crds:
        return ""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(crds, sort_keys=True).encode()).hexdigest()[:16]


def _bounded(cache: _T) -> _T:
    """The cache itself, emptied first when it grew past what a big repository needs."""
    if isinstance(cache, dict | GenCache) and len(cache) > 200_000:
        cache.clear()
    return cache


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise GateTimeout("gate time limit exceeded")


def _redact_secrets(found: Sequence[pv.Violation],
                    ms: Sequence[manifests.Manifest]) -> list[pv.Violation]:
    """No report may carry a Secret's data: drop any message that quotes one of its values."""
    if not found:
        return []
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
