"""Render cost of a Helm chart in the build: a chart of N templates (default 50) vs the same
objects committed pre-rendered.

Four timings, each the median of the repeats: `helm template` alone (the pinned helm, the whole
process); the build of the chart tree with a fresh Builder (materialise, helm, split, parse: what
a push that changes the chart pays); the build with a warm Builder on unchanged content (the
render cache keyed by the chart's blobs: what a push that does not touch the chart pays); and the
build of the rendered objects written as plain manifests (the cost without Helm). Offline.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import common

NAME = "render"

TEMPLATE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{{{ include "bench.fullname" . }}}}-{n}
  labels: {{{{- include "bench.labels" . | nindent 4 }}}}
spec:
  replicas: {{{{ .Values.replicas }}}}
  selector: {{matchLabels: {{app: "{{{{ .Release.Name }}}}-{n}"}}}}
  template:
    metadata: {{labels: {{app: "{{{{ .Release.Name }}}}-{n}"}}}}
    spec:
      containers:
        - name: app
          image: "{{{{ .Values.image.repository }}}}:{{{{ .Values.image.tag }}}}"
          resources: {{{{- toYaml .Values.resources | nindent 12 }}}}
          env:
          {{{{- range $k, $v := .Values.env }}}}
            - {{name: {{{{ $k }}}}, value: {{{{ $v | quote }}}}}}
          {{{{- end }}}}
"""
HELPERS = """{{- define "bench.fullname" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end -}}
{{- define "bench.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
"""
VALUES = """replicas: 2
image: {repository: nginx, tag: 1.27.3}
resources: {limits: {cpu: 100m, memory: 64Mi}, requests: {cpu: 50m, memory: 32Mi}}
env: {A: "1", B: "two", C: "three"}
"""


def chart_files(templates: int) -> dict[str, str]:
    files = {"app/Chart.yaml": "apiVersion: v2\nname: bench\nversion: 1.0.0\n",
             "app/values.yaml": VALUES, "app/templates/_helpers.tpl": HELPERS}
    for n in range(templates):
        files[f"app/templates/deployment-{n:03d}.yaml"] = TEMPLATE.format(n=n)
    return files


class _Tree:
    """A SourceTree over in-memory files, with content keys (as a git tree has)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = {p: t.encode() for p, t in files.items()}

    def entries(self) -> Iterator[Any]:
        import hashlib

        from pushgate.build.sources import MODE_FILE, Entry

        for p, data in sorted(self.files.items()):
            yield Entry(p, MODE_FILE, hashlib.sha1(data).hexdigest())  # noqa: S324 - an identity

    def read(self, entry: Any) -> bytes:
        return self.files[entry.path]


def _time(func: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(NAME, __doc__, 50, 10)
    opts = args.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    from pushgate.build import build as buildmod
    from pushgate.build.config import BuildConfig
    from tests.bed import tools

    helm_bin = tools.path("helm")
    files = chart_files(opts.size)
    config = BuildConfig(default_namespace="bench")

    def fresh() -> buildmod.Build:
        b = buildmod.Builder(config, kustomize_bin=None, helm_bin=helm_bin).build(_Tree(files))
        assert not b.problems and len(b.manifests) == opts.size, b.problems[:3]
        return b

    rendered = fresh()
    warm_builder = buildmod.Builder(config, kustomize_bin=None, helm_bin=helm_bin)
    warm_builder.build(_Tree(files))
    import yaml

    plain = {"rendered.yaml": yaml.safe_dump_all([m.obj for m in rendered.manifests])}

    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        chart_dir = Path(opts.workdir or tmp) / "tree"
        for p, text in files.items():
            (chart_dir / p).parent.mkdir(parents=True, exist_ok=True)
            (chart_dir / p).write_text(text)
        env = {"HOME": tmp, "PATH": "/usr/bin:/bin"}

        def helm_alone() -> None:
            subprocess.run([helm_bin, "template", "app", str(chart_dir / "app"), "--namespace", "bench"],
                           check=True, capture_output=True, env=env, cwd=tmp)

        timings = {
            "helm template (process)": _time(helm_alone, opts.repeats),
            "build, changed chart (fresh Builder)": _time(fresh, opts.repeats),
            "build, unchanged chart (warm Builder)": _time(lambda: warm_builder.build(_Tree(files)),
                                                           opts.repeats),
            "build, same objects pre-rendered": _time(lambda: buildmod.Builder(
                config, kustomize_bin=None, helm_bin=None).build(_Tree(plain)), opts.repeats),
        }
    rows = [[k, common.median(v), min(v), max(v)] for k, v in timings.items()]
    median = {k: common.median(v) for k, v in timings.items()}
    helm_share = median["build, changed chart (fresh Builder)"] - median["build, same objects pre-rendered"]
    text = "\n".join([
        f"A chart of {opts.size} Deployment templates (helpers, values, `toYaml`, `range`), "
        f"{len(rendered.manifests)} objects; {opts.repeats} repeats; helm {os.path.basename(helm_bin)}.",
        "",
        common.table(["seconds", "median", "min", "max"], rows),
        "",
        f"Helm's share of a push that changes the chart: {helm_share:.3f} s over the pre-rendered build.",
    ])
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, f"Helm render cost, a chart of {opts.size} templates", command, text, started_load))
    return {"size": opts.size, "objects": len(rendered.manifests), "median": median}


if __name__ == "__main__":
    main()
