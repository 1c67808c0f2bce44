"""Policies by GitOps: `policies.git` pushed with the stock git CLI, checked with the real `opa`.

The `--policies` directory is the bootstrap source until `main` of policies.git has a commit;
only an admin may push there; a push to it is gated (both engines compile every module, the
repository's own tests pass, the new set is compared with the active one on the cluster
repository's gated heads, `-o allow-breaking` accepts a change that would reject deployed
objects); the accepted commit is enforced on the next cluster push, and the commit that passed
each cluster commit is in its verdict, the status API and the page.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bed import samples, tools
from tests.bed.gitcli import Git
from tests.bed.server import Server

ServerFactory = Callable[..., Server]

MODULE = """package main

deny contains msg if {
\tinput.kind == "ConfigMap"
\tinput.metadata.name == "forbidden"
\tmsg := sprintf("ConfigMap %s is forbidden", [input.metadata.name])
}
"""
TESTS = """package main

test_forbidden_is_denied if {
\tcount(deny) == 1 with input as {"kind": "ConfigMap", "metadata": {"name": "forbidden"}}
}

test_others_pass if {
\tcount(deny) == 0 with input as {"kind": "ConfigMap", "metadata": {"name": "fine"}}
}
"""
BOOTSTRAP = """package bootstrap

deny contains msg if {
\tinput.kind == "ConfigMap"
\tinput.metadata.name == "old-rule"
\tmsg := "forbidden by the bootstrap policies"
}
"""
LEGACY_RULE = """package legacy

deny contains msg if {
\tinput.kind == "ConfigMap"
\tinput.metadata.name == "legacy"
\tmsg := "legacy settings must go"
}
"""


@pytest.fixture
def opa_server_env() -> dict[str, str]:
    """The pinned opa (scripts/tools.sh) for the server's policy push check."""
    return {"PUSHGATE_OPA": tools.path("opa")}


@pytest.fixture
def pg(server_factory: ServerFactory, opa_server_env: dict[str, str], tmp_path: Path) -> Server:
    """A server whose --policies directory (the bootstrap source) holds one rule."""
    bootstrap = tmp_path / "bootstrap"
    bootstrap.mkdir()
    (bootstrap / "bootstrap.rego").write_text(BOOTSTRAP)
    return server_factory(f"--policies={bootstrap}", env=opa_server_env)


def remote(res: subprocess.CompletedProcess[str]) -> list[str]:
    return [line[len("remote: "):].rstrip() for line in res.stderr.splitlines()
            if line.startswith("remote: ")]


def policy_push(git: Git, server: Server, work: Path, *options: str, user: str = "admin",
                ref: str = "main") -> subprocess.CompletedProcess[str]:
    opts = [f"--push-option={o}" for o in options]
    return git.run("push", *opts, server.url(user, "policies.git"), f"HEAD:refs/heads/{ref}",
                   cwd=work, check=False)


def cluster_push(git: Git, server: Server, work: Path) -> subprocess.CompletedProcess[str]:
    return git.run("push", server.url("admin"), "HEAD:refs/heads/main", cwd=work, check=False)


def policy_refs(server: Server) -> dict[str, str]:
    out = subprocess.run(["git", "-C", str(server.data_dir / "policies.git"), "for-each-ref",
                          "--format=%(refname) %(objectname)"], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())  # type: ignore[misc]


def api(server: Server, path: str) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}")
    cred = base64.b64encode(f"reader:{server.tokens['reader']}".encode()).decode()
    req.add_header("Authorization", f"Basic {cred}")
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read().decode()
    return json.loads(body) if path.startswith("/api/") else body


def policy_repo(git: Git, path: Path, files: dict[str, str | bytes]) -> Path:
    work = git.init(path)
    git.write(work, files)
    git.commit_all(work, "policies")
    return work


