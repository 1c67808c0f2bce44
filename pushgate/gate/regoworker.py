"""The embedded policy engine's worker process: regopy (rego-cpp) behind a pipe.

Started and supervised by `pushgate.gate.embedded` (evaluation) and by `pushgate.gate.policies`
(a one-shot `plan` at load); never imported by the server itself. rego-cpp is native code that
can crash the process (a `with input as` + `sprintf` segfaults it), so it runs here, where a
crash costs one worker, not the server. Protocol: one JSON request per line on stdin, one JSON
reply per line on stdout.

    {"op": "plan", "modules": [[name, source], ...]}  -> {"ok": true, "plan": {...}}
    {"op": "load", "modules": [...], "static": [ep, ...], "push": [ep, ...]}  -> {"ok": true}
    {"op": "eval", "push": {...}, "objects": [...], "entrypoints": [...] | null}
        -> {"ok": true, "results": [[[ep, value], ...], ...]}  (an undefined rule is absent)

`static` entry points cannot read `data` and share one bundle built at load; `push` ones read
the push context, which is compiled into their own bundle, rebuilt only when the push changes.

Speed: the static bundle also holds a generated rule (`data.pushgate.push_eval.rows`, a package
no policy may declare) whose value is the list of every entry point's value, each wrapped in a
comprehension (`[v | v := data.<pkg>.<rule>]`: `[]` when the rule is undefined). One query of it
decides the whole group for one object: the rules' shared helpers run once, and the fixed cost
of a query is paid once, not per rule. rego-cpp evaluates as many queries as we ask for the same
input; only the input itself must change per object (conftest's contract: each object is THE
input, and `with input as` crashes regopy 1.5.2). Static rules cannot read `data` at all (the
compiled plan says so), so they cannot see the generated rule; push-dependent ones can (one
that reads `data.pushgate` whole would read it, and so itself), so they are queried one by one,
as is everything when the generated rule does not compile. Inputs in and results out go
through `regoio` (direct calls into rego-cpp's C API).

Kind guards (`kindguard`, from the policy set's plan, sent with `load`): a rule that can only
say something about some kinds of object (`input.kind == "Secret"`, a pod spec only workload
kinds have) is not asked about an object of another kind; its guard's empty value is answered
instead. The static bundle holds one generated rule per group of entry points the guards call
for (`rows_<i>`), so an object still costs one query. Input reads (`inputpaths`, also sent with
`load`): each object is cut to the parts the rules it is asked can read before rego-cpp builds
its input (a ConfigMap asked only the namespaces rule: its kind, name and namespace).

Strings: rego-cpp keeps a string as the body of its JSON literal (`a\\"b` for a"b), but
`set_input` hands it raw strings, and its builtins disagree about which form they get. An object
whose strings hold no `"`, `\\` or control character is the same in both forms, so one run
decides it. Any other object is decided twice, raw and JSON-escaped (`regoio.set_input_escaped`),
and the two answers must agree, or the worker refuses to decide (the push is refused, fail
closed).
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from pushgate.gate import inputpaths, kindguard, regoio
from pushgate.gate.regoio import Undecidable

__all__ = ["UNDECIDABLE", "CompileError", "Undecidable", "Worker"]

# Double-quoted Rego string literals, raw strings and comments (skipped), in source order.
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')


# The row of an object the engine cannot decide faithfully: [[UNDECIDABLE, why]].
UNDECIDABLE = "!undecidable"


class CompileError(ValueError):
    """The policies do not compile; the message names the file and line."""


WRAPPER_PACKAGE = "pushgate.push_eval"  # policies.load refuses packages named pushgate.push*
WRAPPER_RULE = "rows"
WRAPPER_ENTRYPOINT = f"{WRAPPER_PACKAGE.replace('.', '/')}/{WRAPPER_RULE}"


class Split(NamedTuple):
    """How one object is asked a group of entry points."""

    asked: list[str]  # the ones that can say anything about it
    skipped: list[str]  # the others: their guard's empty value
    keep: inputpaths.Spec | None  # the parts of it the asked ones can read (None: all)


_ESCAPED = object()  # the cache key of an object whose kind JSON escapes


class Compiled:
    """One bundle: the policies (and the push context, for the push-dependent group), with the
    generated rules that evaluate a group of entry points at once when they compile: one for
    the whole group, one for each narrower group the kind guards call for."""

    def __init__(self, interp: Any, bundle: Any, entrypoints: list[str], combined: bool,
                 guards: dict[str, kindguard.Guard] | None = None,
                 wrappers: dict[tuple[str, ...], str] | None = None,
                 reads: dict[str, inputpaths.Reads] | None = None) -> None:
        self.interp, self.bundle = interp, bundle
        self.entrypoints = entrypoints
        self.combined = combined  # the generated rules compiled: one query per object
        self.guards = {ep: g for ep, g in (guards or {}).items() if ep in entrypoints}
        self.wrappers = wrappers or {}  # a group of entry points -> its generated rule
        self.reads = reads or {}
        self._by_kind: dict[object, Split] = {}
        # the group each kind is asked: the same groups the generated rules were compiled for
        groups, by_kind, other = kindguard.subsets(entrypoints, self.guards)
        self._groups = {k: list(groups[i]) for k, i in by_kind.items()}
        self._other = list(groups[other])

    def narrow(self, entrypoints: list[str], obj: Any) -> Split:
        """How to ask `obj`: the entry points of `entrypoints` that can say anything about it,
        and the parts of it they can read. A kind that JSON escapes is asked everything:
        rego-cpp may compare its raw form with the guards' literals (see the module docstring)."""
        kind = obj.get("kind") if isinstance(obj, dict) else None
        key: object = kind if isinstance(kind, str) else None  # no guard names a non-string
        if isinstance(kind, str) and regoio.NEEDS_ESCAPE.search(kind):
            key = _ESCAPED
        whole = entrypoints == self.entrypoints
        split = self._by_kind.get(key) if whole else None
        if split is None:
            if key is _ESCAPED:
                asked = entrypoints
            elif whole:
                asked = self._groups.get(key, self._other) if isinstance(key, str) else self._other
            else:
                asked = [ep for ep in entrypoints if self._holds(ep, key)]
            skipped = [ep for ep in entrypoints if ep not in asked]
            found = [self.reads.get(ep) for ep in asked]
            keep = inputpaths.spec([r for r in found if r is not None]) if all(found) else None
            split = Split(asked, skipped, keep)
            if whole and len(self._by_kind) < 4096:  # kinds are few; a push could name many
                self._by_kind[key] = split
        return split

    def _holds(self, ep: str, kind: object) -> bool:
        guard = self.guards.get(ep)
        return guard is None or (isinstance(kind, str) and kind in guard.kinds)

    def empty(self, ep: str) -> Any:
        """The value of a guarded entry point for an object its guard excludes."""
        empty = self.guards[ep].empty
        return [] if empty == "set" else {} if empty == "object" else regoio.UNDEFINED


