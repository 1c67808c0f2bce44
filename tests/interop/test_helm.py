"""Helm through the real git CLI, no cluster: a chart is rendered (its values.yaml, NOTES.txt and
helpers are never read as manifests) and the policy problems of its objects point at the
templates they came from; kustomize `helmCharts` naming a chart that is not vendored
is refused with the command that vendors it, without any attempt to reach the chart repository,
and a refused push stores nothing. (Replaces test_kustomize.py's test_helm_charts_are_refused:
helmCharts are rendered now.)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server
from tests.unit.test_helm import web_tree


def _problems(stderr: str) -> list[str]:
    lines = [line[len("remote: "):].rstrip() for line in stderr.splitlines() if line.startswith("remote: ")]
    return [line for line in lines if line and not line.startswith("pushgate: ")]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        yield s


def test_a_charts_problems_point_at_its_templates(git: Git, server: Server, tmp_path: Path) -> None:
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace("default"), **web_tree()})
    git.commit_all(work, "a chart")
    res = git.run("push", server.url(), "main", cwd=work, check=False)
    assert res.returncode != 0
    # pushgate's default policies, on the rendered objects, at the template each came from;
    # values.yaml, Chart.yaml, NOTES.txt and _helpers.tpl are never read as manifests.
    labels = ('[pushgate.k8s.labels/deny] Deployment "{0}" has no app.kubernetes.io/name label: add '
              'metadata.labels["app.kubernetes.io/name"] naming the application')
    resources = ('[pushgate.k8s.resources/deny] container "{0}" does not set resources.requests.cpu, '
                 'resources.requests.memory, resources.limits.cpu, resources.limits.memory: set CPU and '
                 'memory requests and limits')
    cache = "web/charts/cache/templates/deployment.yaml:2 Deployment/default/web-cache "
    assert _problems(res.stderr) == [
        cache + labels.format("web-cache"),
        cache + resources.format("cache"),
        "web/templates/deployment.yaml:2 Deployment/default/web-web " + labels.format("web-web"),
        "web/templates/deployment.yaml:2 Deployment/default/web-web " + resources.format("web"),
    ], res.stderr
    assert "checked 2 files, 5 objects" in res.stderr


def test_a_chart_that_is_not_vendored_is_refused_without_fetching(git: Git, server: Server, tmp_path: Path,
                                                                  listener: socket.socket) -> None:
    repo = f"http://127.0.0.1:{listener.getsockname()[1]}/charts"
    work = git.init(tmp_path / "w")
    git.write(work, {"apps/ns.yaml": samples.namespace()})
    git.commit_all(work, "base")
    git.run("push", "-q", server.url(), "main", cwd=work)
    refs, objects = server.refs(), server.object_files()
    git.write(work, {"charts/kustomization.yaml": f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
helmCharts:
  - name: nginx
    repo: {repo}
    version: 1.0.0
"""})
    git.commit_all(work, "a remote chart")
    res = git.run("push", server.url(), "main", cwd=work, check=False)
    assert res.returncode != 0
    assert _problems(res.stderr) == [
        f"charts/kustomization.yaml [kustomize] helm chart 'nginx' from {repo} is not vendored at "
        f"charts/charts/nginx-1.0.0/nginx/: the gate renders offline and never fetches charts; run "
        f"`helm pull nginx --repo {repo} --version 1.0.0 --untar --untardir charts/charts/nginx-1.0.0` "
        f"and commit it"]
    assert server.refs() == refs and server.object_files() == objects
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing tried to reach the chart repository
