"""Differential test of conftest's contract: a generated corpus of policy x input pairs decided by
the embedded engine, by a real `opa run --server` (through the OPA engine), and by the pinned
`conftest` binary. Every pair must get the same verdict (failures and warnings with their
messages, exceptions) from all three, or pushgate must refuse it (the embedded engine cannot
decide faithfully, or a rule's result has a shape conftest silently ignores): never a silent
accept.

The corpus comes from a seeded generator that combines what conftest policies are made of:
plain and suffixed deny/violation/warn rules, partial sets, complete rules (arrays, sets, single
values, `else`, undefined for most inputs), strings and objects with `msg`, exception rules,
helper functions in an aliased library package, `import data.pushgate` and reads of the push
context, nested packages, rules split over files, and indented heads. Half the policy sets are
evaluated over every package (pushgate's default, `conftest --all-namespaces`), half over `main`
only (conftest's default). One OPA upload and one conftest run per policy set, over all its
inputs, keeps it to about half a minute.
"""

from __future__ import annotations

import json
import random
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pushgate.gate import policies
from pushgate.gate.embedded import EmbeddedEngine
from pushgate.gate.opaserver import OpaServerEngine
from tests.bed import tools
from tests.bed.opa import OpaServer

pytestmark = pytest.mark.opa

SEED = 20261129
POLICIES = 26
INPUTS = 40  # per policy set: 1,040 pairs
TIMEOUT = 60.0
PUSHES = [
    {"pusher": "root", "role": "admin", "ref": "refs/heads/main", "changed_paths": ["apps/web.yaml"]},
    {"pusher": "bob", "role": "write", "ref": "refs/heads/main", "changed_paths": ["infra/ns.yaml"]},
]
SUFFIXES = ("run_as_root", "latest", "no_limits", "replicas", "labels", "ns", "role", "x1")
KINDS = ("Deployment", "Pod", "Service", "ConfigMap", "Secret", "StatefulSet", "Job")
NAMES = ("web", "api", "legacy", "db-main", "cache", "Front", "job-1", "a", "long-name-here")
# Strings regopy holds differently from OPA: the embedded engine must match or refuse.
HOSTILE = ('we"b', "back\\slash", "tab\there", 'q"uote\\d')
IMAGES = ("nginx:1.27", "nginx:latest", "nginx", "registry:5000/app:1.2", "redis:7",
          "busybox@sha256:" + "ab" * 32)
LABELS = {"app": ("web", "api", ""), "team": ("core", "edge"), "tier": ("front", "back")}


@dataclass(frozen=True)
class Verdict:
    """One input's decision: failures and warnings as (rule, msg), exceptions as (package,
    exempted name), each a sorted multiset; or a refusal and why."""

    failures: tuple[tuple[str, str], ...] = ()
    warnings: tuple[tuple[str, str], ...] = ()
    exceptions: tuple[tuple[str, str], ...] = ()
    refused: str = ""


@dataclass
class PolicyCase:
    id: str
    files: dict[str, str]
    namespaces: tuple[str, ...] | None
    push: dict[str, Any]
    inputs: list[dict[str, Any]]
    features: set[str] = field(default_factory=set)


