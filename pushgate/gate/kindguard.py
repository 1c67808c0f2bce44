"""Which kinds of object a rule can say anything about: read from the compiled plan.

Called by `pushgate.gate.policies` with the plan of a policy set (OPA's IR, as rego-cpp writes it
and as its virtual machine runs it) and the rules the embedded engine evaluates; the engine's
worker (`pushgate.gate.regoworker`) then skips a rule for an object whose `kind` the rule's guard
excludes, and answers the rule's empty value itself. Pure: no I/O.

Why: most rules start by testing the object's kind (`k8s.kind == "Secret"`, `kind in
workload_kinds`, a pod spec that only workload kinds have). rego-cpp still runs every rule's body
up to that test, for every object, and a query costs the more, the more rules it holds: a
ConfigMap asked only the one rule that can fire costs about half as much.

What the guard means: rule R with guard (S, empty) has the value `empty` (the empty set or
object of a partial rule, or undefined for a complete one) for every object whose `input.kind`
is not one of the strings S. Found by abstract interpretation of the plan: every local holds an
abstract value (equal to `input.kind`; a constant; the boolean `input.kind in <constants>`; a
value defined only for kinds S; a collection with elements only for kinds S), every point of a
block is reached only for the kinds its path has established (an `EqualStmt` against a string,
a membership test that must be true, a value that must be defined), and a rule's guard is the
union of the paths on which it adds to its value.

Sound by construction, never clever: whatever is not understood widens to "any kind". The whole
plan gets no guard at all when it holds a `with` (input replaced), a dynamic call, a statement
type this module does not know, or a write to the input or data local. Only string kinds are
tracked, and a rule whose value is written any other way than the patterns above has no guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pushgate.gate import regoplan

__all__ = ["Guard", "guards"]

_INPUT, _DATA = 0, 1
ANY = None  # no constraint: any kind

Kinds = frozenset[str] | None  # None: any kind


@dataclass(frozen=True)
class Guard:
    """A rule says nothing but `empty` ("set", "object" or "undefined") for an object whose
    kind is not one of `kinds`."""

    kinds: frozenset[str]
    empty: str


class _Unsupported(Exception):
    """The plan holds something the analysis does not model: no guards at all."""


_NOCONST: Any = object()


@dataclass(frozen=True)
class _V:
    """What is known about a local's value (the default: nothing)."""

    kind: bool = False  # it is input.kind
    const: Any = _NOCONST  # a str, bool, or a tuple of strs (an array or set of them)
    member: frozenset[str] | None = None  # it is the boolean `input.kind in member`
    defined: Kinds = ANY  # defined only for these kinds
    elems: Kinds = ANY  # a collection that has elements only for these kinds


_TOP = _V()


def _meet(*sets: Kinds) -> Kinds:
    out: Kinds = ANY
    for s in sets:
        if s is not None:
            out = s if out is None else out & s
    return out


def _join(a: Kinds, b: Kinds) -> Kinds:
    return None if a is None or b is None else a | b


def _join_v(a: _V, b: _V) -> _V:
    if a == b:
        return a
    return _V(kind=a.kind and b.kind, const=a.const if a.const == b.const else _NOCONST,
              member=a.member if a.member == b.member else None,
              defined=_join(a.defined, b.defined), elems=_join(a.elems, b.elems))


def _join_env(a: dict[int, _V], b: dict[int, _V]) -> dict[int, _V]:
    return {k: _join_v(a.get(k, _TOP), b.get(k, _TOP)) for k in a.keys() | b.keys()}


@dataclass
class _Func:
    """The running analysis of one function: its locals and what was written to its value."""

    ret: int
    env: dict[int, _V] = field(default_factory=dict)
    assigned: list[_V] = field(default_factory=list)  # values assigned to the return local
    made: list[str] = field(default_factory=list)  # collections made in it: MakeSetStmt, ...
    added: Kinds = frozenset()  # the paths on which an element was added to it
    loops: int = 0  # scan bodies around the statement (constants are not tracked in them)


