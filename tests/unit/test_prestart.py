"""Worker processes started ahead of need (pushgate.gate.prestart, pushgate.launch): the next
policy compile and the next engine worker take the prestarted process, a dead one is replaced,
and the console script prestarts for `pushgate validate` only. A plan asked for ahead is used
only for exactly the modules it was asked for. Real worker processes."""

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
    assert prestart._compiler is None and not prestart._engines and prestart._sent is None
    yield
    procs = [p for p in [prestart._compiler, *prestart._engines] if p is not None]
    if prestart._sender is not None:
        prestart._sender.join()
    prestart._compiler, prestart._engines[:], prestart._sent, prestart._sender = None, [], None, None
    prestart._delivered.clear()
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


def _no_new_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("a new compiler was started")

    monkeypatch.setattr(prestart, "compiler", refuse)


def test_a_plan_asked_for_ahead_serves_the_load_of_the_same_modules(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = samples.write_tree(tmp_path / "p", {
        "checks.rego": CLEAN.replace("no pods", "no pods (ahead)"),
        "sub/more.rego": "package team.more\n\nwarn contains \"w\" if input.kind == \"Job\"\n",
        "sub/more_test.rego": "package team.more_test\n\ntest_x if true\n",
        "enforcement.yaml": "rules: {}\n"})
    prestart.start()
    proc = prestart._compiler
    prestart.plan_ahead(str(d))
    assert prestart._sent == [["checks.rego", CLEAN.replace("no pods", "no pods (ahead)")],
                              ["sub/more.rego", "package team.more\n\nwarn contains \"w\" if "
                                                "input.kind == \"Job\"\n"]]
    _no_new_compiler(monkeypatch)
    loaded = policies.load(str(d))
    assert proc is not None and proc.wait(timeout=10) == 0 and prestart._sent is None
    assert list(loaded.entrypoints) == ["team/checks/deny", "team/more/warn"]


def test_a_plan_asked_for_other_modules_is_never_used(tmp_path: Path) -> None:
    # the guess was another directory, or the file changed in between: a compiler of its own
    guessed = samples.write_tree(tmp_path / "guessed", {"checks.rego": CLEAN})
    prestart.start()
    ahead = prestart._compiler
    prestart.plan_ahead(str(guessed))
    (guessed / "checks.rego").write_text(CLEAN.replace("deny contains", "warn contains"))
    loaded = policies.load(str(guessed))
    assert ahead is not None and ahead.returncode is not None  # killed, not read
    assert list(loaded.entrypoints) == ["team/checks/warn"]
    prestart.start()
    prestart.plan_ahead(str(guessed))
    other = samples.write_tree(tmp_path / "other", {"x.rego": CLEAN.replace("team.checks", "other")})
    assert list(policies.load(str(other)).entrypoints) == ["other/deny"]


def test_a_refusal_reads_the_same_through_a_plan_asked_for_ahead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = samples.write_tree(tmp_path / "bad",
                             {"bad.rego": "package p\n\ndeny contains msg if {\n\tmsg := \n}\n"})
    with pytest.raises(policies.PolicyError) as direct:
        policies.load(str(bad))
    prestart.start()
    prestart.plan_ahead(str(bad))
    _no_new_compiler(monkeypatch)
    with pytest.raises(policies.PolicyError) as ahead:
        policies.load(str(bad))
    assert str(ahead.value) == str(direct.value) and str(direct.value).startswith(
        "the policies do not compile: ")


def test_a_plan_that_could_not_be_asked_for_ahead_is_compiled_afresh(tmp_path: Path) -> None:
    d = samples.write_tree(tmp_path, {"checks.rego": CLEAN})
    prestart.start()
    dead = prestart._compiler
    assert dead is not None
    dead.kill()
    dead.wait()
    prestart.plan_ahead(str(d))  # the write fails: nothing was asked
    assert list(policies.load(str(d)).entrypoints) == ["team/checks/deny"]


def test_no_plan_is_asked_for_ahead_where_gatekeeper_templates_may_join(tmp_path: Path) -> None:
    d = samples.write_tree(tmp_path, {"checks.rego": CLEAN,
                                      "template.yaml": "apiVersion: templates.gatekeeper.sh/v1\n"})
    prestart.start()
    prestart.plan_ahead(str(d))
    assert prestart._sent is None
    prestart.plan_ahead(str(tmp_path / "absent"))
    assert prestart._sent is None


@pytest.mark.parametrize(("argv", "env", "want"), [
    (["."], None, "DEFAULT"),
    (["--policies", "/p", "."], None, "/p"),
    (["--policies=/p", "."], "/e", "/p"),
    (["."], "/e", "/e"),
    (["--data-dir", "/d", "."], None, None),
    (["--data-dir=/d", "--policies", "/p", "."], None, None),
    (["--", "--policies", "/p"], None, "DEFAULT"),
])
def test_the_console_script_guesses_the_policy_directory(
        monkeypatch: pytest.MonkeyPatch, argv: list[str], env: str | None, want: str | None) -> None:
    from gitserver.settings import default_policies_dir

    if env is None:
        monkeypatch.delenv("PUSHGATE_POLICIES", raising=False)
    else:
        monkeypatch.setenv("PUSHGATE_POLICIES", env)
    assert launch.policies_guess(argv) == (default_policies_dir() if want == "DEFAULT" else want)


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
