"""A real control plane for tests: etcd + kube-apiserver (+ kube-controller-manager), envtest-style.

Started on free loopback ports with a generated service-account key pair, the apiserver's own
self-signed serving certificate, token authentication for an admin in system:masters and RBAC
authorization on. Used by the `control_plane` and `fresh_control_plane` fixtures.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.bed import procs, tools

ADMIN_USER = "bed-admin"

# Controllers that need nodes, clouds or a CA this bed does not have.
_KCM_CONTROLLERS = ("*,-node-ipam-controller,-node-lifecycle-controller,"
                    "-certificatesigningrequest-signing-controller,"
                    "-certificatesigningrequest-approving-controller,"
                    "-kube-apiserver-serving-clustertrustbundle-publisher-controller")


class ControlPlane:
    def __init__(self, workdir: Path, *, controller_manager: bool = False) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.with_kcm = controller_manager
        self.etcd: procs.Proc | None = None
        self.apiserver: procs.Proc | None = None
        self.kcm: procs.Proc | None = None
        self.etcd_port = procs.free_port()
        self.etcd_peer_port = procs.free_port()
        self.port = procs.free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(24)
        self.kubeconfig = self.dir / "kubeconfig"
        self.certs = self.dir / "certs"
        self._write_credentials()

    # -- set-up ---------------------------------------------------------------------------------
    def _write_credentials(self) -> None:
        self.certs.mkdir(exist_ok=True)
        key, pub = self.certs / "sa.key", self.certs / "sa.pub"
        if not key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                           capture_output=True)
            subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
                           check=True, capture_output=True)
        # Writes only, with the user agent, so tests can count who changed what.
        (self.dir / "audit-policy.yaml").write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
            "- level: Metadata\n  verbs: [create, update, patch, delete]\n- level: None\n")
        (self.dir / "tokens.csv").write_text(
            f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')

    def _write_kubeconfig(self) -> None:
        ca = self.certs / "apiserver.crt"
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "bed",
            "clusters": [{"name": "bed", "cluster": {"server": self.url,
                                                      "certificate-authority": str(ca)}}],
            "users": [{"name": ADMIN_USER, "user": {"token": self.token}}],
            "contexts": [{"name": "bed", "context": {"cluster": "bed", "user": ADMIN_USER}}],
        }
        self.kubeconfig.write_text(json.dumps(cfg))
        self.kubeconfig.chmod(0o600)

    # -- processes ------------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        self.start_etcd()
        self.start_apiserver()
        if self.with_kcm:
            self.start_controller_manager()
        return self

    def start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = procs.REGISTRY.start("etcd", [
            tools.path("etcd"), "--name=bed", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=bed={peer}", "--unsafe-no-fsync=true",
            "--listen-metrics-urls=", "--log-level=warn",
        ], self.dir / "etcd.log")
        procs.wait_until(lambda: _http_ok(f"{client}/health"), 30, "etcd /health",
                         on_timeout=self.etcd.tail)

    def start_apiserver(self, timeout: float = 90) -> None:
        self.apiserver = procs.REGISTRY.start("kube-apiserver", [
            tools.path("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--cert-dir={self.certs}", "--bind-address=127.0.0.1", f"--secure-port={self.port}",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=RBAC",
            f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.certs / 'sa.pub'}",
            f"--service-account-signing-key-file={self.certs / 'sa.key'}",
            "--disable-admission-plugins=ServiceAccount", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--profiling=false",
            "--endpoint-reconciler-type=none", "-v=1",
            f"--audit-policy-file={self.dir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.dir / 'audit.log'}", "--audit-log-mode=blocking",
        ], self.dir / "kube-apiserver.log")
        proc = self.apiserver
        procs.wait_until(lambda: self._readyz(), timeout, "kube-apiserver /readyz",
                         interval=0.25, on_timeout=lambda: "kube-apiserver log tail:\n" + proc.tail())
        self._write_kubeconfig()

    def start_controller_manager(self) -> None:
        kcm_port = procs.free_port()
        self.kcm = procs.REGISTRY.start("kube-controller-manager", [
            tools.path("kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={self.certs / 'sa.key'}",
            f"--root-ca-file={self.certs / 'apiserver.crt'}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            f"--cert-dir={self.dir / 'kcm-certs'}",
            "--leader-elect=false", "--use-service-account-credentials=false",
            f"--controllers={_KCM_CONTROLLERS}",
            "--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5",
            "--namespace-sync-period=5s", "-v=1",
        ], self.dir / "kube-controller-manager.log")
        kcm = self.kcm
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its own throwaway self-signed cert on loopback

        def healthy() -> bool:
            url = f"https://127.0.0.1:{kcm_port}/healthz"
            with urllib.request.urlopen(url, context=insecure, timeout=2) as r:
                return bool(r.status == 200)

        procs.wait_until(lambda: kcm.alive() and healthy(), 60, "kube-controller-manager /healthz",
                         on_timeout=kcm.tail)

    def stop_apiserver(self) -> None:
        if self.apiserver is not None:
            self.apiserver.stop()

    def stop(self) -> None:
        for p in (self.kcm, self.apiserver, self.etcd):
            if p is not None:
                p.stop()

    # -- access ---------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certs / "apiserver.crt"))

    def request(self, path: str, *, token: str | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path,
                                     headers={"Authorization": f"Bearer {token or self.token}"})
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=5) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read()

    def _readyz(self) -> bool:
        if not (self.certs / "apiserver.crt").exists():
            return False
        return self.request("/readyz")[0] == 200

    def audit_events(self, user_agent_prefix: str = "", since: float = 0.0) -> list[dict[str, Any]]:
        """Write requests recorded by the audit log (newest last), optionally filtered."""
        import datetime as dt

        out = []
        try:
            lines = (self.dir / "audit.log").read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not ev.get("userAgent", "").startswith(user_agent_prefix):
                continue
            ts = dt.datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if ts.timestamp() >= since:
                out.append(ev)
        return out

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False
