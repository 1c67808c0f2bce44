"""The elector's requests are bounded: a connection to the API server that stops answering
(accepted, never replied to) must not stall the election thread. The leader then steps down
within the renew deadline saying why, and leads again once the server answers."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.cluster import Cluster
from reconciler.leader import LeaderElector
from tests.bed import procs
from tests.bed.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


class StallingProxy:
    """TCP relay to the API server; while `stalled`, bytes are swallowed, connections kept open."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.stalled = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.stalled.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self.sock.close()
        for s in self._conns:
            with contextlib.suppress(OSError):
                s.close()


def test_a_stalled_api_server_connection_does_not_stall_the_elector(control_plane: ControlPlane,
                                                                     tmp_path: Path) -> None:
    host, port = control_plane.url.removeprefix("https://").rsplit(":", 1)
    proxy = StallingProxy((host, int(port)))
    cfg = json.loads(control_plane.kubeconfig.read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"https://{host}:{proxy.port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(cfg))
    cluster = Cluster.from_kubeconfig(str(kubeconfig))
    ns = f"pg-stall-{secrets.token_hex(3)}"
    elector = LeaderElector(cluster, ns, "stall", lease_duration=6, renew_deadline=4,
                            retry_period=0.5).start()
    try:
        procs.wait_until(elector.is_leader, 30, "leading")
        proxy.stalled.set()
        stalled = time.monotonic()
        procs.wait_until(lambda: not elector.is_leader(), 10, "stepping down")
        assert time.monotonic() - stalled <= 4 + 0.5 + 1
        # Without a bound the request would hang forever with no error recorded.
        procs.wait_until(lambda: isinstance(elector.last_error, errors.Unavailable),
                         8, "the stalled request timing out")
        assert elector.last_error is not None
        assert "API server unreachable" in elector.last_error.message, elector.last_error.message
        proxy.stalled.clear()
        procs.wait_until(elector.is_leader, 15, "leading again")
        assert elector.last_error is None
    finally:
        elector.stop()
        proxy.close()
        Cluster.from_kubeconfig(str(control_plane.kubeconfig)).delete("v1", "Namespace", ns)
