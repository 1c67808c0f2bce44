"""deploy/: the kustomize base and its overlays render, pass pushgate's own gate and a real API
server's dry run, and the deploy shape works end to end: the two containers of the rendered
Deployment, run as local processes with what their volumes would hold, gate a push and apply
it with the ServiceAccount's own token, which cannot reach beyond its grant."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bed import deploy, procs, samples, tools
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TARGETS = {"base": DEPLOY, "opa": DEPLOY / "overlays" / "opa",
           "cluster-admin": DEPLOY / "overlays" / "cluster-admin"}
KUBECTL = tools.path("kubectl")  # pinned: the API server's own version, never the host's
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


# -- rendering ------------------------------------------------------------------------------------
def _build(target: Path) -> list[dict[str, Any]]:
    res = subprocess.run([tools.path("kustomize"), "build", str(target)], capture_output=True,
                         text=True, check=False, timeout=120)
    assert res.returncode == 0, f"kustomize build {target} failed:\n{res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def _overlay(workdir: Path, target: Path, namespace: str, suffix: str) -> list[dict[str, Any]]:
    """`target` rendered through an overlay of our own that moves it to a unique namespace and
    suffixes every name, so tests on the shared control plane never collide."""
    workdir.mkdir(parents=True, exist_ok=True)
    # JSON, not PyYAML: a suffix like "-12e345" is a string to PyYAML and a number to kustomize.
    (workdir / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": namespace, "nameSuffix": suffix,
        "resources": [os.path.relpath(target, workdir)],
    }))
    return _build(workdir)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: _build(path) for name, path in TARGETS.items()}


def _one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = _one(objs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _containers(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in _pod(objs)["containers"]}


def _token_volumes(pod: dict[str, Any]) -> set[str]:
    return {v["name"] for v in pod.get("volumes", [])
            if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources", []))}


def _write(path: Path, objs: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


def _validate(directory: Path, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PUSHGATE, "validate", str(directory)], capture_output=True, text=True,
                          check=False, timeout=180, env={**os.environ, **(env or {})})


# -- a. render, gate, hardening -----------------------------------------------------------------
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_rendered_output_passes_pushgates_own_gate(target: str, rendered: dict[str, list[dict[str, Any]]],
                                                   tmp_path: Path) -> None:
    objs = rendered[target]
    _write(tmp_path / "ok" / "rendered.yaml", objs)
    res = _validate(tmp_path / "ok")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().startswith("0 errors, 0 warnings; checked "), res.stdout

    # The same render with one container's limits removed is refused: the gate did read it.
    broken = json.loads(json.dumps(objs))
    del _containers(broken)["reconciler"]["resources"]["limits"]
    _write(tmp_path / "broken" / "rendered.yaml", broken)
    res = _validate(tmp_path / "broken")
    assert res.returncode == 1, res.stdout
    assert "pushgate.k8s.resources/deny" in res.stdout and 'container "reconciler"' in res.stdout


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_deployment_is_hardened_and_only_the_reconciler_holds_the_token(
        target: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    from kubernetes.config import incluster_config

    objs = rendered[target]
    assert not [o for o in objs if o["kind"] == "Secret"], "Secret data must never be shipped"
    for o in objs:
        if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == "pushgate-system", o["metadata"]

    pod = _pod(objs)
    assert pod["automountServiceAccountToken"] is False
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    containers = _containers(objs)
    assert {"gitserver", "reconciler"} <= set(containers)
    assert set(containers) == ({"gitserver", "reconciler", "opa"} if target == "opa"
                               else {"gitserver", "reconciler"})
    for name, c in containers.items():
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for part in ("requests", "limits"):
            assert set(c["resources"][part]) == {"cpu", "memory"}, (name, part)

    git = containers["gitserver"]
    assert git["command"] == ["pushgate"] and git["args"][0] == "serve"
    assert "--data-dir=/data" in git["args"] and "--listen=0.0.0.0:8080" in git["args"]
    port = {p["name"]: p["containerPort"] for p in git["ports"]}
    assert port == {"http": 8080}
    assert git["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert git["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    rec = containers["reconciler"]
    assert rec["command"] == ["pushgate"] and rec["args"][:2] == ["reconcile", "--data-dir=/data"]
    # Its probes port is not in the Service (only the git port is exposed).
    assert rec["ports"] == [{"name": "probes", "containerPort": 8081}]
    assert rec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}
    assert rec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}

    # Writable places are volumes: /data shared by both, a /tmp of each container's own.
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {n: {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
              for n, c in containers.items()}
    for name in ("gitserver", "reconciler"):
        assert "persistentVolumeClaim" in vols[mounts[name]["/data"]]
        assert "emptyDir" in vols[mounts[name]["/tmp"]]
    assert mounts["gitserver"]["/tmp"] != mounts["reconciler"]["/tmp"]
    pvc = _one(objs, "PersistentVolumeClaim")
    assert vols[mounts["gitserver"]["/data"]]["persistentVolumeClaim"]["claimName"] == \
        pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert _one(objs, "Deployment")["spec"]["replicas"] == 1

    # The token: a projected volume laid out as the in-cluster config expects, in one container.
    [token_vol] = _token_volumes(pod)
    holders = {n for n, m in mounts.items() if token_vol in m.values()}
    assert holders == {"reconciler"}
    assert mounts["reconciler"][SA_DIR] == token_vol
    paths = {}
    for s in vols[token_vol]["projected"]["sources"]:
        if "serviceAccountToken" in s:
            paths["token"] = s["serviceAccountToken"]["path"]
        elif "configMap" in s:
            assert s["configMap"]["name"] == "kube-root-ca.crt"
            paths["ca"] = next(i["path"] for i in s["configMap"]["items"] if i["key"] == "ca.crt")
        elif "downwardAPI" in s:
            paths["namespace"] = next(i["path"] for i in s["downwardAPI"]["items"]
                                      if i["fieldRef"]["fieldPath"] == "metadata.namespace")
    assert f"{SA_DIR}/{paths['token']}" == incluster_config.SERVICE_TOKEN_FILENAME
    assert f"{SA_DIR}/{paths['ca']}" == incluster_config.SERVICE_CERT_FILENAME
    assert paths["namespace"] == "namespace"

    # Users: a Secret made out of band, mounted (whole, so updates arrive) in the git server only.
    users_vol = next(n for n, v in vols.items() if "secret" in v)
    assert vols[users_vol]["secret"]["secretName"] == "pushgate-users"
    assert {n for n, m in mounts.items() if users_vol in m.values()} == {"gitserver"}
    users_arg = next(a for a in git["args"] if a.startswith("--users="))
    assert users_arg == "--users=/etc/pushgate/users/users.json"
    assert mounts["gitserver"]["/etc/pushgate/users"] == users_vol
    assert not [m for m in git["volumeMounts"] if "subPath" in m]

    # RBAC: the pod's ServiceAccount is bound; no wildcards, no Secrets, no Pods to write.
    sa = _one(objs, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    role = _one(objs, "ClusterRole")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert ("", "secrets") not in granted and ("", "pods") not in granted
    assert ("rbac.authorization.k8s.io", "clusterroles") not in granted
    assert not [r for r in role["rules"] if "*" in r["verbs"] + r["resources"] + r["apiGroups"]]
    for rule in role["rules"]:
        if rule["resources"] == ["replicasets"]:
            assert rule["verbs"] == ["get", "list", "watch"]
    for binding in [o for o in objs if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                        "namespace": "pushgate-system"}]
    inv = _one(objs, "Role")
    assert {(g, r) for rule in inv["rules"] for g in rule["apiGroups"] for r in rule["resources"]} == \
        {("", "configmaps"), ("coordination.k8s.io", "leases")}
    crbs = {b["roleRef"]["name"] for b in objs if b["kind"] == "ClusterRoleBinding"}
    assert crbs == ({role["metadata"]["name"], "cluster-admin"} if target == "cluster-admin"
                    else {role["metadata"]["name"]})

    # Exposed: the git port only.
    svc = _one(objs, "Service")
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    assert svc["spec"]["selector"].items() <= _one(objs, "Deployment")["spec"]["template"]["metadata"][
        "labels"].items()
    netpol = _one(objs, "NetworkPolicy")
    assert set(netpol["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for r in netpol["spec"]["ingress"] for p in r["ports"]] == [8080]
    assert {p["port"] for r in netpol["spec"]["egress"] for p in r["ports"]} == {53, 443, 6443}


def test_opa_overlay_adds_a_pinned_loopback_sidecar(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objs = rendered["opa"]
    containers = _containers(objs)
    opa = containers["opa"]
    image, _, tag = opa["image"].rpartition(":")
    assert image == "openpolicyagent/opa"
    assert tag.split("-")[0] == tools.versions()["OPA_VERSION"].lstrip("v")
    args = opa["args"]
    assert args[:2] == ["run", "--server"] and args[-1] == "/policies"
    assert args[args.index("--addr") + 1] == "127.0.0.1:8181"
    env = {e["name"]: e.get("value") for e in containers["gitserver"]["env"]}
    assert env["PUSHGATE_OPA_URL"] == "http://127.0.0.1:8181"
    assert "env" not in containers["reconciler"] or not [
        e for e in containers["reconciler"]["env"] if e["name"] == "PUSHGATE_OPA_URL"]

    # One generated ConfigMap feeds both OPA and the git server's list of packages to query.
    cm = _one(objs, "ConfigMap")
    vols = {v["name"]: v for v in _pod(objs)["volumes"]}
    [policy_vol] = [n for n, v in vols.items()
                    if (v.get("configMap") or {}).get("name") == cm["metadata"]["name"]]
    opa_mounts = {m["mountPath"]: m["name"] for m in opa["volumeMounts"]}
    git_mounts = {m["mountPath"]: m["name"] for m in containers["gitserver"]["volumeMounts"]}
    assert opa_mounts["/policies"] == policy_vol
    assert git_mounts[env["PUSHGATE_POLICIES"]] == policy_vol


def test_opa_overlay_policies_are_the_policy_library(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The copies kustomize's load restrictions require stay identical to policies/."""
    library = {p.relative_to(ROOT / "policies").as_posix(): p.read_text()
               for p in (ROOT / "policies").rglob("*.rego") if not p.name.endswith("_test.rego")}
    copies = {p.relative_to(TARGETS["opa"] / "policies").as_posix(): p.read_text()
              for p in (TARGETS["opa"] / "policies").rglob("*") if p.is_file()}
    assert copies == library, ("deploy/overlays/opa/policies/ differs from policies/: refresh it "
                               "(deploy/README.md, 'The OPA overlay')")
    data = _one(rendered["opa"], "ConfigMap")["data"]
    assert sorted(data.values()) == sorted(library.values())


