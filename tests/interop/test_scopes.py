"""Who may push what, through the stock git client: a writer scoped to a team's paths, namespace
and branch cannot change another team's files, target another namespace, add a cluster-scoped
object or move another ref; scopes come from the user and their groups, are visible to policies
as `data.pushgate.push.scopes`, and survive `pushgate user add` re-keying the user."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server

POLICY = """package main

import rego.v1

deny contains "scoped pushers may not add Secrets" if {
	input.kind == "Secret"
	data.pushgate.push.scopes != null
}
"""

CRB = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: team-a-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
"""


def _scope_writer(server: Server) -> None:
    users = server.dir / "users.json"
    doc = json.loads(users.read_text())
    for u in doc["users"]:
        if u["name"] == "writer":
            u["groups"] = ["team-a"]
    doc["groups"] = {"team-a": {"scopes": [{"paths": ["apps/team-a/*"], "namespaces": ["team-a"],
                                            "refs": ["refs/heads/main"], "clusterKinds": []}]}}
    users.write_text(json.dumps(doc))


def test_a_scoped_writer_stays_in_scope(git: Git, server_factory: Callable[..., Server],
                                        tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "main.rego").write_text(POLICY)
    server = server_factory(f"--policies={policies}")
    work = git.init(tmp_path / "w")
    git.write(work, {"apps/team-a/cm.yaml": samples.configmap(namespace="team-a"),
                     "apps/team-b/cm.yaml": samples.configmap(namespace="team-b")})
    base = git.commit_all(work, "two teams")
    git.run("push", server.url("admin"), "main", cwd=work)
    _scope_writer(server)
    # Re-keying the user keeps their groups (the file's other fields are preserved).
    token = subprocess.run([PUSHGATE, "user", "add", "--users", str(server.dir / "users.json"), "writer",
                            "--role", "write"], capture_output=True, text=True, check=True).stdout.strip()
    server.tokens["writer"] = token
    assert json.loads((server.dir / "users.json").read_text())["users"][-1]["groups"] == ["team-a"]

    def attempt(files: dict[str, str], ref: str = "main") -> str:
        git.run("reset", "-q", "--hard", base, cwd=work)
        git.write(work, files)
        git.commit_all(work, "try")
        res = git.run("push", server.url("writer"), f"HEAD:{ref}", cwd=work, check=False)
        assert res.returncode != 0, res.stderr
        assert server.refs()["refs/heads/main"] == base
        return res.stderr

    err = attempt({"apps/team-b/cm.yaml": samples.configmap(namespace="team-b", value="2")})
    assert "apps/team-b/cm.yaml: path outside your scopes" in err, err
    err = attempt({"apps/team-a/evil.yaml": samples.configmap(name="x", namespace="kube-system")})
    assert "apps/team-a/evil.yaml: ConfigMap/kube-system/x: namespace kube-system is outside your scopes" \
        in err, err
    err = attempt({"apps/team-a/crb.yaml": CRB})
    assert "cluster-scoped kind ClusterRoleBinding is outside your scopes" in err, err
    err = attempt({"apps/team-a/cm.yaml": samples.configmap(namespace="team-a", value="2")}, "release")
    assert "refs/heads/release is outside your scopes" in err, err
    secret = ("apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: team-a}\n"
              "stringData: {k: v}\n")
    err = attempt({"apps/team-a/s.yaml": secret})
    assert "[main/deny] scoped pushers may not add Secrets" in err, err  # the policy saw the scopes

    git.run("reset", "-q", "--hard", base, cwd=work)
    git.write(work, {"apps/team-a/cm.yaml": samples.configmap(namespace="team-a", value="2")})
    mine = git.commit_all(work, "my own")
    git.run("push", server.url("writer"), "HEAD:main", cwd=work)
    assert server.refs()["refs/heads/main"] == mine
    log = [json.loads(x) for x in (server.data_dir / "pushes.jsonl").read_text().splitlines()]
    assert [e["refusal"] for e in log[-6:]] == ["scope", "scope", "scope", "scope", "gate", ""]
