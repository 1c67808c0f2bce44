"""The embedded engine with its narrowing (kind guards: a rule not asked about an object whose
kind it excludes; input reads: rego-cpp handed only the parts of an object the asked rules can
read) answers exactly as without it.

A differential over generated policy sets: rules built from kind tests the analyses understand
and forms they must not narrow (kinds read through builtins, the input iterated, handed whole to
builtins and functions, keys computed from the input, values that only some kinds define), and
objects of every kind with random extra fields. Real worker processes, loaded as the gate loads
them: one with the guards and reads the policy set's plan yields, one with neither.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from gitserver.settings import default_policies_dir
from pushgate.gate import inputpaths, policies
from pushgate.gate.embedded import EmbeddedEngine

KINDS = ["Secret", "ConfigMap", "Pod", "Deployment", "Job", "Service", "Namespace", "PersistentVolume"]

CONDITIONS = [
    # kinds
    'input.kind == "{k}"', 'input["kind"] == "{k}"', 'input.kind in ["{k}", "{k2}"]',
    'input.kind in {{"{k}", "{k2}"}}', 'lib.kind == "{k}"', "lib.is_workload", "lib.has_pod",
    'lower(input.kind) == lower("{k}")', 'input.kind != "{k}"', 'not input.kind == "{k}"',
    'object.get(input, "kind", "") == "{k}"', 'startswith(input.kind, "{p}")',
    'is_string(input.kind)', 'lib.is_kind("{k}")', 'some k, v in input\n\tk == "kind"\n\tv == "{k}"',
    # values that only some kinds define, compared and counted: undefined must stay undefined
    "lib.pod_spec != null", "is_object(lib.pod_spec) == false", "count(lib.pod_spec) >= 0",
    'x := {{"a": lib.pod_spec}}\n\tx.a != 1', "some x in [lib.pod_spec]\n\tx != 1",
    "lib.parsed != 7", "not lib.parsed",
    # parts of the object: looked up, iterated, handed on whole, keyed by the object itself
    'input.metadata.name == "web"', "not input.metadata.namespace",
    "some c in lib.containers", "count(lib.containers) > 1", 'input.data.k == "v"',
    'input.metadata.labels.app == "web"', 'some k, _ in input.metadata.labels\n\tstartswith(k, "te")',
    'count(input.metadata) > 2', 'count(input) > 4', 'json.marshal(input) != ""',
    'contains(json.marshal(input.spec), "nginx")', 'is_object(input.status)',
    'input[input.metadata.name]', 'input.metadata[input.kind] == "x"', 'input.items[0] == 1',
    'some i, item in input.items\n\titem > i', 'x := input\n\tx.data.k == "v"',
    'lib.field(input.metadata, "name") == "web"', 'lib.deep(input.spec) == 1',
    'lib.field(input.extra, "x") == 1', 'lib.deep(input.more) == 2',
    # compared with constants, type-tested: a cut keeps types and scalars
    'input.metadata != "web"\n\tinput.extra.y == 3', 'input.items != false\n\tinput.items[0] == 1',
    'input.extra == {{"x": 1, "y": 3}}', 'is_array(input.items)\n\tinput.extra.x == 1',
    'type_name(input.more) == "object"\n\tnot input.more.template.spec.x',
    # one part both looked into and handed to a function whole
    'input.extra.y == 3\n\tlib.field(input.extra, "x") == 1',
    'not input.more.z\n\tlib.deep(input.more) == 2',
    'walk(input, [p, v])\n\tv == "nginx"', 'input.metadata.annotations == {{"a": "b"}}',
    'object.get(input.metadata, ["labels", "app"], "") == "web"', "lib.whole.status",
    'some k in object.keys(input)\n\tk == "items"',
    # reads through functions' arguments: what the body reads of what each call hands it
    'lib.ident(input.metadata).name == "web"', "lib.spec_of(input).replicas == 2",
    "count(lib.names(input.spec.containers)) > 0", 'lib.labelled(input, "app")',
    'lib.field(lib.ident(input.extra), "y") == 3', "lib.whole_of(lib.ident(input.more)) > 1",
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

field(obj, name) := obj[name]

deep(x) := x.template.spec.replicas

ident(x) := x

spec_of(o) := ident(o).spec

names(xs) := [n | some c in xs; n := c.name]

labelled(o, k) if o.metadata.labels[k]

whole_of(x) := count(x)

whole := input
"""


