"""Policy modules, their entry points, conftest's result contract, and the engine seam.

Called by `pushgate.gate.gate` (to evaluate objects and turn results into Violations), by the
engines (`embedded`, `opaserver`) to know what to evaluate, and by the CLI and the git server to
load and describe the policy directory. Policies come only from the server's policy source (the
`--policies` directory, or the active commit of `policies.git` written out as one), never from
the pushed tree, so a pusher cannot weaken them. Gatekeeper templates and constraints in the
same directory (`gatekeeper`) join the set: their modules are compiled with the others, their
`violation` rules evaluated per matching (object, constraint), never as conftest rules.

Entry points are found by compiling the policies (in a throwaway `regoworker` process: the
compiler is native code and can crash) and reading the compiled plan (`regoplan`), never by
searching the text. conftest's contract (policy/engine.go in conftest v0.71.1): in each
package considered, rules named `deny`, `violation`, `deny_<name>`, `violation_<name>` are
failures, `warn`, `warn_<name>` warnings; each yields strings or objects with a string `msg`
(here optionally `field`, a dotted path used to find the line); an `exception` rule names the
`<name>`s of rules an input is exempt from. conftest considers package `main` unless told
otherwise; pushgate considers every package unless `namespaces` says otherwise.

Policies also see the push as `data.pushgate.push`: `pusher`, `role`, `ref`, `changed_paths`
and `files` (object reference "Kind/namespace/name" -> file path). Which entry points can read
it is also taken from the plan, so the gate caches only results that cannot depend on the push.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pushgate.core import violations as pv
from pushgate.gate import gatekeeper, inputpaths, kindguard, prestart, regofiles, regoplan
from pushgate.gate.regoworker import UNDECIDABLE, WRONG_BUILTIN_PROBES

_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)\s*$", re.M)
# Rego v0 rule heads that OPA 1.x refuses but regopy silently accepts (with other meaning).
_V0_HEADS = (
    re.compile(r"^[ \t]*[A-Za-z_]\w*\s*\[[^\]]*\]\s*\{", re.M),  # deny[msg] {
    re.compile(r"^[ \t]*(?!if\b)[A-Za-z_]\w*\s*\{", re.M),  # allow {  (not a head split before `if {`)
)
# `with input as` in a policy module aborts regopy 1.5.2 when it compiles the policies, so every
# push would be refused as "engine crashed"; refuse it at start-up instead (tests may use it).
_WITH_INPUT = re.compile(r"\bwith\s+input\b[\w.\[\]\"]*\s+as\b")
_COMPILE_TIMEOUT = 120.0
_PRINTED_ERROR = re.compile(r"^([^\n]+)\n-- ([^\s:]+):(\d+):\d+$", re.M)
_plans: dict[str, dict[str, Any]] = {}  # compiled plans by module content, for this process


class PolicyError(Exception):
    """A policy directory that cannot be loaded; the message names the file and the problem."""


class EngineUnavailable(Exception):
    """The engine could not decide (down, crashed, timed out, bad output): the push is refused."""


class EngineTimeout(EngineUnavailable):
    """The engine did not decide within the time it was given (the gate's time limit)."""


@dataclass(frozen=True)
class Module:
    path: str  # relative to the policy directory
    package: str
    source: str


@dataclass(frozen=True)
class PolicySet:
    directory: str
    modules: tuple[Module, ...]
    # The packages whose entry points are evaluated: None for every package (pushgate's
    # default), ("main",) for conftest's default.
    namespaces: tuple[str, ...] | None = None
    rules: tuple[regoplan.Rule, ...] = ()  # the entry-point rules of those packages, sorted
    version: str = field(default="", compare=False)
    # Gatekeeper templates and constraints of the directory: each template's `violation` rule
    # is evaluated per matching (object, constraint) with Gatekeeper's input, not conftest's.
    gatekeeper: gatekeeper.GatekeeperSet | None = None
    gatekeeper_rules: tuple[regoplan.Rule, ...] = ()
    # What kinds of object each conftest rule can say anything about (kindguard.guards): the
    # embedded engine does not ask a rule about an object its guard excludes.
    kind_guards: Mapping[str, kindguard.Guard] = field(default_factory=dict, compare=False)
    # The parts of an object each conftest rule can read (inputpaths.reads): the embedded
    # engine hands rego-cpp only those.
    input_reads: Mapping[str, inputpaths.Reads] = field(default_factory=dict, compare=False)

    @property
    def engine_rules(self) -> tuple[regoplan.Rule, ...]:
        """Every rule an engine must be able to evaluate: conftest's and the templates'."""
        return self.rules + self.gatekeeper_rules

    @property
    def engine_entrypoints(self) -> list[str]:
        return [r.entrypoint for r in self.engine_rules]

    @property
    def engine_push_entrypoints(self) -> frozenset[str]:
        return frozenset(r.entrypoint for r in self.engine_rules if r.reads_data)

    @property
    def entrypoints(self) -> list[str]:
        """"pkg/path/rule" of every failure, warning and exception rule considered, sorted."""
        return [r.entrypoint for r in self.rules]

    @property
    def push_entrypoints(self) -> frozenset[str]:
        """The entry points that can read `data.pushgate.push` (never cached across pushes)."""
        return frozenset(r.entrypoint for r in self.rules if r.reads_data)

    @property
    def uses_push_context(self) -> bool:
        return any(r.reads_data for r in self.rules)

    def describe(self) -> list[str]:
        """What is evaluated, one line each: printed at start and by `pushgate validate -v`."""
        which = ("every package" if self.namespaces is None
                 else "package " + ", ".join(self.namespaces))
        lines = [f"policies {self.directory}: {len(self.modules)} modules, version "
                 f"{self.version[:12]}, evaluating {which}"]
        for r in self.rules:
            ctx = ", reads the push context" if r.reads_data else ""
            lines.append(f"  {r.entrypoint} ({r.kind}{ctx})")
        if self.gatekeeper is not None:
            lines.extend(self.gatekeeper.describe())
        return lines

    def outcome(self, row: Sequence[tuple[str, Any]], *, path: str, ref: str,
                line_of: Callable[[str], int]) -> Outcome:
        """One object's results (entry point, value; undefined rules absent) under conftest's
        contract: failures and warnings as Violations, exempted rules as exceptions."""
        return outcome(row, self.entrypoints, path=path, ref=ref, line_of=line_of)


@dataclass(frozen=True)
class PolicyException:
    """A rule an object is exempt from (conftest counts it as an exception, not a failure)."""

    path: str
    line: int
    obj: str
    rule: str  # the exempted rule, named like a Violation's ("main/deny_run_as_root")
    by: str  # the exception rule that exempted it ("main/exception")

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line > 0 else self.path
        obj = f" {self.obj}" if self.obj else ""
        return pv.sanitize(f"exception: {where}{obj} [{self.rule}] exempted by {self.by}")


@dataclass
class Outcome:
    violations: list[pv.Violation] = field(default_factory=list)
    exceptions: list[PolicyException] = field(default_factory=list)


class Findings(list[pv.Violation]):
    """What the gate found (the Violations, still a list) and the exceptions policies granted:
    `Gate.check` returns one, so callers that only know the list keep working."""

    def __init__(self, found: Iterable[pv.Violation] = (),
                 exceptions: Iterable[PolicyException] = ()) -> None:
        super().__init__(found)
        self.exceptions = list(exceptions)

    def summary(self, *, files: int | None = None, objects: int | None = None) -> str:
        """pv.summary() with the exceptions counted, the way conftest counts them."""
        return pv.summary(self, files=files, objects=objects, exceptions=len(self.exceptions))


def load(directory: str, namespaces: Sequence[str] | None = None) -> PolicySet:
    """Every `*.rego` under `directory` except `*_test.rego`, compiled, with the entry points of
    the packages `namespaces` names (None: every package). PolicyError names what is wrong."""
    chosen = tuple(namespaces) if namespaces is not None else None
    if not os.path.isdir(directory):
        raise PolicyError(f"policy directory {directory} does not exist")
    modules = []
    for rel, full in regofiles.paths(directory):
        try:
            with open(full, encoding="utf-8") as f:
                src = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise PolicyError(f"{rel}: cannot read: {e}") from e
        modules.append(_parse(rel, src))
    try:
        gk = gatekeeper.load(directory)
    except gatekeeper.GatekeeperError as e:
        raise PolicyError(f"{e}") from None
    if not modules and gk is None:
        raise PolicyError(f"policy directory {directory} holds no .rego policies and no "
                          f"Gatekeeper templates")
    gk_modules = [Module(name, t.package if name.endswith("/template.rego") else "", src)
                  for t in (gk.templates if gk else ()) for name, src in t.modules]
    version = _version(modules + gk_modules, chosen)
    plan = _compile(modules + gk_modules)
    _refuse_never_holding(plan, modules + gk_modules)
    packages = {m.package for m in modules}
    considered = packages if chosen is None else packages & set(chosen)
    roots = {pkg.split(".")[0] for pkg in packages} | {"pushgate"}
    missing = sorted(regoplan.base_documents(plan) - roots)
    if missing:
        # conftest can load data files (--data) and adds data.conftest; pushgate gives policies
        # only the push context, so such a rule would read undefined and pass: refuse it
        raise PolicyError(
            f"policies read {', '.join(f'data.{m}' for m in missing)}, which pushgate does not provide "
            f"(policies get only data.pushgate.push and their own rules)")
    found = tuple(r for r in regoplan.rules(plan, considered) if r.kind)
    gk_found: tuple[regoplan.Rule, ...] = ()
    if gk is not None:
        wanted = {t.entrypoint for t in gk.templates}
        gk_found = tuple(r for r in regoplan.rules(plan, {t.package for t in gk.templates})
                         if r.entrypoint in wanted)
        missing_eps = sorted(wanted - {r.entrypoint for r in gk_found})
        if missing_eps:
            raise PolicyError(f"gatekeeper templates without a violation rule after compiling: "
                              f"{', '.join(missing_eps)}")
    if gk is not None and not modules:
        return PolicySet(directory, tuple(gk_modules), chosen, (), version, gk, gk_found)
    if not any(r.kind in ("failure", "warning") for r in found):
        where = "any package" if chosen is None else "package " + ", ".join(chosen)
        raise PolicyError(
            f"policy directory {directory} has no entry point in {where}: no rule named deny, "
            f"violation, warn, deny_<name>, violation_<name> or warn_<name> (packages present: "
            f"{', '.join(sorted(packages))})")
    eps = [r.entrypoint for r in found]
    return PolicySet(directory, tuple(modules + gk_modules), chosen, found, version, gk, gk_found,
                     kindguard.guards(plan, eps), inputpaths.reads(plan, eps))


def _refuse_never_holding(plan: dict[str, Any], modules: Sequence[Module]) -> None:
    """Refuse a rule the embedded engine would decide otherwise than OPA: one that calls a
    builtin rego-cpp 1.5.2 does not implement (never holds) or answers wrongly, or that has a
    variable only a call's argument binds (`is_object(input.items[i])`: rego-cpp never iterates
    it, so the rule never holds). The policies must decide the same in both engines; binding the
    variable first does."""
    calls = regoplan.noted_calls(plan, regoplan.UNIMPLEMENTED)
    if calls:
        (builtin, site), count = calls[0], len(calls)
        raise PolicyError(
            f"{_where(site, modules)}: rule {site.rule} calls {builtin}{_more(count)}, which the "
            f"embedded engine (regopy 1.5.2) declares but does not implement: every call would be "
            f"undefined and the rule would never hold. pushgate's policies must decide the same "
            f"in both engines (a policy push is checked with the embedded one): use another "
            f"builtin or write the test in Rego")
    wrong = regoplan.noted_calls(plan, regoplan.WRONG)
    if wrong:
        (builtin, site), count = wrong[0], len(wrong)
        call, expected = WRONG_BUILTIN_PROBES[builtin]
        raise PolicyError(
            f"{_where(site, modules)}: rule {site.rule} calls {builtin}{_more(count)}, which the "
            f"embedded engine (regopy 1.5.2) gets wrong (`{call}` is not {json.dumps(expected)} "
            f"there, as in OPA): its rule could decide differently in the two engines. Use "
            f"another builtin or write the test in Rego")
    unbound = regoplan.unbound_reads(plan)
    if unbound:
        site, count = unbound[0], len(unbound)
        raise PolicyError(
            f"{_where(site, modules)}: rule {site.rule} uses a variable that only a function's "
            f"argument binds, such as i in `is_object(input.items[i])` or `f(input.items[i])`"
            f"{_more(count)}: the embedded engine (regopy 1.5.2) never binds it, so the rule would "
            f"never hold, where OPA iterates it. Bind it first, then call: "
            f"`item := input.items[i]; is_object(item)`")


def _more(count: int) -> str:
    """What a refusal that names the first of `count` places adds about the others."""
    return f" (and {count - 1} more)" if count > 1 else ""


def _where(site: regoplan.Site, modules: Sequence[Module]) -> str:
    """"path:line" of a plan site (the plan keeps only a file's base name)."""
    paths = [m.path for m in modules if os.path.basename(m.path) == site.file]
    where = paths[0] if len(paths) == 1 else site.file or "a policy"
    return f"{where}:{site.line}" if site.line else where


def _parse(rel: str, src: str) -> Module:
    code = "\n".join(line.split("#", 1)[0] for line in src.splitlines())
    pkg = _PACKAGE.search(code)
    if pkg is None:
        raise PolicyError(f"{rel}: no package declaration")
    if pkg.group(1) == "pushgate" or pkg.group(1).startswith(("pushgate.push", "pushgate.gatekeeper")):
        raise PolicyError(f"{rel}: package {pkg.group(1)} would hide data.pushgate.push (the push "
                          f"context) or the Gatekeeper templates: use another package name")
    for pattern in _V0_HEADS:
        m = pattern.search(code)
        if m:
            line = code.count("\n", 0, m.start()) + 1
            raise PolicyError(
                f"{rel}:{line}: not valid Rego v1: rule head {m.group(0).strip()!r} needs "
                f"'contains'/'if' (e.g. 'deny contains msg if {{')")
    m = _WITH_INPUT.search(code)
    if m:
        line = code.count("\n", 0, m.start()) + 1
        raise PolicyError(f"{rel}:{line}: 'with input as' is not allowed in a policy (it crashes the "
                          f"embedded engine): read input directly; only *_test.rego may use 'with'")
    return Module(rel, pkg.group(1), src)


def _version(modules: Sequence[Module], namespaces: tuple[str, ...] | None) -> str:
    h = hashlib.sha256()
    for m in modules:
        for part in (m.path, m.source):
            h.update(part.encode())
            h.update(b"\0")
    h.update(json.dumps(namespaces).encode())
    return h.hexdigest()


def _printed_errors(text: str) -> str:
    """rego-cpp's printed errors ("Errors:\nmessage\n-- file:line:col\n...") in one line."""
    located = [f"{f}:{line}: {msg.strip()}" for msg, f, line in _PRINTED_ERROR.findall(text)]
    if located:
        return "; ".join(located)
    _, _, tail = text.partition("Errors:")
    lines = [s.strip() for s in tail.splitlines()]
    return "; ".join(s for s in lines if s and not s.startswith(("--", "~", "Pass ")))[:500]


def context_key(push: dict[str, Any]) -> str:
    """A digest of the whole push context: what a push-dependent result is cached under."""
    return hashlib.sha256(json.dumps(push, sort_keys=True, default=str).encode()).hexdigest()


def _compile(modules: Sequence[Module]) -> dict[str, Any]:
    """The plan of every module compiled together, from a throwaway worker process."""
    key = _version(modules, None)
    if key in _plans:
        return _plans[key]
    sources = [[m.path, m.source] for m in modules]
    proc, asked = prestart.take_compiler(sources)
    req = None if asked else json.dumps({"op": "plan", "modules": sources}) + "\n"
    try:
        stdout, stderr = proc.communicate(req, timeout=_COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.communicate()
        raise PolicyError(f"compiling the policies took more than {_COMPILE_TIMEOUT:.0f}s") from e
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        raise PolicyError(f"the policies crash the Rego compiler ({how}): a construct regopy "
                          f"cannot compile (e.g. `some k; data[k]`)")
    try:
        reply = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise PolicyError("the Rego compiler answered garbage") from e
    if not reply.get("ok"):
        # rego-cpp prints what it did not like (the worker points its stdout at stderr)
        raise PolicyError(f"the policies do not compile: {_printed_errors(stderr) or reply.get('error')}")
    plan: dict[str, Any] = reply["plan"]
    if len(_plans) > 32:
        _plans.clear()
    _plans[key] = plan
    return plan


class PolicyEngine(Protocol):
    """Evaluates entry points for each object; returns, per object, (entrypoint, result) for
    every requested entry point that is defined for it (an undefined rule is absent)."""

    def evaluate(self, objects: Sequence[dict[str, Any]], push: dict[str, Any], timeout: float,
                 entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]: ...

    def close(self) -> None: ...


def rule_name(entrypoint: str) -> str:
    """"pushgate/k8s/images/deny" -> "pushgate.k8s.images/deny": how reports name a rule."""
    pkg, _, rule = entrypoint.rpartition("/")
    return f"{pkg.replace('/', '.')}/{rule}"


def to_violations(entrypoint: str, results: Any, *, path: str, ref: str,
                  line_of: Callable[[str], int]) -> list[pv.Violation]:
    """conftest's result shapes (a set or array of strings or of objects with a string `msg`)
    as Violations; any other shape is an error naming the rule (fail closed)."""
    rule = entrypoint.rsplit("/", 1)[-1]
    name = rule_name(entrypoint)
    make = pv.warning if regoplan.WARNING.match(rule) else pv.error
    if results is None:
        return []
    if not isinstance(results, list):
        # conftest reads only a set or an array; anything else is a policy bug, not a pass
        what = "an object" if isinstance(results, dict) else f"a single value ({str(results)[:60]})"
        return [pv.error(path, 0, ref, name, f"policy result is {what}, not a set or array of "
                                             f"messages: make the rule a partial set")]
    out = []
    for item in results:
        if isinstance(item, str):
            msg, where = item, ""
        elif isinstance(item, dict) and isinstance(item.get("msg"), str):
            msg, where = item["msg"], str(item.get("field") or "")
        else:
            out.append(pv.error(path, 0, ref, name, f"policy result without a 'msg': {str(item)[:120]}"))
            continue
        if not msg:
            # conftest counts an empty message as a success: a policy bug, refused here
            out.append(pv.error(path, 0, ref, name, "policy result with an empty message"))
            continue
        out.append(make(path, line_of(where), ref, name, msg))
    return out


def exemptions(value: Any) -> Counter[str]:
    """How often an `exception` result names each rule: conftest counts the solutions of
    `data.<pkg>.exception[_][_] == "<name>"`, so each element is a collection of names."""
    counts: Counter[str] = Counter()
    for item in _members(value):
        counts.update(name for name in _members(item) if isinstance(name, str))
    return counts


def _members(value: Any) -> list[Any]:
    """What `value[_]` iterates: an array's or a set's elements, an object's values."""
    if isinstance(value, list):
        return value
    return list(value.values()) if isinstance(value, dict) else []


def exception_name(rule: str) -> str:
    """The name an exception gives to exempt `rule` (conftest's removeRulePrefix): "" for
    deny, violation and warn; the suffix for deny_<name>, violation_<name> and warn_<name>."""
    if rule in ("deny", "violation", "warn"):
        return ""
    for prefix in ("violation_", "deny_", "warn_"):
        rule = rule.removeprefix(prefix)
    return rule


def clean(row: Sequence[tuple[str, Any]]) -> bool:
    """Whether `outcome` of this row is empty without working it out: every rule's value is an
    empty set or array (an undefined rule is absent), so nothing is violated or exempted."""
    return all(type(value) is list and not value for _ep, value in row)


def outcome(row: Sequence[tuple[str, Any]], entrypoints: Sequence[str], *, path: str, ref: str,
            line_of: Callable[[str], int]) -> Outcome:
    """`PolicySet.outcome` for the given entry points (those of `row` when it is empty)."""
    values = dict(row)
    out = Outcome()
    if UNDECIDABLE in values:
        out.violations.append(pv.error(path, line_of(""), ref, "policy-engine",
                                       f"not decided: {values[UNDECIDABLE]}"))
        return out
    eps = list(entrypoints) or sorted(values)
    granted = {ep.rsplit("/", 1)[0]: exemptions(values.get(ep)) for ep in eps
               if ep.rsplit("/", 1)[-1] == regoplan.EXCEPTION}
    for ep in eps:
        pkg, _, rule = ep.rpartition("/")
        if rule == regoplan.EXCEPTION:
            continue
        # conftest reports one exception per solution of its exception query, and drops every
        # result of the exempted rule
        n = granted.get(pkg, Counter())[exception_name(rule)]
        if n:
            by = rule_name(f"{pkg}/{regoplan.EXCEPTION}")
            out.exceptions.extend(PolicyException(path, line_of(""), ref, rule_name(ep), by)
                                  for _ in range(n))
            continue
        out.violations.extend(to_violations(ep, values.get(ep), path=path, ref=ref, line_of=line_of))
    return out
