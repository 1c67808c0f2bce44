"""kustomize's `helmCharts` in the build: one vendored chart rendered per environment with its own
values through the pinned kustomize and helm, offline; a chart that would have to be fetched, a
chart home outside the repository and helm's own configuration home are refused before
kustomize runs, with the reason (and the command that vendors a missing chart).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.build import build as buildmod
from pushgate.build.config import BuildConfig
from pushgate.build.sources import DirTree
from tests.bed import tools
from tests.unit.test_helm import chart


def env(name: str, replicas: int, chart_home: str = "../../charts", extra: str = "") -> str:
    return f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
helmGlobals:
  chartHome: {chart_home}
helmCharts:
  - name: web
    releaseName: web
    namespace: {name}
    valuesFile: values.yaml
{extra}"""


def two_envs() -> dict[str, str]:
    files = {f"charts/web/{k}": v for k, v in chart("web").items()}
    # a template that puts its objects in the release namespace, as charts usually do
    files["charts/web/templates/deployment.yaml"] = files["charts/web/templates/deployment.yaml"].replace(
        "  labels:", "  namespace: {{ .Release.Namespace }}\n  labels:")
    for name, replicas in (("dev", 1), ("prod", 3)):
        files[f"envs/{name}/kustomization.yaml"] = env(name, replicas)
        files[f"envs/{name}/values.yaml"] = f"replicas: {replicas}\nimage: nginx:1.27.3\n"
    return files


def _build(root: Path, files: dict[str, str], **config: object) -> buildmod.Build:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    builder = buildmod.Builder(BuildConfig(**config), kustomize_bin=tools.path("kustomize"),  # type: ignore[arg-type]
                               helm_bin=tools.path("helm"))
    return builder.build(DirTree(str(root)))


def test_one_chart_with_two_value_sets(tmp_path: Path) -> None:
    b = _build(tmp_path, two_envs())
    assert b.problems == []
    got = {m.ref: (m.path, m.line, m.obj["spec"]["replicas"]) for m in b.manifests}
    # The chart under charts/ is used by the kustomizations: never rendered on its own.
    assert got == {"Deployment/dev/web-web": ("envs/dev/kustomization.yaml", 5, 1),
                   "Deployment/prod/web-web": ("envs/prod/kustomization.yaml", 5, 3)}
    assert b.files == 2
    labels = b.manifests[0].obj["metadata"]["labels"]
    assert labels["kube"] == "v1.37.0" and labels["pdb"] == "true"  # the gate's versions


@pytest.mark.parametrize(("entry", "message"), [
    ("    repo: https://charts.example.com\n    version: 1.2.3\n",
     "envs/dev/kustomization.yaml [kustomize] helm chart 'nginx' from https://charts.example.com is "
     "not vendored at charts/nginx-1.2.3/nginx/: the gate renders offline and never fetches charts; "
     "run `helm pull nginx --repo https://charts.example.com --version 1.2.3 --untar --untardir "
     "charts/nginx-1.2.3` and commit it"),
    ("    repo: oci://registry.example.com/charts\n",
     "envs/dev/kustomization.yaml [kustomize] helm chart 'nginx' from oci://registry.example.com/charts "
     "is not vendored at charts/nginx/: the gate renders offline and never fetches charts; run `helm pull "
     "oci://registry.example.com/charts/nginx --untar --untardir charts` and commit it"),
])
def test_a_chart_that_must_be_fetched_is_refused(tmp_path: Path, entry: str, message: str) -> None:
    files = two_envs()
    files["envs/dev/kustomization.yaml"] += "  - name: nginx\n" + entry
    b = _build(tmp_path, files)
    assert [str(p) for p in b.problems] == [message]
    # the other environment still renders; the refused one renders nothing
    assert {m.ref for m in b.manifests} == {"Deployment/prod/web-web"}


def test_a_vendored_remote_chart_is_used_where_helm_pull_put_it(tmp_path: Path) -> None:
    files = two_envs()
    files["envs/dev/kustomization.yaml"] = env("dev", 1, chart_home="charts").replace(
        "    valuesFile: values.yaml\n", "    repo: https://charts.example.com\n    version: 0.1.0\n")
    files.update({f"envs/dev/charts/web-0.1.0/web/{k}": v for k, v in chart("web").items()})
    b = _build(tmp_path, files)
    assert b.problems == []
    assert "Deployment/default/web-web" in {m.ref for m in b.manifests}


@pytest.mark.parametrize(("change", "message"), [
    ({"chart_home": "/etc"}, "helmGlobals.chartHome '/etc' must be a relative path inside the repository"),
    ({"chart_home": "../../../x"},
     "helmGlobals.chartHome '../../../x' must be a relative path inside the repository"),
    ({"extra": "  configHome: /tmp\n"}, None),
])
def test_paths_outside_the_repository_are_refused(tmp_path: Path, change: dict[str, str],
                                                  message: str | None) -> None:
    files = two_envs()
    if "extra" in change:
        files["envs/dev/kustomization.yaml"] = env("dev", 1).replace(
            "  chartHome:", "  configHome: /tmp\n  chartHome:")
        message = ("helmGlobals.configHome is not allowed (the gate gives helm an empty configuration "
                   "of its own)")
    else:
        files["envs/dev/kustomization.yaml"] = env("dev", 1, **change)
    b = _build(tmp_path, files)
    assert [str(p) for p in b.problems] == [f"envs/dev/kustomization.yaml [kustomize] {message}"]
