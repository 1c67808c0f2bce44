"""Tree -> objects: discovery, include/exclude, kustomize rendering, default namespace, digest.

Called by the gate (`pushgate.gate.gate`) for every gated push, by the reconciler for the commit
it applies, and by `pushgate validate` / `pushgate render` for a working tree: one code path and
one `BuildConfig`, so the object set the gate checked is the object set that is applied. The
digest of that set is what the gate records with its verdict and the reconciler compares.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pushgate.build import kustomize
from pushgate.build.config import BuildConfig
from pushgate.build.sources import MODE_SUBMODULE, MODE_SYMLINK, Entry, SourceTree
from pushgate.core import manifests, scopes
from pushgate.core import violations as pv


class BuildTimeout(Exception):
    """The build did not finish before the caller's deadline."""


@dataclass
class Build:
    manifests: list[manifests.Manifest]
    problems: list[pv.Violation]
    files: int = 0
    # Per manifest, the identity of its source content ("<blob>#<n>"), "" when rendered: what
    # result caches are keyed by (with the path), so a push that changes 10 of 5,000 files
    # checks 10.
    keys: list[str] = field(default_factory=list)

    @property
    def objects(self) -> list[dict[str, object]]:
        return [m.obj for m in self.manifests]

    def digest(self) -> str:
        return digest(self.objects)


def digest(objects: list[dict[str, object]]) -> str:
    """sha256 of the object set, independent of file order and layout (canonical JSON, sorted)."""
    docs = sorted(json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                  for o in objects)
    h = hashlib.sha256()
    for d in docs:
        h.update(d.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


class Builder:
    """Builds trees with one configuration; caches parsed files by content across builds."""

    def __init__(self, config: BuildConfig, *, kustomize_bin: str | None) -> None:
        self.config = config
        self.kustomize_bin = kustomize_bin
        self._parsed: dict[str, manifests.LoadResult] = {}

    def build(self, tree: SourceTree, deadline: float | None = None) -> Build:
        deadline = deadline or time.monotonic() + 3600.0
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
        # Kustomizations in excluded paths are not rendered; rendering still sees every file.
        kplan = kustomize.plan({p: r for p, r in readers.items()
                                if manifests.is_manifest_path(p, ("*",), self.config.exclude)},
                               self.config.limits)
        for path, line, msg in kplan.problems:
            problems.append(pv.error(path, line, "", "kustomize", msg))

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
        built = self._complete(built)
        problems.extend(manifests.find_duplicates(built))
        return Build(built, problems, count, keys)

    def _complete(self, built: list[manifests.Manifest]) -> list[manifests.Manifest]:
        """Namespaced objects that name no namespace get the configured default one."""
        crds = scopes.crd_scopes(m.obj for m in built)
        out = []
        for m in built:
            obj = scopes.with_default_namespace(m.obj, self.config.default_namespace, crds)
            out.append(m if obj is None else manifests.Manifest(m.path, m.line, m.index, obj, m.span))
        return out

    def _load(self, entry: Entry, path: str, tree: SourceTree) -> manifests.LoadResult:
        cache_key = f"{entry.key}:{path}" if entry.key else ""
        if cache_key and cache_key in self._parsed:
            return self._parsed[cache_key]
        result = manifests.load(path, tree.read(entry), self.config.limits)
        if cache_key:
            if len(self._parsed) > 50_000:
                self._parsed.clear()
            self._parsed[cache_key] = result
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


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise BuildTimeout("gate time limit exceeded")
