"""Kind guards (pushgate.gate.kindguard): which kinds of object a rule can say anything about,
read from the plan rego-cpp compiles, and the worker that skips a rule for the other kinds.

A guard that is too narrow lets an object through a rule that would deny it, so the analysis is
tested two ways: here, what it finds for known forms (a kind test it understands narrows,
anything else widens to "any kind"); in test_narrowed_engine, a differential over generated
policy sets. The plans come from the real regopy, compiled in a worker process.
"""

from __future__ import annotations

from typing import Any

import pytest

from gitserver.settings import default_policies_dir
from pushgate.gate import kindguard, policies

WORKLOADS = ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"]
POD_KINDS = {*WORKLOADS, "ReplicationController", "PodTemplate"}


def plan_of(src: str, extra: str = "") -> dict[str, Any]:
    # compiled by a worker process, as policies.load does (regopy can abort the process it runs in)
    modules = [policies.Module("main.rego", "main", src)]
    if extra:
        modules.append(policies.Module("lib.rego", "lib", extra))
    return policies._compile(modules)


def guard_of(body: str, extra: str = "", rule: str = "deny") -> kindguard.Guard | None:
    src = "package main\n\n" + body
    return kindguard.guards(plan_of(src, extra), [f"main/{rule}"]).get(f"main/{rule}")


def test_the_starter_policies_are_guarded_by_what_they_test() -> None:
    ps = policies.load(default_policies_dir())
    got = {ep.split("/")[2]: g for ep, g in ps.kind_guards.items()}
    assert got["secrets"] == kindguard.Guard(frozenset({"Secret"}), "set")
    assert got["labels"] == kindguard.Guard(frozenset(WORKLOADS), "set")
    assert got["images"] == kindguard.Guard(frozenset(POD_KINDS), "set")
    assert got["resources"] == kindguard.Guard(frozenset(POD_KINDS), "set")
    assert got["security"] == kindguard.Guard(frozenset(POD_KINDS | {"PersistentVolume"}), "set")
    # every object of a kind with a name may lack a namespace: no guard
    assert "namespaces" not in got


@pytest.mark.parametrize(("body", "kinds", "empty"), [
    ('deny contains "x" if input.kind == "Secret"', {"Secret"}, "set"),
    ('deny contains "x" if input["kind"] == "Secret"', {"Secret"}, "set"),
    ('deny contains "x" if { k := input.kind; k == "Secret" }', {"Secret"}, "set"),
    ('deny contains "x" if input.kind in ["A", "B"]', {"A", "B"}, "set"),
    ('deny contains "x" if input.kind in {"A", "B"}', {"A", "B"}, "set"),
    ('deny if input.kind == "Secret"', {"Secret"}, "undefined"),
    ('deny := "x" if input.kind == "Secret"', {"Secret"}, "undefined"),
    ('deny[k] := "x" if { input.kind == "Secret"; k := input.metadata.name }', {"Secret"}, "object"),
    ('deny contains "x" if input.kind == "A"\n\ndeny contains "y" if input.kind == "B"',
     {"A", "B"}, "set"),
    # a pod's containers, listed by a comprehension that only a Pod fills
    ('cs := [c | input.kind == "Pod"; c := input.spec.containers[_]]\n\n'
     'deny contains c.name if { some c in cs; not c.image }', {"Pod"}, "set"),
    ('k := input.kind if is_string(input.kind)\n\ndeny contains "x" if k == "Secret"',
     {"Secret"}, "set"),
    ('w := ["Pod", "Job"]\n\nis_w if input.kind in w\n\ndeny contains "x" if is_w', {"Pod", "Job"}, "set"),
])
def test_a_kind_test_it_understands_narrows_the_rule(body: str, kinds: set[str], empty: str) -> None:
    assert guard_of(body) == kindguard.Guard(frozenset(kinds), empty)


@pytest.mark.parametrize("body", [
    'deny contains "x" if lower(input.kind) == "secret"',
    'deny contains "x" if object.get(input, "kind", "") == "Secret"',
    'deny contains "x" if { some k, v in input; k == "kind"; v == "Secret" }',
    'deny contains "x" if input.kind != "Secret"',
    'deny contains "x" if not input.kind == "Secret"',
    'deny contains "x" if { not is_secret }\n\nis_secret if input.kind == "Secret"',
    'deny contains "x" if startswith(input.kind, "Sec")',
    'deny contains "x" if input.kind == input.metadata.name',
    'deny contains "x" if input.kind == 5',
    'deny contains "x" if input.kind == "Secret"\n\ndeny contains "y" if input.metadata.name == "a"',
    'default deny := false\n\ndeny if input.kind == "Secret"',
    'deny := ["x"] if input.kind == "Secret" else := ["y"]',
    'deny := [m | input.kind == "Secret"; m := "x"]',
    'is_kind(k) if input.kind == k\n\ndeny contains "x" if is_kind("Secret")',
    'deny contains "x" if count([k | k := input.kind; k == "Secret"]) > 0',
    'deny contains "x" if { ks := {"Secret": true}; ks[input.kind] }',
])
def test_anything_else_means_any_kind(body: str) -> None:
    assert guard_of(body) is None


def test_a_plan_that_replaces_the_input_gets_no_guard_at_all() -> None:
    src = ('package main\n\ndeny contains "x" if input.kind == "Secret"\n\n'
           'other if input.kind == "Pod" with input as {"kind": "Pod"}\n')
    assert kindguard.guards(plan_of(src), ["main/deny"]) == {}


def test_subsets_put_unguarded_rules_in_every_group() -> None:
    found = {"a": kindguard.Guard(frozenset({"Pod"}), "set"),
             "b": kindguard.Guard(frozenset({"Pod", "Secret"}), "set")}
    groups, by_kind, other = kindguard.subsets(["a", "b", "c"], found)
    assert groups[other] == ("c",)
    assert groups[by_kind["Pod"]] == ("a", "b", "c")
    assert groups[by_kind["Secret"]] == ("b", "c")
