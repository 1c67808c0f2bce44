"""Helm charts in a tree: which to render, what to refuse, and `helm template` with pinned helm.

Called by the build (`pushgate.build.build`). A directory holding `Chart.yaml` is a chart: none of
its files is ever read as a manifest. A top-level chart (not inside another chart, not under a
kustomization, not excluded) is rendered with `helm template`, offline, and its output is what
gets checked and applied; sub-charts under `charts/` are rendered only through their parent.
Dependencies must be vendored under `charts/` (directories or `.tgz` archives): a chart whose
dependencies are missing is refused with the command that vendors them. `Chart.yaml` and values
files are read with the bounded parser first, so a YAML bomb never reaches helm.

Each rendered object is traced back to its template through helm's `# Source:` comments
(`web/templates/deployment.yaml`, with the line of its `kind:` when the template states it
literally), so a report line points at the template that made it.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pushgate.build import proc
from pushgate.build.config import HelmChart
from pushgate.core import manifests, yamlsafe

CHART_FILE = "Chart.yaml"
_SOURCE = re.compile(r"^# Source: (.+?)\s*$", re.M)
_DOC_SPLIT = re.compile(rb"^---[ \t]*$", re.M)
# Values and Chart.yaml problems helm would also refuse: syntax and the limits. Key and tag
# oddities (`on:`, duplicate keys) are left to helm, which reads YAML its own way.
_FATAL_YAML_RULES = ("yaml", "yaml.limits")


@dataclass(frozen=True)
class Chart:
    dir: str  # repo-relative chart directory ("" for a chart at the root)
    name: str  # `name` in Chart.yaml (what helm's `# Source:` lines start with)
    doc: dict[str, Any]
    dependencies: tuple[tuple[str, str, int], ...]  # (name, alias or "", line in Chart.yaml)

    @property
    def file(self) -> str:
        return posixpath.join(self.dir, CHART_FILE)


@dataclass(frozen=True)
class Release:
    chart: Chart
    name: str
    namespace: str
    values_files: tuple[str, ...]  # repo-relative


@dataclass
class Plan:
    releases: list[Release] = field(default_factory=list)
    chart_dirs: list[str] = field(default_factory=list)  # every chart, sub-charts included
    charts: dict[str, Chart] = field(default_factory=dict)  # by directory
    problems: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, message)
    warnings: list[tuple[str, int, str]] = field(default_factory=list)
    archive_paths: list[str] = field(default_factory=list)  # vendored .tgz dependencies

    def covers(self, path: str) -> bool:
        if not self.chart_dirs:  # asked for every file of the tree: the common case first
            return False
        return any(d == "" or path.startswith(d + "/") for d in self.chart_dirs)

    def archives(self, chart: Chart) -> list[str]:
        base = posixpath.join(chart.dir, "charts")
        return [p for p in self.archive_paths if posixpath.dirname(p) == base]


def _inside(path: str, d: str) -> bool:
    return d == "" or path.startswith(d + "/")


def plan(files: Mapping[str, Callable[[], bytes]], limits: manifests.Limits, *,
         configured: Sequence[HelmChart], default_namespace: str,
         renders: Callable[[str], bool]) -> Plan:
    """Charts among `files` (path -> reader). `renders(dir)` says whether a chart directory may be
    rendered on its own (not excluded, not under a kustomization)."""
    result = Plan()
    result.archive_paths = sorted(p for p in files if p.endswith((".tgz", ".tar.gz"))
                                  and posixpath.basename(posixpath.dirname(p)) == "charts")
    # (tree paths are normalised: rpartition is posixpath's basename, much cheaper)
    for path in sorted(p for p in files if p.rpartition("/")[2] == CHART_FILE):
        d = posixpath.dirname(path)
        doc, deps, line, problem = _read_chart(path, files[path](), limits)
        result.chart_dirs.append(d)
        if problem:
            result.problems.append((path, line, problem))
            continue
        name = doc.get("name")
        result.charts[d] = Chart(d, name if isinstance(name, str) and name else posixpath.basename(d),
                                 doc, deps)
    tops = [c for d, c in result.charts.items()
            if not any(o != d and _inside(d, o) for o in result.chart_dirs)]
    for chart in tops:
        missing = [(n, line) for n, _, line in chart.dependencies if not _vendored(chart, n, files)]
        for dep, line in missing:
            where = chart.dir or "."
            result.problems.append((chart.file, line, (
                f"dependency {dep!r} is not vendored under {posixpath.join(chart.dir, 'charts')}/: "
                f"the gate renders offline; run `helm dependency build {where}` and commit "
                f"{posixpath.join(chart.dir, 'charts')}/")))
        if missing or not renders(chart.dir):
            continue
        wanted = [c for c in configured if posixpath.normpath(c.path) == (chart.dir or ".")]
        for c in wanted or [HelmChart(path=chart.dir or ".")]:
            release = _release(chart, c, default_namespace, files, limits, result.problems)
            if release is not None:
                result.releases.append(release)
    known = {c.dir or "." for c in tops}
    for c in configured:
        if posixpath.normpath(c.path) not in known:
            result.warnings.append(("", 0, f"build.charts names {c.path!r}, which is not a chart "
                                           f"directory of this tree (no {CHART_FILE})"))
    return result


def _release(chart: Chart, c: HelmChart, default_namespace: str,
             files: Mapping[str, Callable[[], bytes]], limits: manifests.Limits,
             problems: list[tuple[str, int, str]]) -> Release | None:
    values: list[str] = []
    ok = True
    own = posixpath.join(chart.dir, "values.yaml")
    for v in ((own,) if own in files else ()) + tuple(
            posixpath.normpath(posixpath.join(chart.dir, f)) for f in c.values_files):
        if v.startswith("../") or v == ".." or posixpath.isabs(v):
            problems.append((chart.file, 0, f"values file {v!r} (build.charts) is outside the repository"))
            ok = False
        elif v not in files:
            problems.append((chart.file, 0, f"values file {v!r} (build.charts) is not in the tree"))
            ok = False
        else:
            problem = _check_values(v, files[v](), limits)
            if problem:
                problems.append(problem)
                ok = False
            elif v != own:
                values.append(v)
    if not ok:
        return None
    name = c.release_name or posixpath.basename(chart.dir) or chart.name
    return Release(chart, name, c.namespace or default_namespace, tuple(values))


def _read_chart(path: str, data: bytes, limits: manifests.Limits
                ) -> tuple[dict[str, Any], tuple[tuple[str, str, int], ...], int, str]:
    if len(data) > limits.max_file_bytes:
        return {}, (), 0, f"Chart.yaml is {len(data)} bytes, over the limit of {limits.max_file_bytes}"
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return {}, (), 0, "Chart.yaml is not valid UTF-8"
    parsed = yamlsafe.parse_yaml(path, text, max_documents=1, max_depth=limits.max_depth,
                                 max_alias_expansions=limits.max_alias_expansions)
    if parsed.problems:
        p = parsed.problems[0]
        return {}, (), p.line, f"Chart.yaml is not valid: {p.message}"
    if not parsed.documents or not isinstance(parsed.documents[0].value, dict):
        return {}, (), 1, "Chart.yaml is not a mapping"
    doc, span = parsed.documents[0].value, parsed.documents[0].span
    deps: list[tuple[str, str, int]] = []
    raw = doc.get("dependencies") or []
    dep_spans = span.children.get("dependencies")
    for i, d in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(d, dict) and isinstance(d.get("name"), str):
            line = dep_spans.children[str(i)].line if dep_spans and str(i) in dep_spans.children else 0
            alias: str = d["alias"] if isinstance(d.get("alias"), str) else ""
            deps.append((d["name"], alias, line))
    return doc, tuple(deps), 0, ""


def _check_values(path: str, data: bytes, limits: manifests.Limits) -> tuple[str, int, str] | None:
    if len(data) > limits.max_file_bytes:
        return path, 0, f"values file is {len(data)} bytes, over the limit of {limits.max_file_bytes}"
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return path, 0, "values file is not valid UTF-8"
    parsed = yamlsafe.parse_yaml(path, text, max_documents=limits.max_documents,
                                 max_depth=limits.max_depth,
                                 max_alias_expansions=limits.max_alias_expansions)
    for p in parsed.problems:
        if p.rule in _FATAL_YAML_RULES:
            return path, p.line, f"values file is not valid YAML: {p.message}"
    return None


def _vendored(chart: Chart, dep: str, files: Mapping[str, Callable[[], bytes]]) -> bool:
    """Whether helm will find dependency `dep` under the chart's charts/ (a directory whose
    Chart.yaml is named `dep`, or an archive `dep-<version>.tgz`)."""
    base = posixpath.join(chart.dir, "charts") + "/"
    for p in files:
        if not p.startswith(base):
            continue
        rest = p[len(base):]
        if "/" not in rest and rest.startswith(dep + "-") and rest.endswith((".tgz", ".tar.gz")):
            return True
        parts = rest.split("/")
        if len(parts) == 2 and parts[1] == CHART_FILE and (parts[0] == dep or _named(files[p], dep)):
            return True
    return False


def _named(read: Callable[[], bytes], name: str) -> bool:
    return bool(re.search(rb"^name:\s*[\"']?" + re.escape(name.encode()) + rb"[\"']?\s*$", read(), re.M))


# -- rendering ----------------------------------------------------------------------------------

def render(helm_bin: str, release: Release, files: Mapping[str, Callable[[], bytes]], *,
           kube_version: str, api_versions: Sequence[str], timeout: float, max_output: int) -> bytes:
    """`helm template` of one release over a materialised copy of its chart (and values files)."""
    chart = release.chart
    with tempfile.TemporaryDirectory(prefix="pushgate-helm-") as tmp:
        tree = os.path.join(tmp, "tree")
        wanted = {p: r for p, r in files.items()
                  if _inside(p, chart.dir) or p in release.values_files}
        _materialise(tree, wanted)
        home = os.path.join(tmp, "home")
        os.makedirs(os.path.join(home, "plugins"))
        env = proc.minimal_env(home, HELM_CACHE_HOME=os.path.join(home, "cache"),
                               HELM_CONFIG_HOME=os.path.join(home, "config"),
                               HELM_DATA_HOME=os.path.join(home, "data"),
                               HELM_PLUGINS=os.path.join(home, "plugins"))
        argv = [helm_bin, "template", release.name, os.path.join(tree, chart.dir) if chart.dir else tree,
                "--namespace", release.namespace, "--kube-version", f"v{kube_version}.0",
                "--include-crds", "--skip-tests"]
        if api_versions:
            argv += ["--api-versions", ",".join(api_versions)]
        for v in release.values_files:
            argv += ["--values", os.path.join(tree, v)]
        res = proc.run(argv, env=env, cwd=tmp, timeout=timeout, max_output=max_output,
                       what="helm template")
        if res.returncode != 0:
            raise proc.RenderError(proc.clean_message(res.stderr, tree)
                                   or f"helm exited with status {res.returncode}")
        return res.stdout


def _materialise(root: str, files: Mapping[str, Callable[[], bytes]]) -> None:
    for path, read in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(read())


def split(out: bytes, release: Release, plan_: Plan) -> list[tuple[str, bytes]]:
    """helm's output, one document at a time, each with the template it came from (the
    template's repo-relative path, or the chart file when it is not known)."""
    docs: list[tuple[str, bytes]] = []
    for chunk in _DOC_SPLIT.split(out):
        if not chunk.strip():
            continue
        m = _SOURCE.search(chunk.decode("utf-8", "replace"))
        docs.append((source_path(m.group(1), release.chart, plan_) if m else release.chart.file, chunk))
    return docs


