"""`pushgate validate DIR`: the gate over a working tree, for pre-commit hooks and CI.

Exit 0 with a `0 errors` summary on a good tree; exit 1 with the very report lines a push of
the same tree gets from the server; exit 2 with one line on stderr for operator errors (no such
directory, policies that are not Rego v1).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

PUSHGATE = str(Path(sys.executable).with_name("pushgate"))

GOOD: dict[str, str | bytes] = {
    "apps/ns.yaml": samples.namespace(),
    "apps/web.yaml": samples.deployment(),
    "apps/svc.yaml": samples.service(),
    "apps/cm.yaml": samples.configmap(),
}

BAD: dict[str, str | bytes] = {
    **GOOD,
    "apps/web.yaml": samples.deployment(image="nginx:latest").replace("replicas: 2", "replicas: two"),
    "apps/cm.yaml": samples.configmap().replace("metadata:", "metadata:\n  name: again"),
    "apps/extra.yaml": samples.service(namespace=""),
}


def _validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PUSHGATE, "validate", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def _tree(git: Git, path: Path, files: dict[str, str | bytes]) -> Path:
    git.init(path)
    git.write(path, files)
    return path


def test_good_tree_passes(git: Git, tmp_path: Path) -> None:
    res = _validate(str(_tree(git, tmp_path / "good", GOOD)))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines() == ["0 errors, 0 warnings; checked 4 files, 4 objects"]


def test_bad_tree_fails_with_the_push_report(git: Git, server: Server, tmp_path: Path) -> None:
    work = _tree(git, tmp_path / "bad", BAD)
    res = _validate(str(work))
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines == [
        'apps/cm.yaml:5 [yaml.duplicate-key] duplicate key "name" (first at line 4)',
        'apps/extra.yaml:5 Service/web [manifest] "metadata.namespace" must be a non-empty string, '
        "not empty",
        'apps/web.yaml:9 Deployment/shop/web [schema:spec.replicas] spec.replicas: "two" is not of '
        "type integer",
        'apps/web.yaml:20 Deployment/shop/web [pushgate.k8s.images/deny] container "web" uses image '
        '"nginx:latest": pin a version tag or digest instead of latest',
        "4 errors, 0 warnings; checked 5 files, 3 objects",
    ]

    # The server reports the same tree with exactly the same lines.
    git.commit_all(work, "bad tree")
    push = git.run("push", server.url(), "main", cwd=work, check=False)
    assert push.returncode != 0
    remote = [line[len("remote: "):].rstrip() for line in push.stderr.splitlines()
              if line.startswith("remote: ") and "checking main" not in line]
    assert remote[:-1] == lines[:-1]
    assert remote[-1].startswith(f"pushgate: {lines[-1]}")


def test_symlink_is_reported(git: Git, tmp_path: Path) -> None:
    work = _tree(git, tmp_path / "tree", GOOD)
    os.symlink("/etc/passwd", work / "apps" / "passwd.yaml")
    res = _validate(str(work))
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.splitlines() == [
        "apps/passwd.yaml [tree.symlink] symlinks are not allowed (they may point outside the "
        "repository); commit the file itself",
        "1 error, 0 warnings; checked 4 files, 4 objects",
    ]


def test_missing_directory_is_an_operator_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    res = _validate(str(missing))
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.splitlines() == [f"pushgate: {missing} is not a directory"]


def test_old_rego_syntax_is_an_operator_error(git: Git, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "configmaps.rego").write_text(
        'package custom.configmaps\n\ndeny[msg] {\n\tinput.kind == "ConfigMap"\n\tmsg := "no"\n}\n')
    res = _validate(str(_tree(git, tmp_path / "good", GOOD)), "--policies", str(policies))
    assert res.returncode == 2
    assert res.stdout == ""
    [line] = res.stderr.splitlines()
    assert line.startswith("pushgate: --policies: configmaps.rego:3: not valid Rego v1:"), line
    assert "deny[msg]" in line


def test_gate_timeout_bounds_one_validate(git: Git, tmp_path: Path) -> None:
    work = _tree(git, tmp_path / "good", GOOD)
    res = _validate("--gate-timeout", "0.0001", str(work))
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.splitlines() == ["pushgate: gate could not decide: gate time limit of 0s exceeded"]
    res = _validate("--gate-timeout", "600", str(work))
    assert res.returncode == 0, res.stdout + res.stderr
    res = _validate("--gate-timeout", "soon", str(work))
    assert res.returncode == 2
    assert res.stderr.splitlines() == ["pushgate: --gate-timeout 'soon' is not a number"]