# -- the generator --------------------------------------------------------------------------------
class Generator:
    """Random conftest-style policy sets and Kubernetes-ish inputs, reproducible from a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.features: set[str] = set()
        self.kinds: dict[str, dict[str, str]] = {}  # package -> rule -> "partial" | "complete"

    def pick(self, items: Sequence[Any]) -> Any:
        return items[self.rng.randrange(len(items))]

    # inputs
    def obj(self) -> dict[str, Any]:
        r = self.rng
        kind = self.pick(KINDS)
        name = self.pick(HOSTILE) if r.random() < 0.04 else self.pick(NAMES)
        meta: dict[str, Any] = {"name": name}
        if r.random() < 0.7:
            meta["namespace"] = self.pick(("shop", "infra"))
        labels = {k: self.pick(v) for k, v in LABELS.items() if r.random() < 0.5}
        if labels:
            meta["labels"] = labels
        if r.random() < 0.2:
            meta["annotations"] = {"pushgate.io/skip": self.pick(("true", "false"))}
        out: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": meta}
        if kind in ("Deployment", "Pod", "StatefulSet", "Job"):
            containers = [{"name": f"c{i}", "image": self.pick(IMAGES)} for i in range(r.randrange(0, 4))]
            out["spec"] = {"containers": containers}
            if kind != "Pod" and r.random() < 0.8:
                out["spec"]["replicas"] = r.randrange(0, 5)
        elif kind in ("ConfigMap", "Secret"):
            out["data"] = {"k": self.pick(("v", "line1\nline2", 'say "hi"', "c:\\dir"))}
        return out

    # policies
    def cond(self, ctx: dict[str, bool]) -> list[str]:
        r = self.rng
        options: list[list[str]] = [
            [f'input.kind == "{self.pick(KINDS)}"'],
            [f'input.kind != "{self.pick(KINDS)}"'],
            [f'input.metadata.labels.{k} == "{self.pick(v)}"' for k, v in [self.pick(list(LABELS.items()))]],
            [f"not input.metadata.labels.{self.pick(list(LABELS))}"],
            ["not input.metadata.namespace"],
            [f"input.spec.replicas > {r.randrange(0, 4)}"],
            [f"count(input.spec.containers) >= {r.randrange(1, 3)}"],
            ["some c in input.spec.containers", 'endswith(c.image, ":latest")'],
            ["some c in input.spec.containers", 'not contains(c.image, ":")'],
            [f'startswith(input.metadata.name, "{self.pick(("a", "l", "w", "j"))}")'],
            ['input.metadata.annotations["pushgate.io/skip"] == "true"'],
            ['regex.match("^[a-z-]+$", input.metadata.name)'],
            ["lower(input.metadata.name) != input.metadata.name"],
            ["count(input.metadata.name) > 4"],
        ]
        if ctx["lib"]:
            options += [["h.is_workload"], [f'h.has_label("{self.pick(list(LABELS))}")']]
        if ctx["push"]:
            options += [['pushgate.push.role == "write"'], ['data.pushgate.push.pusher == "root"'],
                        ['who.role == "admin"'], ['some p in pushgate.push.changed_paths',
                                                 'startswith(p, "infra/")']]
        return self.pick(options)

    def message(self, ctx: dict[str, bool]) -> list[str]:
        literal = self.pick(("plain message", 'a \\"quoted\\" message', "tab\\tand unicode é ✓"))
        options = [
            [f'msg := "{literal}"'],
            ['msg := concat("", [input.kind, " ", input.metadata.name, " is not allowed"])'],
            ['msg := sprintf("%s: %s", [input.kind, input.metadata.name])'],
            ['msg := sprintf("%s runs %d replicas", [input.metadata.name, input.spec.replicas])'],
        ]
        if ctx["lib"]:
            options.append(['msg := h.describe("needs a fix")'])
        if ctx["push"]:
            options.append(['msg := concat(" ", ["pushed by", pushgate.push.pusher, "to",',
                            '\tpushgate.push.ref])'])
        return self.pick(options)

    def body(self, ctx: dict[str, bool], with_msg: bool = True) -> str:
        lines = [line for _ in range(self.rng.randrange(1, 3)) for line in self.cond(ctx)]
        if with_msg:
            lines += self.message(ctx)
        return "{\n" + "".join(f"\t{line}\n" for line in lines) + "}"

    def rule(self, name: str, form: str, ctx: dict[str, bool]) -> str:
        indent = self.pick(("", "", "", "  ", "    ", "\t"))
        if indent:
            self.features.add("indented")
        self.features.add(f"form:{form}")
        head = {
            "set-str": f"{name} contains msg if ",
            "set-obj": f'{name} contains {{"msg": msg, "field": "metadata.name"}} if ',
            "array": f"{name} := [msg] if ",
            "set-literal": f'{name} := {{msg, "also this"}} if ',
            "objects": f'{name} := [{{"msg": msg}}, {{"msg": "second"}}] if ',
            "single": f"{name} := msg if ",
        }
        if form == "set-const":
            return f'{indent}{name} contains "constant {name}" if {{ {"; ".join(self.cond(ctx))} }}\n'
        if form == "else":
            return (f"{indent}{name} := [msg] if {self.body(ctx)} else := [\"fallback {name}\"] if "
                    f"{self.body(ctx, with_msg=False)}\n")
        return f"{indent}{head[form]}{self.body(ctx)}\n"

    def exception(self, ctx: dict[str, bool], names: Sequence[str]) -> str:
        self.features.add("exception")
        chosen = sorted({self.pick(names) for _ in range(self.rng.randrange(1, 3))})
        listed = ", ".join(f'"{n}"' for n in chosen)
        cond = "; ".join(self.cond(ctx))
        if self.rng.random() < 0.5:
            return f"exception contains rules if {{\n\t{cond}\n\trules := [{listed}]\n}}\n"
        return f"exception contains [{listed}] if {{\n\t{cond}\n}}\n"

    def package(self, pkg: str, ctx: dict[str, bool], n_rules: int) -> tuple[str, list[str]]:
        """A module of package `pkg`; also the rule names it defines."""
        r = self.rng
        imports = []
        if ctx["lib"]:
            imports.append("import data.lib.helpers as h")
            self.features.add("aliased-import")
        if ctx["push"]:
            imports += ["import data.pushgate", "import data.pushgate.push as who"]
            self.features.add("push-context")
        text = f"package {pkg}\n\n" + "".join(f"{i}\n" for i in imports) + "\n"
        kinds = self.kinds.setdefault(pkg, {})
        for _ in range(n_rules):
            base = self.pick(("deny", "violation", "warn"))
            name = base if r.random() < 0.35 else f"{base}_{self.pick(SUFFIXES)}"
            self.features.add("suffixed" if "_" in name else "plain")
            form = self.pick(("set-str", "set-str", "set-obj", "set-const", "array", "set-literal",
                              "objects", "else", "set-str"))
            if r.random() < 0.05:
                form = "single"
            partial = form.startswith("set-") and form != "set-literal"
            previous = kinds.get(name)
            if previous is not None and (previous != "partial" or not partial):
                continue  # a complete rule is defined once; a partial set may be defined again
            if previous is not None:
                self.features.add("multi-def")
            kinds[name] = "partial" if partial else "complete"
            text += self.rule(name, form, ctx) + "\n"
        if r.random() < 0.5:
            # suffixes (they exempt deny_, violation_ and warn_ rules), whole names (they do not),
            # and "" (it exempts the plain deny, violation and warn rules)
            names = [n.split("_", 1)[1] if "_" in n else n for n in kinds]
            text += self.exception(ctx, [*names, *names, "x1", "deny", "warn_latest", ""]) + "\n"
        return text, list(kinds)

    def policy(self, i: int) -> PolicyCase:
        r = self.rng
        self.features, self.kinds = set(), {}
        ctx = {"lib": r.random() < 0.5, "push": r.random() < 0.4}
        files: dict[str, str] = {}
        files["main.rego"], _ = self.package("main", ctx, r.randrange(2, 6))
        if ctx["lib"]:
            files["lib/helpers.rego"] = LIB
        if r.random() < 0.4:
            pkg = self.pick(("main.extra", "team.checks"))
            files[f"{pkg.replace('.', '/')}.rego"], _ = self.package(pkg, ctx, r.randrange(1, 4))
            self.features.add("nested-package")
        if r.random() < 0.3:
            more, _ = self.package("main", ctx, r.randrange(1, 3))
            files["main_more.rego"] = more.replace("exception contains", "exception_unused contains")
            self.features.add("split-package")
        namespaces = ("main",) if i % 2 else None
        push = self.pick(PUSHES)
        inputs = [self.obj() for _ in range(INPUTS)]
        return PolicyCase(f"p{i:02d}", files, namespaces, push, inputs, set(self.features))


LIB = """\
package lib.helpers

