"""Helm charts, kustomize `helmCharts` and Jsonnet through the stock git client and the real
kube-apiserver: a chart whose dependency is not vendored is refused with the command that vendors
it; a chart whose rendered Deployment breaks a policy is refused at the template's line; the
fixed chart (its vendored dependency included) is applied, and pruned when the chart is removed;
a repository mixing plain manifests, kustomize with two Helm value sets, a chart and a Jsonnet
app is accepted and applied whole, and `pushgate render` agrees with what was applied.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, samples
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server

pytestmark = pytest.mark.cluster

POLICY = """package main

import rego.v1

deny contains msg if {
	input.kind == "Deployment"
	some c in input.spec.template.spec.containers
	endswith(c.image, ":latest")
	msg := sprintf("container %s uses a :latest image", [c.name])
}
"""

CHART = "apiVersion: v2\nname: {name}\nversion: 0.1.0\n{deps}"
DEPS = "dependencies:\n  - name: cache\n    version: 0.1.0\n    repository: https://charts.example.com\n"
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
  namespace: {{ .Release.Namespace }}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: "{{ .Release.Name }}-{{ .Chart.Name }}"}}
  template:
    metadata: {labels: {app: "{{ .Release.Name }}-{{ .Chart.Name }}"}}
    spec:
      containers:
        - name: app
          image: {{ .Values.image | quote }}
"""
CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}-settings
data: {replicas: "{{ .Values.replicas }}"}
"""


def chart(prefix: str, name: str, deps: str = "", image: str = "nginx:1.27.3") -> dict[str, str]:
    return {f"{prefix}/Chart.yaml": CHART.format(name=name, deps=deps),
            f"{prefix}/values.yaml": f"replicas: 1\nimage: {image}\n",
            f"{prefix}/templates/deployment.yaml": DEPLOYMENT,
            f"{prefix}/templates/configmap.yaml": CONFIGMAP,
            f"{prefix}/templates/NOTES.txt": "{{ .Chart.Name }} installed\n"}


@pytest.fixture
def helm_server(attach: Callable[..., Server], tmp_path: Path) -> Callable[..., Server]:
    policies = samples.policy_dir(tmp_path / "policies", POLICY)
    return lambda *args: attach(f"--policies={policies}", *args)


def _live(dynamic: Any, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
    from kubernetes.dynamic.exceptions import NotFoundError

    try:
        return dynamic.resources.get(api_version=api_version, kind=kind).get(name=name, namespace=namespace)
    except NotFoundError:
        return None


def _problems(stderr: str) -> list[str]:
    lines = [line[len("remote: "):].rstrip() for line in stderr.splitlines() if line.startswith("remote: ")]
    return [line for line in lines if line and not line.startswith("pushgate")]


def test_a_chart_is_refused_until_vendored_and_valid_then_applied_and_pruned(
        git: Git, helm_server: Callable[..., Server], dynamic: Any, tmp_path: Path) -> None:
    ns = f"helm-{secrets.token_hex(3)}"
    server = helm_server(f"--default-namespace={ns}")
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "keep.yaml": samples.configmap("keep", ns),
                     **chart("web", "web", DEPS, image="nginx:latest")})
    git.commit_all(work, "a chart without its dependency")
    res = git.run("push", server.url(), "main", cwd=work, check=False)
    assert res.returncode != 0
    assert _problems(res.stderr) == [
        "web/Chart.yaml:5 [helm] dependency 'cache' is not vendored under web/charts/: the gate renders "
        "offline; run `helm dependency build web` and commit web/charts/"], res.stderr

    git.write(work, chart("web/charts/cache", "cache"))
    git.commit_all(work, "vendored, but :latest")
    res = git.run("push", server.url(), "main", cwd=work, check=False)
    assert res.returncode != 0
    assert _problems(res.stderr) == [
        f'web/templates/deployment.yaml:1 Deployment/{ns}/web-web [main/deny] container app uses a '
        f':latest image'], res.stderr

    git.write(work, {"web/values.yaml": "replicas: 2\nimage: nginx:1.27.3\n"})
    head = git.commit_all(work, "pinned")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(head), 120, "the chart applied")
    applied = {o["ref"] for o in doc["objects"] if o["action"] == "applied"}
    chart_objects = {f"Deployment/{ns}/web-web", f"Deployment/{ns}/web-cache",
                     f"ConfigMap/{ns}/web-web-settings", f"ConfigMap/{ns}/web-cache-settings"}
    assert applied == {f"Namespace/{ns}", f"ConfigMap/{ns}/keep"} | chart_objects, doc["objects"]
    assert _live(dynamic, "apps/v1", "Deployment", "web-web", ns).spec.replicas == 2
    assert _live(dynamic, "apps/v1", "Deployment", "web-cache", ns) is not None

    git.run("rm", "-rq", "web", cwd=work)
    gone = git.commit_all(work, "remove the chart")
    git.run("push", "-o", "allow-prune", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(gone), 120, "the chart pruned")
    assert deploy.result_of(doc, gone)["result"] != "Failed", doc
    for ref in chart_objects:
        kind, _, name = ref.split("/")
        assert _live(dynamic, "apps/v1" if kind == "Deployment" else "v1", kind, name, ns) is None, ref
    assert _live(dynamic, "v1", "ConfigMap", "keep", ns) is not None
    dynamic.resources.get(api_version="v1", kind="Namespace").delete(name=ns)


JSONNET = """local cm(name) = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name } };
[cm('jsonnet-one'), cm('jsonnet-two')]
"""


def _env(name: str, ns: str) -> dict[str, str]:
    return {f"envs/{name}/kustomization.yaml": f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
helmGlobals: {{chartHome: ../../charts}}
helmCharts:
  - name: shared
    releaseName: {name}
    namespace: {ns}
    valuesFile: values.yaml
""", f"envs/{name}/values.yaml": f"replicas: {1 if name == 'dev' else 3}\nimage: nginx:1.27.3\n"}


