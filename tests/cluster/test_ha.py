"""HA: two reconcilers share the data dir; only the Lease holder reconciles. SIGKILL the leader:
the other takes over within leaseDuration + retryPeriod, and every commit ends either applied
or noted "superseded by <sha>"."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, procs, samples
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import Server

pytestmark = pytest.mark.cluster
LEASE, RENEW, RETRY = 6.0, 4.0, 1.0
PUSHGATE = str(Path(sys.executable).with_name("pushgate"))


def _holder(dynamic: Any, ns: str) -> str:
    try:
        lease = dynamic.resources.get(api_version="coordination.k8s.io/v1", kind="Lease").get(
            name="pushgate-reconciler-main", namespace=ns)
    except Exception:
        return ""
    return str(lease.spec.holderIdentity or "")


def _note(server: Server, sha: str) -> str:
    res = subprocess.run(["git", "-C", str(server.repo), "notes", "--ref=pushgate", "show", sha],
                         capture_output=True, text=True, check=False)
    return res.stdout


def test_leader_killed_other_takes_over(git: Git, server_factory: Callable[..., Server],
                                        control_plane: ControlPlane, dynamic: Any, tmp_path: Path) -> None:
    inv = f"pg-ha-{secrets.token_hex(3)}"
    ns = f"ha-{secrets.token_hex(3)}"
    server = server_factory()
    env = {**os.environ, "PUSHGATE_INVENTORY_NAMESPACE": inv}
    reconcilers = {}
    for i in range(2):
        p = procs.REGISTRY.start(f"reconciler-{i}", [
            PUSHGATE, "reconcile", f"--data-dir={server.data_dir}",
            f"--kubeconfig={control_plane.kubeconfig}",
            f"--lease-duration={LEASE}", f"--renew-deadline={RENEW}", f"--retry-period={RETRY}",
        ], tmp_path / f"reconciler-{i}.log", env=env)
        reconcilers[p.pid] = p

    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns, value="a")})
    a = git.commit_all(work, "A")
    git.run("push", server.url(), "main", cwd=work)
    deploy.wait_status(server, deploy.verdict_for(a), what="A applied")
    holder = _holder(dynamic, inv)
    leader_pid = int(holder.rsplit("-", 1)[1])
    assert leader_pid in reconcilers
    follower = next(p for pid, p in reconcilers.items() if pid != leader_pid)

    reconcilers[leader_pid].kill()
    killed = time.monotonic()
    shas = {}
    for name, value in (("B", "b"), ("C", "c")):
        git.write(work, {"cm.yaml": samples.configmap(namespace=ns, value=value)})
        shas[name] = git.commit_all(work, name)
        git.run("push", server.url(), "main", cwd=work)

    while not _holder(dynamic, inv).endswith(f"-{follower.pid}"):
        assert time.monotonic() - killed < LEASE + RETRY + 10, (
            f"no takeover (holder {_holder(dynamic, inv)!r}, follower alive: {follower.alive()}):\n"
            f"{follower.tail(60)}")
        time.sleep(0.1)
    took = time.monotonic() - killed
    print(f"\nha: leader killed, follower took the lease after {took:.1f}s "
          f"(leaseDuration {LEASE:.0f}s + retryPeriod {RETRY:.0f}s)")
    assert took <= LEASE + RETRY + 1.0

    c = shas["C"]
    doc = deploy.wait_status(server, deploy.verdict_for(c), what="C applied by the new leader")
    assert deploy.result_of(doc, c)["result"] == "Ready"
    assert doc["leader"].endswith(f"-{follower.pid}")
    cm = dynamic.resources.get(api_version="v1", kind="ConfigMap").get(name="settings", namespace=ns)
    assert cm.data.value == "c"
    assert server.refs()["refs/deployed/main"] == c
    for name, sha in (("A", a), ("B", shas["B"]), ("C", c)):
        note = _note(server, sha)
        assert note.startswith("pushgate: Ready") or f"superseded by {c}" in note, (name, note)
    dynamic.resources.get(api_version="v1", kind="Namespace").delete(name=inv)
