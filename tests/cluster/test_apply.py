"""Accepted commits become cluster state: Namespace, CRD and custom resource in one commit;
refs/deployed and the git note follow; objects the API server refuses fail alone."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

pytestmark = pytest.mark.cluster


def _crd(group: str) -> str:
    return samples.crd(group, "Widget")


def _widget(group: str, ns: str) -> str:
    return f"""apiVersion: {group}/v1
kind: Widget
metadata:
  name: w1
  namespace: {ns}
spec:
  size: 3
"""


def test_namespace_crd_and_custom_resource_in_one_commit(git: Git, attached_server: Server,
                                                          dynamic: Any, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    ns, group = f"apply-{tag}", f"t{tag}.example.com"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "crd.yaml": _crd(group),
                     "widget.yaml": _widget(group, ns),
                     "cm.yaml": samples.configmap(namespace=ns)})
    head = git.commit_all(work, "namespace, crd, custom resource")
    git.run("push", attached_server.url(), "main", cwd=work)

    doc = deploy.wait_status(attached_server, deploy.verdict_for(head), what="verdict")
    assert deploy.result_of(doc, head)["result"] == "Ready", doc
    widget = dynamic.resources.get(api_version=f"{group}/v1", kind="Widget").get(name="w1", namespace=ns)
    assert widget.spec.size == 3
    labels = dict(widget.metadata.labels)
    assert labels["applyset.kubernetes.io/part-of"].startswith("applyset-")
    managers = {m.manager for m in widget.metadata.managedFields}
    assert "pushgate" in managers
    assert doc["lastAppliedRevision"] == head
    assert attached_server.refs()["refs/deployed/main"] == head
    ready = next(c for c in doc["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"

    # `pushgate status` shows the same, for humans.
    import subprocess

    from tests.bed.server import PUSHGATE

    shown = subprocess.run([PUSHGATE, "status", f"--data-dir={attached_server.data_dir}"],
                           capture_output=True, text=True, check=True).stdout
    assert "Ready" in shown and f"last applied:   {head}" in shown
    assert f"Widget/{ns}/w1" in shown and "applied" in shown

    # The note per commit, read with the stock git CLI.
    git.run("fetch", "-q", attached_server.url(), "refs/notes/pushgate:refs/notes/pushgate", cwd=work)
    shown = git.run("log", "-1", "--notes=pushgate", "--format=%N", cwd=work).stdout
    assert "pushgate: Ready" in shown and "Widget/" in shown

    # Pushes to pushgate's own refs are refused.
    res = git.run("push", attached_server.url(), f"{head}:refs/deployed/other", cwd=work, check=False)
    assert res.returncode != 0


def test_objects_the_server_refuses_fail_alone(git: Git, unchecked_server: Server, dynamic: Any,
                                               tmp_path: Path) -> None:
    ns = f"refuse-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "web.yaml": samples.deployment(namespace=ns),
                     "cm.yaml": samples.configmap(namespace=ns)})
    first = git.commit_all(work, "v1")
    git.run("push", unchecked_server.url(), "main", cwd=work)
    deploy.wait_status(unchecked_server, deploy.verdict_for(first), what="v1")

    # The selector of a Deployment is immutable: the gate cannot know, the API server refuses.
    changed = samples.deployment(namespace=ns).replace(
        "    matchLabels:\n      app.kubernetes.io/name: web",
        "    matchLabels:\n      app.kubernetes.io/name: web\n      tier: front").replace(
        "      labels:\n        app.kubernetes.io/name: web\n    spec:",
        "      labels:\n        app.kubernetes.io/name: web\n        tier: front\n    spec:")
    git.write(work, {"web.yaml": changed, "cm.yaml": samples.configmap(namespace=ns, value="2")})
    second = git.commit_all(work, "v2: immutable selector change")
    git.run("push", unchecked_server.url(), "main", cwd=work)
    doc = deploy.wait_status(unchecked_server, deploy.verdict_for(second), what="v2 verdict")
    assert deploy.result_of(doc, second)["result"] == "Degraded"
    rows = {o["ref"]: o for o in doc["objects"]}
    web = rows[f"Deployment/{ns}/web"]
    assert web["action"] == "failed" and "immutable" in web["message"]
    assert rows[f"ConfigMap/{ns}/settings"]["action"] == "applied"
    cm = dynamic.resources.get(api_version="v1", kind="ConfigMap").get(name="settings", namespace=ns)
    assert cm.data.value == "2"
    # Not fully applied: refs/deployed stays on the last fully applied commit.
    assert unchecked_server.refs()["refs/deployed/main"] == first
