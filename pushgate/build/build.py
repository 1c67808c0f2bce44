"""Tree -> objects: discovery, include/exclude, rendering (kustomize, Helm, Jsonnet), default
namespace, digest.

Called by the gate (`pushgate.gate.gate`) for every gated push, by the reconciler for the commit
it applies, and by `pushgate validate` / `pushgate render` for a working tree: one code path and
one `BuildConfig`, so the object set the gate checked is the object set that is applied. The
digest of that set is what the gate records with its verdict and the reconciler compares.

What a file is decides how it is read: under a kustomization it is read only through kustomize's
output; in a chart (a directory with `Chart.yaml`) only through `helm template`; a `*.jsonnet`
file is evaluated; any other file the include/exclude patterns select is a manifest. Rendered
objects name the file they came from (the kustomize source, the chart template, the .jsonnet).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import posixpath
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

from pushgate.build import apiversions, helm, jsonnet, kustomize, proc, sources, tools
from pushgate.build.config import BuildConfig
from pushgate.build.sources import MODE_SUBMODULE, MODE_SYMLINK, Entry, SourceTree
from pushgate.core import manifests, scopes
from pushgate.core import violations as pv
from pushgate.core.gencache import GenCache


class BuildTimeout(Exception):
    """The build did not finish before the caller's deadline."""


_Canonical = GenCache[int, tuple[manifests.Manifest, bytes]]  # see Build.canonical
_Scope = tuple[tuple[tuple[str, str], bool], ...]  # a tree's CRD scopes, as _complete keys them


