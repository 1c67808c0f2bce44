"""Unit tests of conftest's result contract as `pushgate.gate.policies` applies it to one object's
rule results: which rule an exception exempts, how exceptions are counted, and what becomes a
failure, a warning or an error. Mirrors policy/engine.go of conftest v0.71.1 (check() and
removeRulePrefix()); the interop tests compare with the binary.

Pure and fast: no engine runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from pushgate.gate import policies

EPS = ["main/deny", "main/deny_run_as_root", "main/exception", "main/violation_run_as_root",
       "main/warn", "main/warn_run_as_root", "other/deny_run_as_root", "other/exception"]


def decide(row: dict[str, Any], eps: list[str] = EPS) -> policies.Outcome:
    return policies.outcome(list(row.items()), eps, path="a.yaml", ref="Pod/shop/a", line_of=lambda _: 3)


def failures(out: policies.Outcome) -> list[str]:
    return sorted(f"{v.rule}: {v.message}" for v in out.violations if v.is_error)


def exempted(out: policies.Outcome) -> list[str]:
    return [e.rule for e in out.exceptions]


@pytest.mark.parametrize(("rule", "name"), [
    ("deny", ""), ("violation", ""), ("warn", ""), ("deny_run_as_root", "run_as_root"),
    ("violation_x", "x"), ("warn_x", "x"), ("violation_deny_x", "x"), ("deny_warn_x", "x"),
    ("warn_deny_x", "deny_x"),
])
def test_the_name_an_exception_uses(rule: str, name: str) -> None:
    assert policies.exception_name(rule) == name


def test_exemptions_count_every_solution_of_the_query() -> None:
    assert policies.exemptions([["a", "b"], ["a"]]) == {"a": 2, "b": 1}
    assert policies.exemptions([{"k": "a"}, "a", 3, [["a"]]]) == {"a": 1}  # object values count
    assert policies.exemptions({"x": ["a"]}) == {"a": 1}
    assert policies.exemptions(None) == {} and policies.exemptions("a") == {}


def test_a_suffix_exempts_deny_violation_and_warn_rules_of_its_package() -> None:
    out = decide({
        "main/deny_run_as_root": ["root"], "main/violation_run_as_root": [{"msg": "root too"}],
        "main/warn_run_as_root": ["careful"], "main/deny": ["plain"],
        "other/deny_run_as_root": ["other root"],
        "main/exception": [["run_as_root"]],
    })
    assert failures(out) == ["main/deny: plain", "other/deny_run_as_root: other root"]
    assert not [v for v in out.violations if not v.is_error]
    assert exempted(out) == ["main/deny_run_as_root", "main/violation_run_as_root", "main/warn_run_as_root"]
    assert str(out.exceptions[0]) == ("exception: a.yaml:3 Pod/shop/a [main/deny_run_as_root] exempted by "
                                      "main/exception")


def test_an_empty_name_exempts_the_plain_rules() -> None:
    out = decide({"main/deny": ["d"], "main/warn": ["w"], "main/deny_run_as_root": ["r"],
                  "main/exception": [[""]]})
    assert failures(out) == ["main/deny_run_as_root: r"]
    assert exempted(out) == ["main/deny", "main/warn"]


def test_an_exempt_rule_counts_even_when_it_is_undefined_and_per_solution() -> None:
    # conftest asks the exception query for every failure and warning rule of the package,
    # whether or not it yields anything, and appends one exception per solution
    out = decide({"main/exception": [["run_as_root"], ["run_as_root", "x"]]})
    assert exempted(out) == ["main/deny_run_as_root"] * 2 + ["main/violation_run_as_root"] * 2 + [
        "main/warn_run_as_root"] * 2
    assert out.violations == []


def test_exceptions_of_another_package_do_not_apply() -> None:
    out = decide({"other/deny_run_as_root": ["o"], "main/exception": [["run_as_root"]],
                  "other/exception": [["something_else"]]})
    assert failures(out) == ["other/deny_run_as_root: o"]


@pytest.mark.parametrize("value", ["", {"msg": ""}], ids=["string", "object"])
def test_an_empty_message_is_an_error_not_a_pass(value: object) -> None:
    [v] = decide({"main/warn": [value]}).violations
    assert v.is_error and v.message == "policy result with an empty message"


def test_findings_are_a_list_of_violations_with_the_exceptions() -> None:
    out = decide({"main/deny": ["plain"], "main/exception": [["run_as_root"]]})
    found = policies.Findings(out.violations, out.exceptions)
    assert list(found) == out.violations and len(found.exceptions) == 3
    assert found.summary() == "1 error, 0 warnings, 3 exceptions in 1 file"
    assert found.summary(files=2, objects=5) == (
        "1 error, 0 warnings, 3 exceptions; checked 2 files, 5 objects")
    assert policies.Findings().summary() == "0 errors, 0 warnings in 0 files"


@pytest.mark.parametrize(("row", "clean"), [
    ({}, True),
    ({"main/deny": [], "main/exception": [], "main/warn": []}, True),
    ({"main/deny": []}, True),
    ({"main/deny": ["no"]}, False),
    ({"main/deny": [], "main/exception": [["run_as_root"]]}, False),
    ({"main/deny": False}, False),  # not a set or array: an error, never clean
    ({"main/deny": {}}, False),
    ({"main/deny": 0}, False),
    ({"main/deny": ""}, False),
    ({"main/deny": None}, False),  # None is absent to `outcome`, but not taken for clean
    ({"!undecidable": ""}, False),
])
def test_a_clean_row_is_exactly_one_with_an_empty_outcome(row: dict[str, Any], clean: bool) -> None:
    assert policies.clean(list(row.items())) is clean
    if clean:  # the shortcut answers what the whole contract would
        out = decide(row)
        assert out.violations == [] and out.exceptions == []
    elif row != {"main/deny": None}:  # everything else not clean does find something
        out = decide(row)
        assert out.violations or out.exceptions
