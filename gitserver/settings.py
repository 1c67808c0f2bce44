"""The git server's settings: one frozen value, built once from flags and PUSHGATE_* variables.

Built by `pushgate.cli` and read by `app`; `validate()` checks everything an operator can get
wrong before anything starts, each failure one line naming the flag or variable to fix.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gitserver.errors import ConfigError
from pushgate.config import Config


@dataclass(frozen=True)
class Settings:
    """The server process's own settings; what the gate and the reconciler must agree on (the
    build, the gated refs, ...) is `config`, persisted in the data directory at start."""

    data_dir: str
    listen: str = "127.0.0.1:8080"
    users_file: str = ""
    policies_dir: str = ""
    opa_url: str | None = None
    config: Config = field(default_factory=Config)
    live_check: str = "off"  # resolved from config.gate.liveCheck: required | best-effort | off
    run_dir: str = ""  # where the reconciler's live socket and token are (default DATA/run)
    max_pack_bytes: int = 100 * 1024 * 1024
    workers: int = 1  # see `pushgate serve --help`: one cache and one engine, half the memory
    threads: int = 32
    request_timeout: float = 120.0
    head_timeout: float = 10.0  # seconds a connection has to send its request head (the front)
    body_timeout: float = 60.0  # a request body's grace period (see `bodydeadline`)
    anonymous_role: str | None = None
    kustomize: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def gate_timeout(self) -> float:
        return self.config.gate.timeout

    @property
    def gated_refs(self) -> tuple[str, ...]:
        return self.config.gate.gated_refs

    @property
    def protected_refs(self) -> tuple[str, ...]:
        return self.config.gate.protected_refs

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "127.0.0.1", int(port)


def default_policies_dir() -> str:
    """pushgate's starter policies: the checkout's policies/, or the installed package data."""
    checkout = Path(__file__).resolve().parents[1] / "policies"
    if checkout.is_dir():
        return str(checkout)
    import importlib.util

    spec = importlib.util.find_spec("pushgate_policies")
    if spec is not None and spec.submodule_search_locations:
        return str(next(iter(spec.submodule_search_locations)))
    return str(checkout)  # reported as missing by the policy loader, naming the path


def default_kustomize() -> str | None:
    """The pinned kustomize from scripts/tools.sh's cache, else PUSHGATE_KUSTOMIZE, else none."""
    env = os.environ.get("PUSHGATE_KUSTOMIZE")
    if env:
        return env
    versions = Path(__file__).resolve().parents[1] / "scripts" / "tools.versions"
    cache = os.environ.get("PUSHGATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pushgate")
    if versions.exists():
        for line in versions.read_text().splitlines():
            if line.startswith("KUSTOMIZE_VERSION="):
                candidate = os.path.join(cache, "bin", "kustomize-" + line.split("=", 1)[1].strip())
                if os.access(candidate, os.X_OK):
                    return candidate
    return None


def validate(s: Settings) -> None:
    host, _, port = s.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"--listen / PUSHGATE_LISTEN {s.listen!r} is not HOST:PORT")
    if not s.data_dir:
        raise ConfigError("--data-dir / PUSHGATE_DATA_DIR is required")
    if not s.users_file:
        raise ConfigError("--users / PUSHGATE_USERS is required (anonymous access is off)")
    if not os.path.isfile(s.users_file):
        raise ConfigError(f"--users {s.users_file} does not exist (create it with "
                          f"'pushgate user add --users {s.users_file} NAME --role admin')")
    try:
        os.makedirs(s.data_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--data-dir {s.data_dir}: cannot create: {e.strerror}") from e
    if not os.access(s.data_dir, os.W_OK):
        raise ConfigError(f"--data-dir {s.data_dir} is not writable")
    if s.anonymous_role not in (None, "read", "write"):
        raise ConfigError(f"--anonymous-role {s.anonymous_role!r}: expected read or write")
    if s.kustomize and not (os.access(s.kustomize, os.X_OK) or shutil.which(s.kustomize)):
        raise ConfigError(f"--kustomize {s.kustomize}: not an executable")
    if s.opa_url and not s.opa_url.startswith(("http://", "https://")):
        raise ConfigError(f"--opa-url {s.opa_url!r}: expected an http(s) URL")
    if not s.head_timeout > 0:
        raise ConfigError(f"--head-timeout / PUSHGATE_HEAD_TIMEOUT {s.head_timeout} must be positive")
    if not s.body_timeout > 0:
        raise ConfigError(f"--body-timeout / PUSHGATE_BODY_TIMEOUT {s.body_timeout} must be positive")
    if s.live_check not in ("required", "best-effort", "off"):
        raise ConfigError(f"--live-check {s.live_check!r}: expected required, best-effort or off")
    for name, value in (("--workers", s.workers), ("--threads", s.threads)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1")