@dataclass
class Build:
    manifests: list[manifests.Manifest]
    problems: list[pv.Violation]
    files: int = 0
    # Per manifest, the identity of its source content ("<blob>#<n>"), "" when rendered: what
    # result caches are keyed by (with the path), so a push that changes 10 of 5,000 files
    # checks 10.
    keys: list[str] = field(default_factory=list)
    # The Builder's canonical JSON per manifest read from a file, by the manifest itself (the
    # Builder reuses them while their file is unchanged; one the build gave a default namespace
    # is a new manifest): `digest()` then serialises only what changed. None: every object is.
    canonical: _Canonical | None = field(default=None, repr=False, compare=False)
    _memo: tuple[int, int, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def objects(self) -> list[dict[str, object]]:
        return [m.obj for m in self.manifests]

    def digest(self) -> str:
        """`digest(self.objects)`; objects from files (not rendered) are serialised once, for as
        long as the Builder keeps them. Remembered for this Build."""
        seen = (id(self.manifests), len(self.manifests))
        if self._memo is not None and self._memo[:2] == seen:
            return self._memo[2]
        cache = self.canonical
        if cache is None or len(self.keys) != len(self.manifests):
            value = digest(self.objects)
            self._memo = (*seen, value)
            return value
        if len(cache) > _CANONICAL_MAX:
            cache.clear()
        docs = []
        for m, key in zip(self.manifests, self.keys, strict=True):
            hit = cache.get(id(m)) if key else None
            if hit is not None and hit[0] is m:  # the entry holds `m`: its id is not reused
                docs.append(hit[1])
                continue
            doc = _canonical(m.obj)
            if key:
                cache[id(m)] = (m, doc)
            docs.append(doc)
        value = _digest(docs)
        self._memo = (*seen, value)
        return value


def digest(objects: list[dict[str, object]]) -> str:
    """sha256 of the object set, independent of file order and layout (canonical JSON, sorted)."""
    return _digest([_canonical(o) for o in objects])


def _canonical(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


def _digest(docs: list[bytes]) -> str:
    # UTF-8 orders bytes as the code points they encode, so sorting the encoded documents
    # sorts them as their text (what the digest has always been defined on).
    docs.sort()
    h = hashlib.sha256()
    for d in docs:
        h.update(d)
        h.update(b"\n")
    return h.hexdigest()


_CANONICAL_MAX = 200_000
# Builder.build's `on_file`: a manifest file's objects as read, and their keys ("" for none).
OnFile: TypeAlias = Callable[[list[manifests.Manifest], list[str]], None]


class _Identity:
    """A manifest as `manifests.find_duplicates` sees it, its properties computed once."""

    __slots__ = ("key", "line", "name", "path", "ref")

    def __init__(self, m: manifests.Manifest) -> None:
        self.path, self.line, self.name, self.key, self.ref = m.path, m.line, m.name, m.key, m.ref


_FIND = object()  # "locate the pinned helm" (see pushgate.build.tools)
_RENDER_CACHE_MAX = 256


class _Readers(Mapping[str, Callable[[], bytes]]):
    """A tree's files (path -> the function that reads it), each function made when asked for:
    a build reads few of thousands (making them all cost more than the rest of a 10-file push's
    build). With `noted`, every path whose reader is taken is added to it (what a plan read)."""

    def __init__(self, tree: SourceTree, files: dict[str, Entry], noted: set[str] | None = None) -> None:
        self.tree, self.files, self.noted = tree, files, noted

    def noting(self, noted: set[str], keep: Callable[[str], bool] | None = None) -> _Readers:
        """These readers (those whose path `keep` accepts), noting what is read into `noted`."""
        files = self.files if keep is None else {p: e for p, e in self.files.items() if keep(p)}
        return _Readers(self.tree, files, noted)

    def __getitem__(self, path: str) -> Callable[[], bytes]:
        entry = self.files[path]
        if self.noted is not None:
            self.noted.add(path)
        return functools.partial(self.tree.read, entry)

    def __contains__(self, path: object) -> bool:
        return path in self.files

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


class Builder:
    """Builds trees with one configuration; caches parsed files and chart renders by content
    across builds."""

    def __init__(self, config: BuildConfig, *, kustomize_bin: str | None,
                 helm_bin: str | object | None = _FIND) -> None:
        self.config = config
        self.kustomize_bin = kustomize_bin
        self.helm_bin: str | None = (tools.default_helm(kustomize_bin) if helm_bin is _FIND
                                     else helm_bin if isinstance(helm_bin, str) else None)
        # What the last few builds used (pushgate.core.gencache): rotated at each build.
        self._parsed: GenCache[str, manifests.LoadResult] = GenCache()
        self._renders: dict[str, bytes] = {}  # helm output by the digest of everything it read
        self._canonical: _Canonical = GenCache()  # see Build.digest
        self._idents: GenCache[int, tuple[manifests.Manifest, _Identity]] = GenCache()  # see _identities
        self._completed: GenCache[int, tuple[manifests.Manifest, str, _Scope, manifests.Manifest]] = (
            GenCache())  # see _complete
        # is_manifest_path(path, include, exclude) and (path, ("*",), exclude) per path: fnmatch
        # costs ~10 us a call, twice per file per build.
        self._selected: GenCache[str, tuple[bool, bool]] = GenCache()
        # The last build's kustomize and helm plans: (its paths, the files they read -> their
        # keys, the sorted paths, kplan, hplan). See _plans.
        self._plan_memo: tuple[frozenset[str], dict[str, str], list[str], kustomize.Plan,
                               helm.Plan] | None = None
        # What the last build made of each plain file, by path: (key, None) for a file that is
        # not a manifest, else (key, manifests, their keys, problems). Replaced at each build.
        self._segments: dict[str, tuple[Any, ...]] = {}
        # Each such file's manifests completed (default namespace) and their identities, by path:
        # (the segment, the CRD scopes, completed manifests, identities). Replaced at each build.
        self._finished: dict[str, tuple[Any, ...]] = {}

    def build(self, tree: SourceTree, deadline: float | None = None,
              on_file: OnFile | None = None) -> Build:
        """The tree's objects, completed, and every problem met on the way. `on_file` is told
        the objects of each manifest file read anew (not one unchanged since the last build)
        as it is read, with their keys; before namespace defaults, which depend on the whole
        tree's CRDs."""
        deadline = deadline or time.monotonic() + 3600.0
        for cache in (self._parsed, self._canonical, self._idents, self._completed, self._selected):
            cache.rotate()
        sources.rotate_listings()
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
        readers = _Readers(tree, files)
        keys = {p: e.key for p, e in files.items()}
        built = self._build(readers, keys, problems, deadline, on_file)
        built.canonical = self._canonical
        return built

    def preload(self, entry: Entry, tree: SourceTree) -> list[manifests.Manifest]:
        """The manifests of one file as a build of `tree` would read them (before any default
        namespace), parsed now into the cache the next build reads (see Gate.prefetch)."""
        if not self._paths(entry.path)[1]:
            return []
        return self._load(entry.key, entry.path, functools.partial(tree.read, entry)).manifests

    def _identities(self, built: list[manifests.Manifest], keys: list[str]) -> list[_Identity]:
        """What `manifests.find_duplicates` reads of each manifest, computed once per manifest
        read from a file (the Builder reuses those while the file is unchanged)."""
        cache = self._idents
        if len(cache) > _CANONICAL_MAX:
            cache.clear()
        out = []
        for m, key in zip(built, keys, strict=True):
            hit = cache.get(id(m)) if key else None
            if hit is not None and hit[0] is m:  # the entry holds `m`: its id is not reused
                out.append(hit[1])
                continue
            ident = _Identity(m)
            if key:
                cache[id(m)] = (m, ident)
            out.append(ident)
        return out

    def _paths(self, path: str) -> tuple[bool, bool]:
        """(not excluded, a manifest path): the configuration's include/exclude for `path`."""
        hit = self._selected.get(path)
        if hit is None:
            if len(self._selected) > 500_000:
                self._selected.clear()
            cfg = self.config
            hit = self._selected[path] = (manifests.is_manifest_path(path, ("*",), cfg.exclude),
                                          manifests.is_manifest_path(path, cfg.include, cfg.exclude))
        return hit

    def _build(self, readers: _Readers, keys: dict[str, str],
               problems: list[pv.Violation], deadline: float, on_file: OnFile | None) -> Build:
        cfg = self.config

        def selected(path: str) -> bool:
            return self._paths(path)[0]

        ordered, kplan, hplan = self._plans(readers, keys)
        for path, line, msg in kplan.problems:
            problems.append(pv.error(path, line, "", "kustomize", msg))
        used_charts = {c for k in kplan.roots for c in k.charts} | {
            c for k in _all(kplan) for c in k.charts}
        for path, line, msg in hplan.problems:
            problems.append(pv.error(path, line, "", "helm", msg))
        for path, line, msg in hplan.warnings:
            problems.append(pv.warning(path or "build.charts", line, "", "helm", msg))

        built: list[manifests.Manifest] = []
        out_keys: list[str] = []
        count = 0
        targets: list[str] = []
        files: list[tuple[str, tuple[Any, ...]]] = []  # (path, segment) of every manifest file
        crd_objs: list[dict[str, Any]] = []
        # A file's segment (what it adds to the build) depends on its path, its content and the
        # configuration only: an unchanged file's is reused whole, one lookup per file.
        last, segments = self._segments, {}
        for path in ordered:
            if kplan.covers(path) or hplan.covers(path):
                continue
            if path.endswith(jsonnet.SUFFIX):
                if cfg.jsonnet and selected(path):
                    targets.append(path)
                continue
            key = keys[path]
            seg = last.get(path) if key else None
            fresh = seg is None or seg[0] != key
            if seg is None or seg[0] != key:
                seg = self._segment(key, path, readers[path], deadline)
            if key:
                segments[path] = seg
            if seg[1] is None:
                continue
            count += 1
            files.append((path, seg))
            if fresh and on_file is not None and seg[1]:
                on_file(seg[1], seg[2])
            built.extend(seg[1])
            out_keys.extend(seg[2])
            problems.extend(seg[3])
            crd_objs.extend(seg[4])
        self._segments = segments
        api_versions = apiversions.for_render(cfg.kubernetes_version, (m.obj for m in built)) \
            if hplan.releases or used_charts else []
        rendered: list[manifests.Manifest] = []
        # Where namespaced objects that name none go: a chart's release namespace (as `helm
        # install` does), else the build's default one.
        namespaces: dict[int, str] = {}
        for root in kplan.roots:
            _check_deadline(deadline)
            count += 1
            ms, ps = self._render(root, readers, deadline, kplan, api_versions)
            rendered.extend(ms)
            problems.extend(ps)
        for release in hplan.releases:
            _check_deadline(deadline)
            count += 1
            ms, ps = self._helm(release, hplan, readers, keys, deadline, api_versions)
            namespaces.update((len(rendered) + i, release.namespace) for i in range(len(ms)))
            rendered.extend(ms)
            problems.extend(ps)
        if targets:
            _check_deadline(deadline)
            count += len(targets)
            ms, ps = self._jsonnet(targets, readers, deadline)
            rendered.extend(ms)
            problems.extend(ps)
        out_keys.extend("" for _ in rendered)
        # crd_scopes looks at CRDs only; the kind test first spares it every other object
        crds = scopes.crd_scopes([*crd_objs, *(m.obj for m in rendered
                                               if m.obj.get("kind") == "CustomResourceDefinition")])
        scope = tuple(sorted(crds.items()))
        # A file's completed manifests and identities hold while its segment and the scopes do.
        last, finished = self._finished, {}
        done: list[manifests.Manifest] = []
        idents: list[_Identity] = []
        for path, seg in files:
            hit = last.get(path)
            if hit is None or hit[0] is not seg or hit[1] != scope:
                ms = self._complete(seg[1], {}, seg[2], crds, scope)
                hit = (seg, scope, ms, self._identities(ms, seg[2]))
            if path in segments:
                finished[path] = hit
            done.extend(hit[2])
            idents.extend(hit[3])
        self._finished = finished
        ms = self._complete(rendered, namespaces, None, crds, scope)
        done.extend(ms)
        idents.extend(self._identities(ms, ["" for _ in ms]))
        # find_duplicates reads only what an _Identity holds (path, line, name, key, ref)
        problems.extend(manifests.find_duplicates(cast("list[manifests.Manifest]", idents)))
        return Build(done, problems, count, out_keys)

    def _complete(self, built: list[manifests.Manifest], namespaces: dict[int, str],
                  keys: list[str] | None, crds: dict[tuple[str, str], bool], scope: tuple[Any, ...],
                  ) -> list[manifests.Manifest]:
        """Namespaced objects that name no namespace get the configured default one (or their
        chart's release namespace). For a manifest read from a file (a key in `keys`) the answer
        is remembered while the file and the tree's CRD scopes are unchanged: the same manifest
        comes back, so what is cached per manifest downstream (digest, duplicates) stays valid.
        `crds` are the tree's CRD scopes (`scope` the same, sorted)."""
        cache = self._completed
        if len(cache) > _CANONICAL_MAX:
            cache.clear()
        out = []
        for i, m in enumerate(built):
            ns = namespaces.get(i, self.config.default_namespace)
            keyed = keys is not None and bool(keys[i])
            hit = cache.get(id(m)) if keyed else None
            if hit is not None and hit[0] is m and hit[1] == ns and hit[2] == scope:
                out.append(hit[3])
                continue
            obj = scopes.with_default_namespace(m.obj, ns, crds)
            done = m if obj is None else manifests.Manifest(m.path, m.line, m.index, obj, m.span)
            if keyed:
                cache[id(m)] = (m, ns, scope, done)  # holds `m`: its id is not reused
            out.append(done)
        return out

    def _plans(self, readers: _Readers, keys: dict[str, str],
               ) -> tuple[list[str], kustomize.Plan, helm.Plan]:
        """The tree's paths in order, and its kustomize and helm plans. A plan depends on the
        set of paths, the files it reads and the configuration: when the paths are those of the
        last build and every file the last plans read is unchanged (by key), they are reused."""
        paths = frozenset(readers)
        memo = self._plan_memo
        if memo is not None and memo[0] == paths and all(keys.get(p) == k for p, k in memo[1].items()):
            return memo[2], memo[3], memo[4]
        read: set[str] = set()

        def selected(path: str) -> bool:
            return self._paths(path)[0]

        # Kustomizations in excluded paths are not rendered; rendering still sees every file.
        kplan = kustomize.plan(readers.noting(read, selected), self.config.limits)
        used_charts = {c for k in kplan.roots for c in k.charts} | {
            c for k in _all(kplan) for c in k.charts}
        hplan = helm.plan(readers.noting(read), self.config.limits, configured=self.config.charts,
                          default_namespace=self.config.default_namespace,
                          renders=lambda d: (selected(posixpath.join(d, helm.CHART_FILE))
                                             and not kplan.covers(posixpath.join(d, helm.CHART_FILE))
                                             and d not in used_charts))
        ordered = sorted(readers)
        noted = {p: keys.get(p, "") for p in read}
        # Without content keys (a directory) nothing says a file is unchanged: never reused.
        self._plan_memo = (paths, noted, ordered, kplan, hplan) if all(noted.values()) else None
        return ordered, kplan, hplan

    def _segment(self, key: str, path: str, read: Callable[[], bytes],
                 deadline: float) -> tuple[Any, ...]:
        if not self._paths(path)[1]:
            return (key, None)
        _check_deadline(deadline)
        result = self._load(key, path, read)
        n = len(result.manifests)
        keys = [f"{key}#{i}" if key else "" for i in range(n)]
        crds = tuple(m.obj for m in result.manifests if m.obj.get("kind") == "CustomResourceDefinition")
        return (key, result.manifests, keys, result.problems, crds)

    def _load(self, key: str, path: str, read: Callable[[], bytes]) -> manifests.LoadResult:
        cache_key = f"{key}:{path}" if key else ""
        if cache_key:
            hit = self._parsed.get(cache_key)
            if hit is not None:
                return hit
        result = manifests.load(path, read(), self.config.limits)
        if cache_key:
            if len(self._parsed) > 50_000:
                self._parsed.clear()
            result = self._parsed[cache_key] = manifests.packed(result)  # kept across builds
        return result

    def _render(self, root: kustomize.Kustomization, readers: Mapping[str, Callable[[], bytes]],
                deadline: float, kplan: kustomize.Plan, api_versions: list[str],
                ) -> tuple[list[manifests.Manifest], list[pv.Violation]]:
        if self.kustomize_bin is None:
            return [], [pv.error(root.file, 0, "", "kustomize",
                                 "kustomize is not available on this server (the pinned one: "
                                 "`scripts/tools.sh path kustomize`, or install kustomize and pass "
                                 "--kustomize PATH / PUSHGATE_KUSTOMIZE)")]
        helm_args = None
        if kustomize.uses_helm(root, {k.dir: k for k in _all(kplan)}):
            if self.helm_bin is None:
                return [], [pv.error(root.file, 0, "", "kustomize", _NO_HELM)]
            helm_args = kustomize.Helm(self.helm_bin, self.config.kubernetes_version,
                                       tuple(api_versions))
        try:
            out = kustomize.render(self.kustomize_bin, root, readers,
                                   max(1.0, deadline - time.monotonic()),
                                   max_output=self.config.max_rendered_bytes, helm=helm_args)
        except kustomize.RenderError as e:
            return [], [pv.error(root.file, 0, "", "kustomize", f"kustomize build failed: {e}")]
        rendered = manifests.load(root.file, out, self.config.rendered_limits())
        ms: list[manifests.Manifest] = []
        for m in rendered.manifests:
            origin = kustomize.origin_of(m.obj, root.dir) or root.file
            line = self._origin_line(origin, m, readers)
            ms.append(manifests.Manifest(origin, line, m.index, m.obj))
        return ms, list(rendered.problems)

    def _origin_line(self, origin: str, m: manifests.Manifest,
                     readers: Mapping[str, Callable[[], bytes]]) -> int:
        read = readers.get(origin)
        if read is None:
            return 1
        if posixpath.basename(origin) in kustomize.NAMES:  # generated: by helmCharts, mostly
            at = re.search(rb"^helmCharts:", read(), re.M)
            return read().count(b"\n", 0, at.start()) + 1 if at else 1
        for src in manifests.load(origin, read(), self.config.limits).manifests:
            if src.kind == m.kind and (src.name == m.name or m.name.endswith(src.name)
                                       or src.name in m.name):
                return src.line
        return 1


    def _helm(self, release: helm.Release, hplan: helm.Plan, readers: Mapping[str, Callable[[], bytes]],
              keys: dict[str, str], deadline: float, api_versions: list[str],
              ) -> tuple[list[manifests.Manifest], list[pv.Violation]]:
        chart = release.chart
        if self.helm_bin is None:
            return [], [pv.error(chart.file, 0, "", "helm", _NO_HELM)]
        inputs = sorted((p, keys[p]) for p in readers
                        if p.startswith(chart.dir + "/" if chart.dir else "") or p in release.values_files)
        cache_key = "" if any(not k for _, k in inputs) else hashlib.sha256(json.dumps(
            [inputs, release.name, release.namespace, release.values_files, api_versions,
             self.config.kubernetes_version, self.helm_bin]).encode()).hexdigest()
        out = self._renders.get(cache_key) if cache_key else None
        if out is None:
            try:
                out = helm.render(self.helm_bin, release, readers,
                                  kube_version=self.config.kubernetes_version, api_versions=api_versions,
                                  timeout=max(1.0, deadline - time.monotonic()),
                                  max_output=self.config.max_rendered_bytes)
            except proc.RenderError as e:
                return [], [pv.error(chart.file, 0, "", "helm", f"helm template failed: {e}")]
            if cache_key:
                if len(self._renders) >= _RENDER_CACHE_MAX:
                    self._renders.clear()
                self._renders[cache_key] = out
        return self._rendered_docs(helm.split(out, release, hplan), readers, helm.template_line)

    def _jsonnet(self, targets: list[str], readers: Mapping[str, Callable[[], bytes]], deadline: float,
                 ) -> tuple[list[manifests.Manifest], list[pv.Violation]]:
        outputs = jsonnet.render(readers, targets, timeout=max(1.0, deadline - time.monotonic()),
                                 max_output=self.config.max_rendered_bytes)
        problems: list[pv.Violation] = []
        docs: list[tuple[str, bytes]] = []
        for o in outputs:
            if o.error:
                where = o.error_file if o.error_file in readers else o.file
                problems.append(pv.error(where, o.line, "", "jsonnet",
                                         f"{o.file}: {o.error}" if where != o.file else o.error))
            else:
                docs.append((o.file, o.json.encode("utf-8", "surrogatepass")))
        ms, ps = self._rendered_docs(docs, readers, jsonnet.object_line, fmt="json")
        return ms, problems + ps

    def _rendered_docs(self, docs: list[tuple[str, bytes]], readers: Mapping[str, Callable[[], bytes]],
                       line_of: Callable[[bytes, str, int], int], fmt: str = "yaml",
                       ) -> tuple[list[manifests.Manifest], list[pv.Violation]]:
        """Objects of rendered documents, each named by its source file and the line of the
        object in it (when `line_of` finds it); problems are reported at the source file."""
        limits = self.config.rendered_limits()
        ms: list[manifests.Manifest] = []
        ps: list[pv.Violation] = []
        seen: dict[tuple[str, str], int] = {}
        for source, text in docs:
            loaded = manifests.load(f"rendered.{fmt}", text, limits)
            ps.extend(dataclasses.replace(v, path=source, line=0) for v in loaded.problems)
            for m in loaded.manifests:
                n = seen.get((source, m.kind), 0)
                seen[(source, m.kind)] = n + 1
                read = readers.get(source)
                line = line_of(read(), m.kind, n) if read is not None and m.kind else 0
                ms.append(manifests.Manifest(source, line, m.index, m.obj))
        return ms, ps


_NO_HELM = ("helm is not available on this server (the pinned one: `scripts/tools.sh path helm`, "
            "or set PUSHGATE_HELM)")


def _all(kplan: kustomize.Plan) -> list[kustomize.Kustomization]:
    return kplan.found


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise BuildTimeout("gate time limit exceeded")
