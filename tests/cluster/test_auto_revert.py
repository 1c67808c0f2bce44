"""Automatic revert on the real bed: a Deployment whose image never becomes ready turns Failed at
its progress deadline (the real controller manager decides), stays so past `revertAfter`, and
pushgate pushes `git revert` of it through its own gate as the automation user; the revert is
applied and healthy, the history says who and why, and the same commit is never reverted twice.
A branch without `autoRevert` keeps its failed commit."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, procs, samples
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import DEFAULT_USERS, Server

pytestmark = pytest.mark.cluster

USERS = (*DEFAULT_USERS, ("bot", "write"))


@pytest.fixture
def reverting(server_factory: Callable[..., Server], control_plane: ControlPlane,
              dynamic: Any) -> Iterator[Callable[[bool], Server]]:
    made: list[str] = []

    def make(auto_revert: bool) -> Server:
        inv = f"pg-inv-{secrets.token_hex(3)}"
        made.append(inv)

        def config(workdir: Path) -> str:
            return ("automation:\n  user: bot\n"
                    f"  tokenFile: {workdir / 'tokens' / 'bot'}\n"
                    "  author: pushgate-bot <bot@pushgate.test>\n"
                    f"  autoRevert: [{'main' if auto_revert else ''}]\n  revertAfter: 2\n"
                    .replace("  autoRevert: []\n", ""))

        s = server_factory(f"--kubeconfig={control_plane.kubeconfig}", users=USERS, config=config,
                           env={"PUSHGATE_INVENTORY_NAMESPACE": inv, "PUSHGATE_HEALTH_TIMEOUT": "120"})
        procs.wait_until(lambda: (s.data_dir / "run" / "live.token").exists(), 30,
                         "the reconciler's live socket", on_timeout=s.log)
        return s

    yield make
    ns_api = dynamic.resources.get(api_version="v1", kind="Namespace")
    for inv in made:
        with contextlib.suppress(Exception):
            ns_api.delete(name=inv)


def stuck(ns: str) -> str:
    return samples.deployment(namespace=ns, image="registry.example/app:never-ready", replicas=1).replace(
        "spec:\n  replicas: 1", "spec:\n  progressDeadlineSeconds: 6\n  replicas: 1")


def test_a_failed_commit_is_reverted_through_the_gate(git: Git, reverting: Callable[[bool], Server],
                                                      dynamic: Any, tmp_path: Path) -> None:
    server = reverting(True)
    ns = f"rev-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns),
                     "web.yaml": samples.deployment(namespace=ns, image="nginx:1.27.3", replicas=1)})
    good = git.commit_all(work, "web 1.27.3")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(good), what="the good commit")
    assert deploy.result_of(doc, good)["result"] == "Ready", doc

    git.write(work, {"web.yaml": stuck(ns)})
    bad = git.commit_all(work, "web: an image that never becomes ready")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(bad), what="the bad commit's verdict", timeout=120)
    assert deploy.result_of(doc, bad)["result"] == "Failed", doc

    doc = deploy.wait_status(server, lambda d: (d.get("autoRevert") or {}).get("done", {}).get(bad),
                             what="the automatic revert", timeout=60)
    record = doc["autoRevert"]["done"][bad]
    assert record["result"] == "accepted", record
    revert = record["commit"]
    assert any(line.startswith("pushgate: 0 errors") for line in record["lines"]), record

    # the revert is on the branch, authored by the automation identity, saying why
    git.run("fetch", "-q", server.url("reader"), "main", cwd=work)
    log = git.run("log", "-1", "--format=%H|%an <%ae>|%P|%B", "FETCH_HEAD", cwd=work).stdout
    sha, author, parent, body = log.split("|", 3)
    assert (sha, author, parent) == (revert, "pushgate-bot <bot@pushgate.test>", bad)
    assert body.startswith('Revert "web: an image that never becomes ready"')
    assert f"This reverts commit {bad}." in body and "pushgate: Failed for " in body
    assert git.run("diff", good, "FETCH_HEAD", cwd=work).stdout == ""
    # ... went through the gate like any push (the push log names the bot), and is applied
    assert any(p.get("pusher") == "bot" and p.get("accepted") and
               any(u["new"] == revert for u in p.get("updates", [])) for p in deploy.pushes(server))
    html = deploy.page(server)
    assert 'id="reverts"' in html and revert[:12] in html and bad[:12] in html
    doc = deploy.wait_status(server, deploy.verdict_for(revert), what="the revert's verdict", timeout=120)
    assert deploy.result_of(doc, revert)["result"] == "Ready", json.dumps(doc, indent=1)[:3000]
    live = dynamic.resources.get(api_version="apps/v1", kind="Deployment").get(name="web", namespace=ns)
    assert live.spec.template.spec.containers[0].image == "nginx:1.27.3"
    # never twice: the record stays, nothing else is pushed
    time.sleep(4)
    git.run("fetch", "-q", server.url("reader"), "main", cwd=work)
    assert git.rev_parse(work, "FETCH_HEAD") == revert


def test_without_auto_revert_the_failed_commit_stays(git: Git, reverting: Callable[[bool], Server],
                                                     tmp_path: Path) -> None:
    server = reverting(False)
    ns = f"norev-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns),
                     "web.yaml": samples.deployment(namespace=ns, image="nginx:1.27.3", replicas=1)})
    good = git.commit_all(work, "good")
    git.run("push", server.url(), "main", cwd=work)
    deploy.wait_status(server, deploy.verdict_for(good), what="the good commit")
    git.write(work, {"web.yaml": stuck(ns)})
    bad = git.commit_all(work, "bad")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(bad), what="the verdict", timeout=120)
    assert deploy.result_of(doc, bad)["result"] == "Failed"
    time.sleep(4)
    assert server.refs()["refs/heads/main"] == bad
    assert "autoRevert" not in deploy.status(server) or not deploy.status(server)["autoRevert"].get("done")
