"""Health on the real bed, as the reconciler reports it: a custom resource is judged by its own
status (observedGeneration, Ready, Stalled) as its controller writes it, and a Deployment whose
image never becomes ready turns Failed when the real controller manager says its progress
deadline passed."""

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
    return samples.crd(group, "Gizmo", status=True)


def _gizmo(group: str, ns: str, size: int) -> str:
    return f"""apiVersion: {group}/v1
kind: Gizmo
metadata:
  name: g1
  namespace: {ns}
spec:
  size: {size}
"""


def _row(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    return next((o for o in doc.get("objects", []) if o.get("ref") == ref), {})


def _health_of(ref: str, revision: str, status: str, words: str) -> Any:
    def pred(doc: dict[str, Any]) -> bool:
        row = _row(doc, ref)
        return (doc.get("lastAttemptedRevision") == revision and row.get("health") == status
                and words in row.get("healthMessage", ""))
    return pred


def test_custom_resource_follows_its_conditions(git: Git, attached_server: Server, dynamic: Any,
                                                tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    ns, group = f"health-{tag}", f"h{tag}.example.com"
    ref = f"Gizmo/{ns}/g1"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "crd.yaml": _crd(group),
                     "gizmo.yaml": _gizmo(group, ns, 1)})
    first = git.commit_all(work, "a gizmo")
    git.run("push", attached_server.url(), "main", cwd=work)
    # No controller has written a status yet: nothing says the gizmo is not done (kstatus).
    doc = deploy.wait_status(attached_server, deploy.verdict_for(first), what="first verdict")
    assert deploy.result_of(doc, first)["result"] == "Ready", doc
    assert _row(doc, ref)["health"] == "Current"

    gizmos = dynamic.resources.get(api_version=f"{group}/v1", kind="Gizmo")

    def controller_writes(generation: int, *conditions: dict[str, str]) -> None:
        gizmos.status.patch(name="g1", namespace=ns, content_type="application/merge-patch+json",
                            body={"status": {"observedGeneration": generation,
                                             "conditions": list(conditions)}})

    def cond(type_: str, status: str, reason: str) -> dict[str, str]:
        return {"type": type_, "status": status, "reason": reason, "message": f"{reason} (test)",
                "lastTransitionTime": "2026-12-01T00:00:00Z"}

    controller_writes(1, cond("Ready", "True", "Provisioned"))

    # A new generation: InProgress until the controller has observed it and says Ready.
    git.write(work, {"gizmo.yaml": _gizmo(group, ns, 2)})
    second = git.commit_all(work, "a bigger gizmo")
    git.run("push", attached_server.url(), "main", cwd=work)
    deploy.wait_status(attached_server,
                       _health_of(ref, second, "InProgress", "generation 2 not yet observed"),
                       what="the new generation InProgress")
    controller_writes(2, cond("Ready", "False", "Resizing"))
    doc = deploy.wait_status(attached_server,
                             _health_of(ref, second, "InProgress", "Ready=False: Resizing"),
                             what="Ready=False InProgress")
    assert not deploy.verdict_for(second)(doc), "no verdict while an object is in progress"
    assert doc["result"]["verdict"] == "Progressing"
    controller_writes(2, cond("Ready", "True", "Resized"))
    doc = deploy.wait_status(attached_server, deploy.verdict_for(second), what="second verdict")
    assert deploy.result_of(doc, second)["result"] == "Ready", doc
    assert _row(doc, ref)["health"] == "Current"

    # Stalled on the generation it observed: Failed, and so is the commit.
    git.write(work, {"gizmo.yaml": _gizmo(group, ns, 3)})
    third = git.commit_all(work, "a gizmo too big")
    git.run("push", attached_server.url(), "main", cwd=work)
    deploy.wait_status(attached_server, _health_of(ref, third, "InProgress", "generation 3 not yet observed"),
                       what="the third generation InProgress")
    controller_writes(3, cond("Ready", "False", "SizeUnsupported"),
                      cond("Stalled", "True", "SizeUnsupported"))
    doc = deploy.wait_status(attached_server, deploy.verdict_for(third), what="third verdict")
    entry = deploy.result_of(doc, third)
    assert entry["result"] == "Failed" and "1 object(s) failed" in entry["reason"], entry
    row = _row(doc, ref)
    assert row["health"] == "Failed" and "Stalled: SizeUnsupported" in row["healthMessage"], row
    ready = next(c for c in doc["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"


def test_never_ready_image_fails_at_the_progress_deadline(git: Git, attached_server: Server, dynamic: Any,
                                                         tmp_path: Path) -> None:
    ns = f"never-{secrets.token_hex(3)}"
    ref = f"Deployment/{ns}/web"
    stuck = samples.deployment(namespace=ns, image="registry.example/app:never-ready", replicas=1).replace(
        "spec:\n  replicas: 1", "spec:\n  progressDeadlineSeconds: 8\n  replicas: 1")
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "web.yaml": stuck})
    head = git.commit_all(work, "an image that never becomes ready")
    git.run("push", attached_server.url(), "main", cwd=work)

    # Before the deadline: in progress, not failed (the pod is only waiting for its image).
    deploy.wait_status(attached_server, _health_of(ref, head, "InProgress", ""), what="InProgress first")
    pods = dynamic.resources.get(api_version="v1", kind="Pod")

    def waiting_reasons() -> list[str]:
        return [cs.state.waiting.reason for p in pods.get(namespace=ns).items
                for cs in (p.status.containerStatuses or []) if cs.state.waiting]

    deploy.wait_status(attached_server, lambda _: waiting_reasons() == ["ImagePullBackOff"],
                       what="the kubelet stand-in to hold the pod in ImagePullBackOff")
    assert [p.status.phase for p in pods.get(namespace=ns).items] == ["Pending"]

    doc = deploy.wait_status(attached_server, deploy.verdict_for(head), what="the verdict")
    entry = deploy.result_of(doc, head)
    assert entry["result"] == "Failed" and "1 object(s) failed" in entry["reason"], entry
    row = _row(doc, ref)
    assert row["health"] == "Failed" and "progress deadline exceeded" in row["healthMessage"], row
    assert doc["result"] == {"revision": head, "verdict": "Failed", "reason": entry["reason"]}
    # The real controller manager decided it, not a pushgate timeout.
    live = dynamic.resources.get(api_version="apps/v1", kind="Deployment").get(name="web", namespace=ns)
    progressing = next(c for c in live.status.conditions if c.type == "Progressing")
    assert progressing.reason == "ProgressDeadlineExceeded"
    assert (live.status.availableReplicas or 0) == 0
