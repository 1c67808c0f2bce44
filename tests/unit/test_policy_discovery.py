"""Unit tests of entry-point discovery: which rules `policies.load` evaluates, found from the
compiled plan (never from the text), which packages count, which entry points can read the push
context, and the policy set's version and description.

Fast: each load compiles the modules once in a throwaway regopy worker; nothing is evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.gate import policies, regoplan
from tests.bed import samples

SUFFIXED = """\
package main

deny_run_as_root contains msg if {
\tinput.kind == "Deployment"
\tmsg := "root"
}

  violation_no_limits contains {"msg": "limits"} if input.kind == "Pod"

\twarn_replicas contains "one replica" if input.spec.replicas == 1

exception contains rules if {
\tinput.metadata.name == "legacy"
\trules := ["run_as_root"]
}

denylist := {"a"}
deny_ := 1
warnings := 2
helper(x) := x
deny_fn(x) := x
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    return samples.write_tree(directory, files)


def load(directory: Path, namespaces: tuple[str, ...] | None = None) -> policies.PolicySet:
    return policies.load(str(directory), namespaces=namespaces)


def test_suffixed_indented_and_exception_rules_are_entry_points(tmp_path: Path) -> None:
    ps = load(write(tmp_path, {"main.rego": SUFFIXED}))
    assert ps.entrypoints == ["main/deny_run_as_root", "main/exception", "main/violation_no_limits",
                              "main/warn_replicas"]
    assert {r.entrypoint: r.kind for r in ps.rules} == {
        "main/deny_run_as_root": "failure", "main/exception": "exception",
        "main/violation_no_limits": "failure", "main/warn_replicas": "warning"}


def test_a_rule_split_over_files_and_lines_is_one_entry_point(tmp_path: Path) -> None:
    write(tmp_path, {
        "a.rego": "package team.checks\n\ndeny\n\tcontains msg\n\tif {\n\t\tinput.x\n\t\tmsg := \"x\"\n\t}\n",
        "b.rego": "package team.checks\n\n    deny contains \"y\" if input.y\n",
    })
    assert load(tmp_path).entrypoints == ["team/checks/deny"]


def test_rule_names_follow_conftest(tmp_path: Path) -> None:
    names = {"deny": "failure", "violation": "failure", "warn": "warning", "deny_a_b_c": "failure",
             "warn_x1": "warning", "violation_Y": "failure", "exception": "exception",
             "denylist": "", "deny_": "", "warning": "", "exceptions": "", "deny__x": ""}
    for name, kind in names.items():
        assert regoplan.Rule("p", name, False).kind == kind, name


@pytest.mark.parametrize(("namespaces", "expected"), [
    (None, ["main/deny", "team/deny", "team/sub/warn"]),
    (("main",), ["main/deny"]),
    (("team", "team.sub"), ["team/deny", "team/sub/warn"]),
    (("team.sub", "absent"), ["team/sub/warn"]),
], ids=["all-packages", "conftest-default", "two-packages", "one-absent"])
def test_namespaces_choose_the_packages(tmp_path: Path, namespaces: tuple[str, ...] | None,
                                        expected: list[str]) -> None:
    write(tmp_path, {"main.rego": "package main\n\ndeny contains \"m\" if true\n",
                     "team.rego": "package team\n\ndeny contains \"t\" if true\n",
                     "sub.rego": "package team.sub\n\nwarn contains \"s\" if true\n"})
    ps = load(tmp_path, namespaces)
    assert ps.entrypoints == expected
    assert ps.namespaces == namespaces


def test_no_entry_point_is_refused_naming_directory_and_packages(tmp_path: Path) -> None:
    write(tmp_path, {"lib.rego": "package lib\n\nhelper := 1\n",
                     "team.rego": "package team\n\ndeny contains \"t\" if true\n"})
    with pytest.raises(policies.PolicyError) as info:
        load(tmp_path, ("main",))
    assert str(info.value) == (
        f"policy directory {tmp_path} has no entry point in package main: no rule named deny, violation, "
        f"warn, deny_<name>, violation_<name> or warn_<name> (packages present: lib, team)")
    write(tmp_path / "only-exceptions", {"e.rego": "package main\n\nexception contains [\"x\"] if true\n"})
    with pytest.raises(policies.PolicyError, match="has no entry point in any package"):
        load(tmp_path / "only-exceptions")


# -- which entry points can read the push context ----------------------------------------------
CONTEXT = {
    "direct.rego": "package ctx.direct\n\ndeny contains \"w\" if data.pushgate.push.role == \"write\"\n",
    "imported.rego": "package ctx.imported\n\nimport data.pushgate\n\n"
                     "deny contains \"w\" if pushgate.push.role == \"write\"\n",
    "aliased.rego": "package ctx.aliased\n\nimport data.pushgate.push as who\n\n"
                    "warn contains \"w\" if who.pusher == \"bot\"\n",
    "through_lib.rego": "package ctx.through\n\nimport data.lib.ctx\n\n"
                        "deny contains \"w\" if ctx.is_writer\n",
    "lib.rego": "package lib.ctx\n\nis_writer if data.pushgate.push.role == \"write\"\n\n"
                "kinds := {\"Pod\"}\n",
    "dynamic.rego": "package ctx.dynamic\n\ndeny contains \"d\" if {\n\tk := input.metadata.name\n"
                    "\tdata[k]\n}\n",
    "whole.rego": "package ctx.whole\n\nwarn contains \"w\" if count(data.lib) > 5\n",
    "pure.rego": "package ctx.pure\n\nimport data.lib.ctx\n\ndeny contains \"p\" if ctx.kinds[input.kind]\n",
}