def test_bootstrap_then_admin_push_is_enforced_and_recorded(git: Git, pg: Server, tmp_path: Path) -> None:
    # Bootstrap: policies.git exists and is empty, the --policies directory rules.
    assert api(pg, "/api/v1/status")["policies"]["source"] == "directory"
    empty = tmp_path / "empty-clone"
    res = git.run("clone", "-q", pg.url("reader", "policies.git"), str(empty), check=False)
    assert res.returncode == 0, res.stderr
    cluster = git.init(tmp_path / "cluster")
    git.write(cluster, {"apps/ns.yaml": samples.namespace(),
                        "apps/old.yaml": samples.configmap(name="old-rule")})
    git.commit_all(cluster, "what the bootstrap policies forbid")
    res = cluster_push(git, pg, cluster)
    assert res.returncode != 0 and "ConfigMap/shop/old-rule [bootstrap/deny]" in res.stderr, res.stderr

    # Only an admin pushes policies: a writer is refused before any pack is sent.
    work = policy_repo(git, tmp_path / "policies", {"main.rego": MODULE, "main_test.rego": TESTS})
    res = policy_push(git, pg, work, user="writer")
    assert res.returncode != 0
    assert "403" in res.stderr or "needs role admin" in res.stderr, res.stderr
    assert policy_refs(pg) == {}

    # The admin's push is checked and accepted.
    res = policy_push(git, pg, work)
    assert res.returncode == 0, res.stderr
    lines = remote(res)
    assert any("every module compiles in both engines" in line for line in lines), lines
    assert any("opa test: 2 tests passed" in line for line in lines), lines
    commit = git.rev_parse(work, "HEAD")
    assert policy_refs(pg)["refs/heads/main"] == commit
    assert (pg.data_dir / "policies" / commit / "main.rego").is_file()
    status = api(pg, "/api/v1/status")["policies"]
    assert status["source"] == "commit" and status["commit"] == commit

    # ... and enforced on the next cluster push (whichever worker takes it): the bootstrap rule
    # is gone, the new one refuses.
    res = cluster_push(git, pg, cluster)
    assert res.returncode == 0, res.stderr
    head = git.rev_parse(cluster, "HEAD")
    verdict = json.loads((pg.data_dir / "verdicts" / head[:2] / f"{head}.json").read_text())
    assert verdict["policySource"] == f"commit:{commit}"
    git.write(cluster, {"apps/cm.yaml": samples.configmap(name="forbidden")})
    git.commit_all(cluster, "forbidden")
    res = cluster_push(git, pg, cluster)
    assert res.returncode != 0, res.stderr
    assert any("ConfigMap/shop/forbidden [main/deny] ConfigMap forbidden is forbidden" in line
               for line in remote(res)), res.stderr

    # The page names the active commit and the policy commit that passed each commit.
    page = api(pg, "/")
    assert commit in page and f"policies.git {commit[:12]}" in page


def test_unfit_policy_commits_are_refused(git: Git, pg: Server, tmp_path: Path) -> None:
    work = policy_repo(git, tmp_path / "policies", {"main.rego": MODULE, "main_test.rego": TESTS})
    # A module OPA cannot compile: refused at its file and line, nothing moves.
    git.write(work, {"broken.rego": "package broken\n\ndeny contains msg if {\n\tmsg := concat(\n}\n"})
    git.commit_all(work, "broken")
    res = policy_push(git, pg, work)
    assert res.returncode != 0 and "[remote rejected]" in res.stderr, res.stderr
    assert any(line.startswith("broken.rego:5 [opa-check] rego_parse_error") for line in remote(res)), \
        remote(res)
    assert policy_refs(pg) == {}

    # A Rego v0 head: regopy would read it another way; refused by the loader, at its line.
    git.write(work, {"broken.rego": "package broken\n\ndeny[msg] {\n\tmsg := \"x\"\n}\n"})
    git.commit_all(work, "v0")
    res = policy_push(git, pg, work)
    assert res.returncode != 0
    assert any(line.startswith("broken.rego:3 [policy-set]") for line in remote(res)), remote(res)

    # Forms the embedded engine would silently never fire where OPA does: refused by the loader,
    # at their line, naming the rule (and the builtin).
    for what, body, says in [
        ("call-bound variable", "is_object(input.items[i])", "rule broken.deny uses a variable"),
        ("unimplemented builtin", 'net.cidr_contains("0.0.0.0/0", input.spec.loadBalancerIP)',
         "calls net.cidr_contains"),
    ]:
        git.write(work, {"broken.rego": f'package broken\n\ndeny contains "x" if {{\n\t{body}\n}}\n'})
        git.commit_all(work, what)
        res = policy_push(git, pg, work)
        assert res.returncode != 0
        assert any(line.startswith("broken.rego:4 [policy-set]") and says in line
                   for line in remote(res)), remote(res)
    assert policy_refs(pg) == {}

    # A failing test: refused, naming the test.
    (work / "broken.rego").unlink()
    git.write(work, {"main_test.rego": TESTS.replace("count(deny) == 0", "count(deny) == 3")})
    git.commit_all(work, "wrong test")
    res = policy_push(git, pg, work)
    assert res.returncode != 0
    assert any(line.startswith("main_test.rego:7 [opa-test] test data.main.test_others_pass failed")
               for line in remote(res)), remote(res)
    assert policy_refs(pg) == {}
    assert api(pg, "/api/v1/status")["policies"]["source"] == "directory"

    # A draft branch is stored unchecked and never active.
    res = policy_push(git, pg, work, ref="draft")
    assert res.returncode == 0, res.stderr
    assert "refs/heads/draft" in policy_refs(pg)
    assert api(pg, "/api/v1/status")["policies"]["source"] == "directory"
    pushes = api(pg, "/api/v1/pushes")["pushes"]
    assert {p["refusal"] for p in pushes if not p["accepted"]} == {"policy"}
    assert all(p["repo"] == "policies.git" for p in pushes)


