"""Which parts of an object a rule can read: read from the compiled plan, and cut to.

Called by `pushgate.gate.policies` with the plan of a policy set (OPA's IR, which rego-cpp's
virtual machine runs) and the rules the embedded engine evaluates; the engine's worker
(`pushgate.gate.regoworker`) then hands rego-cpp only those parts of each object (`prune`).
Pure: no I/O.

Why: rego-cpp builds its input node by node (~1 us a field), and an object whose strings hold
quotes, backslashes or control characters is decided twice (see regoworker). A ConfigMap asked
only the namespaces rule needs its kind, name and namespace: not its data.

What a rule reads, found by abstract interpretation of the plan: a local may be an alias of
parts of the input (paths of keys; `*` for any key); a lookup (`DotStmt`) extends the path and
marks it *needed* (whether it exists decides the lookup); any other use of an alias (a
comparison, a builtin's argument, a value put in a collection or returned as a rule's value)
marks its path *observed* (the whole value there matters); iterating an alias needs every key
under it. Two uses read no more than a needed path keeps, because a cut keeps every value's type
and every scalar as it is: a type test (`is_object`, ...) and a comparison with a constant string
or boolean (rego-cpp tests `x != false` before it iterates x). Functions that get the input pass
their needs on; nothing else can reach it. A function's own arguments are summed up once as
symbolic roots (`_Param`): each call reads, of what it hands the function, what the body reads
of that argument (`image_of(container)` reads the container's `image`, not the container), and
the function's value aliases what it returns of them.

Cut to: every observed path kept whole, every needed path kept with only what is needed or
observed under it. A rule can then tell the cut object from the whole one by nothing it can
evaluate. Anything the analysis does not model (a `with`, a dynamic call, an unknown statement,
a write to the input or data local, the input handed to a function in any other place) leaves
the plan without any reads, so every object goes whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pushgate.gate import regoplan

__all__ = ["ANY_KEY", "Reads", "prune", "reads", "spec"]

ANY_KEY = "*"  # in a path: any key of an object, any index of an array (never a literal key)
_INPUT, _DATA = 0, 1

Path = tuple[str, ...]


@dataclass(frozen=True)
class Reads:
    """The parts of an object one rule can read."""

    needed: frozenset[Path]  # looked up: kept, with what is read under them
    observed: frozenset[Path]  # used as values: kept whole


class _Unsupported(Exception):
    """The plan holds something the analysis does not model: no reads at all."""


@dataclass(frozen=True)
class _Param:
    """The root of a path through a function's own argument (the `index`-th parameter; 0 and 1
    are the input and data): a function's reads are summed up once, in terms of its arguments,
    and each call puts in what its arguments may alias."""

    index: int


# A path of the analysis: of the input, or of a function's argument (a _Param first).
_Path = tuple["str | _Param", ...]
Aliases = frozenset[_Path]  # the paths a local may be; empty: none
_NONE: Aliases = frozenset()


@dataclass
class _Func:
    ret: int
    env: dict[int, Aliases] = field(default_factory=dict)
    needed: set[_Path] = field(default_factory=set)
    observed: set[_Path] = field(default_factory=set)
    returned: set[_Path] = field(default_factory=set)  # what its value may alias


@dataclass(frozen=True)
class _Summary:
    needed: frozenset[_Path]
    observed: frozenset[_Path]
    returned: frozenset[_Path]


# Builtins that read only a value's type, which a cut keeps (an object stays an object, an
# array an array, anything else is kept as it is).
_TYPE_TESTS = {"is_object", "is_array", "is_string", "is_number", "is_boolean", "is_null",
               "is_set", "type_name"}
_OPAQUE = {"MakeNumberRefStmt", "MakeNumberIntStmt", "MakeNullStmt", "AssignIntStmt",
           "MakeArrayStmt", "MakeSetStmt", "MakeObjectStmt", "ResetLocalStmt"}
_INERT = {"NopStmt", "BreakStmt", "ReturnLocalStmt", "ResultSetAddStmt", "IsDefinedStmt",
          "IsUndefinedStmt"}
# statements whose every operand and read local is used as a value
_USES = {"EqualStmt", "NotEqualStmt", "ArrayAppendStmt", "SetAddStmt", "ObjectInsertStmt",
         "ObjectInsertOnceStmt", "ObjectMergeStmt", "LenStmt", "IsArrayStmt", "IsObjectStmt",
         "IsSetStmt"}


class _Analysis:
    def __init__(self, plan: Mapping[str, Any]) -> None:
        self.funcs = regoplan.functions(plan)
        self.strings = regoplan.plan_strings(plan)
        self.summaries: dict[str, _Summary] = {}
        self.busy: set[str] = set()

    def summary(self, name: str) -> _Summary:
        if name in self.summaries:
            return self.summaries[name]
        if name in self.busy:
            raise _Unsupported(f"recursion through {name}")
        func = self.funcs[name]
        params, ret = func.get("params") or [], func.get("return")
        if params[:2] != [_INPUT, _DATA] or not isinstance(ret, int):
            raise _Unsupported(f"{name}: parameters {params}")
        self.busy.add(name)
        try:
            f = _Func(ret)
            for i, local in enumerate(params[2:], start=2):
                if not isinstance(local, int) or isinstance(local, bool) or local in (_INPUT, _DATA):
                    raise _Unsupported(f"{name}: parameters {params}")
                f.env[local] = frozenset([(_Param(i),)])
            for block in func.get("blocks") or []:
                self._region(f, block)
        finally:
            self.busy.discard(name)
        out = _Summary(frozenset(f.needed), frozenset(f.observed), frozenset(f.returned))
        self.summaries[name] = out
        return out

    def _region(self, f: _Func, block: Any) -> None:
        if not isinstance(block, Mapping) or not isinstance(block.get("stmts"), list):
            raise _Unsupported("a block without statements")
        before = dict(f.env)
        for stmt in block["stmts"]:
            self._stmt(f, stmt)
        # a block may stop at any statement: a local holds what it held before, or after
        f.env = {k: before.get(k, _NONE) | f.env.get(k, _NONE) for k in before.keys() | f.env.keys()}

    def _loop(self, f: _Func, block: Any) -> None:
        for _ in range(50):
            start = dict(f.env)
            self._region(f, block)
            if f.env == start:
                return
        raise _Unsupported("a scan body whose analysis does not settle")

    def _aliases(self, f: _Func, op: Any) -> Aliases:
        """What an operand (or a local given by number) may alias."""
        if isinstance(op, bool):
            raise _Unsupported(f"operand {op!r}")
        if isinstance(op, int):
            return frozenset([()]) if op == _INPUT else f.env.get(op, _NONE)
        if isinstance(op, Mapping) and op.get("type") == "local":
            return self._aliases(f, op.get("value"))
        return _NONE

    def _use(self, f: _Func, value: Any) -> None:
        """Every local named in `value` (an operand, a local number, a list of them) is used."""
        if isinstance(value, list):
            for v in value:
                self._use(f, v)
        else:
            f.observed.update(self._aliases(f, value))

    def _key(self, f: _Func, op: Any) -> str:
        if isinstance(op, Mapping) and op.get("type") == "string_index":
            i = op.get("value")
            if isinstance(i, int) and 0 <= i < len(self.strings) and self.strings[i] != ANY_KEY:
                return self.strings[i]
        self._use(f, op)  # a key computed from the input: its value decides the lookup
        return ANY_KEY

    def _set(self, f: _Func, target: Any, value: Aliases) -> None:
        if not isinstance(target, int) or isinstance(target, bool) or target in (_INPUT, _DATA):
            raise _Unsupported(f"a write to local {target!r}")
        f.env[target] = value
        if target == f.ret:
            f.returned.update(value)

    def _stmt(self, f: _Func, stmt: Any) -> None:
        if not isinstance(stmt, Mapping) or not isinstance(stmt.get("stmt"), Mapping):
            raise _Unsupported("a statement without a body")
        t, s = str(stmt.get("type")), stmt["stmt"]
        if t == "DotStmt":
            src = self._aliases(f, s.get("source"))
            key = self._key(f, s.get("key"))
            got = frozenset((*p, key) for p in src)
            f.needed.update(got)
            self._set(f, s.get("target"), got)
        elif t in ("AssignVarStmt", "AssignVarOnceStmt"):
            self._set(f, s.get("target"), self._aliases(f, s.get("source")))
        elif t == "CallStmt":
            self._set(f, s.get("result"), self._call(f, s))
        elif t == "ScanStmt":
            src = self._aliases(f, s.get("source"))
            every = frozenset((*p, ANY_KEY) for p in src)
            f.needed.update(every)  # the keys it yields: every one there
            self._set(f, s.get("key"), _NONE)
            self._set(f, s.get("value"), every)
            self._loop(f, s.get("block"))
        elif t == "BlockStmt":
            blocks = s.get("blocks")
            if not isinstance(blocks, list):
                raise _Unsupported("a BlockStmt without blocks")
            for block in blocks:
                self._region(f, block)
        elif t == "NotStmt":
            self._region(f, s.get("block"))
        elif t in ("EqualStmt", "NotEqualStmt") and any(
                isinstance(op, Mapping) and op.get("type") in ("bool", "string_index")
                for op in (s.get("a"), s.get("b"))):
            pass  # compared with a constant that is not a collection: a cut answers the same
        elif t in _USES:
            for k, v in s.items():
                if k in ("a", "b", "value", "key", "source", "array", "set", "object"):
                    self._use(f, v)
            if "target" in s:
                self._set(f, s.get("target"), _NONE)
        elif t in _OPAQUE:
            self._set(f, s.get("target"), _NONE)
        elif t not in _INERT:
            raise _Unsupported(f"statement {t}")  # WithStmt, CallDynamicStmt, anything new

    def _call(self, f: _Func, s: Mapping[str, Any]) -> Aliases:
        name, args = str(s.get("func", "")), s.get("args")
        if not isinstance(args, list):
            raise _Unsupported("a call without arguments")
        if name in _TYPE_TESTS:
            return _NONE
        if name not in self.funcs:
            self._use(f, args)  # a builtin reads its arguments whole
            return _NONE
        if (len(args) < 2 or args[0] != {"type": "local", "value": _INPUT}
                or args[1] != {"type": "local", "value": _DATA}):
            raise _Unsupported(f"{name} called without the input")
        got = self.summary(name)
        given = {i: self._aliases(f, arg) for i, arg in enumerate(args) if i >= 2}

        def bound(paths: frozenset[_Path]) -> set[_Path]:
            # what the function reads of its arguments, read of what they may alias here
            out: set[_Path] = set()
            for p in paths:
                if p and isinstance(p[0], _Param):
                    out.update((*a, *p[1:]) for a in given.get(p[0].index, _NONE))
                else:
                    out.add(p)
            return out

        f.needed.update(bound(got.needed))
        f.observed.update(bound(got.observed))
        return frozenset(bound(got.returned))


def reads(plan: Mapping[str, Any], entrypoints: Iterable[str]) -> dict[str, Reads]:
    """The reads of each of `entrypoints` ("pkg/path/rule"); {} when the plan holds anything
    the analysis does not model (every object then goes whole)."""
    analysis = _Analysis(plan)
    out: dict[str, Reads] = {}
    try:
        for func in analysis.funcs.values():
            for stmt_type, _ in regoplan.statements(func.get("blocks") or []):
                if stmt_type in ("WithStmt", "CallDynamicStmt"):
                    raise _Unsupported(stmt_type)
        for ep in entrypoints:
            name = "g0.data." + ep.replace("/", ".")
            got = analysis.summary(name)
            if any(p and isinstance(p[0], _Param) for p in got.needed | got.observed | got.returned):
                raise _Unsupported(f"{ep}: reads through an argument it has not")
            # a rule's value that is part of the input is printed whole (paths of the input
            # only, checked above)
            out[ep] = Reads(cast(frozenset[Path], got.needed),
                            cast(frozenset[Path], got.observed | got.returned))
    except (_Unsupported, RecursionError, KeyError, TypeError, AttributeError):
        return {}
    return out


# -- cutting ------------------------------------------------------------------------------------
# A spec is a dict: key -> spec, with True for "keep whole"; ANY_KEY applies to every key.
Spec = dict[str, Any]


def spec(found: Sequence[Reads]) -> Spec | None:
    """What to keep of an object for rules with these reads; None: all of it."""
    out: Spec = {}
    for r in found:
        for path in r.observed:
            if not path:
                return None
            _add(out, path, whole=True)
        for path in r.needed:
            _add(out, path, whole=False)
    if not out:
        return None  # nothing read (or nothing the analysis could name): all of it
    _finish(out)
    return out


def _add(node: Spec, path: Path, whole: bool) -> None:
    for i, key in enumerate(path):
        child = node.get(key)
        if child is True:
            return  # kept whole already
        if i == len(path) - 1:
            if whole:
                node[key] = True
            elif child is None:
                node[key] = {}
            return
        if child is None:
            child = node[key] = {}
        node = child


def _finish(node: Spec) -> None:
    """A needed path with nothing named under it is kept whole: what it holds is not read,
    but a rule may hand it on."""
    for key, child in node.items():
        if child is not True:
            if child:
                _finish(child)
            else:
                node[key] = True


def prune(value: Any, keep: Spec | None) -> Any:
    """`value` with only what `keep` names (see `spec`)."""
    if keep is None:
        return value
    return _prune(value, keep)


def _prune(value: Any, keep: Spec) -> Any:
    every = keep.get(ANY_KEY)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub = keep.get(k)
            if every is not None:
                sub = _merge(every, sub)
            if sub is None:
                continue
            out[k] = v if sub is True else _prune(v, sub)
        return out
    if isinstance(value, list):
        if every is None:
            return []  # only keys were looked up: an array has none
        return [v if every is True else _prune(v, every) for v in value]
    return value


def _merge(a: Any, b: Any) -> Any:
    if b is None:
        return a
    if a is True or b is True:
        return True
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if k in out else v
    return out
