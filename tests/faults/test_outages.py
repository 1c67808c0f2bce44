"""Dependencies that go away mid-run and come back.

(a) The OPA server: while it is down a good push is refused with a reason naming OPA (the gate
fails closed) and nothing is stored; once OPA is back on the same address, the same push is
accepted. (b) The kube-apiserver, for 30 s: the git side never depends on the cluster, so pushes
are accepted throughout; the status says the cluster is unreachable (never Ready for the new
commit) while it is; when the apiserver is back the reconciler converges to the new head.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, procs, samples
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.opa import OpaServer
from tests.bed.server import Server
from tests.faults.figures import Figures

ROOT = Path(__file__).resolve().parents[2]
OUTAGE = 30.0


def _readyz(server: Server) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz", timeout=10) as r:
            return int(r.status), json.load(r)
    except urllib.error.HTTPError as e:
        return int(e.code), json.load(e)


def _deployed(server: Server) -> str | None:
    res = subprocess.run(["git", "-C", str(server.repo), "rev-parse", "--verify", "-q",
                          "refs/deployed/main"], capture_output=True, text=True, check=False)
    return res.stdout.strip() or None


def _condition(doc: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in doc.get("conditions", []) if c.get("type") == type_), {})


# -- (a) OPA --------------------------------------------------------------------------------------
@pytest.mark.opa
def test_opa_stopped_mid_run_fails_closed_then_recovers(git: Git, server_factory: Callable[..., Server],
                                                        tmp_path: Path, figures: Figures) -> None:
    opa = OpaServer(ROOT / "policies", tmp_path / "opa").start()
    try:
        server = server_factory(f"--opa-url={opa.url}")
        work = git.init(tmp_path / "work")
        git.write(work, {"apps/ns.yaml": samples.namespace(), "apps/web.yaml": samples.deployment()})
        first = git.commit_all(work, "good, OPA up")
        res = git.run("push", server.url(), "main", cwd=work, check=False)
        assert res.returncode == 0, res.stderr
        assert "pushgate: 0 errors, 0 warnings" in res.stderr

        opa.stop()
        stopped = time.monotonic()
        git.write(work, {"apps/cm.yaml": samples.configmap()})
        second = git.commit_all(work, "good, OPA down")
        before = server.refs(), server.object_files()
        for attempt in range(2):  # and again a little later: no refusal or half state is kept
            if attempt:
                time.sleep(2.0)
            refused = git.run("push", server.url(), "main", cwd=work, check=False)
            assert refused.returncode != 0, refused.stderr
            assert "[remote rejected] main -> main" in refused.stderr, refused.stderr
            assert f"pushgate: gate unavailable, push refused: OPA at {opa.url} failed" in refused.stderr
            assert (server.refs(), server.object_files()) == before, "a push refused for OPA left state"
            assert server.quarantines() == []
        code, ready = _readyz(server)
        assert code == 503 and ready["checks"]["opa"] is False, ready

        opa.start()  # the same port: the server's --opa-url is unchanged
        outage = time.monotonic() - stopped
        procs.wait_until(lambda: _readyz(server)[0] == 200, 15, "readyz with OPA back")
        again = git.run("push", server.url(), "main", cwd=work, check=False)
        assert again.returncode == 0, again.stderr
        assert server.refs()["refs/heads/main"] == second != first
        assert server.fsck().returncode == 0
    finally:
        opa.stop()
    pushes = [json.loads(line) for line in (server.data_dir / "pushes.jsonl").read_text().splitlines()]
    assert [p["accepted"] for p in pushes] == [True, False, False, True]
    assert all("OPA" in p["reason"] for p in pushes[1:3])
    figures.record("OPA stopped mid-run",
                   f"4 pushes: 2 accepted, 2 refused (fail closed, reason names OPA, nothing stored) "
                   f"during a {outage:.1f} s OPA outage; /readyz 503 while down; the same push accepted "
                   f"once OPA was back on its port")


# -- (b) kube-apiserver ---------------------------------------------------------------------------
@pytest.mark.cluster
def test_apiserver_outage_is_reported_and_survived(git: Git, server_factory: Callable[..., Server],
                                                   fresh_control_plane: Callable[..., ControlPlane],
                                                   tmp_path: Path, figures: Figures) -> None:
    cp = fresh_control_plane()
    tag = secrets.token_hex(3)
    ns, inv = f"outage-{tag}", f"pg-inv-outage-{tag}"
    # best-effort: the live check warns instead of refusing while the API server is down (the
    # default, required, refuses: tests/cluster/test_live_gate.py), so pushes land to be applied
    # once it is back.
    server = server_factory(f"--kubeconfig={cp.kubeconfig}", "--live-check=best-effort", env={
        "PUSHGATE_INVENTORY_NAMESPACE": inv, "PUSHGATE_HEALTH_TIMEOUT": "60"})
    procs.wait_until(lambda: (server.data_dir / "status" / "main.json").exists(), 30,
                     "the reconciler to announce itself", on_timeout=server.log)
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns, value="a")})
    first = git.commit_all(work, "before the outage")
    git.run("push", "-q", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(first), what="first commit applied")
    assert deploy.result_of(doc, first)["result"] == "Ready", doc

    stopping = time.monotonic()
    cp.stop_apiserver()  # SIGTERM: the apiserver's graceful shutdown takes a while
    down = time.monotonic()
    git.write(work, {"cm.yaml": samples.configmap(namespace=ns, value="b")})
    second = git.commit_all(work, "during the outage")
    res = git.run("push", server.url(), "main", cwd=work, check=False, timeout=60)
    push_seconds = time.monotonic() - down
    assert res.returncode == 0, f"the git side depended on the cluster:\n{res.stderr}"
    assert server.refs()["refs/heads/main"] == second

    # For the whole outage the status tells the truth: unreachable, not Ready, not applied.
    noticed = None
    samples_seen = 0
    while time.monotonic() - down < OUTAGE:
        doc = deploy.status(server)
        unreachable = (doc.get("cluster") or {}).get("reachable") is False
        if noticed is None and unreachable:
            noticed = time.monotonic() - stopping
        if noticed is not None:
            samples_seen += 1
            assert unreachable, f"status forgot the outage: {doc.get('cluster')}"
            ready = _condition(doc, "Ready")
            assert ready.get("status") == "False" and ready.get("reason") == "ClusterUnavailable", ready
        assert doc.get("lastAppliedRevision") == first, "a commit was 'applied' with no apiserver"
        assert _deployed(server) == first
        time.sleep(1.0)
    assert noticed is not None and noticed < down - stopping + 15, f"the outage never showed: {doc}"
    assert samples_seen >= 10

    restarting = time.monotonic()
    cp.start_apiserver()
    back = time.monotonic()
    outage = back - down

    def converged(d: dict[str, Any]) -> bool:
        return (d.get("lastAppliedRevision") == second and _condition(d, "Ready").get("status") == "True"
                and (d.get("cluster") or {}).get("reachable") is True)

    doc = deploy.wait_status(server, converged, timeout=90, what="convergence after the outage")
    converge = time.monotonic() - restarting
    assert deploy.result_of(doc, second)["result"] == "Ready"
    assert _deployed(server) == second
    status, body = cp.request(f"/api/v1/namespaces/{ns}/configmaps/settings")
    assert status == 200 and json.loads(body)["data"]["value"] == "b", body[:300]
    figures.record("kube-apiserver outage",
                   f"apiserver unreachable {outage:.1f} s (+{down - stopping:.1f} s graceful stop); push "
                   f"during the outage accepted in {push_seconds:.1f} s; status showed ClusterUnavailable "
                   f"{noticed:.1f} s after the stop began and for the rest of the outage ({samples_seen} "
                   f"samples, never Ready/applied); converged to the new head {converge:.1f} s after the "
                   f"restart began (apiserver ready after {back - restarting:.1f} s)")