def test_push_dependency_comes_from_the_plan_however_data_is_reached(tmp_path: Path) -> None:
    ps = load(write(tmp_path, CONTEXT))
    assert ps.push_entrypoints == {"ctx/direct/deny", "ctx/imported/deny", "ctx/aliased/warn",
                                   "ctx/through/deny", "ctx/dynamic/deny", "ctx/whole/warn"}
    assert "ctx/pure/deny" in ps.entrypoints
    assert ps.uses_push_context


def test_version_changes_with_sources_paths_and_namespaces(tmp_path: Path) -> None:
    a = write(tmp_path / "a", {"main.rego": "package main\n\ndeny contains \"x\" if true\n"})
    v = load(a).version
    assert len(v) == 64 and v == load(a).version
    assert load(a, ("main",)).version != v
    b = write(tmp_path / "b", {"other.rego": "package main\n\ndeny contains \"x\" if true\n"})
    assert load(b).version != v
    (a / "main.rego").write_text("package main\n\ndeny contains \"y\" if true\n")
    assert load(a).version != v


def test_describe_lists_what_is_evaluated(tmp_path: Path) -> None:
    write(tmp_path, {"main.rego": SUFFIXED, "ctx.rego": CONTEXT["imported.rego"]})
    ps = load(tmp_path)
    assert ps.describe() == [
        f"policies {tmp_path}: 2 modules, version {ps.version[:12]}, evaluating every package",
        "  ctx/imported/deny (failure, reads the push context)",
        "  main/deny_run_as_root (failure)",
        "  main/exception (exception)",
        "  main/violation_no_limits (failure)",
        "  main/warn_replicas (warning)",
    ]
    assert load(tmp_path, ("main",)).describe()[0].endswith("evaluating package main")


# -- the start-up refusals still see indented heads ----------------------------------------------
@pytest.mark.parametrize("source", [
    "package p\n\n    deny[msg] {\n\t\tmsg := \"x\"\n\t}\n",
    "package p\n\n\t\twarn_x[m]{\n\tm := \"x\"\n}\n",
    "package p\n\n  exception[rules] {\n\trules := [\"x\"]\n}\n",
], ids=["spaces", "tabs-suffixed", "exception"])
def test_indented_v0_heads_refused(tmp_path: Path, source: str) -> None:
    write(tmp_path, {"old.rego": source})
    with pytest.raises(policies.PolicyError, match=r"^old\.rego:3: not valid Rego v1"):
        load(tmp_path)


def test_indented_with_input_refused(tmp_path: Path) -> None:
    write(tmp_path, {"w.rego": "package p\n\n\tdeny_x contains m if {\n\t\t\tm := input.a\n"
                               "\t\t\t\twith input as {\"a\": 1}\n\t}\n"})
    with pytest.raises(policies.PolicyError, match=r"^w\.rego:5: 'with input as' is not allowed"):
        load(tmp_path)


def test_a_policy_that_crashes_the_compiler_is_refused(tmp_path: Path) -> None:
    # regopy 1.5.2 segfaults compiling `some k; data[k]`: the throwaway worker dies, not us
    write(tmp_path, {"crash.rego": "package p\n\ndeny contains v if {\n\tsome k\n\tv := data[k]\n}\n"})
    with pytest.raises(policies.PolicyError, match=r"crash the Rego compiler \(signal 11\)"):
        load(tmp_path)


@pytest.mark.parametrize("body", [
    "import data.conftest\n\ndeny contains \"x\" if endswith(conftest.file.name, \".yaml\")\n",
    "deny contains \"x\" if data.services.ports[0] == 22\n",
    "deny contains p if {\n\tsome p in data.exclusions.names\n}\n",
], ids=["conftest-file", "services", "exclusions"])
def test_data_pushgate_does_not_provide_is_refused(tmp_path: Path, body: str) -> None:
    # conftest loads data files (--data) and data.conftest; pushgate provides neither, so such a
    # rule would read undefined and pass everything: refused at start-up instead
    write(tmp_path, {"main.rego": "package main\n\n" + body})
    with pytest.raises(policies.PolicyError,
                       match=r"^policies read data\.\w+, which pushgate does not provide"):
        load(tmp_path)


def test_data_of_packages_and_the_push_context_is_provided(tmp_path: Path) -> None:
    write(tmp_path, {"main.rego": "package main\n\nimport data.lib\n\n"
                                  "deny contains \"x\" if count(data.lib) > 0\n"
                                  "warn contains \"y\" if data.pushgate.push.role\n",
                     "lib.rego": "package lib.helpers\n\nok := true\n"})
    assert load(tmp_path).entrypoints == ["main/deny", "main/warn"]