_MAKE = {"MakeArrayStmt": "array", "MakeSetStmt": "set", "MakeObjectStmt": "object"}
_ADD = {"ArrayAppendStmt": "array", "SetAddStmt": "set", "ObjectInsertStmt": "object",
        "ObjectInsertOnceStmt": "object"}
_OPAQUE = {"MakeNumberRefStmt", "MakeNumberIntStmt", "MakeNullStmt", "LenStmt", "AssignIntStmt",
           "ObjectMergeStmt"}  # each writes `target`, nothing known about it
_INERT = {"NopStmt", "BreakStmt", "ReturnLocalStmt", "ResultSetAddStmt", "IsUndefinedStmt",
          "IsArrayStmt", "IsObjectStmt", "IsSetStmt"}


class _Analysis:
    def __init__(self, plan: Mapping[str, Any]) -> None:
        self.funcs = regoplan.functions(plan)
        self.strings = regoplan.plan_strings(plan)
        self.summaries: dict[str, _V] = {}
        self.rules: dict[str, tuple[list[str], list[_V], Kinds]] = {}
        self.busy: set[str] = set()

    # -- functions ------------------------------------------------------------------------------

    def summary(self, name: str) -> _V:
        """What is known about the value function `name` returns, called with the input."""
        if name in self.summaries:
            return self.summaries[name]
        if name in self.busy:
            return _TOP  # recursion (Rego forbids it): know nothing
        func = self.funcs[name]
        params = func.get("params") or []
        ret = func.get("return")
        if params[:2] != [_INPUT, _DATA] or not isinstance(ret, int):
            self.summaries[name] = _TOP
            return _TOP
        self.busy.add(name)
        try:
            f = _Func(ret)
            for block in func.get("blocks") or []:
                # a block that fails hands on to the next one: each starts knowing no kind
                self._region(f, block, ANY)
        finally:
            self.busy.discard(name)
        value = _TOP
        if f.assigned and not f.made:
            value = f.assigned[0]
            for v in f.assigned[1:]:
                value = _join_v(value, v)
        elif f.made and not f.assigned:
            value = _V(elems=f.added)
        self.summaries[name] = value
        self.rules[name] = (f.made, f.assigned, f.added)
        return value

    def guard(self, name: str) -> Guard | None:
        value = self.summary(name)
        made, assigned, added = self.rules.get(name, ([], [], ANY))
        if made and not assigned and added is not None and len(set(made)) == 1 \
                and made[0] in ("set", "object") and self._made_first(name):
            return Guard(added, made[0])
        if assigned and not made and value.defined is not None:
            return Guard(value.defined, "undefined")
        return None

    def _made_first(self, name: str) -> bool:
        """Whether the rule's first block makes its (empty) value unconditionally: a partial
        rule's shape, `ResetLocalStmt` then `MakeSetStmt` / `MakeObjectStmt`, nothing else."""
        func = self.funcs[name]
        ret = func.get("return")
        blocks = func.get("blocks") or []
        stmts = blocks[0].get("stmts") if blocks and isinstance(blocks[0], Mapping) else None
        return (isinstance(stmts, list) and len(stmts) == 2
                and [s.get("type") for s in stmts] == ["ResetLocalStmt", stmts[1].get("type")]
                and stmts[1].get("type") in ("MakeSetStmt", "MakeObjectStmt")
                and all((s.get("stmt") or {}).get("target") == ret for s in stmts))

    # -- blocks ---------------------------------------------------------------------------------

    def _region(self, f: _Func, block: Any, path: Kinds) -> None:
        """Run `block` from `path`; afterwards each local holds what it held before or what the
        block left in it (a block may stop at any statement)."""
        if not isinstance(block, Mapping) or not isinstance(block.get("stmts"), list):
            raise _Unsupported("a block without statements")
        before = dict(f.env)
        for stmt in block["stmts"]:
            path = self._stmt(f, stmt, path)
        f.env = _join_env(before, f.env)

    def _loop(self, f: _Func, block: Any, path: Kinds) -> None:
        """A scan body: run until what its locals hold no longer grows (each pass starts from
        what the passes before left: the body runs once per element)."""
        f.loops += 1
        try:
            for _ in range(50):
                start = dict(f.env)
                self._region(f, block, path)
                if f.env == start:
                    return
            raise _Unsupported("a scan body whose analysis does not settle")
        finally:
            f.loops -= 1

    def _operand(self, f: _Func, op: Any) -> _V:
        if not isinstance(op, Mapping):
            raise _Unsupported(f"operand {op!r}")
        t, value = op.get("type"), op.get("value")
        if t == "local" and isinstance(value, int):
            return f.env.get(value, _TOP)
        if t == "string_index" and isinstance(value, int) and 0 <= value < len(self.strings):
            return _V(const=self.strings[value])
        if t == "bool" and isinstance(value, bool):
            return _V(const=value)
        return _TOP

    def _stmt(self, f: _Func, stmt: Any, path: Kinds) -> Kinds:
        if not isinstance(stmt, Mapping) or not isinstance(stmt.get("stmt"), Mapping):
            raise _Unsupported("a statement without a body")
        t, s = str(stmt.get("type")), stmt["stmt"]
        if t in ("EqualStmt", "NotEqualStmt"):
            a, b = self._operand(f, s.get("a")), self._operand(f, s.get("b"))
            path = _meet(path, a.defined, b.defined)  # both operands must be defined
            for x, y in ((a, b), (b, a)):
                if t == "EqualStmt" and x.kind and isinstance(y.const, str):
                    path = _meet(path, frozenset([y.const]))
                if x.member is not None and y.const is (t == "EqualStmt"):
                    path = _meet(path, x.member)  # `== true` or `!= false`
            return path
        if t == "IsDefinedStmt":
            return _meet(path, self._local(f, s.get("source")).defined)
        if t in ("AssignVarStmt", "AssignVarOnceStmt"):
            self._write(f, s.get("target"), self._operand(f, s.get("source")), path)
            return path
        if t == "DotStmt":
            src, key = self._operand(f, s.get("source")), self._operand(f, s.get("key"))
            op = s.get("source")
            if (isinstance(op, Mapping) and op.get("type") == "local" and op.get("value") == _INPUT
                    and key.const == "kind"):
                value = _V(kind=True)
            else:
                value = _V(defined=_meet(path, src.defined, key.defined, src.elems))
            self._write(f, s.get("target"), value, path)
            # a lookup holds only when its collection is defined and has the key
            return _meet(path, src.defined, src.elems)
        if t == "CallStmt":
            self._write(f, s.get("result"), self._call(f, s), path)
            return path
        if t == "ScanStmt":
            src = self._local(f, s.get("source"))
            for name in ("key", "value"):
                self._write(f, s.get(name), _TOP, path)
            self._loop(f, s.get("block"), _meet(path, src.defined, src.elems))
            return path
        if t == "BlockStmt":
            blocks = s.get("blocks")
            if not isinstance(blocks, list):
                raise _Unsupported("a BlockStmt without blocks")
            for block in blocks:
                self._region(f, block, path)
            return path
        if t == "NotStmt":
            self._region(f, s.get("block"), path)
            return path
        if t == "ResetLocalStmt":
            self._write(f, s.get("target"), _TOP, path, record=False)
            return path
        if t in _MAKE:
            target = s.get("target")
            self._write(f, target, _V(const=() if t != "MakeObjectStmt" else _NOCONST,
                                      elems=frozenset()), path, made=_MAKE[t])
            return path
        if t in _ADD:
            coll = s.get(_ADD[t])
            value = self._operand(f, s.get("value"))
            key = self._operand(f, s.get("key")) if "key" in s else _V()
            old = self._local(f, coll)
            where = _meet(path, value.defined, key.defined)  # an undefined value adds nothing
            const = _NOCONST
            if (t != "ObjectInsertStmt" and t != "ObjectInsertOnceStmt" and f.loops == 0
                    and isinstance(old.const, tuple) and isinstance(value.const, str)):
                const = (*old.const, value.const)
            new = replace(old, const=const, member=None, elems=_join(old.elems, where))
            self._write(f, coll, new, ANY, record=False)  # counted in `added`
            if coll == f.ret:
                f.added = _join(f.added, where)
            return path
        if t in _OPAQUE:
            self._write(f, s.get("target"), _TOP, path)
            return path
        if t in _INERT:
            return path
        raise _Unsupported(f"statement {t}")  # WithStmt, CallDynamicStmt, anything new

    def _local(self, f: _Func, local: Any) -> _V:
        if not isinstance(local, int):
            raise _Unsupported(f"local {local!r}")
        return f.env.get(local, _TOP)

    def _write(self, f: _Func, target: Any, value: _V, path: Kinds, record: bool = True,
               made: str = "") -> None:
        if not isinstance(target, int) or isinstance(target, bool) or target in (_INPUT, _DATA):
            raise _Unsupported(f"a write to local {target!r}")
        # written only where the statement runs: elsewhere the local keeps what it held, which
        # the join at the end of the block brings back
        value = replace(value, defined=_meet(path, value.defined))
        f.env[target] = value
        if target != f.ret or not record:
            return
        if made:
            f.made.append(made)
        else:
            f.assigned.append(value)

    def _call(self, f: _Func, s: Mapping[str, Any]) -> _V:
        name = str(s.get("func", ""))
        args = s.get("args")
        if not isinstance(args, list):
            raise _Unsupported("a call without arguments")
        vals = [self._operand(f, a) for a in args]
        defined = _meet(*(v.defined for v in vals))  # an undefined argument: undefined
        if name in self.funcs:
            passes_input = (len(args) >= 2 and args[0] == {"type": "local", "value": _INPUT}
                            and args[1] == {"type": "local", "value": _DATA})
            if not passes_input:
                return _V(defined=defined)
            got = self.summary(name)
            return replace(got, defined=_meet(got.defined, *(v.defined for v in vals[2:])))
        if (name == "internal.member_2" and len(vals) == 2 and vals[0].kind
                and isinstance(vals[1].const, tuple)):
            return _V(member=frozenset(vals[1].const), defined=defined)  # `kind in [...]`
        if name == "equal" and len(vals) == 2:  # `==` inside a comprehension
            for x, y in ((vals[0], vals[1]), (vals[1], vals[0])):
                if x.kind and isinstance(y.const, str):
                    return _V(member=frozenset([y.const]), defined=defined)
        return _V(defined=defined)


