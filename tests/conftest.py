"""Session fixtures: the real test bed (kube-apiserver + etcd + kube-controller-manager with a
kubelet stand-in, an OPA server, the stock git CLI), on ports picked at run time.

Every process is started through `tests.bed.procs.REGISTRY`, so teardown (or atexit, or the
death of pytest itself via PR_SET_PDEATHSIG) leaves none behind.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed import procs
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.kubelet import FakeKubelet
from tests.bed.opa import OpaServer
from tests.bed.server import Server, make_server

ROOT = Path(__file__).resolve().parents[1]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    procs.REGISTRY.stop_all()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The shared control plane. Tests on it use unique namespaces and clean up after themselves;
    tests that stop or break a control plane use `fresh_control_plane` instead."""
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"), controller_manager=True).start()
    kubelet = FakeKubelet(cp.api_client()).start()
    try:
        yield cp
    finally:
        kubelet.stop()
        cp.stop()


@pytest.fixture
def fresh_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ControlPlane]]:
    """A factory of private control planes, each stopped at the end of the test."""
    made: list[ControlPlane] = []

    def make(*, controller_manager: bool = False) -> ControlPlane:
        cp = ControlPlane(tmp_path_factory.mktemp("fresh-control-plane"),
                          controller_manager=controller_manager)
        made.append(cp)
        return cp.start()

    yield make
    for cp in made:
        cp.stop()


@pytest.fixture(scope="session")
def dynamic(control_plane: ControlPlane) -> Any:
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(control_plane.api_client())


@pytest.fixture
def namespace(dynamic: Any) -> Iterator[str]:
    """A unique namespace on the shared control plane, deleted after the test."""
    name = f"t-{secrets.token_hex(4)}"
    ns_api = dynamic.resources.get(api_version="v1", kind="Namespace")
    ns_api.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    ns_api.delete(name=name)


@pytest.fixture(scope="session")
def opa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    """`opa run --server` over pushgate's own policies/ directory."""
    server = OpaServer(ROOT / "policies", tmp_path_factory.mktemp("opa")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "git-home")


@pytest.fixture
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Start `pushgate serve` processes (extra flags as arguments); all stopped after the test."""
    made: list[Server] = []

    def make(*args: str, env: dict[str, str] | None = None, **kw: Any) -> Server:
        s = make_server(tmp_path_factory.mktemp("pushgate"), *args, env=env, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    """A fresh pushgate server with the embedded engine and pushgate's own policies."""
    return server_factory()


@pytest.fixture
def attached_server(server_factory: Callable[..., Server], control_plane: ControlPlane,
                    dynamic: Any) -> Iterator[Server]:
    """pushgate serve with the reconciler attached to the shared control plane, its ApplySet
    parent in a namespace of its own (deleted after the test, with what it applied)."""
    yield from _attached(server_factory, control_plane, dynamic)


@pytest.fixture
def unchecked_server(server_factory: Callable[..., Server], control_plane: ControlPlane,
                     dynamic: Any) -> Iterator[Server]:
    """`attached_server` without the live check (`--live-check=off`): commits the cluster would
    refuse land, so the reconciler's own handling of a refusing cluster can be seen (as when the
    cluster changes between push and apply)."""
    yield from _attached(server_factory, control_plane, dynamic, "--live-check=off")


@pytest.fixture
def attach(server_factory: Callable[..., Server], control_plane: ControlPlane,
           dynamic: Any) -> Iterator[Callable[..., Server]]:
    """A factory of attached servers (extra `serve` flags as arguments; `cp=` for another control
    plane), each with an inventory namespace of its own, deleted after the test. It returns once
    the reconciler serves live checks (unless started with --live-check=off)."""
    made: list[str] = []

    def make(*args: str, cp: ControlPlane | None = None) -> Server:
        inv = f"pg-inv-{secrets.token_hex(3)}"
        made.append(inv)
        s = server_factory(f"--kubeconfig={(cp or control_plane).kubeconfig}", *args,
                           env={"PUSHGATE_INVENTORY_NAMESPACE": inv})
        if "--live-check=off" not in args:
            procs.wait_until(lambda: (s.data_dir / "run" / "live.token").exists(), 30,
                             "the reconciler's live socket", on_timeout=s.log)
        return s

    yield make
    ns_api = dynamic.resources.get(api_version="v1", kind="Namespace")
    for inv in made:
        with contextlib.suppress(Exception):  # best-effort: the test may have deleted it
            ns_api.delete(name=inv)


def _attached(server_factory: Callable[..., Server], control_plane: ControlPlane, dynamic: Any,
              *args: str) -> Iterator[Server]:
    inv_ns = f"pg-inv-{secrets.token_hex(3)}"
    s = server_factory(f"--kubeconfig={control_plane.kubeconfig}", *args,
                       env={"PUSHGATE_INVENTORY_NAMESPACE": inv_ns, "PUSHGATE_HEALTH_TIMEOUT": "120"})
    procs.wait_until(lambda: (s.data_dir / "status" / "main.json").exists(), 30,
                     "the reconciler to announce itself", on_timeout=s.log)
    yield s
    s.stop()
    ns_api = dynamic.resources.get(api_version="v1", kind="Namespace")
    with contextlib.suppress(Exception):
        ns_api.delete(name=inv_ns)