def wrapper_module(entrypoints: Sequence[str], groups: Sequence[Sequence[str]] = ()) -> str:
    """The generated rules: `rows` for `entrypoints`, `rows_<i>` for the i-th of `groups`, each
    a list holding, per entry point, `[value]` or `[]` (undefined)."""
    rules = []
    for name, eps in [(WRAPPER_RULE, entrypoints),
                      *((f"{WRAPPER_RULE}_{i}", g) for i, g in enumerate(groups))]:
        items = []
        for ep in eps:
            ref = "data" + "".join(f"[{json.dumps(part)}]" for part in ep.split("/"))
            items.append(f"\t[v | v := {ref}],")
        rules.append(f"{name} := [\n" + "\n".join(items) + "\n]\n")
    return f"package {WRAPPER_PACKAGE}\n\n" + "\n".join(rules)


# Builtins rego-cpp 1.5.2 implements but answers differently from OPA for plain input: a call
# and OPA's answer (tests/interop/test_engine_differential.py asks OPA the same). A policy that
# calls one is refused while regopy still gets the probe wrong.
WRONG_BUILTIN_PROBES: dict[str, tuple[str, Any]] = {
    "time.parse_rfc3339_ns": ('time.parse_rfc3339_ns("2020-01-01T00:00:00Z")', 1577836800000000000),
    "time.format": ("time.format(0)", "1970-01-01T00:00:00Z"),
    "urlquery.encode": ('urlquery.encode("a b&c")', "a+b%26c"),
    "semver.compare": ('semver.compare("1.10.0", "1.9.0")', 1),
    "object.union": ('object.union({"a": {"b": 1}}, {"a": {"c": 2}})', {"a": {"b": 1, "c": 2}}),
    "object.union_n": ('object.union_n([{"a": {"b": 1}}, {"a": {"c": 2}}])', {"a": {"b": 1, "c": 2}}),
    "format_int": ("format_int(-15, 2)", "-1111"),
}


