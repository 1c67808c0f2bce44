"""Input reads (pushgate.gate.inputpaths): which parts of an object a rule can read, read from
the plan rego-cpp compiles, and the cut an object gets. A read too narrow would hide from a
rule what it denies on, so: what is found for known forms, what must keep the object whole,
and what a cut keeps. (test_narrowed_engine compares the engine's answers with and without.)"""

from __future__ import annotations

from typing import Any

import pytest

from gitserver.settings import default_policies_dir
from pushgate.gate import inputpaths, policies
from pushgate.gate.inputpaths import ANY_KEY


def reads_of(body: str, rule: str = "deny") -> inputpaths.Reads | None:
    src = "package main\n\n" + body
    plan = policies._compile([policies.Module("main.rego", "main", src)])
    return inputpaths.reads(plan, [f"main/{rule}"]).get(f"main/{rule}")


def kept(body: str, obj: dict[str, Any]) -> Any:
    found = reads_of(body)
    assert found is not None
    return inputpaths.prune(obj, inputpaths.spec([found]))


OBJ = {"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "b", "labels": {"x": "y"}},
       "data": {"k": "line\nbreak"}, "items": [{"name": "i", "v": 1}, {"name": "j", "v": 2}]}


def test_the_starter_namespaces_rule_reads_kind_name_and_namespace() -> None:
    ps = policies.load(default_policies_dir())
    keep = inputpaths.spec([ps.input_reads["pushgate/k8s/namespaces/deny"]])
    assert keep == {"kind": True, "metadata": {"name": True, "namespace": True}}
    assert inputpaths.prune(OBJ, keep) == {"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "b"}}


@pytest.mark.parametrize(("body", "want"), [
    ('deny contains "x" if input.metadata.name == "a"', {"metadata": {"name": "a"}}),
    ('deny contains "x" if { m := input.metadata; m.namespace == "b" }', {"metadata": {"namespace": "b"}}),
    # a lookup whose value is not read keeps what is there
    ('deny contains "x" if input.metadata.labels', {"metadata": {"labels": {"x": "y"}}}),
    # iterated: every element, each cut to what is read of it
    ('deny contains "x" if { some it in input.items; it.v > 1 }', {"items": [{"v": 1}, {"v": 2}]}),
    ('deny contains "x" if input.items[0].name == "i"', {"items": [{"name": "i"}, {"name": "j"}]}),
    # the rule's value is part of the object: kept whole
    ("deny := input.metadata if input.kind", {"kind": "ConfigMap", "metadata": OBJ["metadata"]}),
    # handed whole to a builtin, or to a function that uses it whole
    ('deny contains "x" if count(input.metadata) > 1', {"metadata": OBJ["metadata"]}),
    ('f(m) := count(m)\n\ndeny contains "x" if f(input.metadata) > 1', {"metadata": OBJ["metadata"]}),
    # a function reads of its argument what its body reads (per call, of what that call hands it)
    ('f(m) := m.name\n\ndeny contains "x" if f(input.metadata) == "a"', {"metadata": {"name": "a"}}),
    ('f(m, k) := m[k]\n\ndeny contains "x" if f(input.metadata, "name") == "a"',
     {"metadata": OBJ["metadata"]}),
    ('f(a, b) := b.v\n\ndeny contains "x" if { some it in input.items; f(input.kind, it) > 1 }',
     {"kind": "ConfigMap", "items": [{"v": 1}, {"v": 2}]}),
    ('f(m) := m.name\n\ndeny contains "x" if { f(input.metadata) == "a"; f({"name": "b"}) == "b" }',
     {"metadata": {"name": "a"}}),
    # its value is its argument: read on by the caller
    ('f(m) := m\n\ndeny contains "x" if f(input.metadata).namespace == "b"',
     {"metadata": {"namespace": "b"}}),
    ('f(m) := m\n\ng(m) := f(m).labels\n\ndeny contains "x" if g(input.metadata).x == "y"',
     {"metadata": {"labels": {"x": "y"}}}),
    ('f(m) := m\n\ndeny := f(input.metadata) if input.kind',
     {"kind": "ConfigMap", "metadata": OBJ["metadata"]}),
    # a key computed from the object
    ('deny contains "x" if input.data[input.metadata.name]',
     {"metadata": {"name": "a"}, "data": OBJ["data"]}),
    # an array looked up by a name has no such key: nothing of it is kept
    ('deny contains "x" if input.items.name', {"items": []}),
])
def test_a_cut_keeps_what_the_rule_reads(body: str, want: Any) -> None:
    assert kept(body, OBJ) == want


@pytest.mark.parametrize("body", [
    'deny contains "x" if json.marshal(input) != ""',
    'deny contains "x" if count(input) > 1',
    'deny contains "x" if { some k, v in input; k == "data"; v }',
    'deny contains "x" if input == {}',
    'deny contains "x" if object.get(input, "kind", "") == "ConfigMap"',
    'deny contains "x" if walk(input, [_, "line\\nbreak"])',
    "deny := input if true",
    'f(o) := o\n\ndeny contains "x" if count(f(input)) > 1',
    'f(o) := json.marshal(o)\n\ndeny contains "x" if f(input) != ""',
    'deny contains "x" if input[input.kind]',
])
def test_what_reads_the_object_whole_keeps_it_whole(body: str) -> None:
    assert kept(body, OBJ) == OBJ


def test_a_plan_that_replaces_the_input_gets_no_reads_at_all() -> None:
    src = ('package main\n\ndeny contains "x" if input.kind == "Secret"\n\n'
           'other if input.kind == "Pod" with input as {"kind": "Pod"}\n')
    plan = policies._compile([policies.Module("main.rego", "main", src)])
    assert inputpaths.reads(plan, ["main/deny"]) == {}


def test_spec_and_prune() -> None:
    r1 = inputpaths.Reads(frozenset({("a",), ("a", "b"), ("l", ANY_KEY)}), frozenset({("a", "b", "c")}))
    r2 = inputpaths.Reads(frozenset({("l", ANY_KEY, "n")}), frozenset({("z",)}))
    keep = inputpaths.spec([r1, r2])
    assert keep == {"a": {"b": {"c": True}}, "l": {ANY_KEY: {"n": True}}, "z": True}
    obj = {"a": {"b": {"c": [1], "d": 2}, "e": 3}, "l": [{"n": 1, "m": 2}, 5], "z": {"q": 1}, "w": 0}
    assert inputpaths.prune(obj, keep) == {"a": {"b": {"c": [1]}}, "l": [{"n": 1}, 5], "z": {"q": 1}}
    # any key, merged with a named one: both apply
    keep = inputpaths.spec([inputpaths.Reads(frozenset({("o", ANY_KEY, "n"), ("o", "k", "m")}),
                                             frozenset())])
    assert inputpaths.prune({"o": {"k": {"n": 1, "m": 2, "x": 3}, "j": {"n": 4, "m": 5}}}, keep) == \
        {"o": {"k": {"n": 1, "m": 2}, "j": {"n": 4}}}
    # the whole object observed, or nothing named: nothing is cut
    assert inputpaths.spec([inputpaths.Reads(frozenset(), frozenset({()}))]) is None
    assert inputpaths.spec([inputpaths.Reads(frozenset(), frozenset())]) is None
    assert inputpaths.prune(obj, None) is obj
