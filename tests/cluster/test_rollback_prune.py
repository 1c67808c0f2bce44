"""Prune and rollback: what leaves Git leaves the cluster (only if we applied it), and
`git revert` + push brings the previous state back."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.bed import deploy, samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

pytestmark = pytest.mark.cluster


def _exists(dynamic: Any, kind: str, name: str, ns: str) -> bool:
    api = dynamic.resources.get(api_version="v1" if kind != "Deployment" else "apps/v1", kind=kind)
    try:
        api.get(name=name, namespace=ns)
    except ApiException as e:
        assert e.status == 404
        return False
    return True


def test_revert_rolls_back(git: Git, attached_server: Server, dynamic: Any, tmp_path: Path) -> None:
    ns = f"rb-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns),
                     "web.yaml": samples.deployment(namespace=ns, image="nginx:1.27.3"),
                     "cm.yaml": samples.configmap(namespace=ns)})
    v1 = git.commit_all(work, "v1")
    git.run("push", attached_server.url(), "main", cwd=work)
    deploy.wait_status(attached_server, deploy.verdict_for(v1), what="v1")

    (work / "cm.yaml").unlink()
    git.write(work, {"web.yaml": samples.deployment(namespace=ns, image="nginx:1.28.0"),
                     "svc.yaml": samples.service(namespace=ns)})
    v2 = git.commit_all(work, "v2")
    git.run("push", attached_server.url(), "main", cwd=work)
    doc = deploy.wait_status(attached_server, deploy.verdict_for(v2), what="v2")
    assert not _exists(dynamic, "ConfigMap", "settings", ns)
    assert _exists(dynamic, "Service", "web", ns)
    web = dynamic.resources.get(api_version="apps/v1", kind="Deployment").get(name="web", namespace=ns)
    assert web.spec.template.spec.containers[0].image == "nginx:1.28.0"
    assert any(o["ref"] == f"ConfigMap/{ns}/settings" and o["action"] == "pruned" for o in doc["objects"])

    git.run("revert", "--no-edit", "HEAD", cwd=work)
    v3 = git.rev_parse(work, "HEAD")
    git.run("push", attached_server.url(), "main", cwd=work)
    doc = deploy.wait_status(attached_server, deploy.verdict_for(v3), what="revert")
    assert deploy.result_of(doc, v3)["result"] == "Ready"
    assert _exists(dynamic, "ConfigMap", "settings", ns)
    assert not _exists(dynamic, "Service", "web", ns)
    web = dynamic.resources.get(api_version="apps/v1", kind="Deployment").get(name="web", namespace=ns)
    assert web.spec.template.spec.containers[0].image == "nginx:1.27.3"
    revisions = [h["revision"] for h in doc["history"]]
    assert revisions[:3] == [v3, v2, v1]
    assert attached_server.refs()["refs/deployed/main"] == v3


def test_prune_never_deletes_what_we_did_not_apply(git: Git, attached_server: Server, dynamic: Any,
                                                   tmp_path: Path) -> None:
    ns = f"own-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns)})
    v1 = git.commit_all(work, "v1")
    git.run("push", attached_server.url(), "main", cwd=work)
    deploy.wait_status(attached_server, deploy.verdict_for(v1), what="v1")
    cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    ours = cms.get(name="settings", namespace=ns)
    label = dict(ours.metadata.labels)["applyset.kubernetes.io/part-of"]
    # Someone copies our label onto an object pushgate never applied.
    cms.create(namespace=ns, body={"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "intruder",
                                                "labels": {"applyset.kubernetes.io/part-of": label}}})

    (work / "cm.yaml").unlink()
    (work / "ns.yaml").unlink()
    git.write(work, {"other.yaml": samples.configmap(name="other", namespace="default")})
    v2 = git.commit_all(work, "drop the namespace and its configmap")
    git.run("push", attached_server.url(), "main", cwd=work)
    doc = deploy.wait_status(attached_server, deploy.verdict_for(v2), what="v2")
    assert not _exists(dynamic, "ConfigMap", "settings", ns)
    assert _exists(dynamic, "ConfigMap", "intruder", ns)
    # A Namespace is a protected kind: removed from Git, kept in the cluster, and said so.
    ns_row = next(o for o in doc["objects"] if o["ref"] == f"Namespace/{ns}")
    assert ns_row["reason"] == "ProtectedKind"
    assert dynamic.resources.get(api_version="v1", kind="Namespace").get(name=ns).status.phase == "Active"
    cms.delete(name="other", namespace="default")
