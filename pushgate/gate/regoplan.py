"""What a compiled policy set says about itself: its rules, and which of them can read `data`.

Called by `pushgate.gate.policies` with the plan of every policy module compiled together (OPA's
intermediate representation, as rego-cpp writes it to a bundle's `plan.json`; the worker in
`pushgate.gate.regoworker` compiles it). Pure: no I/O.

Why a plan and not the source text: a rule head may be indented, split over lines, defined in
several files, or reach `data` through `import data.pushgate` and an alias; the compiler has
resolved all of that. In the plan every rule is a function `g0.data.<package>.<rule>` whose
local 0 is `input` and local 1 is `data` (Rego functions take more parameters); a rule that uses
another rule calls it, passing locals 0 and 1 through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# conftest's rule names (policy/engine.go in conftest v0.71.1): failures and warnings, plus the
# `exception` rule that exempts an input from `deny_<name>` / `violation_<name>` rules.
FAILURE = re.compile(r"^(deny|violation)(_[a-zA-Z0-9]+)*$")
WARNING = re.compile(r"^warn(_[a-zA-Z0-9]+)*$")
EXCEPTION = "exception"

_DATA = 1  # the local that holds the data document (0 holds input)
# Statement fields that hold a local by number (not as an operand object) and read it.
_LOCAL_FIELDS = ("source", "array", "set", "object", "local", "a", "b")


@dataclass(frozen=True)
class Rule:
    """One rule (not a function) of the compiled set."""

    package: str  # "pushgate.k8s.images"
    name: str  # "deny", "deny_run_as_root", "exception", "helper"
    reads_data: bool  # it, or a rule or function it calls, can read the `data` document

    @property
    def entrypoint(self) -> str:
        return f"{self.package.replace('.', '/')}/{self.name}"

    @property
    def kind(self) -> str:
        """"failure", "warning", "exception", or "" for a rule conftest does not evaluate."""
        if FAILURE.match(self.name):
            return "failure"
        if WARNING.match(self.name):
            return "warning"
        return "exception" if self.name == EXCEPTION else ""


def rules(plan: Mapping[str, Any], packages: Collection[str]) -> list[Rule]:
    """Every rule of the plan that belongs to one of `packages` (dotted names), sorted."""
    funcs = functions(plan)
    readers = data_readers(plan)
    by_path = {tuple(p.split(".")): p for p in packages}
    out = []
    for name, func in funcs.items():
        path = func.get("path") or []
        params = func.get("params") or []
        if len(params) != 2 or len(path) < 3:
            continue  # a Rego function, or the plan's own query
        pkg = by_path.get(tuple(str(s) for s in path[1:-1]))
        if pkg is not None:
            out.append(Rule(pkg, str(path[-1]), name in readers))
    return sorted(out, key=lambda r: (r.package, r.name))


def data_readers(plan: Mapping[str, Any]) -> set[str]:
    """Names of the plan's functions that can read `data`, directly or through what they call.

    Conservative: any use of the data local other than handing it on to another of the plan's
    functions counts (a dynamic `data[x]`, `with data... as`, a builtin given `data`), and a
    function that calls a reader is a reader, whatever it passes.
    """
    funcs = functions(plan)
    direct: set[str] = set()
    calls: dict[str, set[str]] = {}
    for name, func in funcs.items():
        callees: set[str] = set()
        reads = False
        for stmt_type, stmt in statements(func.get("blocks") or []):
            if stmt_type == "CallStmt":
                callee = str(stmt.get("func", ""))
                if callee in funcs:
                    callees.add(callee)
                args = stmt.get("args") or []
                if callee not in funcs and any(_is_data(a) for a in args):
                    reads = True
                if any(_is_data(v) or _holds_data(v) for k, v in stmt.items() if k != "args"):
                    reads = True
            elif any(_is_data(v) or _holds_data(v) or (k in _LOCAL_FIELDS and v == _DATA)
                     for k, v in stmt.items() if k != "block" and k != "blocks"):
                reads = True
        calls[name] = callees
        if reads:
            direct.add(name)
    readers = set(direct)
    changed = True
    while changed:
        changed = False
        for name, callees in calls.items():
            if name not in readers and callees & readers:
                readers.add(name)
                changed = True
    return readers


def base_documents(plan: Mapping[str, Any]) -> set[str]:
    """The top-level names under `data` that the plan reads as documents rather than as rules
    (`data.services.ports`, `import data.conftest`): a rule is a call, a document a lookup on
    the data local or a copy of it. A lookup with a computed key is not seen."""
    strings = plan_strings(plan)
    names: set[str] = set()
    for func in functions(plan).values():
        stmts = list(statements(func.get("blocks") or []))
        aliases = {_DATA}
        grown = True
        while grown:  # `import data.x` copies the data local first; order does not matter here
            grown = False
            for stmt_type, stmt in stmts:
                source, target = stmt.get("source"), stmt.get("target")
                if (stmt_type == "AssignVarStmt" and isinstance(source, Mapping)
                        and source.get("type") == "local" and source.get("value") in aliases
                        and isinstance(target, int) and target not in aliases):
                    aliases.add(target)
                    grown = True
        for stmt_type, stmt in stmts:
            source, key = stmt.get("source"), stmt.get("key")
            if (stmt_type == "DotStmt" and isinstance(source, Mapping) and source.get("type") == "local"
                    and source.get("value") in aliases and isinstance(key, Mapping)
                    and key.get("type") == "string_index" and isinstance(key.get("value"), int)
                    and key["value"] < len(strings)):
                names.add(strings[key["value"]])
    return names


@dataclass(frozen=True)
class Site:
    """Where a statement of the plan is: a rule (or function) and its line."""

    function: str  # "g0.data.<package>.<rule>"
    file: str  # the module's file name as the plan gives it (rego-cpp keeps the base name)
    line: int  # 1-based; 0 when the plan does not say

    @property
    def rule(self) -> str:
        """"<package>.<rule>" (or the function's own name when it is not a data rule)."""
        prefix = "g0.data."
        return self.function[len(prefix):] if self.function.startswith(prefix) else self.function


def unbound_reads(plan: Mapping[str, Any]) -> list[Site]:
    """Where a function of the plan reads a local that nothing in it writes: such a read is
    always undefined, so the statement always fails. rego-cpp 1.5.2 plans a variable that only a
    call's argument binds that way (`is_object(input.items[i])`, `f(input.items[i])`, also in a
    comprehension): it never iterates the variable, and the rule silently never holds, where OPA
    iterates it. Sorted by file and line, one per statement."""
    files = _files(plan)
    out: set[Site] = set()
    for name, func in functions(plan).items():
        stmts = list(statements(func.get("blocks") or []))
        written = {p for p in func.get("params") or [] if isinstance(p, int)}
        for stmt_type, stmt in stmts:
            for key in _WRITTEN_FIELDS.get(stmt_type, ("target", "result")):
                if isinstance(stmt.get(key), int):
                    written.add(stmt[key])
        for stmt_type, stmt in stmts:
            if stmt_type in _DEFINEDNESS:
                continue  # tests whether a local is defined: reading nothing is its answer
            if any(local not in written for local in _reads(stmt)):
                out.add(_site(name, stmt, files))
    return sorted(out, key=lambda u: (u.file, u.line, u.function))


# What the worker that compiles a plan adds to it (not part of OPA's IR): under PLAN_NOTES, the
# builtins rego-cpp declares but does not implement (a call is undefined whatever its arguments),
# and those it implements but answers differently from OPA (regoworker.WRONG_BUILTIN_PROBES).
PLAN_NOTES = "pushgate"
UNIMPLEMENTED = "unimplemented_builtins"
WRONG = "wrong_builtins"


def noted_calls(plan: Mapping[str, Any], note: str) -> list[tuple[str, Site]]:
    """(builtin, where) for every call to a builtin of the plan's `note` (UNIMPLEMENTED or
    WRONG), sorted by file and line."""
    noted = set((plan.get(PLAN_NOTES) or {}).get(note) or [])
    if not noted:
        return []
    files = _files(plan)
    out = {(str(stmt.get("func")), _site(name, stmt, files))
           for name, func in functions(plan).items()
           for stmt_type, stmt in statements(func.get("blocks") or [])
           if stmt_type == "CallStmt" and stmt.get("func") in noted}
    return sorted(out, key=lambda c: (c[1].file, c[1].line, c[0]))


def _files(plan: Mapping[str, Any]) -> list[str]:
    declared = (plan.get("static") or {}).get("files") or []
    return [str(f.get("value", "")) if isinstance(f, Mapping) else "" for f in declared]


def _site(function: str, stmt: Mapping[str, Any], files: list[str]) -> Site:
    file, row = stmt.get("file"), stmt.get("row")
    return Site(function, files[file] if isinstance(file, int) and 0 <= file < len(files) else "",
                row + 1 if isinstance(row, int) else 0)


# Statements whose named int fields are locals they write (others: `target` and `result`).
_WRITTEN_FIELDS = {"ScanStmt": ("key", "value")}
_DEFINEDNESS = ("IsDefinedStmt", "IsUndefinedStmt", "ResetLocalStmt")
# Int fields that name a local a statement reads (a ScanStmt's collection, a collection added to).
_READ_FIELDS = ("source", "array", "set", "object")


def _reads(stmt: Mapping[str, Any]) -> Iterator[int]:
    """The locals a statement reads: its local operands (also inside operand lists) and the
    int fields that name a local it reads."""
    for key, value in stmt.items():
        if key in ("block", "blocks"):
            continue
        if key in _READ_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            yield value
        todo = [value]
        while todo:
            item = todo.pop()
            if isinstance(item, list):
                todo.extend(item)
            elif isinstance(item, Mapping):
                if item.get("type") == "local" and isinstance(item.get("value"), int):
                    yield item["value"]
                else:
                    todo.extend(item.values())


def plan_strings(plan: Mapping[str, Any]) -> list[str]:
    """The plan's string constants, by index."""
    return [_string(s.get("value")) for s in (plan.get("static") or {}).get("strings") or []]


def _string(value: Any) -> str:
    """A plan string: rego-cpp writes some with their JSON quotes."""
    text = str(value)
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def functions(plan: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The plan's functions by name."""
    funcs = (plan.get("funcs") or {}).get("funcs") or []
    return {str(f["name"]): f for f in funcs if isinstance(f, Mapping) and "name" in f}


def statements(blocks: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every statement in `blocks`, nested blocks included, as (type, statement body)."""
    todo = [blocks]
    while todo:
        item = todo.pop()
        if isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, Mapping):
            if "type" in item and isinstance(item.get("stmt"), Mapping):
                body = item["stmt"]
                yield str(item["type"]), body
                todo.extend(v for k, v in body.items() if k in ("block", "blocks"))
            elif "stmts" in item:
                todo.append(item["stmts"])


def _is_data(operand: Any) -> bool:
    return (isinstance(operand, Mapping) and operand.get("type") == "local"
            and operand.get("value") == _DATA)


def _holds_data(value: Any) -> bool:
    """An operand list or nested operand that names the data local (not a nested block)."""
    if isinstance(value, list):
        return any(_is_data(v) or _holds_data(v) for v in value)
    if isinstance(value, Mapping) and "stmts" not in value and "type" not in value:
        return any(_is_data(v) or _holds_data(v) for v in value.values())
    return False
