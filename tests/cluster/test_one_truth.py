"""One truth: the object set the gate checked is the object set the reconciler applies.

On the real kube-apiserver, through the stock git client: for several build configurations
(exclude, include, a kustomize root) the gate's recorded digest equals the reconciler's and the
cluster holds exactly those objects; a configuration changed between push and reconcile applies
nothing and says why; `serve --kubeconfig` hands every reconciler setting to its reconciler
(a branch with `/` included, read back through `-o wait`, the API, the page and the CLI); and
namespaced objects that name no namespace land in the configured default namespace.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, procs, samples
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server

pytestmark = pytest.mark.cluster

POLICY = """package main

import rego.v1

deny contains msg if {
	input.kind == "ClusterRoleBinding"
	input.roleRef.name == "cluster-admin"
	msg := "no bindings to cluster-admin"
}

deny contains msg if {
	input.metadata.labels.block == "yes"
	msg := sprintf("%s is blocked", [input.metadata.name])
}
"""


def _evil(name: str) -> str:
    return f"""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{kind: User, name: mallory, apiGroup: rbac.authorization.k8s.io}}]
"""


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return samples.policy_dir(tmp_path / "policies", POLICY)


@pytest.fixture
def attach_with_policies(attach: Callable[..., Server], policies: Path) -> Callable[..., Server]:
    return lambda *args: attach(f"--policies={policies}", *args)


def _live(dynamic: Any, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
    from kubernetes.dynamic.exceptions import NotFoundError

    try:
        return dynamic.resources.get(api_version=api_version, kind=kind).get(name=name, namespace=namespace)
    except NotFoundError:
        return None


def _verdict(server: Server, sha: str) -> dict[str, Any]:
    return dict(json.loads((server.data_dir / "verdicts" / sha[:2] / f"{sha}.json").read_text()))


def _render(server: Server, tree: Path) -> set[str]:
    """The object set of `pushgate render` with the server's persisted configuration."""
    res = subprocess.run([PUSHGATE, "render", f"--data-dir={server.data_dir}", str(tree)],
                         capture_output=True, text=True, timeout=120, check=True)
    import yaml

    out = set()
    for o in yaml.safe_load_all(res.stdout):
        meta = o["metadata"]
        out.add(f"{o['kind']}/{meta['namespace']}/{meta['name']}" if meta.get("namespace")
                else f"{o['kind']}/{meta['name']}")
    return out


