"""Kustomizations in a tree: which to render, what to refuse, and rendering with pinned kustomize.

Called by the build (`pushgate.build.build`). A directory holding `kustomization.yaml` (or `.yml`,
`Kustomization`) is rendered and its output is what gets checked; one referenced by another
kustomization (a base, a component) is rendered only through the one that uses it, and files
under any kustomization directory are checked only through the output. Rendering is offline:
remote bases, helm charts and plugins are refused before kustomize runs, with the reason.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pushgate.build import proc
from pushgate.core import manifests, yamlsafe

NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ORIGIN = "config.kubernetes.io/origin"
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/|bitbucket\.org/)|\?ref=|//")
_REFUSED_FIELDS = {
    "helmChartInflationGenerator": "helmChartInflationGenerator is not supported: use helmCharts",
    "generators": "kustomize plugins (generators) are not allowed",
    "transformers": "kustomize plugins (transformers) are not allowed",
    "validators": "kustomize plugins (validators) are not allowed",
}


@dataclass(frozen=True)
class Kustomization:
    dir: str  # "" for the root
    file: str  # path of the kustomization file
    doc: dict[str, Any]
    refs: tuple[str, ...]  # directories it uses (resources, bases, components), normalised
    charts: tuple[str, ...] = ()  # chart directories its helmCharts render (repo-relative)


@dataclass
class Plan:
    roots: list[Kustomization] = field(default_factory=list)
    found: list[Kustomization] = field(default_factory=list)  # every readable kustomization
    covered_dirs: list[str] = field(default_factory=list)  # every kustomization dir
    problems: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, message)

    def covers(self, path: str) -> bool:
        if not self.covered_dirs:  # asked for every file of the tree: the common case first
            return False
        return any(d == "" or path.startswith(d + "/") for d in self.covered_dirs)


def plan(files: Mapping[str, Callable[[], bytes]], limits: manifests.Limits) -> Plan:
    """Find kustomizations among `files` (path -> reader) and decide which are roots. Each
    kustomization file is read with the same bounded parser as every manifest."""
    found: list[Kustomization] = []
    result = Plan()
    # Tree paths are normalised (no leading, doubled or trailing "/"), so rpartition is
    # posixpath's dirname and basename, at a fraction of the cost over thousands of files.
    dirs_in_tree = {p.rpartition("/")[0] for p in files}
    for path in sorted(p for p in files if p.rpartition("/")[2] in NAMES):
        d = posixpath.dirname(path)
        doc, line, problem = _read(path, files[path](), limits)
        if problem:
            result.problems.append((path, line, problem))
            result.covered_dirs.append(d)
            continue
        refs = []
        for key in ("resources", "bases", "components"):
            for item in doc.get(key) or []:
                if not isinstance(item, str):
                    continue
                if _REMOTE.search(item):
                    result.problems.append(
                        (path, 0, f"remote {key[:-1]} {item!r} refused: the gate renders offline; "
                               f"vendor it into the repository"))
                    continue
                target = posixpath.normpath(posixpath.join(d, item))
                if target.startswith("../") or target == "..":
                    result.problems.append((path, 0, f"{key[:-1]} {item!r} points outside the repository"))
                    continue
                target = "" if target == "." else target
                if target in dirs_in_tree and any(
                        posixpath.join(target, n) in files for n in NAMES):
                    refs.append(target)
        for key, why in _REFUSED_FIELDS.items():
            if doc.get(key):
                result.problems.append((path, 0, why))
        charts = _helm_charts(path, d, doc, files, result.problems)
        found.append(Kustomization(d, path, doc, tuple(refs), tuple(charts)))
        result.covered_dirs.append(d)
    result.found = found
    referenced = {r for k in found for r in k.refs}
    bad_files = {f for f, _, _ in result.problems}
    result.roots = [k for k in found if k.dir not in referenced and k.file not in bad_files]
    return result


_CHART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _in_repo(base: str, rel: object) -> str | None:
    """`rel` joined to `base`, or None when it is not a relative path inside the repository."""
    if not isinstance(rel, str) or not rel or posixpath.isabs(rel):
        return None
    target = posixpath.normpath(posixpath.join(base, rel))
    return None if target == ".." or target.startswith("../") else ("" if target == "." else target)


def _helm_charts(path: str, d: str, doc: dict[str, Any], files: Mapping[str, Callable[[], bytes]],
                 problems: list[tuple[str, int, str]]) -> list[str]:
    """The chart directories `helmCharts` renders; refusals for what would leave the tree."""
    charts = doc.get("helmCharts") or []
    if not charts:
        return []
    glob: dict[str, Any] = doc["helmGlobals"] if isinstance(doc.get("helmGlobals"), dict) else {}
    if glob.get("configHome"):
        problems.append((path, 0, "helmGlobals.configHome is not allowed (the gate gives helm an "
                                  "empty configuration of its own)"))
    home = _in_repo(d, glob.get("chartHome") or "charts")
    if home is None:
        problems.append((path, 0, f"helmGlobals.chartHome {glob.get('chartHome')!r} must be a relative "
                                  f"path inside the repository"))
        return []
    if not isinstance(charts, list):
        problems.append((path, 0, "helmCharts must be a list"))
        return []
    found = []
    for c in charts:
        name = c.get("name") if isinstance(c, dict) else None
        if not isinstance(name, str) or not _CHART_NAME.match(name):
            problems.append((path, 0, f"helmCharts: chart name {name!r} must be a plain chart name "
                                      f"(the chart is looked up under chartHome)"))
            continue
        for key in ("valuesFile", "additionalValuesFiles"):
            values = c.get(key)
            for v in values if isinstance(values, list) else [values] if values else []:
                if _in_repo(d, v) is None:
                    problems.append((path, 0, f"helmCharts {name}: {key} {v!r} must be a relative "
                                              f"path inside the repository"))
        repo, version = c.get("repo"), c.get("version")
        chart_dir = posixpath.join(home, f"{name}-{version}", name) if repo and version \
            else posixpath.join(home, name)
        if posixpath.join(chart_dir, "Chart.yaml") in files:
            found.append(chart_dir)
            continue
        if repo:
            oci = str(repo).startswith("oci://")
            fetch = f"pull {str(repo).rstrip('/')}/{name}" if oci else f"pull {name} --repo {repo}"
            untar = posixpath.dirname(chart_dir) or "."
            problems.append((path, 0, (
                f"helm chart {name!r} from {repo} is not vendored at {chart_dir}/: the gate renders "
                f"offline and never fetches charts; run `helm {fetch}"
                f"{f' --version {version}' if version else ''} --untar --untardir {untar}` and "
                f"commit it")))
        else:
            problems.append((path, 0, f"helm chart {name!r}: no chart at {chart_dir}/ (no Chart.yaml)"))
    return found


def _read(path: str, data: bytes, limits: manifests.Limits) -> tuple[dict[str, Any], int, str]:
    """The kustomization as a mapping, or the line and text of what is wrong with it."""
    if len(data) > limits.max_file_bytes:
        return {}, 0, f"kustomization is {len(data)} bytes, over the limit of {limits.max_file_bytes}"
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return {}, 0, "kustomization is not valid UTF-8"
    parsed = yamlsafe.parse_yaml(path, text, max_documents=1, max_depth=limits.max_depth,
                                 max_alias_expansions=limits.max_alias_expansions)
    if parsed.problems:
        p = parsed.problems[0]
        return {}, p.line, f"kustomization is not valid YAML: {p.message}"
    doc = parsed.documents[0].value if parsed.documents else {}
    if not isinstance(doc, dict):
        return {}, 1, "kustomization is not a mapping"
    return doc, 0, ""


def uses_helm(root: Kustomization, by_dir: dict[str, Kustomization]) -> bool:
    """Whether rendering `root` runs helmCharts (its own, or those of what it uses)."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        k = todo.pop()
        if k.dir in seen:
            continue
        seen.add(k.dir)
        if k.doc.get("helmCharts"):
            return True
        todo.extend(by_dir[r] for r in k.refs if r in by_dir)
    return False