is_workload if input.kind in {"Deployment", "Pod", "StatefulSet", "Job"}

has_label(k) if input.metadata.labels[k]

describe(tail) := concat("", [input.kind, "/", input.metadata.name, ": ", tail])
"""


def corpus() -> list[PolicyCase]:
    gen = Generator(SEED)
    return [gen.policy(i) for i in range(POLICIES)]


CORPUS = corpus()


# -- deciding ---------------------------------------------------------------------------------------
def pushgate_verdict(ps: policies.PolicySet, row: Sequence[tuple[str, Any]]) -> Verdict:
    out = ps.outcome(row, path="in.yaml", ref="", line_of=lambda _: 1)
    undecided = [v.message for v in out.violations if v.rule == "policy-engine"]
    if undecided:  # the embedded engine declined this input (a problem of its own, fail closed)
        return Verdict(refused=f"engine: {undecided[0]}")
    shape = [v.message for v in out.violations if v.message.startswith("policy result ")]
    if shape:
        return Verdict(refused=f"shape: {shape[0]}")
    fails = sorted((v.rule, v.message) for v in out.violations if v.is_error)
    warns = sorted((v.rule, v.message) for v in out.violations if not v.is_error)
    exc = sorted((e.rule.split("/")[0], policies.exception_name(e.rule.split("/")[1]))
                 for e in out.exceptions)
    return Verdict(tuple(fails), tuple(warns), tuple(exc))


def engine_verdicts(engine: policies.PolicyEngine, ps: policies.PolicySet,
                    case: PolicyCase) -> list[Verdict]:
    """Per input; a batch the engine refuses is split to find which inputs it refuses."""
    try:
        rows = engine.evaluate(case.inputs, case.push, TIMEOUT)
        return [pushgate_verdict(ps, row) for row in rows]
    except policies.EngineUnavailable:
        pass
    out = []
    for obj in case.inputs:
        try:
            [row] = engine.evaluate([obj], case.push, TIMEOUT)
            out.append(pushgate_verdict(ps, row))
        except policies.EngineUnavailable as e:
            out.append(Verdict(refused=f"engine: {e}"))
    return out


def conftest_verdicts(policy_dir: Path, data: dict[str, Any], objects: Sequence[dict[str, Any]],
                      namespaces: tuple[str, ...] | None, workdir: Path) -> list[Verdict]:
    """The pinned conftest over one file per object (one run for all of them)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    (workdir / "data" / "pushgate.json").write_text(json.dumps(data))
    files = []
    for i, obj in enumerate(objects):
        f = workdir / f"case-{i:03d}.yaml"
        f.write_text(yaml.safe_dump(obj, allow_unicode=True))
        files.append(str(f))
    which = ["--all-namespaces"] if namespaces is None else [f"--namespace={n}" for n in namespaces]
    res = subprocess.run([tools.path("conftest"), "test", "--policy", str(policy_dir), *which,
                          "--data", str(workdir / "data"), "--no-color", "-o", "json", *files],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode in (0, 1), res.stdout[-2000:] + res.stderr[-2000:]
    return parse_conftest(res.stdout, files)


def parse_conftest(stdout: str, files: Sequence[str]) -> list[Verdict]:
    found: dict[str, dict[str, list[tuple[str, str]]]] = {
        f: {"failures": [], "warnings": [], "exceptions": []} for f in files}
    for result in json.loads(stdout):
        ns = result.get("namespace", "")
        for kind in ("failures", "warnings"):
            for item in result.get(kind) or []:
                query = item["metadata"]["query"].removeprefix("data.")
                pkg, _, rule = query.rpartition(".")
                found[result["filename"]][kind].append((f"{pkg}/{rule}", item["msg"]))
        for item in result.get("exceptions") or []:
            # the message is the exception query: data.<ns>.exception[_][_] == "<name>"
            name = json.loads(item["msg"].rsplit("==", 1)[1].strip())
            found[result["filename"]]["exceptions"].append((ns, name))
    return [Verdict(tuple(sorted(found[f]["failures"])), tuple(sorted(found[f]["warnings"])),
                    tuple(sorted(found[f]["exceptions"]))) for f in files]


class PolicyOpa:
    """One `opa run --server` whose policies are replaced through the REST API."""

    def __init__(self, server: OpaServer) -> None:
        self.server = server
        self.loaded: list[str] = []

    def _request(self, method: str, path: str, body: bytes | None = None) -> None:
        req = urllib.request.Request(f"{self.server.url}{path}", data=body, method=method,
                                     headers={"Content-Type": "text/plain"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200
        except urllib.error.HTTPError as e:
            raise AssertionError(f"OPA {method} {path}: {e.read().decode()[:2000]}") from e

    def load(self, files: dict[str, str]) -> None:
        for pid in reversed(self.loaded):
            self._request("DELETE", f"/v1/policies/{pid}")
        self.loaded = []
        # a library first: OPA compiles each module against those already loaded, and a call
        # to a function it does not know yet is an error
        for rel, text in sorted(files.items(), key=lambda f: not f[0].startswith("lib/")):
            pid = rel.replace("/", "_")
            self._request("PUT", f"/v1/policies/{pid}", text.encode())
            self.loaded.append(pid)


@pytest.fixture(scope="module")
def policy_opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyOpa]:
    empty = tmp_path_factory.mktemp("opa-empty-policies")
    server = OpaServer(empty, tmp_path_factory.mktemp("opa-differential")).start()
    try:
        yield PolicyOpa(server)
    finally:
        server.stop()


@dataclass
class Decided:
    case: PolicyCase
    embedded: list[Verdict]
    opa: list[Verdict]
    conftest: list[Verdict]


@pytest.fixture(scope="module")
def decided(policy_opa: PolicyOpa, tmp_path_factory: pytest.TempPathFactory) -> list[Decided]:
    out = []
    for case in CORPUS:
        d = tmp_path_factory.mktemp(f"policy-{case.id}")
        for rel, text in case.files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
        ps = policies.load(str(d), namespaces=case.namespaces)
        engine = EmbeddedEngine(ps)
        try:
            embedded = engine_verdicts(engine, ps, case)
        finally:
            engine.close()
        policy_opa.load(case.files)
        opa = engine_verdicts(OpaServerEngine(policy_opa.server.url, ps), ps, case)
        conftest = conftest_verdicts(d, {"pushgate": {"push": case.push}}, case.inputs, case.namespaces,
                                     tmp_path_factory.mktemp(f"inputs-{case.id}"))
        out.append(Decided(case, embedded, opa, conftest))
    return out


def differences(decided: list[Decided], left: str, right: str) -> list[str]:
    out = []
    for d in decided:
        for i, (a, b) in enumerate(zip(getattr(d, left), getattr(d, right), strict=True)):
            if a != b:
                out.append(f"{d.case.id}/input {i} ({d.case.inputs[i]['kind']} "
                           f"{d.case.inputs[i]['metadata']['name']!r}): {left} {a} != {right} {b}")
    return out


# -- the tests --------------------------------------------------------------------------------------
def test_the_corpus_is_big_and_covers_every_form() -> None:
    pairs = sum(len(c.inputs) for c in CORPUS)
    assert pairs >= 1000
    features = set().union(*(c.features for c in CORPUS))
    assert {"indented", "exception", "aliased-import", "push-context", "suffixed", "plain",
            "nested-package", "split-package", "multi-def"} <= features, features
    assert {f"form:{f}" for f in ("set-str", "set-obj", "set-const", "array", "set-literal",
                                  "objects", "else", "single")} <= features, features
    assert {c.namespaces for c in CORPUS} == {None, ("main",)}
    assert any(o["metadata"]["name"] in HOSTILE for c in CORPUS for o in c.inputs)


def test_opa_engine_decides_like_conftest(decided: list[Decided]) -> None:
    # pushgate's reading of results (entry points, exceptions, messages) over OPA's answers is
    # conftest's, except where pushgate refuses a shape conftest ignores
    mismatched = [line for line in differences(decided, "opa", "conftest") if "refused='shape:" not in line]
    assert mismatched == []


def test_embedded_engine_decides_like_opa_or_refuses(decided: list[Decided]) -> None:
    mismatched = [line for line in differences(decided, "embedded", "opa")
                  if "embedded Verdict(failures=(), warnings=(), exceptions=(), refused='engine:" not in line]
    assert mismatched == []


def test_every_pair_matches_conftest_or_is_refused(decided: list[Decided]) -> None:
    verdicts: Counter[str] = Counter()
    for d in decided:
        for mine, theirs in zip(d.embedded, d.conftest, strict=True):
            if mine.refused:
                verdicts["refused: " + mine.refused.split(":")[0]] += 1
                continue
            assert mine == theirs, d.case.id
            verdicts["same"] += 1
    total = sum(verdicts.values())
    assert verdicts["same"] >= 0.9 * total, verdicts
    assert set(verdicts) <= {"same", "refused: engine", "refused: shape"}, verdicts
    assert verdicts["refused: shape"] > 0, "no rule of a shape conftest ignores ever yielded"
    # the corpus decides something: failures, warnings and exceptions all occur
    every = [v for d in decided for v in d.conftest]
    assert sum(1 for v in every if v.failures) > 100
    assert sum(1 for v in every if v.warnings) > 50
    assert sum(1 for v in every if v.exceptions) > 20
    assert sum(1 for v in every if not (v.failures or v.warnings or v.exceptions)) > 50


def test_opa_without_a_rule_of_the_policy_set_is_refused(policy_opa: PolicyOpa, tmp_path: Path) -> None:
    # the entry points come from compiling pushgate's copy of the policies: an OPA that serves
    # an older copy (here without deny_latest) would silently skip that rule, so it is refused
    full = "package main\n\ndeny_latest contains \"latest\" if true\n\nwarn contains \"w\" if true\n"
    (tmp_path / "main.rego").write_text(full)
    ps = policies.load(str(tmp_path))
    policy_opa.load({"main.rego": "package main\n\nwarn contains \"w\" if true\n"})
    engine = OpaServerEngine(policy_opa.server.url, ps)
    with pytest.raises(policies.EngineUnavailable, match="has not loaded the policy rules main/deny_latest"):
        engine.evaluate([{"kind": "Pod"}], PUSHES[0], TIMEOUT)
    policy_opa.load({"main.rego": full})
    [row] = engine.evaluate([{"kind": "Pod"}], PUSHES[0], TIMEOUT)
    assert dict(row) == {"main/deny_latest": ["latest"], "main/warn": ["w"]}
