"""`make run` started headless: the printed walkthrough works with the real git CLI and
kubectl, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.bed import procs, tools
from tests.bed.gitcli import Git

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _kubectl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tools.path("kubectl"), f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                          text=True, check=False, timeout=30)


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"  # a zombie is gone for our purpose


def test_make_run_walkthrough(git: Git, tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    env = {**os.environ, "PUSHGATE_RUN_PORT": str(procs.free_port())}
    with open(log, "w") as out:
        run = subprocess.Popen(["make", "run"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "Press Ctrl-C" not in log.read_text() and time.monotonic() < deadline:
            assert run.poll() is None, log.read_text()
            time.sleep(0.5)
        text = log.read_text()
        url = re.search(r"clone URL\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        kubeconfig = re.search(r"kubeconfig\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        deployment = text.split("cat > apps/web.yaml <<'YAML'\n", 1)[1].split("YAML\n", 1)[0]
        running = _descendants(run.pid)
        assert len(running) >= 5  # make, run.sh/python, etcd, apiserver, kcm, pushgate ...

        # A clean git configuration (no init.defaultBranch): the empty clone's branch is git's
        # default (master on git 2.39); the walkthrough's HEAD:main works whatever it is.
        (git.home / ".gitconfig").write_text("")
        demo = tmp_path / "demo"
        git.run("clone", "-q", url, str(demo))
        git.write(demo, {"apps/web.yaml": deployment})
        git.commit_all(demo, "web")
        assert "HEAD:main" in text
        res = git.run("push", "-o", "wait=120", "origin", "HEAD:main", cwd=demo, timeout=180)
        assert "deploy Ready" in res.stderr, res.stderr
        got = _kubectl(kubeconfig, "get", "deploy", "web", "-n", "demo", "-o",
                       "jsonpath={.status.readyReplicas}")
        assert got.stdout == "2", got.stderr

        (demo / "apps" / "web.yaml").write_text(deployment.replace("nginx:1.27.3", "nginx:latest"))
        git.commit_all(demo, "latest")
        res = git.run("push", "origin", "HEAD:main", cwd=demo, check=False)
        assert res.returncode != 0 and "[pushgate.k8s.images/deny]" in res.stderr

        git.run("reset", "-q", "--hard", "origin/main", cwd=demo)
        git.run("revert", "--no-edit", "HEAD", cwd=demo)
        res = git.run("push", "-o", "wait=120", "origin", "HEAD:main", cwd=demo, timeout=180)
        assert "deploy Ready" in res.stderr, res.stderr
        gone = _kubectl(kubeconfig, "get", "deploy", "web", "-n", "demo")
        assert gone.returncode != 0 and "NotFound" in gone.stderr
    finally:
        os.killpg(run.pid, signal.SIGINT)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            raise
    assert "stopping" in log.read_text()
    time.sleep(1)
    left = [p for p in running if _alive(p)]
    assert left == [], f"processes left after Ctrl-C: {left}"