def _answers_as_opa(builtin: str) -> bool:
    from regopy import Interpreter

    call, expected = WRONG_BUILTIN_PROBES[builtin]
    interp = Interpreter()
    interp.add_module("probe.rego", f"package probe\n\nanswer := {call}\n")
    bundle = interp.build(None, ["probe/answer"])
    if not bundle.ok():
        return False
    interp.set_input({})
    try:
        got = regoio.query(interp, bundle, "probe/answer", regoio.strict)
    except (ValueError, regoio.Undecidable):
        return False
    return got is not regoio.UNDEFINED and json.dumps(got) == json.dumps(expected)


class Worker:
    def __init__(self) -> None:
        self.modules: list[tuple[str, str]] = []
        self.static: list[str] = []
        self.push_eps: list[str] = []
        self.single: list[str] = []  # static entry points kept out of the combined rule
        self._static: Compiled | None = None
        self._dynamic: Compiled | None = None
        self._push_key: str | None = None
        self.guards: dict[str, kindguard.Guard] = {}
        self.reads: dict[str, inputpaths.Reads] = {}

    @staticmethod
    def plan(modules: Sequence[tuple[str, str]]) -> Any:
        """The compiled plan (OPA's IR) of every rule of every package."""
        import tempfile  # here, with regoplan: a worker that only evaluates starts without them

        from regopy import BundleFormat, Interpreter

        from pushgate.gate import regoplan

        interp = Interpreter()
        sources = dict(modules)
        for name, src in modules:
            try:
                interp.add_module(name, src)
            except Exception as e:
                raise CompileError(compile_error(str(e), sources)) from None
        bundle = interp.build("x := data", [])
        if not bundle.ok():
            raise CompileError("rego-cpp printed why on stderr")
        with tempfile.TemporaryDirectory() as d:
            interp.save_bundle(d, bundle, BundleFormat.JSON)
            with open(os.path.join(d, "plan.json"), encoding="utf-8") as f:
                plan: dict[str, Any] = json.load(f)
        # rego-cpp compiles a call to a builtin it declares but does not implement
        # (net.cidr_contains, http.send), and the call is then undefined at every evaluation.
        declared = {str(b["name"]) for b in (plan.get("static") or {}).get("builtin_funcs") or []
                    if isinstance(b, dict) and "name" in b}
        plan[regoplan.PLAN_NOTES] = {
            regoplan.UNIMPLEMENTED: sorted(b for b in declared if not interp.is_builtin(b)),
            regoplan.WRONG: sorted(b for b in declared & set(WRONG_BUILTIN_PROBES)
                                   if not _answers_as_opa(b))}
        return plan

    def load(self, modules: Sequence[tuple[str, str]], static: list[str], push: list[str],
             single: Sequence[str] = (), guards: Mapping[str, Any] | None = None,
             reads: Mapping[str, Any] | None = None) -> None:
        """`single`: static entry points always asked one at a time (a Gatekeeper template's
        rule, whose input is not an object): compiled with the others, not in their combined
        rule, so asking for the others still takes one query. `guards`: {entry point: [empty,
        [kind, ...]]} from `kindguard.guards` (the policy set's plan): the kinds of object an
        entry point can say anything about, and its value for any other. `reads`: {entry point:
        [needed paths, observed paths]} from `inputpaths.reads`; an entry point without them
        gets whole objects."""
        self.modules = [(name, canonical_literals(src)) for name, src in modules]
        self.single = [ep for ep in single if ep in static]
        self.guards = {}
        for ep, (empty, kinds) in (guards or {}).items():
            if empty not in ("set", "object", "undefined") or ep in self.single:
                raise ValueError(f"a guard for {ep} that is not one")
            self.guards[str(ep)] = kindguard.Guard(frozenset(str(k) for k in kinds), empty)
        self.reads = {}
        for ep, (needed, observed) in (reads or {}).items():
            if ep in self.single:
                raise ValueError(f"reads for {ep}, whose input is not an object")
            self.reads[str(ep)] = inputpaths.Reads(frozenset(tuple(map(str, p)) for p in needed),
                                                   frozenset(tuple(map(str, p)) for p in observed))
        self.static, self.push_eps = static, push
        self._static = self._build(static, None) if static else None
        self._dynamic, self._push_key = None, None

    def _build(self, entrypoints: list[str], push: dict[str, Any] | None) -> Compiled:
        if push is not None:
            # These rules read `data` (the plan says so), and one that reads it whole (or all of
            # data.pushgate) would also read the generated rule, and so itself: each is
            # queried on its own.
            return self._compile(entrypoints, push, combined=False)
        try:
            return self._compile(entrypoints, push, combined=True)
        except CompileError:
            return self._compile(entrypoints, push, combined=False)

    def _compile(self, entrypoints: list[str], push: dict[str, Any] | None, combined: bool) -> Compiled:
        from regopy import Interpreter

        interp = Interpreter()
        for name, src in self.modules:
            interp.add_module(name, src)
        together = [ep for ep in entrypoints if ep not in self.single]
        combined = combined and bool(together)
        groups: list[tuple[str, ...]] = []
        if combined:
            # the narrower groups the guards call for, each with a generated rule of its own
            groups = [g for g in kindguard.subsets(together, self.guards)[0]
                      if g and list(g) != together]
            try:
                interp.add_module("pushgate-generated.rego", wrapper_module(together, groups))
            except Exception as e:
                raise CompileError(str(e)[:500]) from None
        if push is not None:
            interp.add_data({"pushgate": {"push": push}})
        wrappers = {tuple(together): WRAPPER_ENTRYPOINT} if combined else {}
        wrappers.update((g, f"{WRAPPER_ENTRYPOINT}_{i}") for i, g in enumerate(groups))
        bundle = interp.build(None, [*wrappers.values(), *entrypoints])
        if not bundle.ok():
            raise CompileError("the policies do not compile with this push context")
        return Compiled(interp, bundle, together if combined else list(entrypoints), combined,
                        self.guards, wrappers, self.reads)

    def evaluate(self, push: dict[str, Any], objects: list[Any],
                 entrypoints: list[str] | None) -> list[list[list[Any]]]:
        if regoio.holds_nul(push):
            raise regoio.Undecidable("the push context holds a NUL character (U+0000), which the "
                              "embedded policy engine cannot evaluate faithfully")
        wanted = list(entrypoints) if entrypoints is not None else self.static + self.push_eps
        static = [ep for ep in wanted if ep in self.static]
        dynamic = [ep for ep in wanted if ep in self.push_eps]
        unknown = set(wanted) - set(static) - set(dynamic)
        if unknown:
            raise ValueError(f"unknown entry points {sorted(unknown)}")
        if dynamic:
            key = json.dumps(push, sort_keys=True)
            if key != self._push_key or self._dynamic is None:
                self._dynamic, self._push_key = self._build(self.push_eps, push), key
        out = []
        for obj in objects:
            try:
                out.append(self._one(obj, wanted, static, dynamic))
            except regoio.Undecidable as e:
                # This object only: refused as a problem of its own (fail closed), while every
                # other object of the push is still judged and reported.
                out.append([[UNDECIDABLE, str(e)[:500]]])
        return out

    def _one(self, obj: Any, wanted: list[str], static: list[str],
             dynamic: list[str]) -> list[list[Any]]:
        values: dict[str, Any] = {}
        if static and self._static is not None:
            values.update(_decide(self._static, static, obj))
        if dynamic and self._dynamic is not None:
            values.update(_decide(self._dynamic, dynamic, obj))
        return [[ep, values[ep]] for ep in wanted if values[ep] is not regoio.UNDEFINED]


