"""Worker processes started ahead of need (pushgate.gate.prestart, pushgate.launch): the next
policy compile and the next engine worker take the prestarted process, a dead one is replaced,
and the console script prestarts for `pushgate validate` only. Real worker processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushgate import cli, launch
from pushgate.gate import policies, prestart
from pushgate.gate.embedded import EmbeddedEngine
from tests.bed import samples

CLEAN = 'package team.checks\n\ndeny contains msg if {\n\tinput.kind == "Pod"\n\tmsg := "no pods"\n}\n'


@pytest.fixture(autouse=True)
def nothing_prestarted() -> Iterator[None]:
    assert prestart._compiler is None and not prestart._engines
    yield
    procs = [p for p in [prestart._compiler, *prestart._engines] if p is not None]
    prestart._compiler, prestart._engines[:] = None, []
    for proc in procs:
        proc.kill()
        proc.communicate()


def test_a_prestarted_compiler_compiles_the_next_load(tmp_path: Path) -> None:
    prestart.start()
    proc = prestart._compiler
    assert proc is not None and proc.poll() is None
    prestart.start()  # one waiting at most
    assert prestart._compiler is proc
    samples.write_tree(tmp_path / "ok", {"checks.rego": CLEAN.replace("no pods", "no pods (prestarted)")})
    loaded = policies.load(str(tmp_path / "ok"))
    assert prestart._compiler is None and proc.wait(timeout=10) == 0  # it compiled, then exited
    assert list(loaded.entrypoints) == ["team/checks/deny"]
    # and a refusal reads the same through one
    prestart.start()
    samples.write_tree(tmp_path / "bad", {"bad.rego": "package p\n\ndeny contains msg if {\n\tmsg := \n}\n"})
    with pytest.raises(policies.PolicyError, match=r"^the policies do not compile: "):
        policies.load(str(tmp_path / "bad"))
    assert prestart._compiler is None


def test_the_engine_takes_a_prestarted_worker_and_replaces_a_dead_one(tmp_path: Path) -> None:
    ps = policies.load(str(samples.write_tree(tmp_path, {"checks.rego": CLEAN})))
    prestart.start(engines=2)
    first, second = prestart._engines
    second.kill()
    second.wait()
    engine = EmbeddedEngine(ps, workers=1)
    try:
        rows = engine.evaluate([{"kind": "Pod", "metadata": {"name": "a"}}], {}, 30)
        assert rows == [[("team/checks/deny", ["no pods"])]]
        assert engine._proc is not None and engine._proc.proc is first
        engine.close()
        # the next spawn finds only the dead one: it starts a fresh worker instead
        rows = engine.evaluate([{"kind": "Service", "metadata": {"name": "a"}}], {}, 30)
        assert rows == [[("team/checks/deny", [])]]
        assert engine._proc is not None and engine._proc.proc not in (first, second)
        assert not prestart._engines
    finally:
        engine.close()


@pytest.mark.parametrize(("argv", "prestarts"), [(["validate", "."], True), (["serve"], False),
                                                 (["--help"], False)])
def test_the_console_script_prestarts_for_validate_only(
        monkeypatch: pytest.MonkeyPatch, argv: list[str], prestarts: bool) -> None:
    seen: list[object] = []
    exits: list[int] = []

    def main() -> int:
        seen.append((prestart._compiler is not None, len(prestart._engines)))
        return 3

    monkeypatch.setattr(cli, "main", main)
    monkeypatch.setattr(cli, "run", lambda: seen.append("run"))
    monkeypatch.setattr(launch.os, "_exit", exits.append)
    monkeypatch.setattr(sys, "argv", ["pushgate", *argv])
    launch.run()
    if prestarts:
        # validate: the compiler and one engine worker started, and the exit code kept
        assert seen == [(True, 1)] and exits == [3]
    else:
        assert seen == ["run"] and exits == []
