"""pushgate under test: `pushgate serve` started as its own process (gunicorn, two workers)
on a free loopback port, with a fresh data dir and users of every role."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed import procs

ROOT = Path(__file__).resolve().parents[2]
PUSHGATE = str(Path(sys.executable).with_name("pushgate"))


@dataclass
class Server:
    dir: Path
    port: int
    tokens: dict[str, str] = field(default_factory=dict)
    proc: procs.Proc | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def repo(self) -> Path:
        return self.data_dir / "cluster.git"

    def url(self, user: str | None = "admin", repo: str = "cluster.git") -> str:
        if user is None:
            return f"http://127.0.0.1:{self.port}/{repo}"
        return f"http://{user}:{self.tokens[user]}@127.0.0.1:{self.port}/{repo}"

    def start(self) -> Server:
        argv = [PUSHGATE, "serve", f"--data-dir={self.data_dir}", f"--listen=127.0.0.1:{self.port}",
                f"--users={self.dir / 'users.json'}", "--workers=2", *self.args]
        env = {**os.environ, **self.env}
        self.proc = procs.REGISTRY.start("pushgate", argv, self.dir / "server.log", env=env)
        proc = self.proc
        procs.wait_until(lambda: proc.alive() and self._healthy(), 60, "pushgate /healthz",
                         on_timeout=proc.tail)
        return self

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
            return bool(r.status == 200)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def log(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")

    # -- repository state, read with C git ------------------------------------------------------
    def refs(self) -> dict[str, str]:
        out = subprocess.run(["git", "-C", str(self.repo), "for-each-ref",
                              "--format=%(refname) %(objectname)"],
                             capture_output=True, text=True, check=True).stdout
        return dict(tuple(line.split(" ", 1)) for line in out.splitlines())  # type: ignore[misc]

    def object_files(self) -> set[str]:
        objects = self.repo / "objects"
        return {str(p.relative_to(objects)) for p in objects.rglob("*") if p.is_file()}

    def quarantines(self) -> list[str]:
        return [p.name for p in (self.repo / "objects").iterdir() if p.name.startswith("incoming-")]

    def fsck(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(self.repo), "fsck", "--full", "--strict"],
                              capture_output=True, text=True, check=False)


DEFAULT_USERS = (("admin", "admin"), ("writer", "write"), ("reader", "read"))


def make_server(workdir: Path, *args: str, env: dict[str, str] | None = None,
                users: tuple[tuple[str, str], ...] = DEFAULT_USERS,
                config: Callable[[Path], str] | None = None) -> Server:
    """`users` are added to the users file, each token also written to workdir/tokens/<name>;
    `config(workdir)` returns a configuration file's text, passed with --config."""
    workdir.mkdir(parents=True, exist_ok=True)
    s = Server(workdir, procs.free_port(), args=list(args), env=dict(env or {}))
    (workdir / "tokens").mkdir(exist_ok=True)
    for name, role in users:
        res = subprocess.run([PUSHGATE, "user", "add", "--users", str(workdir / "users.json"),
                              name, "--role", role], capture_output=True, text=True, check=True)
        s.tokens[name] = res.stdout.strip()
        (workdir / "tokens" / name).write_text(s.tokens[name] + "\n")
    if config is not None:
        (workdir / "pushgate.yaml").write_text(config(workdir))
        s.args.append(f"--config={workdir / 'pushgate.yaml'}")
    return s.start()
