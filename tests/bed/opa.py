"""A real OPA server (`opa run --server`) over a policy directory, on a free loopback port."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.bed import procs, tools


class OpaServer:
    def __init__(self, policy_dir: Path, workdir: Path) -> None:
        self.policy_dir = policy_dir
        self.dir = workdir
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: procs.Proc | None = None

    def start(self) -> OpaServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = procs.REGISTRY.start("opa", [
            tools.path("opa"), "run", "--server", f"--addr=127.0.0.1:{self.port}",
            "--log-level=error", "--disable-telemetry", str(self.policy_dir),
        ], self.dir / "opa.log")
        proc = self.proc
        procs.wait_until(self._healthy, 30, "opa /health", on_timeout=proc.tail)
        return self

    def _healthy(self) -> bool:
        with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
            return bool(r.status == 200)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