@pytest.mark.parametrize("config", ["exclude", "include", "kustomize"])
def test_gate_and_reconciler_see_the_same_objects(config: str, git: Git,
                                                  attach_with_policies: Callable[..., Server],
                                                  dynamic: Any, tmp_path: Path) -> None:
    ns = f"truth-{secrets.token_hex(3)}"
    evil = f"evil-{secrets.token_hex(3)}"
    files: dict[str, str] = {"app/ns.yaml": samples.namespace(ns),
                             "app/cm.yaml": samples.configmap(namespace=ns),
                             "docs/evil.yaml": _evil(evil)}
    expected = {f"Namespace/{ns}", f"ConfigMap/{ns}/settings"}
    if config == "exclude":
        args = ("--exclude=docs/*",)
    elif config == "include":
        args = ("--include=*.yaml",)
        files["docs/evil.yaml"] = ""
        files["docs/evil.yml"] = _evil(evil)  # not a manifest under this configuration
    else:
        args = ("--exclude=docs",)
        files["overlay/kustomization.yaml"] = (f"namespace: {ns}\nresources: [svc.yaml]\n"
                                               f"labels: [{{pairs: {{tier: web}}}}]\n")
        files["overlay/svc.yaml"] = samples.service(namespace="elsewhere")
        expected.add(f"Service/{ns}/web")
    server = attach_with_policies(*args)
    work = git.init(tmp_path / "w")
    git.write(work, files)
    head = git.commit_all(work, "app and a hidden binding")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(head), 120, "the commit's verdict")

    gate = _verdict(server, head)
    assert doc["verdict"]["revision"] == head
    assert doc["verdict"]["digest"] == gate["digest"] and gate["objects"] == len(expected)
    applied = {o["ref"] for o in doc["objects"] if o["action"] == "applied"}
    assert applied == expected == _render(server, work)
    assert _live(dynamic, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", evil) is None
    assert _live(dynamic, "v1", "ConfigMap", "settings", ns) is not None
    if config == "kustomize":
        svc = _live(dynamic, "v1", "Service", "web", ns)
        assert svc is not None and svc.metadata.labels["tier"] == "web"
    dynamic.resources.get(api_version="v1", kind="Namespace").delete(name=ns)


def test_configuration_changed_between_push_and_reconcile_applies_nothing(
        git: Git, server_factory: Callable[..., Server], control_plane: ControlPlane, dynamic: Any,
        policies: Path, tmp_path: Path) -> None:
    ns = f"drift-cfg-{secrets.token_hex(3)}"
    first = server_factory("--exclude=docs/*", f"--policies={policies}")  # no cluster attached yet
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns),
                     "docs/extra.yaml": samples.configmap(name="extra", namespace=ns)})
    head = git.commit_all(work, "pushed under --exclude=docs/*")
    git.run("push", first.url(), "main", cwd=work)
    first.stop()

    inv = f"pg-inv-{secrets.token_hex(3)}"
    second = Server(first.dir, procs.free_port(), tokens=first.tokens,
                    args=[f"--kubeconfig={control_plane.kubeconfig}", f"--policies={policies}"],
                    env={"PUSHGATE_INVENTORY_NAMESPACE": inv}).start()
    try:
        doc = deploy.wait_status(second, deploy.verdict_for(head), 60, "the refusal")
        entry = deploy.result_of(doc, head)
        assert entry["result"] == "Failed" and entry["reason"] == "VerdictMismatch", entry
        assert "the build configuration changed since the push" in entry["detail"]
        stalled = next(c for c in doc["conditions"] if c["type"] == "Stalled")
        assert stalled["status"] == "True" and stalled["reason"] == "VerdictMismatch"
        time.sleep(2)  # nothing of it is applied, not even later
        assert _live(dynamic, "v1", "Namespace", ns) is None
        git.run("fetch", "-q", second.url(), "refs/notes/pushgate:refs/notes/pushgate", cwd=work)
        note = git.run("notes", "--ref=pushgate", "show", head, cwd=work).stdout
        assert "VerdictMismatch" in note and "not applied" in note
        with urllib.request.urlopen(f"http://127.0.0.1:{second.port}/metrics", timeout=10) as r:
            assert 'pushgate_reconcile_refusals_total{reason="VerdictMismatch"} 1.0' in r.read().decode()

        # A new commit is gated under today's configuration, and then applied, docs/ included.
        again = git.commit_all(work, "check it again")
        git.run("push", second.url(), "main", cwd=work)
        doc = deploy.wait_status(second, deploy.verdict_for(again), 120, "the new commit applied")
        assert deploy.result_of(doc, again)["result"] == "Ready"
        assert _live(dynamic, "v1", "ConfigMap", "extra", ns) is not None
    finally:
        second.stop()
        for name in (ns, inv):
            with contextlib.suppress(Exception):  # best-effort cleanup
                dynamic.resources.get(api_version="v1", kind="Namespace").delete(name=name)


