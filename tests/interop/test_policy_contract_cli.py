"""The policy contract at the command line: entry points are printed (`validate -v`, the server's
start-up log), a policy directory with no entry point is an operator error (exit 2), conftest's
suffixed rules and exceptions count, and `--policy-namespace main` evaluates what conftest does."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.bed import procs, samples
from tests.bed.server import PUSHGATE, Server

LIBRARY = """package main

import rego.v1

    deny_latest contains msg if {
        some c in input.spec.template.spec.containers
        endswith(c.image, ":latest")
        msg := sprintf("%s uses :latest", [c.name])
    }

violation_replicas contains {"msg": "too many replicas"} if input.spec.replicas > 10

exception contains rules if {
    input.metadata.labels.legacy == "yes"
    rules := ["latest"]
}
"""

ELSEWHERE = """package other

import rego.v1

deny contains "other package" if input.kind == "ConfigMap"
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PUSHGATE, *args], capture_output=True, text=True, timeout=120, check=False)


def test_validate_prints_entry_points_and_applies_the_contract(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "main.rego").write_text(LIBRARY)
    (policies / "other.rego").write_text(ELSEWHERE)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "web.yaml").write_text(samples.deployment(image="nginx:latest"))
    (tree / "cm.yaml").write_text(samples.configmap())
    legacy = samples.deployment(name="old", image="nginx:latest").replace(
        "    app.kubernetes.io/name: old\nspec:",
        "    app.kubernetes.io/name: old\n    legacy: \"yes\"\nspec:")
    (tree / "old.yaml").write_text(legacy)

    res = _run("validate", "-v", str(tree), f"--policies={policies}")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "main/deny_latest" in res.stderr and "main/violation_replicas" in res.stderr
    assert "main/exception" in res.stderr and "other/deny" in res.stderr
    assert "web.yaml:" in res.stdout and "[main/deny_latest] web uses :latest" in res.stdout
    assert "[other/deny] other package" in res.stdout  # every package counts by default
    assert "old.yaml" not in res.stdout.replace("exception: old.yaml", "")  # exempted
    assert "exception: old.yaml" in res.stdout and "1 exception" in res.stdout

    # conftest's default: package main only
    res = _run("validate", str(tree), f"--policies={policies}", "--policy-namespace=main")
    assert "[other/deny]" not in res.stdout and "[main/deny_latest]" in res.stdout, res.stdout


def test_a_policy_directory_without_entry_points_is_an_operator_error(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "helpers.rego").write_text("package main\n\nimport rego.v1\n\nis_big if input.size > 3\n")
    users = tmp_path / "users.json"
    subprocess.run([PUSHGATE, "user", "add", "--users", str(users), "a", "--role", "admin"],
                   capture_output=True, check=True)
    res = _run("serve", f"--data-dir={tmp_path / 'data'}", f"--users={users}",
               f"--listen=127.0.0.1:{procs.free_port()}", f"--policies={policies}")
    assert res.returncode == 2, res.stderr
    assert "has no entry point" in res.stderr and "Traceback" not in res.stderr
    res = _run("validate", str(tmp_path), f"--policies={policies}")
    assert res.returncode == 2 and "has no entry point" in res.stderr


def test_the_server_logs_its_entry_points_at_start(server_factory: Callable[..., Server],
                                                   tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "main.rego").write_text(LIBRARY)
    server = server_factory(f"--policies={policies}")
    records = [json.loads(x) for x in server.log().splitlines() if x.startswith("{")]
    started = [r["msg"] for r in records if r.get("msg", "").startswith("policies: ")]
    assert started and "main/deny_latest" in started[0] and "main/exception" in started[0], started
