"""Unit tests of `pushgate.gate.policies`: loading a policy directory (what is loaded, which entry
points, what is refused and how the refusal reads) and turning rule results into Violations.

Fast: files in a temporary directory; loading compiles them once in a throwaway regopy worker
(entry points come from the compiled plan), no policy is evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.core import violations as pv
from pushgate.gate import policies
from tests.bed import samples

ROOT = Path(__file__).resolve().parents[2]
CLEAN = 'package team.checks\n\ndeny contains msg if {\n\tinput.kind == "Pod"\n\tmsg := "no pods"\n}\n'


def write(directory: Path, files: dict[str, str]) -> Path:
    return samples.write_tree(directory, files)


def refusal(directory: Path) -> str:
    with pytest.raises(policies.PolicyError) as info:
        policies.load(str(directory))
    return str(info.value)


# -- what is loaded ------------------------------------------------------------------------------
def test_pushgate_policies_load_recursively_without_tests() -> None:
    ps = policies.load(str(ROOT / "policies"))
    paths = {m.path for m in ps.modules}
    assert paths == {"images.rego", "labels.rego", "namespaces.rego", "resources.rego",
                     "secrets.rego", "security.rego", "lib/k8s.rego"}
    assert ps.entrypoints == [f"pushgate/k8s/{t}/deny" for t in
                              ("images", "labels", "namespaces", "resources", "secrets", "security")]
    lib = next(m for m in ps.modules if m.path == "lib/k8s.rego")
    assert lib.package == "pushgate.lib.k8s"
    assert not ps.uses_push_context and ps.push_entrypoints == frozenset()
    assert ps.namespaces is None


def test_nested_dirs_other_files_and_test_files(tmp_path: Path) -> None:
    write(tmp_path, {
        "a/b/c/deep.rego": CLEAN.replace("team.checks", "deep.nested"),
        "a/b/c/deep_test.rego": "package deep.nested_test\n\ntest_x if true\n",
        "top.rego": CLEAN,
        "README.md": "deny[msg] { not rego at all",
        "notes.rego.txt": "allow {",
        "x_test.rego": "deny[msg] {\n}\n",  # never loaded, so never refused
    })
    ps = policies.load(str(tmp_path))
    assert [m.path for m in ps.modules] == ["top.rego", "a/b/c/deep.rego"]
    assert ps.entrypoints == ["deep/nested/deny", "team/checks/deny"]
    assert ps.modules[0].source == CLEAN


def test_entrypoints_for_deny_violation_and_warn(tmp_path: Path) -> None:
    write(tmp_path, {
        "one.rego": "package p.one\n\nviolation contains {\"msg\": \"v\"} if true\n\n"
                    "warn contains \"w\" if true\n\nhelper := 1\n",
        # the same package split over two files: one entry point per (package, rule)
        "one_more.rego": "package p.one\n\ndeny contains \"d\" if true\n\nwarn contains \"w2\" if true\n",
        "two.rego": "package p.two\n\n# deny contains \"commented out\" if true\n"
                    "denylist := {\"x\"}\nwarnings := 1\nviolations := 2\n",
    })
    ps = policies.load(str(tmp_path))
    assert ps.entrypoints == ["p/one/deny", "p/one/violation", "p/one/warn"]


def test_push_context_is_noticed(tmp_path: Path) -> None:
    write(tmp_path, {"ctx.rego": "package ctx\n\ndeny contains \"no\" if {\n"
                                 "\tdata.pushgate.push.role == \"write\"\n}\n"})
    ps = policies.load(str(tmp_path))
    assert ps.uses_push_context and ps.push_entrypoints == {"ctx/deny"}


# -- what is refused -----------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "line"), [
    ("package p\n\ndeny[msg] {\n\tmsg := \"x\"\n}\n", 3),
    ("package p\n\n\n\nviolation[{\"msg\": m}] {\n\tm := \"x\"\n}\n", 5),
    ("package p\n\nimport data.lib\n\nallow {\n\tinput.x\n}\n", 5),
    ("package p\n\ndeny contains \"ok\" if true\n\n  warn[m]{\n\tm := \"x\"\n}\n", 5),
], ids=["deny-set", "violation-after-blank-lines", "allow", "indented-warn"])
def test_v0_syntax_refused_naming_file_and_line(tmp_path: Path, source: str, line: int) -> None:
    write(tmp_path, {"good.rego": CLEAN, "sub/old.rego": source})
    message = refusal(tmp_path)
    assert message.startswith(f"sub/old.rego:{line}: ")
    assert "Rego v1" in message
    assert "contains" in message and "if" in message  # says what to write instead


def test_v0_in_a_comment_is_not_refused(tmp_path: Path) -> None:
    write(tmp_path, {"p.rego": "package p\n\n# old style was: deny[msg] {\n# allow {\n"
                               "deny contains \"x\" if true\n"})
    assert policies.load(str(tmp_path)).entrypoints == ["p/deny"]


def test_with_input_in_a_policy_refused_naming_file_and_line(tmp_path: Path) -> None:
    # regopy 1.5.2 aborts compiling any module that holds `with input as`: refuse it at load.
    write(tmp_path, {"good.rego": CLEAN, "w.rego": (
        "package p\n\nname := input.metadata.name\n\ndeny contains msg if {\n"
        "\tmsg := name with input as {\"metadata\": {\"name\": \"x\"}}\n}\n")})
    message = refusal(tmp_path)
    assert message.startswith("w.rego:6: ")
    assert "with input as" in message


def test_other_with_and_the_word_with_are_allowed(tmp_path: Path) -> None:
    write(tmp_path, {"p.rego": (
        "package p\n\nlimit := 3\n\ndeny contains \"over\" if {\n"
        "\tl := limit with data.p.limit as 4\n\tl > 3\n}\n\n"
        "warn contains \"deploy with input from the team\" if input.kind == \"Pod\"\n")})
    assert policies.load(str(tmp_path)).entrypoints == ["p/deny", "p/warn"]


# regopy 1.5.2 plans a variable that only a call's argument binds as a lookup with a key nothing
# sets (pushgate.gate.regoplan.unbound_reads): the rule would never hold where OPA iterates it.
@pytest.mark.parametrize("body", [
    "is_object(input.items[i])",  # a builtin's argument
    "count(input.items[i]) > 0",  # inside a comparison
    'endswith(input.metadata.labels[k], "x")',  # an object's key
    "some i; is_object(input.items[i])",  # declared, still bound only by the call
    "f(input.items[i])",  # a function of the policy
    "n := count([i | is_object(input.items[i])]); n > 0",  # in a comprehension
])
def test_a_variable_only_a_call_binds_is_refused_naming_file_line_and_rule(
        tmp_path: Path, body: str) -> None:
    write(tmp_path, {"team/items.rego": "package team.items\n\nf(x) if is_object(x)\n\n"
                                        f'deny contains "bad" if {{\n\tinput.kind == "List"\n\t{body}\n}}\n',
                     "other.rego": CLEAN})
    message = refusal(tmp_path)
    assert message.startswith("team/items.rego:7: rule team.items.deny uses a variable that only")
    assert "never binds it" in message and "item := input.items[i]; is_object(item)" in message


@pytest.mark.parametrize("body", [
    "item := input.items[i]\n\tis_object(item)",  # bound first: what the refusal asks for
    "some item in input.items\n\tis_object(item)",
    'input.items[_].kind == "Pod"',  # a lookup, not a call's argument
    "is_object(input.items[0])",  # no variable
])
def test_a_variable_bound_before_the_call_is_accepted(tmp_path: Path, body: str) -> None:
    write(tmp_path, {"items.rego": f'package team.items\n\ndeny contains "bad" if {{\n\t{body}\n}}\n'})
    assert policies.load(str(tmp_path)).entrypoints == ["team/items/deny"]


@pytest.mark.parametrize(("call", "builtin"), [
    ('net.cidr_contains("0.0.0.0/0", input.spec.loadBalancerIP)', "net.cidr_contains"),
    ('count(net.cidr_merge(input.spec.loadBalancerSourceRanges)) > 1', "net.cidr_merge"),
    ('http.send({"method": "get", "url": "http://registry.local"}).status_code != 200', "http.send"),
])
def test_a_builtin_regopy_does_not_implement_is_refused_naming_it(
        tmp_path: Path, call: str, builtin: str) -> None:
    rule = f'deny contains "open" if {{\n\tinput.kind == "Service"\n\t{call}\n}}\n'
    write(tmp_path, {"team/ranges.rego": "package team.ranges\n\n" + rule})
    message = refusal(tmp_path)
    assert message.startswith(f"team/ranges.rego:5: rule team.ranges.deny calls {builtin}, which the "
                              f"embedded engine (regopy 1.5.2) declares but does not implement")


def test_a_builtin_regopy_gets_wrong_is_refused_naming_it(tmp_path: Path) -> None:
    rule = ('deny contains "expired" if {\n\tinput.kind == "Certificate"\n'
            '\ttime.parse_rfc3339_ns(input.status.notAfter) < time.now_ns()\n}\n')
    write(tmp_path, {"certs.rego": "package team.certs\n\n" + rule})
    message = refusal(tmp_path)
    assert message.startswith("certs.rego:5: rule team.certs.deny calls time.parse_rfc3339_ns, which "
                              "the embedded engine (regopy 1.5.2) gets wrong")
    assert "1577836800000000000" in message


def test_no_package_refused(tmp_path: Path) -> None:
    write(tmp_path, {"nopkg.rego": "deny contains \"x\" if true\n"})
    assert refusal(tmp_path) == "nopkg.rego: no package declaration"


def test_a_package_that_would_hide_the_push_context_refused(tmp_path: Path) -> None:
    write(tmp_path, {"good.rego": CLEAN, "ctx.rego": "package pushgate.push\n\nrole := \"admin\"\n"})
    assert refusal(tmp_path).startswith("ctx.rego: package pushgate.push would hide data.pushgate.push")


def test_a_policy_that_does_not_compile_refused(tmp_path: Path) -> None:
    write(tmp_path, {"bad.rego": "package p\n\ndeny contains msg if {\n\tmsg := \n}\n"})
    assert refusal(tmp_path).startswith("the policies do not compile: ")


def test_unreadable_file_refused(tmp_path: Path) -> None:
    (tmp_path / "latin1.rego").write_bytes(b"package p\n# caf\xe9\n")
    assert refusal(tmp_path).startswith("latin1.rego: cannot read:")


def test_empty_dir_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert refusal(empty) == f"policy directory {empty} holds no .rego policies and no Gatekeeper templates"
    only_tests = write(tmp_path / "tests-only", {"sub/only_test.rego": "package p_test\n\ntest_x if true\n",
                                                 "README.md": "x"})
    assert refusal(only_tests) == (f"policy directory {only_tests} holds no .rego policies and no "
                                   f"Gatekeeper templates")


def test_missing_dir_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert refusal(missing) == f"policy directory {missing} does not exist"
    (tmp_path / "file.rego").write_text(CLEAN)
    assert "does not exist" in refusal(tmp_path / "file.rego")  # a file is not a directory


# -- results as violations -----------------------------------------------------------------------
class Lines:
    """A manifest's `line_of` stand-in that records what it was asked."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.lines = lines
        self.asked: list[str] = []

    def __call__(self, field: str) -> int:
        self.asked.append(field)
        return self.lines.get(field, 1)