def _decide(compiled: Compiled, entrypoints: list[str], obj: Any) -> dict[str, Any]:
    asked, skipped, keep = compiled.narrow(entrypoints, obj)
    obj = inputpaths.prune(obj, keep)  # nothing the asked rules can read is left out
    if not skipped:
        return _decide_all(compiled, entrypoints, obj)
    values = {ep: compiled.empty(ep) for ep in skipped}
    if asked:
        values.update(_decide_all(compiled, asked, obj))
    return values


def _decide_all(compiled: Compiled, entrypoints: list[str], obj: Any) -> dict[str, Any]:
    interp = compiled.interp
    # Whether a string (or key) holds `"`, `\\` or a control character, NUL included: what
    # rego-cpp can hold in two forms. The push context is data, which rego-cpp always holds
    # JSON-escaped: only the object's strings can.
    twice = regoio.set_input(interp, obj)
    if twice and regoio.holds_nul(obj):
        # regopy hands strings to C as NUL-terminated: it would decide on a truncated string
        # (`{"hostNetwork\\0": false, "hostNetwork": true}` passes). Fail closed, unqueried.
        raise regoio.Undecidable("the object holds a NUL character (U+0000), which the embedded "
                                 "policy engine cannot evaluate faithfully")
    raw = _run(compiled, entrypoints, regoio.lenient if twice else regoio.strict)
    if not twice:
        return raw
    regoio.set_input_escaped(interp, obj)
    escaped = _run(compiled, entrypoints, regoio.strict)
    for ep in entrypoints:
        if regoio.canonical(raw[ep]) != regoio.canonical(escaped[ep]):
            raise regoio.Undecidable(
                f"{ep}: the embedded engine (regopy) decides differently on strings that hold "
                f"quotes, backslashes or control characters; use the OPA engine for such objects")
    return raw


