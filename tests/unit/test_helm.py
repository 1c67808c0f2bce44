"""Helm charts in the build, with the pinned helm: a chart is rendered (never read raw), offline,
with its vendored dependencies, release name / namespace / values from the build configuration,
the configured Kubernetes and API versions, and each object named by the template it came from.
Missing dependencies, bad values files, and charts that loop or print without end are refused.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pushgate.build import build as buildmod
from pushgate.build.config import BuildConfig, HelmChart
from pushgate.build.sources import DirTree
from tests.bed import tools

CHART = """apiVersion: v2
name: {name}
version: 0.1.0
{deps}"""

DEPLOYMENT = """# A comment line, so the object does not start on line 1.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{{{ .Release.Name }}}}-{name}
  labels:
    kube: "{{{{ .Capabilities.KubeVersion.Version }}}}"
    pdb: "{{{{ .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" }}}}"
spec:
  replicas: {{{{ .Values.replicas }}}}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: {name}
          image: "{{{{ .Values.image }}}}"
"""

CONFIGMAP = """{{- range $i := until 2 }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $.Release.Name }}-cm-{{ $i }}
data: {ns: "{{ $.Release.Namespace }}"}
{{- end }}
"""


def chart(name: str, deps: str = "", replicas: int = 1) -> dict[str, str]:
    """A chart's files, relative to its directory."""
    return {
        "Chart.yaml": CHART.format(name=name, deps=deps),
        "values.yaml": f"replicas: {replicas}\nimage: nginx:1.27.3\n",
        "templates/deployment.yaml": DEPLOYMENT.format(name=name),
        "templates/_helpers.tpl": '{{- define "x" -}}{{ .Chart.Name }}{{- end -}}\n',
        "templates/NOTES.txt": "Thanks for installing {{ .Chart.Name }}.\n",
    }


DEP = "dependencies:\n  - name: cache\n    version: 0.1.0\n    repository: https://charts.example.com\n"


def web_tree(vendored: bool = True) -> dict[str, str]:
    files = {f"web/{k}": v for k, v in chart("web", DEP).items()}
    files["web/templates/configmaps.yaml"] = CONFIGMAP
    if vendored:
        files.update({f"web/charts/cache/{k}": v for k, v in chart("cache").items()})
    return files


def _tree(root: Path, files: dict[str, str]) -> DirTree:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return DirTree(str(root))


@pytest.fixture(scope="module")
def helm_bin() -> str:
    return tools.path("helm")


def _build(root: Path, files: dict[str, str], helm_bin: str, deadline: float | None = None,
           **config: object) -> buildmod.Build:
    builder = buildmod.Builder(BuildConfig(**config), kustomize_bin=None,  # type: ignore[arg-type]
                               helm_bin=helm_bin)
    return builder.build(_tree(root, files), deadline)


def _refs(b: buildmod.Build) -> dict[str, tuple[str, int]]:
    return {m.ref: (m.path, m.line) for m in b.manifests}


def test_a_chart_is_rendered_with_its_vendored_dependency(tmp_path: Path, helm_bin: str) -> None:
    b = _build(tmp_path, web_tree(), helm_bin)
    # values.yaml, Chart.yaml, NOTES.txt and the templates are never read as manifests.
    assert b.problems == []
    assert _refs(b) == {
        # release name = the directory's name; namespace = the build's default one
        "Deployment/default/web-web": ("web/templates/deployment.yaml", 2),
        "Deployment/default/web-cache": ("web/charts/cache/templates/deployment.yaml", 2),
        "ConfigMap/default/web-cm-0": ("web/templates/configmaps.yaml", 3),
        "ConfigMap/default/web-cm-1": ("web/templates/configmaps.yaml", 3),
    }
    assert b.files == 1
    deployment = next(m.obj for m in b.manifests if m.ref == "Deployment/default/web-web")
    # the configured Kubernetes version and its API versions reach the templates
    assert deployment["metadata"]["labels"] == {"kube": "v1.37.0", "pdb": "true"}
    assert deployment["spec"]["replicas"] == 1


