"""The reconciler's notifications on the real bed: a commit applied to the kube-apiserver is
announced once with its sha, a drift the reconciler undoes is announced as corrected, and a
commit the API server partly refuses is announced as degraded; all signed."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, samples
from tests.bed.gitcli import Git
from tests.bed.receiver import Receiver
from tests.bed.server import Server

pytestmark = pytest.mark.cluster

KEY = b"cluster-k3y"
ALLOW_ALL = 'package main\n\nimport rego.v1\n\ndeny contains "never" if { input.kind == "Never" }\n'


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    r = Receiver(key=KEY).start()
    yield r
    r.stop()


def _serve(attach: Callable[..., Server], hooks: Receiver, tmp_path: Path, *args: str) -> Server:
    (tmp_path / "address").write_text(hooks.url() + "\n")
    (tmp_path / "token").write_bytes(KEY)
    conf = tmp_path / "pushgate.yaml"
    conf.write_text("notifications: " + json.dumps([{
        "name": "hooks", "type": "generic-hmac", "urlFile": str(tmp_path / "address"),
        "hmacKeyFile": str(tmp_path / "token"), "branches": ["main"],
        "events": ["commit-applied", "drift-corrected", "health-degraded", "health-failed"]}]) + "\n")
    policies = samples.policy_dir(tmp_path / "policies", ALLOW_ALL)
    return attach(f"--config={conf}", f"--policies={policies}", *args)


def test_applied_commit_and_corrected_drift_are_notified(git: Git, attach: Callable[..., Server],
                                                          hooks: Receiver, dynamic: Any,
                                                          tmp_path: Path) -> None:
    server = _serve(attach, hooks, tmp_path)
    ns = f"notify-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns)})
    head = git.commit_all(work, "settings for the shop")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(head), what="the apply")
    assert deploy.result_of(doc, head)["result"] == "Ready", doc

    got = hooks.wait(lambda g: any(r.doc["event"] == "commit-applied" for r in g), what="commit-applied")
    (applied,) = [r for r in got if r.doc["event"] == "commit-applied"]
    assert applied.signed is True
    assert applied.doc["commit"] == head and applied.doc["branch"] == "main"
    assert applied.doc["severity"] == "info" and "settings for the shop" in applied.doc["message"]
    assert applied.doc["details"]["applied"] == 2

    cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    cms.patch(name="settings", namespace=ns, body={"data": {"value": "edited"}},
              content_type="application/merge-patch+json")
    got = hooks.wait(lambda g: any(r.doc["event"] == "drift-corrected" for r in g), what="drift-corrected")
    drifted = next(r for r in got if r.doc["event"] == "drift-corrected")
    assert drifted.signed and drifted.doc["commit"] == head
    assert any(o["ref"] == f"ConfigMap/{ns}/settings" and "data.value" in o["fields"]
               for o in drifted.doc["details"]["objects"])
    time.sleep(2)  # the same commit is never announced twice
    assert [r.doc["commit"] for r in hooks.events() if r.doc["event"] == "commit-applied"] == [head]
    assert all(r.doc["event"] in ("commit-applied", "drift-corrected") for r in hooks.events())


def test_a_commit_the_cluster_partly_refuses_is_notified_as_degraded(
        git: Git, attach: Callable[..., Server], hooks: Receiver, tmp_path: Path) -> None:
    server = _serve(attach, hooks, tmp_path, "--live-check=off")  # let the cluster refuse at apply
    ns = f"notify-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "web.yaml": samples.deployment(namespace=ns)})
    first = git.commit_all(work, "v1")
    git.run("push", server.url(), "main", cwd=work)
    deploy.wait_status(server, deploy.verdict_for(first), what="v1")
    # A Deployment's selector is immutable: the API server refuses the change.
    changed = samples.deployment(namespace=ns).replace(
        "    matchLabels:\n      app.kubernetes.io/name: web",
        "    matchLabels:\n      app.kubernetes.io/name: web\n      tier: front").replace(
        "      labels:\n        app.kubernetes.io/name: web\n    spec:",
        "      labels:\n        app.kubernetes.io/name: web\n        tier: front\n    spec:")
    git.write(work, {"web.yaml": changed})
    second = git.commit_all(work, "v2: immutable selector change")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(second), what="v2")
    assert deploy.result_of(doc, second)["result"] == "Degraded"
    got = hooks.wait(lambda g: any(r.doc["event"] == "health-degraded" for r in g), what="health-degraded")
    (degraded,) = [r for r in got if r.doc["event"] == "health-degraded"]
    assert degraded.signed and degraded.doc["commit"] == second and degraded.doc["severity"] == "error"
    assert degraded.doc["details"]["result"] == "Degraded"
    assert "could not be applied" in degraded.doc["message"]
    applied = [r.doc["commit"] for r in hooks.events() if r.doc["event"] == "commit-applied"]
    assert applied == [first]  # v2 was never fully applied