def source_path(source: str, chart: Chart, plan_: Plan) -> str:
    """Map helm's `# Source: <chart name>/charts/<sub>/templates/x.yaml` to a path of the tree."""
    parts = source.split("/")
    if not parts or parts[0] != chart.name:
        return chart.file
    current, rest = chart, parts[1:]
    while len(rest) > 2 and rest[0] == "charts":
        sub = _subchart(current, rest[1], plan_)
        if sub is None:
            archives = sorted(d for d in plan_.archives(current) if posixpath.basename(d).startswith(
                _dep_name(current, rest[1]) + "-"))
            return archives[0] if archives else current.file
        current, rest = sub, rest[2:]
    return posixpath.join(current.dir, *rest)


def _dep_name(chart: Chart, shown: str) -> str:
    """The dependency's chart name for the name helm shows (its alias, if it has one)."""
    return next((n for n, alias, _ in chart.dependencies if alias == shown), shown)


def _subchart(parent: Chart, shown: str, plan_: Plan) -> Chart | None:
    name = _dep_name(parent, shown)
    base = posixpath.join(parent.dir, "charts")
    candidates = [c for d, c in plan_.charts.items() if posixpath.dirname(d) == base]
    return (next((c for c in candidates if posixpath.basename(c.dir) == name), None)
            or next((c for c in candidates if c.name == name), None))


def template_line(text: bytes, kind: str, ordinal: int) -> int:
    """Best-effort line where the `ordinal`-th object of `kind` starts in a template: its literal
    `kind:` line (or the `apiVersion:` just above it); 0 when the template computes its kind."""
    pattern = re.compile(rb"^kind:[ \t]*[\"']?" + re.escape(kind.encode()) + rb"[\"']?[ \t]*(?:#.*)?$", re.M)
    found = list(pattern.finditer(text))
    if not found:
        return 0
    at = found[min(ordinal, len(found) - 1)].start()
    line = text.count(b"\n", 0, at) + 1
    above = text[:at].split(b"\n")[-4:-1]
    for back, prev in enumerate(reversed(above), start=1):
        if prev.startswith(b"apiVersion:"):
            return line - back
    return line