def test_kubernetes_version_follows_the_build_configuration(tmp_path: Path, helm_bin: str) -> None:
    b = _build(tmp_path, web_tree(), helm_bin, kubernetes_version="1.33")
    deployment = next(m.obj for m in b.manifests if m.ref == "Deployment/default/web-web")
    assert deployment["metadata"]["labels"]["kube"] == "v1.33.0"


def test_release_namespace_and_values_files_come_from_the_configuration(tmp_path: Path,
                                                                        helm_bin: str) -> None:
    files = web_tree()
    files["web/values-prod.yaml"] = "replicas: 3\n"
    b = _build(tmp_path, files, helm_bin, charts=(
        HelmChart(path="web", release_name="shop", namespace="prod", values_files=("values-prod.yaml",)),))
    assert b.problems == []
    refs = _refs(b)
    assert "Deployment/prod/shop-web" in refs and "ConfigMap/prod/shop-cm-1" in refs
    deployment = next(m.obj for m in b.manifests if m.ref == "Deployment/prod/shop-web")
    assert deployment["spec"]["replicas"] == 3
    cm = next(m.obj for m in b.manifests if m.ref == "ConfigMap/prod/shop-cm-0")
    assert cm["data"] == {"ns": "prod"}


def test_missing_dependency_is_refused_with_the_command_to_vendor_it(tmp_path: Path,
                                                                     helm_bin: str) -> None:
    b = _build(tmp_path, web_tree(vendored=False), helm_bin)
    assert b.manifests == []
    assert [str(p) for p in b.problems] == [
        "web/Chart.yaml:5 [helm] dependency 'cache' is not vendored under web/charts/: the gate "
        "renders offline; run `helm dependency build web` and commit web/charts/"]


