"""A reconciler that does not lead says so, naming the leader: `git push -o wait` no longer sits
silently until its timeout, and `pushgate status` and the page show who holds the Lease."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, samples
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server

pytestmark = pytest.mark.cluster


def test_a_follower_names_the_leader(git: Git, server_factory: Callable[..., Server],
                                     control_plane: ControlPlane, dynamic: Any, tmp_path: Path) -> None:
    inv = f"pg-inv-{secrets.token_hex(3)}"
    ns_api = dynamic.resources.get(api_version="v1", kind="Namespace")
    ns_api.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": inv}})
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # Another replica holds the Lease (a pod elsewhere): this one follows until it expires.
    dynamic.resources.get(api_version="coordination.k8s.io/v1", kind="Lease").create(namespace=inv, body={
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "pushgate-reconciler-main", "namespace": inv},
        "spec": {"holderIdentity": "pushgate-elsewhere-0", "leaseDurationSeconds": 20,
                 "acquireTime": now, "renewTime": now}})
    try:
        server = server_factory(f"--kubeconfig={control_plane.kubeconfig}",
                                env={"PUSHGATE_INVENTORY_NAMESPACE": inv})
        work = git.init(tmp_path / "w")
        git.write(work, {"cm.yaml": samples.configmap(name=f"led-{secrets.token_hex(3)}",
                                                      namespace="default")})
        head = git.commit_all(work, "while another replica leads")
        res = git.run("push", "-o", "wait=8", server.url(), "main", cwd=work, timeout=60)
        assert "no reconciler here leads main: the Lease is held by pushgate-elsewhere-0" in res.stderr, \
            res.stderr
        status = subprocess.run([PUSHGATE, "status", f"--data-dir={server.data_dir}"],
                                capture_output=True, text=True, timeout=60, check=False).stdout
        assert "the Lease is held by pushgate-elsewhere-0" in status, status
        assert "the Lease is held by pushgate-elsewhere-0" in deploy.page(server)
        # The holder never renews: this replica takes over once the Lease expires, and applies.
        deploy.wait_status(server, lambda d: d.get("lastAppliedRevision") == head, 90, "the takeover")
        assert "held by" not in deploy.page(server)
    finally:
        ns_api.delete(name=inv)
