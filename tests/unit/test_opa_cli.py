"""`opa check` and `opa test` through the real pinned binary: what a policy push is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.gate import opacli
from tests.bed import tools


@pytest.fixture(scope="module")
def opa() -> str:
    return tools.path("opa")


def write(d: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    return str(d)


GOOD = "package main\n\ndeny contains msg if {\n\tinput.kind == \"Pod\"\n\tmsg := \"no pods\"\n}\n"


def test_check_names_file_and_line(opa: str, tmp_path: Path) -> None:
    d = write(tmp_path, {"ok.rego": GOOD, "lib/bad.rego": "package bad\n\nx := nofunc(1)\n"})
    found = opacli.check(opa, d, 30)
    assert [str(v) for v in found] == [
        "lib/bad.rego:3 [opa-check] rego_type_error: undefined function nofunc"]
    assert opacli.check(opa, write(tmp_path / "clean", {"ok.rego": GOOD}), 30) == []


def test_failing_and_erroring_tests_are_named(opa: str, tmp_path: Path) -> None:
    d = write(tmp_path, {"ok.rego": GOOD, "ok_test.rego": """package main

test_pod_denied if {
\tcount(deny) == 1 with input as {"kind": "Pod"}
}

test_wrong if {
\tcount(deny) == 2 with input as {"kind": "Pod"}
}

todo_test_later if {
\tfalse
}
"""})
    ran, failed = opacli.test(opa, d, 30)
    assert ran == 3
    assert [str(v) for v in failed] == ["ok_test.rego:7 [opa-test] test data.main.test_wrong failed"]


def test_tests_that_do_not_compile_are_reported(opa: str, tmp_path: Path) -> None:
    d = write(tmp_path, {"ok.rego": GOOD, "x_test.rego": "package main\n\ntest_x if { nofunc(1) }\n"})
    ran, failed = opacli.test(opa, d, 30)
    assert ran == 0 and failed
    assert failed[0].path == "x_test.rego" and failed[0].line == 3


def test_a_missing_binary_cannot_decide(tmp_path: Path) -> None:
    with pytest.raises(opacli.OpaUnavailable, match="cannot run"):
        opacli.check(str(tmp_path / "no-opa"), str(tmp_path), 10)
    assert "scripts/tools.sh path opa" in opacli.missing_message()