@dataclass(frozen=True)
class Helm:
    """What `kustomize build --enable-helm` is given: the pinned helm and what it is told."""

    command: str
    kube_version: str  # MAJOR.MINOR
    api_versions: tuple[str, ...]


def render(kustomize_bin: str, root: Kustomization, files: Mapping[str, Callable[[], bytes]],
           timeout: float, *, max_output: int = 32 * 1024 * 1024, helm: Helm | None = None) -> bytes:
    """`kustomize build` of one root over a materialised copy of the tree, with origin
    annotations on, so each rendered object can be traced back to its source file."""
    with tempfile.TemporaryDirectory(prefix="pushgate-kustomize-") as tmp:
        _materialise(tmp, files)
        kfile = os.path.join(tmp, root.file)
        doc = dict(root.doc)
        meta = list(doc.get("buildMetadata") or [])
        if "originAnnotations" not in meta:
            meta.append("originAnnotations")
        doc["buildMetadata"] = meta
        with open(kfile, "w") as f:
            yaml.safe_dump(doc, f)
        home = tempfile.mkdtemp(prefix=".home-", dir=tmp)
        env = proc.minimal_env(home, KUSTOMIZE_PLUGIN_HOME=os.path.join(home, ".none"),
                               HELM_PLUGINS=os.path.join(home, ".none"))
        argv = [kustomize_bin, "build", os.path.join(tmp, root.dir) if root.dir else tmp]
        if helm is not None:
            argv += ["--enable-helm", "--helm-command", helm.command,
                     "--helm-kube-version", f"v{helm.kube_version}.0"]
            if helm.api_versions:
                argv += ["--helm-api-versions", ",".join(helm.api_versions)]
        res = proc.run(argv, env=env, cwd=tmp, timeout=timeout, max_output=max_output,
                       what="kustomize build")
        if res.returncode != 0:
            msg = proc.clean_message(res.stderr, tmp)
            if helm is not None:
                msg = msg.replace(helm.command, "helm")
            raise RenderError(msg or f"kustomize exit {res.returncode}")
        return res.stdout


RenderError = proc.RenderError


def _materialise(tmp: str, files: Mapping[str, Callable[[], bytes]]) -> None:
    for path, read in files.items():
        full = os.path.join(tmp, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(read())


def origin_of(obj: dict[str, Any], root_dir: str) -> str | None:
    """The source file of a rendered object (repo-relative), removing the origin annotation."""
    meta = obj.get("metadata") or {}
    ann = meta.get("annotations") or {}
    raw = ann.pop(ORIGIN, None)
    if not ann and "annotations" in meta:
        del meta["annotations"]
    if not isinstance(raw, str):
        return None
    parsed = yamlsafe.parse_yaml(ORIGIN, raw, max_documents=1, max_depth=8, max_alias_expansions=0)
    if parsed.problems or not parsed.documents:
        return None
    origin = parsed.documents[0].value
    rel = origin.get("path") if isinstance(origin, dict) else None
    if not isinstance(rel, str):
        rel = origin.get("configuredIn") if isinstance(origin, dict) else None
    if not isinstance(rel, str):
        return None
    return posixpath.normpath(posixpath.join(root_dir, rel))


def unreferenced(all_paths: Iterable[str], p: Plan) -> list[str]:
    return [x for x in all_paths if not p.covers(x)]