def rule(rng: random.Random, name: str) -> str:
    conds = []
    for _ in range(rng.randrange(1, 4)):
        k, k2 = rng.choice(KINDS), rng.choice(KINDS)
        conds.append(rng.choice(CONDITIONS).format(k=k, k2=k2, p=k[:2]))
    body = "\n\t".join(conds)
    msg = rng.choice(['"constant"', 'concat(" ", [input.metadata.name, "denied"])',
                      "json.marshal(input.metadata)", "input.metadata.labels"])
    form = rng.choice(["set", "set", "set", "complete", "object", "default", "else", "value"])
    if form == "set":
        return f"{name} contains msg if {{\n\t{body}\n\tmsg := {msg}\n}}\n"
    if form == "complete":
        return f"{name} if {{\n\t{body}\n}}\n"
    if form == "object":
        return f"{name}[input.metadata.name] := msg if {{\n\t{body}\n\tmsg := {msg}\n}}\n"
    if form == "default":
        return f"default {name} := false\n\n{name} if {{\n\t{body}\n}}\n"
    if form == "value":  # the rule's value is part of the object itself
        return f"{name} := input.metadata if {{\n\t{body}\n}}\n"
    return f"{name} := [{msg}] if {{\n\t{body}\n}} else := [\"fallback\"] if input.kind == \"Pod\"\n"


def objects(rng: random.Random) -> list[Any]:
    out: list[Any] = []
    for kind in [*KINDS, "Other", "secret", 'Se"cret', "Pod\n", 5, None, ["Pod"], {"k": "Pod"}]:
        for _ in range(4):
            name = rng.choice(["web", "db", "items", "kind"])
            obj: dict[str, Any] = {"apiVersion": "v1", "metadata": {"name": name}}
            if kind is not None:
                obj["kind"] = kind
            meta = obj["metadata"]
            if rng.random() < 0.5:
                meta["namespace"] = "shop"
            if rng.random() < 0.5:
                meta["labels"] = {rng.choice(["app", "team", "tier"]): rng.choice(["web", "x"])}
            if rng.random() < 0.3:
                meta["annotations"] = rng.choice([{"a": "b"}, {"a": 'quo"te'}])
            if rng.random() < 0.2:
                meta[str(kind)] = "x"
            containers = [{"name": "c", "image": rng.choice(["nginx", "db:1"])}] * rng.randrange(0, 3)
            obj["spec"] = rng.choice([{"containers": containers},
                                      {"template": {"spec": {"containers": containers,
                                                             "replicas": rng.randrange(0, 3)}}}])
            if rng.random() < 0.5:
                obj["data"] = {"k": rng.choice(["v", "line\nbreak", "a: [b", "a: 1"])}
            if rng.random() < 0.4:
                obj["items"] = rng.choice([[1, 0], [0, 5, 1], ["a"], []])
            if rng.random() < 0.3:
                obj["status"] = {"ready": rng.random() < 0.5, "note": "nginx"}
            if rng.random() < 0.1:
                obj[name] = True
            if rng.random() < 0.3:
                obj["extra"] = {"x": rng.choice([1, 2]), "y": 3}
            if rng.random() < 0.3:
                obj["more"] = {"template": {"spec": {"replicas": rng.choice([1, 2])}}}
            out.append(obj)
    out.append({})
    return out


def policy_dirs(root: Path) -> list[Path]:
    rng = random.Random(20261130)
    out = []
    for i in range(48):
        names = ["deny", "deny_a", "deny_b", "warn", "violation"]
        rules = "\n".join(rule(rng, n) for n in names[: rng.randrange(2, 6)])
        d = root / f"p{i:02d}"
        d.mkdir()
        (d / "main.rego").write_text("package main\n\nimport data.lib\n\n" + rules)
        (d / "lib.rego").write_text(LIB)
        out.append(d)
    return [*out, Path(default_policies_dir())]


def test_a_narrowed_engine_answers_as_one_without_narrowing(tmp_path: Path) -> None:
    rng = random.Random(7)
    guarded = skipped = cut = 0
    for d in policy_dirs(tmp_path):
        ps = policies.load(str(d))
        guarded += len(ps.kind_guards)
        objs = objects(rng)
        for obj in objs:
            kind = obj.get("kind")
            skipped += sum(1 for g in ps.kind_guards.values()
                           if not isinstance(kind, str) or kind not in g.kinds)
            keep = inputpaths.spec(list(ps.input_reads.values())) if ps.input_reads else None
            cut += inputpaths.prune(obj, keep) != obj
        plain = EmbeddedEngine(replace(ps, kind_guards={}, input_reads={}), 1)
        narrowed = EmbeddedEngine(ps, 1)
        try:
            want = plain.evaluate(objs, {}, 60)
            got = narrowed.evaluate(objs, {}, 60)
        finally:
            plain.close()
            narrowed.close()
        for obj, a, b in zip(objs, want, got, strict=True):
            assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), (d.name, obj)
    # the generated sets must exercise the narrowing: rules skipped for many objects, and
    # objects cut even with every rule of the set asked
    assert guarded >= 40
    assert skipped >= 1000
    assert cut >= 300