def convert(entrypoint: str, results: object, lines: Lines | None = None) -> list[pv.Violation]:
    return policies.to_violations(entrypoint, results, path="apps/web.yaml",
                                  ref="Deployment/shop/web", line_of=lines or Lines({}))


def test_strings_are_errors_at_the_object_line() -> None:
    lines = Lines({"": 4})
    found = convert("main/deny", ["no root", "no latest"], lines)
    assert found == [pv.error("apps/web.yaml", 4, "Deployment/shop/web", "main/deny", "no root"),
                     pv.error("apps/web.yaml", 4, "Deployment/shop/web", "main/deny", "no latest")]
    assert lines.asked == ["", ""]


def test_objects_with_msg_and_field_point_at_the_field() -> None:
    lines = Lines({"spec.template.spec.containers[0].image": 21, "": 1})
    found = convert("pushgate/k8s/images/deny", [
        {"msg": "uses latest", "field": "spec.template.spec.containers[0].image", "extra": [1]},
        {"msg": "object-level"},
        {"msg": "empty field", "field": ""},
    ], lines)
    assert [(v.line, v.rule, v.message) for v in found] == [
        (21, "pushgate.k8s.images/deny", "uses latest"),
        (1, "pushgate.k8s.images/deny", "object-level"),
        (1, "pushgate.k8s.images/deny", "empty field"),
    ]
    assert all(v.is_error for v in found)
    assert str(found[0]) == ("apps/web.yaml:21 Deployment/shop/web [pushgate.k8s.images/deny] "
                             "uses latest")