def test_a_vendored_archive_counts_and_names_its_objects(tmp_path: Path, helm_bin: str) -> None:
    import subprocess

    files = web_tree(vendored=False)
    src = tmp_path / "src"
    _tree(src, {f"cache/{k}": v for k, v in chart("cache").items()})
    subprocess.run([helm_bin, "package", str(src / "cache"), "-d", str(tmp_path / "pkg")],
                   check=True, capture_output=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    (tmp_path / "t" / "web" / "charts").mkdir(parents=True)
    (tmp_path / "t" / "web" / "charts" / "cache-0.1.0.tgz").write_bytes(
        (tmp_path / "pkg" / "cache-0.1.0.tgz").read_bytes())
    b = _build(tmp_path / "t", files, helm_bin)
    assert b.problems == []
    assert _refs(b)["Deployment/default/web-cache"] == ("web/charts/cache-0.1.0.tgz", 0)


def test_sub_charts_and_excluded_charts_are_not_rendered_on_their_own(tmp_path: Path,
                                                                       helm_bin: str) -> None:
    files = web_tree()
    files.update({f"docs/old/{k}": v for k, v in chart("old").items()})
    b = _build(tmp_path, files, helm_bin, exclude=("docs",))
    assert b.problems == []
    assert sorted(_refs(b)) == ["ConfigMap/default/web-cm-0", "ConfigMap/default/web-cm-1",
                                "Deployment/default/web-cache", "Deployment/default/web-web"]


def test_template_errors_are_reported_at_the_chart(tmp_path: Path, helm_bin: str) -> None:
    files = web_tree()
    files["web/templates/broken.yaml"] = "{{ .Values.missing.field }}\n"
    b = _build(tmp_path, files, helm_bin)
    assert b.manifests == []
    [problem] = b.problems
    assert str(problem).startswith("web/Chart.yaml [helm] helm template failed: Error: template: "
                                   "web/templates/broken.yaml:1:"), str(problem)
    assert "pushgate-helm-" not in str(problem)


def test_a_values_file_bomb_is_refused_before_helm_runs(tmp_path: Path, helm_bin: str) -> None:
    files = web_tree()
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
    files["web/values.yaml"] = "replicas: 1\nimage: x:1\n" + bomb
    b = _build(tmp_path, files, helm_bin)
    assert b.manifests == []
    [problem] = b.problems
    assert str(problem).startswith("web/values.yaml:"), str(problem)
    assert "[helm] values file is not valid YAML" in str(problem)


def test_a_chart_that_prints_without_end_is_cut_at_the_output_limit(tmp_path: Path,
                                                                     helm_bin: str) -> None:
    files = web_tree()
    files["web/templates/flood.yaml"] = "{{ range until 200000 }}# {{ repeat 100 \"x\" }}\n{{ end }}"
    b = _build(tmp_path, files, helm_bin, max_rendered_bytes=1_000_000)
    [problem] = b.problems
    assert "printed more than 1000000 bytes" in str(problem), str(problem)


def test_a_chart_that_runs_too_long_is_cut_at_the_build_deadline(tmp_path: Path, helm_bin: str) -> None:
    files = web_tree()
    files["web/templates/slow.yaml"] = (
        "{{ range until 100000 }}{{ range until 100000 }}{{ end }}{{ end }}\n")
    start = time.monotonic()
    b = _build(tmp_path, files, helm_bin, deadline=time.monotonic() + 2)
    assert time.monotonic() - start < 15
    [problem] = b.problems
    assert "helm template did not finish within" in str(problem), str(problem)


def test_the_render_is_deterministic_and_cached_by_content(tmp_path: Path, helm_bin: str) -> None:
    first = _build(tmp_path / "a", web_tree(), helm_bin)
    second = _build(tmp_path / "b", web_tree(), helm_bin)
    assert first.digest() == second.digest()


def test_no_helm_on_the_server_refuses_charts_with_the_reason(tmp_path: Path) -> None:
    builder = buildmod.Builder(BuildConfig(), kustomize_bin=None, helm_bin=None)
    b = builder.build(_tree(tmp_path, web_tree()))
    assert [str(p) for p in b.problems] == [
        "web/Chart.yaml [helm] helm is not available on this server (the pinned one: "
        "`scripts/tools.sh path helm`, or set PUSHGATE_HELM)"]


def test_a_configured_chart_that_is_not_in_the_tree_is_a_warning(tmp_path: Path, helm_bin: str) -> None:
    b = _build(tmp_path, web_tree(), helm_bin, charts=(HelmChart(path="gone"),))
    assert [str(p) for p in b.problems] == [
        "warning: build.charts [helm] build.charts names 'gone', which is not a chart directory of this "
        "tree (no Chart.yaml)"]
    assert len(b.manifests) == 4


def test_build_charts_in_the_configuration_file() -> None:
    from pushgate import config

    doc = {"build": {"charts": [{"path": "apps/web", "releaseName": "shop", "namespace": "prod",
                                 "valuesFiles": ["values-prod.yaml"]}], "jsonnet": False}}
    c = config.from_dict(doc, "pushgate.yaml")
    assert c.build.charts == (HelmChart("apps/web", "shop", "prod", ("values-prod.yaml",)),)
    assert config.from_dict(c.to_dict(), "config.json") == c  # persisted and read back the same
    assert c.build.digest() != config.Config().build.digest()
    for bad, message in (({"path": "../x"}, "build.charts[0].path '../x': expected a chart directory"),
                         ({"path": "a", "releaseName": "Web_1"}, "build.charts[0].releaseName 'Web_1'"),
                         ({"path": "a", "bogus": 1}, "build.charts[0].bogus: unknown key")):
        with pytest.raises(config.ConfigError, match=re.escape(message)):
            config.from_dict({"build": {"charts": [bad]}}, "pushgate.yaml")
