"""Installed as a user or a container image would install it: the built wheel in a fresh venv,
run from outside the checkout. `pushgate validate` and `pushgate serve` find the starter
policies (package data) and every other default without the repository around them."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.bed import procs, samples
from tests.bed.gitcli import Git

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_the_wheel_runs_outside_the_checkout(tmp_path: Path, git: Git) -> None:
    dist = tmp_path / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                 cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = dist.glob("pushgate-*.whl")
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path).returncode == 0
    installed = _run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                      "-c", str(ROOT / "constraints.txt"), str(wheel)], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    pushgate = str(venv / "bin" / "pushgate")
    # the wheel carries the gate's two C extensions, built (a compiler and libyaml's header are
    # on the test machine), not left to their Python fallbacks
    ext = _run([str(venv / "bin" / "python"), "-c",
                "import pushgate.gate._regoinput, pushgate.core._yamlplain"], cwd=tmp_path)
    assert ext.returncode == 0, ext.stderr[-3000:]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHGATE_", "PYTHON", "VIRTUAL_ENV"))}

    tree = outside / "tree"
    tree.mkdir()
    (tree / "cm.yaml").write_text(samples.configmap())
    ok = _run([pushgate, "validate", "-v", str(tree)], cwd=outside, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "site-packages" in ok.stderr and "pushgate/k8s/images/deny" in ok.stderr, ok.stderr
    (tree / "web.yaml").write_text(samples.deployment(image="nginx:latest"))
    bad = _run([pushgate, "validate", str(tree)], cwd=outside, env=env)
    assert bad.returncode == 1 and "[pushgate.k8s.images/deny]" in bad.stdout, bad.stdout + bad.stderr

    users = outside / "users.json"
    token = _run([pushgate, "user", "add", "--users", str(users), "admin", "--role", "admin"],
                 cwd=outside, env=env).stdout.strip()
    port = procs.free_port()
    proc = procs.REGISTRY.start("wheel-serve", [pushgate, "serve", f"--data-dir={outside / 'data'}",
                                                f"--users={users}", f"--listen=127.0.0.1:{port}"],
                                outside / "serve.log", env=env, cwd=outside)
    try:
        procs.wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2),
                         90, "the installed server", on_timeout=proc.tail)
        work = git.init(tmp_path / "w")
        git.write(work, {"cm.yaml": samples.configmap()})
        git.commit_all(work, "from an installed pushgate")
        url = f"http://admin:{token}@127.0.0.1:{port}/cluster.git"
        git.run("push", url, "main", cwd=work)
        git.write(work, {"web.yaml": samples.deployment(image="nginx:latest")})
        git.commit_all(work, "refused by the packaged starter policies")
        refused = git.run("push", url, "main", cwd=work, check=False)
        assert refused.returncode != 0 and "[pushgate.k8s.images/deny]" in refused.stderr, refused.stderr
    finally:
        proc.stop()