def _get(server: Server, path: str) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}")
    cred = base64.b64encode(f"reader:{server.tokens['reader']}".encode()).decode()
    req.add_header("Authorization", f"Basic {cred}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def test_serve_hands_every_reconciler_setting_to_its_reconciler(
        git: Git, attach_with_policies: Callable[..., Server], dynamic: Any, tmp_path: Path) -> None:
    ns = f"rel-{secrets.token_hex(3)}"
    branch = "release/v1"
    server = attach_with_policies(f"--branch={branch}", f"--gated-ref=refs/heads/{branch}",
                    f"--protected-ref=refs/heads/{branch}", "--drift=detect", "--prune-protected")
    persisted = json.loads((server.data_dir / "config.json").read_text())
    assert persisted["reconcile"]["branch"] == branch and persisted["reconcile"]["drift"] == "detect"
    assert persisted["reconcile"]["pruneProtected"] is True
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns)})
    head = git.commit_all(work, "release")
    res = git.run("push", "-o", "wait=90", server.url(), f"HEAD:refs/heads/{branch}", cwd=work, timeout=150)
    assert "remote: pushgate: deploy Ready" in res.stderr, res.stderr

    # The same status through the API (named and default branch), the page and the CLI.
    assert not (server.data_dir / "status" / "main.json").exists()
    for query in (f"?branch={urllib.parse.quote(branch, safe='')}", ""):
        doc = json.loads(_get(server, f"/api/v1/status{query}"))
        assert doc["branch"] == branch and doc["lastAppliedRevision"] == head, doc
    assert head[:12] in _get(server, f"/?branch={urllib.parse.quote(branch, safe='')}")
    cli = subprocess.run([PUSHGATE, "status", f"--data-dir={server.data_dir}"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert f"last applied:   {head}" in cli

    # --drift=detect reached the reconciler: an out-of-band edit is reported, not undone.
    cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    cms.patch(name="settings", namespace=ns, body={"data": {"value": "edited"}},
              content_type="application/merge-patch+json")
    deploy.wait_status(server, lambda d: any("settings" in e.get("ref", "") for e in d.get("drift", [])),
                       60, "the drift event", branch=branch)
    time.sleep(2)
    assert cms.get(name="settings", namespace=ns).data["value"] == "edited"

    # --prune-protected reached it too: a Namespace removed from Git is pruned.
    git.run("rm", "-q", "ns.yaml", "cm.yaml", cwd=work)
    gone = git.commit_all(work, "remove everything")
    held = git.run("push", server.url(), f"HEAD:refs/heads/{branch}", cwd=work, check=False)
    assert held.returncode != 0 and "prune guard: it deletes 1 object of a protected kind: " \
        f"Namespace/{ns}" in held.stderr, held.stderr
    git.run("push", "-o", "allow-prune", server.url(), f"HEAD:refs/heads/{branch}", cwd=work)
    deploy.wait_status(server, deploy.verdict_for(gone), 90, "the prune", branch=branch)
    procs.wait_until(lambda: _live(dynamic, "v1", "Namespace", ns) is None
                     or _live(dynamic, "v1", "Namespace", ns).metadata.deletionTimestamp, 60,
                     "the namespace to be pruned")


def test_reconciling_an_ungated_branch_is_refused_at_start(control_plane: ControlPlane,
                                                          tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    subprocess.run([PUSHGATE, "user", "add", "--users", str(users), "a", "--role", "admin"],
                   capture_output=True, check=True)
    res = subprocess.run([PUSHGATE, "serve", f"--data-dir={tmp_path / 'data'}", f"--users={users}",
                          f"--listen=127.0.0.1:{procs.free_port()}", "--branch=dev",
                          f"--kubeconfig={control_plane.kubeconfig}"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and "'dev' is not gated" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


GUESTBOOK = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: guestbook-ui
  labels: {block: "BLOCK"}
spec:
  replicas: 1
  revisionHistoryLimit: 3
  selector:
    matchLabels: {app: guestbook-ui}
  template:
    metadata:
      labels: {app: guestbook-ui}
    spec:
      containers:
      - image: gcr.io/heptio-images/ks-guestbook-demo:0.2
        name: guestbook-ui
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: guestbook-ui
spec:
  ports:
  - port: 80
    targetPort: 80
  selector:
    app: guestbook-ui
"""


def test_objects_without_a_namespace_land_in_the_default_one(git: Git,
                                                             attach_with_policies: Callable[..., Server],
                                                             dynamic: Any, tmp_path: Path) -> None:
    ns = f"guestbook-{secrets.token_hex(3)}"
    server = attach_with_policies(f"--default-namespace={ns}")
    work = git.init(tmp_path / "w")
    # Argo CD's guestbook example, as written upstream: no namespace anywhere.
    git.write(work, {"ns.yaml": samples.namespace(ns),
                     "guestbook/ui.yaml": GUESTBOOK.replace("BLOCK", "yes")})
    git.commit_all(work, "guestbook, blocked by policy")
    refused = git.run("push", server.url(), "main", cwd=work, check=False)
    # the gate judged the object that would be applied: in the default namespace
    blocked = f"Deployment/{ns}/guestbook-ui [main/deny] guestbook-ui is blocked"
    assert blocked in refused.stderr, refused.stderr
    git.write(work, {"guestbook/ui.yaml": GUESTBOOK.replace("BLOCK", "no")})
    head = git.commit_all(work, "guestbook")
    git.run("push", server.url(), "main", cwd=work)
    doc = deploy.wait_status(server, deploy.verdict_for(head), 120, "the guestbook applied")
    assert {o["ref"] for o in doc["objects"]} == {f"Namespace/{ns}", f"Deployment/{ns}/guestbook-ui",
                                                  f"Service/{ns}/guestbook-ui"}
    assert all(o["action"] == "applied" for o in doc["objects"]), doc["objects"]
    assert _live(dynamic, "apps/v1", "Deployment", "guestbook-ui", ns) is not None
    assert _live(dynamic, "v1", "Service", "guestbook-ui", ns) is not None
    dynamic.resources.get(api_version="v1", kind="Namespace").delete(name=ns)