def test_violation_rule_is_an_error() -> None:
    [v] = convert("team/checks/violation", [{"msg": "bad", "field": "spec"}])
    assert v.is_error and v.rule == "team.checks/violation"


def test_warn_is_a_warning() -> None:
    found = convert("main/warn", ["one replica", {"msg": "no probes", "field": "spec"}])
    assert [v.severity for v in found] == [pv.Severity.WARNING, pv.Severity.WARNING]
    assert str(found[0]) == "warning: apps/web.yaml:1 Deployment/shop/web [main/warn] one replica"


@pytest.mark.parametrize("item", [{"message": "typo"}, {"msg": 3}, {"msg": None}, 7, ["x"], True],
                         ids=["no-msg", "number-msg", "null-msg", "number", "list", "bool"])
def test_a_result_without_msg_is_an_error_even_from_warn(item: object) -> None:
    for ep in ("main/deny", "main/warn"):
        [v] = convert(ep, [item])
        assert v.is_error and v.line == 0
        assert v.message.startswith("policy result without a 'msg': ")
        assert v.message.endswith(str(item)[:120])


def test_long_malformed_result_is_cut() -> None:
    [v] = convert("main/deny", [{"blob": "x" * 1000}])
    assert len(v.message) == len("policy result without a 'msg': ") + 120


def test_empty_and_undefined_results_give_nothing() -> None:
    assert convert("main/deny", []) == []
    assert convert("main/deny", None) == []


@pytest.mark.parametrize(("value", "what"), [({"msg": "alone"}, "an object"), ("alone", "a single value"),
                                             (True, "a single value"), (3, "a single value")],
                         ids=["object", "string", "boolean", "number"])
def test_a_value_not_in_a_set_or_array_is_an_error_naming_the_rule(value: object, what: str) -> None:
    # conftest reads only collections and silently passes anything else (`deny := "x"`, `deny if
    # ...`): pushgate refuses instead, naming the rule, so a policy bug cannot pass everything
    for ep in ("main/deny", "main/warn_x"):
        [v] = convert(ep, value)
        assert v.is_error and v.line == 0 and v.rule == ep
        assert v.message.startswith(f"policy result is {what}")