def test_readme_widening_patch_adds_a_rule(tmp_path: Path) -> None:
    """The overlay deploy/README.md shows for widening the RBAC builds and does what it says."""
    readme = (DEPLOY / "README.md").read_text()
    snippet = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    doc = yaml.safe_load(snippet)
    assert doc["resources"] == ["../deploy/base"]
    overlay = tmp_path / "my-overlay"
    overlay.mkdir()
    doc["resources"] = [os.path.relpath(DEPLOY / "base", overlay)]
    (overlay / "kustomization.yaml").write_text(json.dumps(doc))
    base_rules = _one(_build(DEPLOY / "base"), "ClusterRole")["rules"]
    rules = _one(_build(overlay), "ClusterRole")["rules"]
    assert rules[:-1] == base_rules
    assert rules[-1]["apiGroups"] == ["bitnami.com"] and rules[-1]["resources"] == ["sealedsecrets"]


@pytest.mark.opa
def test_opa_sidecar_serves_the_policies_from_a_kubelet_configmap_volume(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    """The OPA container's args over the ConfigMap laid out as the kubelet mounts it (..data and
    a timestamped copy), queried by the gate with the git server's env: a bad object is refused."""
    objs = rendered["opa"]
    layout = _configmap_volume(tmp_path / "policies", _one(objs, "ConfigMap")["data"])
    containers = _containers(objs)
    port, diag = procs.free_port(), procs.free_port()
    swap = {"127.0.0.1:8181": f"127.0.0.1:{port}", "/policies": str(layout)}
    args = [swap.get(a, a) for a in containers["opa"]["args"]]
    args = [f"--diagnostic-addr=127.0.0.1:{diag}" if a.startswith("--diagnostic-addr=") else a
            for a in args]
    proc = procs.REGISTRY.start("deploy-opa", [tools.path("opa"), *args], tmp_path / "opa.log")
    try:
        procs.wait_until(lambda: _http_status(f"http://127.0.0.1:{diag}/health") == 200, 30,
                         "opa /health on the diagnostic port", on_timeout=proc.tail)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/policies", timeout=5) as r:
            ids = [p["id"] for p in json.load(r)["result"]]
        assert len(ids) == len(_one(objs, "ConfigMap")["data"]), ids  # no ..data duplicates

        env = {e["name"]: e["value"] for e in containers["gitserver"]["env"]}
        env = {k: v.replace("127.0.0.1:8181", f"127.0.0.1:{port}") for k, v in env.items()}
        env["PUSHGATE_POLICIES"] = str(layout)
        good, bad = tmp_path / "good", tmp_path / "bad"
        _write(good / "web.yaml", [yaml.safe_load(samples.deployment())])
        _write(bad / "web.yaml", [yaml.safe_load(samples.deployment(image="nginx:latest"))])
        res = _validate(good, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        res = _validate(bad, env=env)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "pushgate.k8s.images/deny" in res.stdout and "nginx:latest" in res.stdout
    finally:
        proc.stop()


def _configmap_volume(path: Path, data: dict[str, str]) -> Path:
    """A ConfigMap volume as the kubelet's atomic writer lays it out."""
    stamp = path / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    for key, value in data.items():
        (stamp / key).write_text(value)
    (path / "..data").symlink_to(stamp.name)
    for key in data:
        (path / key).symlink_to(f"..data/{key}")
    return path


def _http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as r:
        return int(r.status)


# -- b. the API server accepts it ---------------------------------------------------------------
def _kubectl(cp: ControlPlane, *args: str, input: str | None = None,
             kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, f"--kubeconfig={kubeconfig or cp.kubeconfig}", *args],
                          capture_output=True, text=True, input=input, check=False, timeout=120)


@contextlib.contextmanager
def _cleanup(cp: ControlPlane, *objs: dict[str, Any]) -> Iterator[None]:
    """Delete `objs` (Namespaces last) at the end, whatever happens; a failed clean-up fails a
    test that passed, and never hides the error of one that failed."""
    ordered = sorted(objs, key=lambda o: o["kind"] == "Namespace")

    def delete() -> subprocess.CompletedProcess[str]:
        return _kubectl(cp, "delete", "--ignore-not-found", "--wait=false", "-f", "-",
                        input=yaml.safe_dump_all(ordered))

    try:
        yield
    except BaseException:
        delete()
        raise
    res = delete()
    assert res.returncode == 0, f"clean-up failed: {res.stderr}"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_api_server_accepts_the_render_in_a_server_side_dry_run(
        target: str, control_plane: ControlPlane, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    ns = f"pg-dry-{tag}"
    objs = _overlay(tmp_path / "overlay", TARGETS[target], ns, f"-{tag}")
    namespace = _one(objs, "Namespace")
    assert namespace["metadata"]["name"] == ns
    # A namespaced dry run needs its namespace to exist; it is the only object created.
    with _cleanup(control_plane, namespace):
        res = _kubectl(control_plane, "apply", "-f", "-", input=yaml.safe_dump(namespace))
        assert res.returncode == 0, res.stderr
        rendered = _write(tmp_path / "rendered.yaml", objs)
        res = _kubectl(control_plane, "apply", "--dry-run=server", "-f", str(rendered))
        assert res.returncode == 0, res.stdout + res.stderr
        lines = [line for line in res.stdout.splitlines() if line.endswith("(server dry run)")]
        assert len(lines) == len(objs), res.stdout
        # The namespace warns on pod templates the restricted Pod Security Standard would refuse.
        assert "PodSecurity" not in res.stderr, res.stderr
        # Nothing but the namespace was created.
        res = _kubectl(control_plane, "get", "deployments,pvc,serviceaccounts,configmaps", "-n", ns,
                       "-o", "name", "--field-selector=metadata.name!=kube-root-ca.crt")
        assert res.returncode == 0 and "pushgate" not in res.stdout, res.stdout + res.stderr


# -- c. the deploy shape, end to end ------------------------------------------------------------
@dataclass
class _Pod:
    """The rendered pod's volumes made local: each volume name -> a directory holding what the
    kubelet would mount there."""
    namespace: str
    volumes: dict[str, Path]

    def argv(self, container: dict[str, Any], listen: str) -> list[str]:
        mounts = sorted(((m["mountPath"], self.volumes[m["name"]]) for m in container["volumeMounts"]),
                        key=lambda m: -len(m[0]))

        def local(value: str) -> str:
            for path, where in mounts:
                if value == path or value.startswith(path + "/"):
                    return str(where) + value[len(path):]
            return value

        out = [PUSHGATE if container["command"] == ["pushgate"] else container["command"][0]]
        for arg in container["args"]:
            flag, eq, value = arg.partition("=")
            if flag == "--listen":
                value = listen
            elif flag == "--probe-listen":
                value = f"127.0.0.1:{procs.free_port()}"
            out.append(f"{flag}={local(value)}" if eq else local(arg))
        return out

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        # What the image does not set: nothing of the test runner's pushgate configuration.
        base = {k: v for k, v in os.environ.items()
                if not (k.startswith("PUSHGATE_") and k not in ("PUSHGATE_CACHE", "PUSHGATE_KUSTOMIZE"))
                and k != "KUBECONFIG"}
        tmp = next(self.volumes[m["name"]] for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        out = {**base, "TMPDIR": str(tmp)}
        for e in container.get("env", []):
            if "value" in e:
                out[e["name"]] = e["value"]
            else:
                assert e["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}, e
                out[e["name"]] = self.namespace
        return out


def _local_pod(root: Path, pod: dict[str, Any], namespace: str, *, users: Path, token: str,
               ca: Path) -> _Pod:
    volumes: dict[str, Path] = {}
    for v in pod["volumes"]:
        where = root / "volumes" / v["name"]
        where.mkdir(parents=True)
        if "secret" in v:
            assert v["secret"]["secretName"] == "pushgate-users"
            for item in v["secret"]["items"]:
                (where / item["path"]).write_bytes(users.read_bytes())
        elif "projected" in v:
            for s in v["projected"]["sources"]:
                if "serviceAccountToken" in s:
                    (where / s["serviceAccountToken"]["path"]).write_text(token)
                elif "configMap" in s:
                    for item in s["configMap"]["items"]:
                        (where / item["path"]).write_bytes(ca.read_bytes())
                else:
                    for item in s["downwardAPI"]["items"]:
                        (where / item["path"]).write_text(namespace)
        else:
            assert "persistentVolumeClaim" in v or "emptyDir" in v, v
        volumes[v["name"]] = where
    return _Pod(namespace, volumes)


def _token_kubeconfig(path: Path, cp: ControlPlane, token: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "bed", "cluster": {"server": cp.url,
                                                  "certificate-authority": str(cp.certs / "apiserver.crt")}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "bed", "user": "sa"}}],
    }))
    path.chmod(0o600)
    return path


