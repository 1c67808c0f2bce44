"""The cyclic garbage collector is paused while checks run (pushgate.gate.gate.gc_paused): the
cold check of 5,000 manifests spent 0.6-1.2 s in full collections (bench/RESULTS.md, gate_full).
Paused for as long as any check runs, in any thread, and left as found afterwards."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushgate.gate import gate as gatemod
from tests.unit.test_policy_cache import Recording, Tree, configmap, policy_set


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_while_any_check_runs_and_restored_after() -> None:
    gc.enable()
    inner_started, outer_may_end = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with gatemod.gc_paused():
            inner_started.set()
            outer_may_end.wait(10)
            seen.append(gc.isenabled())

    with gatemod.gc_paused():
        t = threading.Thread(target=other)
        t.start()
        inner_started.wait(10)
        seen.append(gc.isenabled())
    seen.append(gc.isenabled())  # the other check still runs
    outer_may_end.set()
    t.join(10)
    assert seen == [False, False, False]
    assert gc.isenabled()


def test_left_off_when_it_was_off() -> None:
    gc.disable()
    with gatemod.gc_paused():
        pass
    assert not gc.isenabled()


def test_a_check_runs_with_collection_paused(tmp_path: Path) -> None:
    ps = policy_set(tmp_path)
    states: list[bool] = []

    class Watching(Recording):
        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            states.append(gc.isenabled())
            return super().evaluate(*args, **kwargs)

    gc.enable()
    gate = gatemod.Gate(gatemod.GateConfig(timeout=60), engine=Watching(ps), kustomize_bin=None)
    gate.check(Tree({"a.yaml": configmap("a")}))
    assert states and not any(states)
    assert gc.isenabled()


def test_parsing_and_checking_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    """What a paused check leaves for the collector is freed only when the last check ends: a
    reference cycle per parsed file (a parser kept alive by its own closure) held a worker's
    5,000-file first push at 411 MB. Plain files, files for the general path, and a check."""
    from pushgate.core import manifests

    texts = [configmap(f"c{i}") for i in range(20)] + [
        "a: &x {k: v}\nb: *x\n", "a: 1\na: 2\n", "a: !!str 1\n", "[", "k: [1, 2\n"]
    gc.collect()
    gc.disable()
    for i, text in enumerate(texts):
        manifests.load(f"f{i}.yaml", text.encode())
    gate = gatemod.Gate(gatemod.GateConfig(timeout=60), engine=Recording(policy_set(tmp_path)),
                        kustomize_bin=None)
    gate.check(Tree({f"m{i}.yaml": configmap(f"m{i}") for i in range(20)}))
    assert gc.collect() == 0