def test_breaking_change_needs_allow_breaking(git: Git, pg: Server, tmp_path: Path) -> None:
    work = policy_repo(git, tmp_path / "policies", {"main.rego": MODULE, "main_test.rego": TESTS})
    assert policy_push(git, pg, work).returncode == 0
    cluster = git.init(tmp_path / "cluster")
    git.write(cluster, {"apps/ns.yaml": samples.namespace(),
                        "apps/legacy.yaml": samples.configmap(name="legacy")})
    deployed = git.commit_all(cluster, "legacy settings")
    assert cluster_push(git, pg, cluster).returncode == 0

    git.write(work, {"legacy.rego": LEGACY_RULE})
    git.commit_all(work, "no more legacy")
    res = policy_push(git, pg, work)
    assert res.returncode != 0 and "[remote rejected]" in res.stderr, res.stderr
    lines = remote(res)
    assert f"pushgate: the new policies would reject 1 object deployed on main ({deployed[:12]}):" in lines
    listed = [line for line in lines if "ConfigMap/shop/legacy [legacy/deny] legacy settings must go" in line]
    assert listed and listed[0].lstrip().startswith("apps/legacy.yaml:"), lines
    assert any("-o allow-breaking" in line for line in lines), lines
    assert "would reject 1 deployed object" in res.stderr

    res = policy_push(git, pg, work, "allow-breaking")
    assert res.returncode == 0, res.stderr
    lines = remote(res)
    assert any("ConfigMap/shop/legacy [legacy/deny]" in line for line in lines), lines
    assert any("accepted with -o allow-breaking: 1 deployed object" in line for line in lines), lines
    assert policy_refs(pg)["refs/heads/main"] == git.rev_parse(work, "HEAD")

    # The deployed head now fails the gate: the next cluster push must fix it.
    git.write(cluster, {"apps/other.yaml": samples.configmap(name="other")})
    git.commit_all(cluster, "unrelated change")
    res = cluster_push(git, pg, cluster)
    assert res.returncode != 0 and "[legacy/deny]" in res.stderr, res.stderr


GK_TEMPLATE = """\
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: pgownerlabel
spec:
  crd:
    spec:
      names:
        kind: PgOwnerLabel
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package pgownerlabel
        violation[{"msg": msg}] {
          not input.review.object.metadata.labels.owner
          msg := sprintf("%v %v has no owner label", [input.review.kind.kind, input.review.name])
        }
"""
GK_CONSTRAINT = """\
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PgOwnerLabel
metadata:
  name: configmaps-need-owner
spec:
  match:
    kinds: [{apiGroups: [""], kinds: ["ConfigMap"]}]
"""


def test_gatekeeper_objects_in_policies_git_judge_the_next_push(git: Git, pg: Server, tmp_path: Path) -> None:
    """A ConstraintTemplate and its Constraint pushed to policies.git: the policy check names the
    deployed object the constraint would now reject, and once accepted the next cluster push is
    judged by it, named by the constraint."""
    cluster = git.init(tmp_path / "cluster")
    git.write(cluster, {"ns.yaml": samples.namespace(), "cm.yaml": samples.configmap(name="unowned")})
    git.commit_all(cluster, "a ConfigMap without an owner")
    assert cluster_push(git, pg, cluster).returncode == 0

    work = policy_repo(git, tmp_path / "policies", {"gatekeeper/template.yaml": GK_TEMPLATE,
                                                    "gatekeeper/constraint.yaml": GK_CONSTRAINT,
                                                    "main.rego": MODULE, "main_test.rego": TESTS})
    res = policy_push(git, pg, work)
    assert res.returncode != 0
    assert any("ConfigMap/shop/unowned [PgOwnerLabel/configmaps-need-owner] ConfigMap unowned has no "
               "owner label" in line for line in remote(res)), res.stderr
    res = policy_push(git, pg, work, "allow-breaking")
    assert res.returncode == 0, res.stderr

    git.write(cluster, {"cm2.yaml": samples.configmap(name="also-unowned")})
    git.commit_all(cluster, "another")
    res = cluster_push(git, pg, cluster)
    assert res.returncode != 0
    assert any("[PgOwnerLabel/configmaps-need-owner] ConfigMap also-unowned has no owner label" in line
               for line in remote(res)), res.stderr