def _cluster_role(name: str) -> str:
    return f"""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {name}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list]
"""


def test_deploy_shape_applies_a_push_with_the_service_accounts_token_and_no_more(
        control_plane: ControlPlane, dynamic: Any, git: Git, tmp_path: Path) -> None:
    from kubernetes import client
    from kubernetes.config import incluster_config

    tag = secrets.token_hex(3)
    system_ns, app_ns = f"pg-sys-{tag}", f"pg-app-{tag}"
    objs = _overlay(tmp_path / "overlay", DEPLOY, system_ns, f"-{tag}")
    rbac = [o for o in objs if o["kind"] in RBAC_KINDS]
    assert {o["kind"] for o in rbac} == RBAC_KINDS
    sa = _one(objs, "ServiceAccount")["metadata"]["name"]
    app_namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app_ns}}

    with _cleanup(control_plane, *rbac, app_namespace):
        res = _kubectl(control_plane, "apply", "-f", "-", input=yaml.safe_dump_all(rbac))
        assert res.returncode == 0, res.stderr
        # What the kubelet would project into the reconciler: a bound token for the ServiceAccount.
        res = _kubectl(control_plane, "create", "token", sa, "-n", system_ns, "--duration=1h")
        assert res.returncode == 0, res.stderr
        token = res.stdout.strip()
        ca = control_plane.certs / "apiserver.crt"
        sa_kubeconfig = _token_kubeconfig(tmp_path / "sa.kubeconfig", control_plane, token)

        users = tmp_path / "users.json"
        tokens = {}
        for name, role in (("admin", "admin"), ("reader", "read")):
            out = subprocess.run([PUSHGATE, "user", "add", "--users", str(users), name, "--role", role],
                                 capture_output=True, text=True, check=True)
            tokens[name] = out.stdout.strip()
        assert tokens["admin"] not in users.read_text()  # the Secret holds hashes only

        pod_spec = _pod(objs)
        local = _local_pod(tmp_path / "pod", pod_spec, system_ns, users=users, token=token, ca=ca)
        containers = _containers(objs)
        port = procs.free_port()
        started = []
        for name in ("gitserver", "reconciler"):
            c = containers[name]
            argv = local.argv(c, listen=f"127.0.0.1:{port}")
            if name == "reconciler":
                # The in-cluster files cannot be at their fixed path here: same token, by kubeconfig.
                argv.append(f"--kubeconfig={sa_kubeconfig}")
            started.append(procs.REGISTRY.start(f"deploy-{name}", argv, tmp_path / f"{name}.log",
                                                env=local.env(c), cwd=tmp_path))
        gitserver, reconciler = started
        try:
            procs.wait_until(lambda: gitserver.alive() and
                             _http_status(f"http://127.0.0.1:{port}/readyz") == 200,
                             60, "the gitserver container's /readyz", on_timeout=gitserver.tail)
            assert reconciler.alive(), reconciler.tail()
            data = local.volumes[next(m["name"] for m in containers["gitserver"]["volumeMounts"]
                                      if m["mountPath"] == "/data")]
            server = Server(data.parent, port, tokens)  # for tests.bed.deploy's status helpers
            assert server.data_dir == data and (data / "cluster.git" / "HEAD").exists()

            work = git.init(tmp_path / "w")
            git.write(work, {"ns.yaml": samples.namespace(app_ns),
                             "web.yaml": samples.deployment(namespace=app_ns),
                             "cm.yaml": samples.configmap(namespace=app_ns)})
            first = git.commit_all(work, "an app the grant covers")
            git.run("push", server.url(), "main", cwd=work)
            doc = deploy.wait_status(server, deploy.verdict_for(first), timeout=150, what="first verdict")
            assert deploy.result_of(doc, first)["result"] == "Ready", (doc, reconciler.tail())
            ready = next(c for c in doc["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", ready
            web = dynamic.resources.get(api_version="apps/v1", kind="Deployment").get(
                name="web", namespace=app_ns)
            assert "pushgate" in {m.manager for m in web.metadata.managedFields}
            cm = dynamic.resources.get(api_version="v1", kind="ConfigMap").get(
                name="settings", namespace=app_ns)
            assert cm.data.value == "1"
            # The ApplySet inventory went to the overlay's namespace, taken from the downward API.
            parent = dynamic.resources.get(api_version="v1", kind="ConfigMap").get(
                name="pushgate-main", namespace=system_ns)
            assert "web" in parent.data.inventory

            # The projected files, read by the in-cluster loader itself, are a working identity.
            cfg = client.Configuration()
            incluster_config.InClusterConfigLoader(
                token_filename=str(local.volumes[next(iter(_token_volumes(pod_spec)))] / "token"),
                cert_filename=str(local.volumes[next(iter(_token_volumes(pod_spec)))] / "ca.crt"),
                environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                         "KUBERNETES_SERVICE_PORT": str(control_plane.port)},
            ).load_and_set(cfg)
            with client.ApiClient(cfg) as api:
                core = client.CoreV1Api(api)
                assert core.read_namespaced_config_map("pushgate-main", system_ns).data["revision"] == first
                with pytest.raises(client.ApiException) as denied:
                    core.list_namespaced_secret(app_ns)
                assert denied.value.status == 403

            # A kind outside the grant: the live gate asks the API server as the reconciler (over
            # the pod's run directory; the git server holds no token) and refuses the push.
            git.write(work, {"role.yaml": _cluster_role(f"pg-reader-{tag}")})
            git.commit_all(work, "a ClusterRole: outside the reconciler's grant")
            res = git.run("push", server.url(), "main", cwd=work, check=False)
            assert res.returncode != 0, res.stderr
            assert f"role.yaml:1 ClusterRole/pg-reader-{tag} [live]" in res.stderr, res.stderr
            assert f"system:serviceaccount:{system_ns}:{sa}" in res.stderr, res.stderr
            assert "plan: 0 to create, 0 to update, 0 to prune, 3 unchanged" in res.stderr, res.stderr
            assert deploy.status(server)["lastAppliedRevision"] == first
            res = _kubectl(control_plane, "get", "clusterrole", f"pg-reader-{tag}")
            assert res.returncode != 0 and "NotFound" in res.stderr
            # Nothing the git server container mounts (the shared /data included) holds the token.
            for m in containers["gitserver"]["volumeMounts"]:
                for f in local.volumes[m["name"]].rglob("*"):
                    if f.is_file():
                        assert token.encode() not in f.read_bytes(), f"{m['mountPath']}: {f}"
        finally:
            for p in (reconciler, gitserver):
                p.stop()
