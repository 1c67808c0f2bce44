"""The reconciler killed mid-apply (as SIGKILL would, at the `during-apply` crash point after N
objects of a 60-ConfigMap commit), then started again: it converges, and the status tells the
truth at every moment: never Ready nor applied for a commit that is half in the cluster.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, procs, samples
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import Server
from tests.faults.figures import Figures

pytestmark = pytest.mark.cluster
PUSHGATE = str(Path(sys.executable).with_name("pushgate"))
OBJECTS = 60
CRASH_AFTER = 20  # applied objects before the reconciler dies
LEASE = ("--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5")


@pytest.fixture
def namespaces(dynamic: Any) -> Iterator[tuple[str, str]]:
    """A namespace for the commit's objects and one for the inventory, deleted afterwards."""
    tag = secrets.token_hex(3)
    names = (f"crash-{tag}", f"pg-inv-crash-{tag}")
    yield names
    ns_api = dynamic.resources.get(api_version="v1", kind="Namespace")
    for name in names:
        with contextlib.suppress(Exception):
            ns_api.delete(name=name)


def _configmaps(dynamic: Any, ns: str) -> dict[str, str]:
    api = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    items = api.get(namespace=ns).items
    return {cm.metadata.name: (cm.data or {}).get("value", "") for cm in items
            if cm.metadata.name.startswith("cm-")}


def _deployed(server: Server) -> str | None:
    res = subprocess.run(["git", "-C", str(server.repo), "rev-parse", "--verify", "-q",
                          "refs/deployed/main"], capture_output=True, text=True, check=False)
    return res.stdout.strip() or None


def _condition(doc: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in doc.get("conditions", []) if c.get("type") == type_), {})


def test_reconciler_killed_mid_apply_converges(git: Git, server_factory: Callable[..., Server],
                                               control_plane: ControlPlane, dynamic: Any,
                                               namespaces: tuple[str, str], tmp_path: Path,
                                               figures: Figures) -> None:
    ns, inv = namespaces
    server = server_factory()  # no --kubeconfig: the reconciler is our own process
    work = git.init(tmp_path / "work")
    files: dict[str, str | bytes] = {"ns.yaml": samples.namespace(ns)}
    files.update({f"cms/cm-{i:02}.yaml": samples.configmap(name=f"cm-{i:02}", namespace=ns, value=f"v{i}")
                  for i in range(OBJECTS)})
    git.write(work, files)
    head = git.commit_all(work, f"{OBJECTS} ConfigMaps")
    git.run("push", "-q", server.url(), "main", cwd=work)

    argv = [PUSHGATE, "reconcile", f"--data-dir={server.data_dir}",
            f"--kubeconfig={control_plane.kubeconfig}", *LEASE]
    marker = tmp_path / "crash-marker"
    crashing = procs.REGISTRY.start("reconciler-crashing", argv, tmp_path / "reconciler-1.log", env={
        **os.environ, "PUSHGATE_INVENTORY_NAMESPACE": inv, "PUSHGATE_CRASHPOINT": "during-apply",
        "PUSHGATE_CRASHPOINT_AFTER": str(CRASH_AFTER), "PUSHGATE_CRASHPOINT_MARKER": str(marker)})
    try:
        code = crashing.popen.wait(90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the reconciler never reached the crash point:\n{crashing.tail()}")
    finally:
        crashing.stop()
    assert code == 137, crashing.tail()
    assert marker.read_text().split() == ["during-apply"]

    # Half applied: and the status, refs/deployed and the API all say so.
    present = _configmaps(dynamic, ns)
    assert CRASH_AFTER <= len(present) < OBJECTS, f"{len(present)} ConfigMaps after the crash"
    doc = deploy.status(server)
    assert doc.get("lastAttemptedRevision") == head
    assert doc.get("lastAppliedRevision") != head, "status claims a half-applied commit was applied"
    assert _condition(doc, "Ready").get("status") != "True", doc
    assert _deployed(server) != head

    restarted = time.monotonic()
    survivor = procs.REGISTRY.start("reconciler", argv, tmp_path / "reconciler-2.log",
                                    env={**os.environ, "PUSHGATE_INVENTORY_NAMESPACE": inv})
    try:
        def converged(d: dict[str, Any]) -> bool:
            return (d.get("lastAppliedRevision") == head
                    and _condition(d, "Ready").get("status") == "True")

        doc = deploy.wait_status(server, converged, timeout=90, what="convergence after the crash")
        took = time.monotonic() - restarted
        assert survivor.alive(), survivor.tail()
    finally:
        survivor.stop()

    assert head[:12] in _condition(doc, "Ready").get("message", ""), doc
    assert deploy.result_of(doc, head)["result"] == "Ready"
    assert _deployed(server) == head
    cms = _configmaps(dynamic, ns)
    assert cms == {f"cm-{i:02}": f"v{i}" for i in range(OBJECTS)}
    parent = dynamic.resources.get(api_version="v1", kind="ConfigMap").get(name="pushgate-main",
                                                                           namespace=inv)
    assert parent.data["revision"] == head
    assert sum(1 for line in parent.data["inventory"].splitlines() if line.startswith(f"{ns}_cm-")) == OBJECTS
    figures.record("reconciler SIGKILLed mid-apply",
                   f"{OBJECTS} ConfigMaps, killed after {len(present)} were in the cluster; "
                   f"status stayed not-Ready/unapplied; restarted reconciler converged (all {OBJECTS}, "
                   f"refs/deployed == head, Ready) in {took:.1f} s incl. lease takeover")
