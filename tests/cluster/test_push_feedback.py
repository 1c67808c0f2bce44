"""`git push -o wait` streams apply and health progress and ends with the verdict; health
outcomes come from the real controllers (Ready) and a progress deadline (Failed)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.bed import deploy, samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

pytestmark = pytest.mark.cluster


def test_push_wait_streams_progress_and_verdict(git: Git, attached_server: Server, tmp_path: Path) -> None:
    ns = f"wait-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "web.yaml": samples.deployment(namespace=ns),
                     "cm.yaml": samples.configmap(namespace=ns)})
    git.commit_all(work, "app")
    res = git.run("push", "-o", "wait=90", attached_server.url(), "main", cwd=work, timeout=150)
    err = res.stderr
    assert "remote: pushgate: waiting up to 90s" in err
    assert f"applied Deployment/{ns}/web" in err
    assert f"Deployment/{ns}/web applied Current" in err
    assert "remote: pushgate: deploy Ready" in err
    assert err.index("deploy Ready") < err.index("main -> main")


def test_progress_deadline_makes_the_commit_failed(git: Git, attached_server: Server, tmp_path: Path) -> None:
    ns = f"fail-{secrets.token_hex(3)}"
    broken = samples.deployment(namespace=ns, image="registry.example/app:crashloop").replace(
        "spec:\n  replicas: 2", "spec:\n  progressDeadlineSeconds: 5\n  replicas: 2")
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "web.yaml": broken})
    head = git.commit_all(work, "never becomes ready")
    res = git.run("push", "-o", "wait=120", attached_server.url(), "main", cwd=work, timeout=180)
    assert "deploy Failed" in res.stderr, res.stderr
    doc = deploy.status(attached_server)
    entry = deploy.result_of(doc, head)
    assert entry["result"] == "Failed" and "failed" in entry["reason"]
    row = next(o for o in doc["objects"] if o["ref"] == f"Deployment/{ns}/web")
    assert row["health"] == "Failed" and "progress deadline" in row["healthMessage"]
    # The push itself landed: the gate accepted it; the deploy verdict is separate.
    assert res.returncode == 0
    shown = git.run("fetch", "-q", attached_server.url(), "refs/notes/pushgate:refs/notes/pushgate",
                    cwd=work)
    assert shown.returncode == 0
    assert "pushgate: Failed" in git.run("notes", "--ref=pushgate", "show", head, cwd=work).stdout


def test_dry_run_push_option_stores_nothing(git: Git, attached_server: Server, tmp_path: Path) -> None:
    work = git.init(tmp_path / "w")
    git.write(work, {"cm.yaml": samples.configmap(namespace="default")})
    git.commit_all(work, "try")
    res = git.run("push", "-o", "dry-run", attached_server.url(), "main", cwd=work, check=False)
    assert res.returncode != 0
    assert "dry run: the gate accepts this push" in res.stderr
    assert "refs/heads/main" not in attached_server.refs()
