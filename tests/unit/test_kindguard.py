"""Kind guards (pushgate.gate.kindguard): which kinds of object a rule can say anything about,
read from the plan rego-cpp compiles, and the worker that skips a rule for the other kinds.

A guard that is too narrow lets an object through a rule that would deny it, so the analysis is
tested two ways: what it finds for known forms (a kind test it understands narrows, anything
else widens to "any kind"), and a differential over generated policy sets, where a worker with
the guards must answer exactly as a worker without them, object by object, for every kind.
The plans and the answers come from the real regopy, in process.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gitserver.settings import default_policies_dir
from pushgate.gate import kindguard, policies
from pushgate.gate.embedded import EmbeddedEngine

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


# -- the differential -------------------------------------------------------------------------------
KINDS = ["Secret", "ConfigMap", "Pod", "Deployment", "Job", "Service", "Namespace", "PersistentVolume"]

CONDITIONS = [
    'input.kind == "{k}"', 'input["kind"] == "{k}"', 'input.kind in ["{k}", "{k2}"]',
    'input.kind in {{"{k}", "{k2}"}}', 'lib.kind == "{k}"', "lib.is_workload", "lib.has_pod",
    'lower(input.kind) == lower("{k}")', 'input.kind != "{k}"', 'not input.kind == "{k}"',
    'object.get(input, "kind", "") == "{k}"', 'startswith(input.kind, "{p}")',
    'input.metadata.name == "web"', "not input.metadata.namespace",
    "some c in lib.containers", 'count(lib.containers) > 1', 'input.data.k == "v"',
    'is_string(input.kind)', 'lib.is_kind("{k}")', 'some k, v in input\n\tk == "kind"\n\tv == "{k}"',
    # values that only some kinds define, compared and counted: undefined must stay undefined
    "lib.pod_spec != null", "is_object(lib.pod_spec) == false", "count(lib.pod_spec) >= 0",
    'x := {{"a": lib.pod_spec}}\n\tx.a != 1', "some x in [lib.pod_spec]\n\tx != 1",
    "lib.parsed != 7", "not lib.parsed",
]

LIB = """package lib

kind := input.kind if is_string(input.kind)

workloads := ["Deployment", "Job", "Pod"]

is_workload if kind in workloads

pod_spec := input.spec if kind == "Pod"

pod_spec := input.spec.template.spec if kind in ["Deployment", "Job"]

has_pod if is_object(pod_spec)

containers := [c | has_pod; some c in pod_spec.containers]

is_kind(k) if input.kind == k

parsed := yaml.unmarshal(input.data.k) if kind == "Pod"
"""


def rule(rng: random.Random, name: str) -> str:
    conds = []
    for _ in range(rng.randrange(1, 4)):
        k, k2 = rng.choice(KINDS), rng.choice(KINDS)
        conds.append(rng.choice(CONDITIONS).format(k=k, k2=k2, p=k[:2]))
    body = "\n\t".join(conds)
    msg = rng.choice(['"constant"', 'concat(" ", [input.metadata.name, "denied"])'])
    form = rng.choice(["set", "set", "set", "complete", "object", "default", "else"])
    if form == "set":
        return f"{name} contains msg if {{\n\t{body}\n\tmsg := {msg}\n}}\n"
    if form == "complete":
        return f"{name} if {{\n\t{body}\n}}\n"
    if form == "object":
        return f"{name}[input.metadata.name] := msg if {{\n\t{body}\n\tmsg := {msg}\n}}\n"
    if form == "default":
        return f"default {name} := false\n\n{name} if {{\n\t{body}\n}}\n"
    return f"{name} := [{msg}] if {{\n\t{body}\n}} else := [\"fallback\"] if input.kind == \"Pod\"\n"


def objects(rng: random.Random) -> list[Any]:
    out: list[Any] = []
    for kind in [*KINDS, "Other", "secret", 'Se"cret', "Pod\n", 5, None, ["Pod"], {"k": "Pod"}]:
        for _ in range(3):
            obj: dict[str, Any] = {"apiVersion": "v1", "metadata": {"name": rng.choice(["web", "db"])}}
            if kind is not None:
                obj["kind"] = kind
            if rng.random() < 0.5:
                obj["metadata"]["namespace"] = "shop"
            containers = [{"name": "c", "image": "nginx"}] * rng.randrange(0, 3)
            obj["spec"] = rng.choice([{"containers": containers},
                                      {"template": {"spec": {"containers": containers}}}])
            if rng.random() < 0.5:
                obj["data"] = {"k": rng.choice(["v", "line\nbreak", "a: [b", "a: 1"])}
            out.append(obj)
    out.append({})
    return out


def policy_dirs(root: Path) -> list[Path]:
    rng = random.Random(20261130)
    out = []
    for i in range(40):
        names = ["deny", "deny_a", "deny_b", "warn", "violation"]
        rules = "\n".join(rule(rng, n) for n in names[: rng.randrange(2, 6)])
        d = root / f"p{i:02d}"
        d.mkdir()
        (d / "main.rego").write_text("package main\n\nimport data.lib\n\n" + rules)
        (d / "lib.rego").write_text(LIB)
        out.append(d)
    return [*out, Path(default_policies_dir())]


def test_a_worker_with_guards_answers_as_one_without_them(tmp_path: Path) -> None:
    """Real worker processes, loaded as the gate loads them: one given the guards the policy
    set's plan yields, one given none."""
    rng = random.Random(7)
    guarded = unguarded_sets = skipped = 0
    for d in policy_dirs(tmp_path):
        ps = policies.load(str(d))
        guarded += len(ps.kind_guards)
        unguarded_sets += not ps.kind_guards
        objs = objects(rng)
        for obj in objs:
            kind = obj.get("kind")
            skipped += sum(1 for g in ps.kind_guards.values()
                           if not isinstance(kind, str) or kind not in g.kinds)
        plain, narrowed = EmbeddedEngine(replace(ps, kind_guards={}), 1), EmbeddedEngine(ps, 1)
        try:
            want = plain.evaluate(objs, {}, 60)
            got = narrowed.evaluate(objs, {}, 60)
        finally:
            plain.close()
            narrowed.close()
        for obj, a, b in zip(objs, want, got, strict=True):
            assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), (d.name, obj)
    # the generated sets must exercise both sides: rules narrowed (and skipped for many
    # objects), and sets left whole
    assert guarded >= 40
    assert skipped >= 1000
    assert unguarded_sets >= 1