def _run(compiled: Compiled, entrypoints: list[str], decode: Callable[[str], str]) -> dict[str, Any]:
    """The value of each entry point for the current input (regoio.UNDEFINED when undefined)."""
    interp, bundle = compiled.interp, compiled.bundle
    wrapper = compiled.wrappers.get(tuple(entrypoints))
    if wrapper is None:
        # A subset of the group: only what was asked for is evaluated (an unrequested rule
        # that fails must not fail the request).
        return {ep: regoio.query(interp, bundle, ep, decode) for ep in entrypoints}
    # the generated rule's value: an array of one array per entry point, both by construction
    rows = regoio.query(interp, bundle, wrapper, decode, arrays=2)
    if not isinstance(rows, list) or len(rows) != len(entrypoints):
        raise regoio.Undecidable(f"the combined rule answered {str(rows)[:80]}")
    out = {}
    for ep, value in zip(entrypoints, rows, strict=True):
        if not isinstance(value, list) or len(value) > 1:
            n = len(value) if isinstance(value, list) else "?"
            raise regoio.Undecidable(f"{ep}: {n} results for one rule")
        out[ep] = value[0] if value else regoio.UNDEFINED
    return out


def canonical_literals(src: str) -> str:
    """`src` with every double-quoted literal that uses a `\\u` or `\\/` escape rewritten the way
    `json.dumps(..., ensure_ascii=False)` writes it: rego-cpp compares literals by their text,
    so "\\u00e9" would not equal an input's "é". Lines and everything else are unchanged."""
    def fix(m: re.Match[str]) -> str:
        tok = m.group(0)
        if not tok.startswith('"') or ("\\u" not in tok and "\\/" not in tok):
            return tok
        try:
            return json.dumps(json.loads(tok), ensure_ascii=False)
        except ValueError:
            return tok  # not a JSON string: the compiler says what is wrong with it
    return _TOKENS.sub(fix, src)


_ERROR = re.compile(r"\(error \d+:([^|\n]*)\|(\d+)\|\d+\s*\(errormsg \d+:([^\n]*)\)")


def compile_error(text: str, sources: dict[str, str]) -> str:
    """rego-cpp's error tree as "file:line: message" lines (the tree itself when unparsable)."""
    lines = []
    for name, offset, msg in _ERROR.findall(text):
        src = sources.get(name, "").encode()
        line = src[: int(offset)].count(b"\n") + 1
        lines.append(f"{name}:{line}: {msg}" if name else msg)
    return "; ".join(lines) if lines else text[:1500]


def main() -> None:
    # rego-cpp prints some evaluation errors (a yaml.unmarshal or json.unmarshal parse error) on
    # fd 1, which is the reply pipe: answer on a private copy of it and point fd 1 at stderr.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    worker = Worker()
    for line in sys.stdin:
        # No cyclic garbage collection while a request is read and decided: the objects it
        # brings hold no cycles, and the collector's passes over them cost the worker 3-5 % of
        # its CPU over bench.corpus (measured); what a request leaves is collected after it.
        gc.disable()
        try:
            req = json.loads(line)
            if req["op"] == "plan":
                reply: dict[str, Any] = {"ok": True, "plan": Worker.plan(
                    [(str(n), str(s)) for n, s in req["modules"]])}
            elif req["op"] == "load":
                worker.load([(str(n), str(s)) for n, s in req["modules"]], req["static"], req["push"],
                            req.get("single") or [], req.get("guards"), req.get("reads"))
                reply = {"ok": True}
            elif req["op"] == "eval":
                reply = {"ok": True, "results": worker.evaluate(req.get("push") or {}, req["objects"],
                                                                req.get("entrypoints"))}
            else:
                reply = {"ok": False, "error": f"unknown op {req.get('op')!r}"}
        except (regoio.Undecidable, CompileError) as e:
            reply = {"ok": False, "error": str(e)[:2000]}
        except Exception as e:
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        finally:
            gc.enable()
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
