"""The policy commit that passed a cluster commit, in that commit's note, status and page.

An attached server (real kube-apiserver) bootstraps from its `--policies` directory; an admin
pushes a policy commit to policies.git; the next cluster commit is applied, and its note (read
with the stock git CLI), the status document's verdict and the page all name that commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bed import deploy, samples
from tests.bed.gitcli import Git
from tests.bed.server import Server
from tests.interop.test_policy_repo import BOOTSTRAP, MODULE, TESTS, policy_push

pytestmark = pytest.mark.cluster


def test_note_and_status_name_the_policy_commit(git: Git, attach: Callable[..., Server],
                                                tmp_path: Path) -> None:
    bootstrap = tmp_path / "bootstrap"
    bootstrap.mkdir()
    (bootstrap / "bootstrap.rego").write_text(BOOTSTRAP)
    server = attach(f"--policies={bootstrap}")
    policies = git.init(tmp_path / "policies")
    git.write(policies, {"main.rego": MODULE, "main_test.rego": TESTS})
    policy_commit = git.commit_all(policies, "the policy set")
    res = policy_push(git, server, policies)
    assert res.returncode == 0, res.stderr

    ns = f"pol-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns)})
    head = git.commit_all(work, "a namespace and its settings")
    git.run("push", server.url(), "HEAD:refs/heads/main", cwd=work)

    doc = deploy.wait_status(server, deploy.verdict_for(head), what="the commit's result")
    assert deploy.result_of(doc, head)["result"] == "Ready", doc
    assert doc["verdict"]["policySource"] == f"commit:{policy_commit}"
    assert doc["policies"]["commit"] == policy_commit
    git.run("fetch", "-q", server.url(), "refs/notes/pushgate:refs/notes/pushgate", cwd=work)
    note = git.run("notes", "--ref=pushgate", "show", head, cwd=work).stdout
    assert "pushgate: Ready" in note and f"policy source: commit:{policy_commit}" in note, note
    assert f"policies.git {policy_commit[:12]}" in deploy.page(server)