def test_a_repository_mixing_every_source_is_applied_whole(
        git: Git, helm_server: Callable[..., Server], dynamic: Any, tmp_path: Path) -> None:
    ns = f"mix-{secrets.token_hex(3)}"
    dev, prod = f"{ns}-dev", f"{ns}-prod"
    server = helm_server(f"--default-namespace={ns}")
    files = {"namespaces.yaml": "---\n".join(samples.namespace(n) for n in (ns, dev, prod)),
             "raw/cm.yaml": samples.configmap("raw", ns),
             "kust/kustomization.yaml": "resources: [svc.yaml]\nlabels: [{pairs: {tier: web}}]\n",
             "kust/svc.yaml": samples.service("web", ns),
             "jsonnet/app.jsonnet": JSONNET,
             **chart("charts/shared", "shared"), **_env("dev", dev), **_env("prod", prod),
             **chart("apps/web", "web")}
    work = git.init(tmp_path / "w")
    git.write(work, files)
    head = git.commit_all(work, "everything")
    res = git.run("push", server.url(), "main", cwd=work)
    assert "pushgate: 0 errors, 0 warnings" in res.stderr, res.stderr
    doc = deploy.wait_status(server, deploy.verdict_for(head), 180, "the mixed repository applied")
    expected = {f"Namespace/{n}" for n in (ns, dev, prod)} | {
        f"ConfigMap/{ns}/raw", f"Service/{ns}/web",
        f"ConfigMap/{ns}/jsonnet-one", f"ConfigMap/{ns}/jsonnet-two",
        f"Deployment/{ns}/web-web", f"ConfigMap/{ns}/web-web-settings",
        f"Deployment/{dev}/dev-shared", f"Deployment/{prod}/prod-shared",
        # the chart's ConfigMap names no namespace: kustomize leaves it to the build's default
        f"ConfigMap/{ns}/dev-shared-settings", f"ConfigMap/{ns}/prod-shared-settings"}
    assert {o["ref"] for o in doc["objects"] if o["action"] == "applied"} == expected, doc["objects"]
    assert _live(dynamic, "apps/v1", "Deployment", "dev-shared", dev).spec.replicas == 1
    assert _live(dynamic, "apps/v1", "Deployment", "prod-shared", prod).spec.replicas == 3
    assert _live(dynamic, "v1", "Service", "web", ns).metadata.labels["tier"] == "web"

    out = subprocess.run([PUSHGATE, "render", f"--data-dir={server.data_dir}", str(work)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    import yaml

    rendered = {f"{o['kind']}/{o['metadata']['namespace']}/{o['metadata']['name']}"
                if o["metadata"].get("namespace") else f"{o['kind']}/{o['metadata']['name']}"
                for o in yaml.safe_load_all(out) if o}
    assert rendered == expected
    for n in (ns, dev, prod):
        dynamic.resources.get(api_version="v1", kind="Namespace").delete(name=n)