def guards(plan: Mapping[str, Any], entrypoints: Iterable[str]) -> dict[str, Guard]:
    """The guard of each of `entrypoints` ("pkg/path/rule") that has one; {} when the plan holds
    anything the analysis does not model."""
    analysis = _Analysis(plan)
    out: dict[str, Guard] = {}
    try:
        _check_plan(analysis)
        for ep in entrypoints:
            name = "g0.data." + ep.replace("/", ".")
            if name not in analysis.funcs:
                continue
            g = analysis.guard(name)
            if g is not None:
                out[ep] = g
    except (_Unsupported, RecursionError, KeyError, TypeError, AttributeError):
        return {}
    return out


def _check_plan(analysis: _Analysis) -> None:
    """Refuse (no guards at all) a plan with a statement that replaces the input or calls a
    rule chosen at evaluation time, wherever it is."""
    for func in analysis.funcs.values():
        for stmt_type, _ in regoplan.statements(func.get("blocks") or []):
            if stmt_type in ("WithStmt", "CallDynamicStmt"):
                raise _Unsupported(stmt_type)


def subsets(entrypoints: Sequence[str], found: Mapping[str, Guard]) -> tuple[
        list[tuple[str, ...]], dict[str, int], int]:
    """The groups of `entrypoints` to ask for each kind: (groups, group of each kind a guard
    names, group for any other kind). A rule without a guard is in every group."""
    named = sorted({k for ep in entrypoints if ep in found for k in found[ep].kinds})
    groups: list[tuple[str, ...]] = []
    index: dict[tuple[str, ...], int] = {}

    def group(members: tuple[str, ...]) -> int:
        if members not in index:
            index[members] = len(groups)
            groups.append(members)
        return index[members]

    other = group(tuple(ep for ep in entrypoints if ep not in found))
    by_kind = {k: group(tuple(ep for ep in entrypoints if ep not in found or k in found[ep].kinds))
               for k in named}
    return groups, by_kind, other
