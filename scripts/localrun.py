"""`make run`: pushgate on a local control plane, for a first look.

Reuses the test bed's control plane (real etcd, kube-apiserver, kube-controller-manager and a
kubelet stand-in that marks Pods Ready), starts `pushgate serve --kubeconfig`, creates an admin
user and prints the clone URL and a walkthrough. Everything stops on Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tests.bed import procs, tools
from tests.bed.controlplane import ControlPlane
from tests.bed.kubelet import FakeKubelet

ROOT = Path(__file__).resolve().parents[1]
PUSHGATE = str(Path(sys.executable).with_name("pushgate"))

WALKTHROUGH = """
pushgate is running.

  clone URL   {url}
  kubeconfig  {kubeconfig}
  data dir    {data}

Try it (in another terminal):

  git clone {url} demo && cd demo
  mkdir -p apps && cat > apps/web.yaml <<'YAML'
{deployment}YAML
  git add -A && git commit -m "web" && git push -o wait origin HEAD:main    # applied
  {kubectl} --kubeconfig {kubeconfig} get deploy -n demo

  sed -i 's/nginx:1.27.3/nginx:latest/' apps/web.yaml
  git commit -am "latest" && git push origin HEAD:main                        # refused, with the report

  git reset -q --hard origin/main && git revert --no-edit HEAD && git push -o wait origin HEAD:main
  {kubectl} --kubeconfig {kubeconfig} get deploy -n demo                   # rolled back (gone)

(HEAD:main works whatever your git names the branch of an empty clone; kubectl is the pinned
one, of the API server's own version.)

  curl -s -u admin:{token} http://127.0.0.1:{port}/api/v1/status

Press Ctrl-C to stop everything.
"""

DEPLOYMENT = """apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app.kubernetes.io/name: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: web}
  template:
    metadata:
      labels: {app.kubernetes.io/name: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27.3
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {cpu: 200m, memory: 128Mi}
"""


def _port() -> int:
    wanted = int(os.environ.get("PUSHGATE_RUN_PORT", "8080"))
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            return procs.free_port()


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    work = Path(tempfile.mkdtemp(prefix="pushgate-run-"))
    print(f"pushgate: starting a local control plane in {work} ...", flush=True)
    cp = ControlPlane(work / "cluster", controller_manager=True)
    kubelet = None
    try:
        cp.start()
        kubelet = FakeKubelet(cp.api_client()).start()
        users = work / "users.json"
        token = subprocess.run([PUSHGATE, "user", "add", "--users", str(users), "admin", "--role", "admin"],
                               capture_output=True, text=True, check=True).stdout.strip()
        port = _port()
        server = procs.REGISTRY.start("pushgate", [
            PUSHGATE, "serve", f"--data-dir={work / 'data'}", f"--listen=127.0.0.1:{port}",
            f"--users={users}", f"--kubeconfig={cp.kubeconfig}",
        ], work / "pushgate.log")
        procs.wait_until(lambda: _up(port) and (work / "data" / "status" / "main.json").exists(),
                         60, "pushgate", on_timeout=server.tail)
        url = f"http://admin:{token}@127.0.0.1:{port}/cluster.git"
        print(WALKTHROUGH.format(url=url, kubeconfig=cp.kubeconfig, data=work / "data", token=token,
                                 port=port, deployment=DEPLOYMENT, kubectl=tools.path("kubectl")),
              flush=True)
        while not stop.is_set():
            if not server.alive():
                print(f"pushgate exited; log:\n{server.tail()}", file=sys.stderr)
                return 1
            stop.wait(0.5)
        print("\npushgate: stopping ...", flush=True)
        return 0
    finally:
        if kubelet is not None:
            kubelet.stop()
        procs.REGISTRY.stop_all()
        cp.stop()


def _up(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    sys.exit(main())
