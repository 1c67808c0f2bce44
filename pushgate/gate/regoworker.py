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

Strings: rego-cpp keeps a string as the body of its JSON literal (`a\\"b` for a"b), but
`set_input` hands it raw strings, and its builtins disagree about which form they get. An object
whose strings hold no `"`, `\\` or control character is the same in both forms, so one run
decides it. Any other object is decided twice, raw and JSON-escaped (`set_input_term`), and the
two answers must agree, or the worker refuses to decide (the push is refused, fail closed).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_UNDEFINED = object()
_ESCAPE = re.compile(r'(?:\\u[0-9a-fA-F]{4})+|\\["\\/bfnrt]')
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
# Double-quoted Rego string literals, raw strings and comments (skipped), in source order.
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')


# The row of an object the engine cannot decide faithfully: [[UNDECIDABLE, why]].
UNDECIDABLE = "!undecidable"


class Undecidable(ValueError):
    """The embedded engine cannot answer faithfully for this object (it differs from OPA)."""


class CompileError(ValueError):
    """The policies do not compile; the message names the file and line."""


class Worker:
    def __init__(self) -> None:
        self.modules: list[tuple[str, str]] = []
        self.static: list[str] = []
        self.push_eps: list[str] = []
        self._static: tuple[Any, Any] | None = None
        self._dynamic: tuple[Any, Any] | None = None
        self._push_key: str | None = None

    @staticmethod
    def plan(modules: Sequence[tuple[str, str]]) -> Any:
        """The compiled plan (OPA's IR) of every rule of every package."""
        from regopy import BundleFormat, Interpreter

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
                return json.load(f)

    def load(self, modules: Sequence[tuple[str, str]], static: list[str], push: list[str]) -> None:
        self.modules = [(name, canonical_literals(src)) for name, src in modules]
        self.static, self.push_eps = static, push
        self._static = self._build(static, None) if static else None
        self._dynamic, self._push_key = None, None

    def _build(self, entrypoints: list[str], push: dict[str, Any] | None) -> tuple[Any, Any]:
        from regopy import Interpreter

        interp = Interpreter()
        for name, src in self.modules:
            interp.add_module(name, src)
        if push is not None:
            interp.add_data({"pushgate": {"push": push}})
        bundle = interp.build(None, list(entrypoints))
        if not bundle.ok():
            raise CompileError("the policies do not compile with this push context")
        return interp, bundle

    def evaluate(self, push: dict[str, Any], objects: list[Any],
                 entrypoints: list[str] | None) -> list[list[list[Any]]]:
        if _holds_nul(push):
            raise Undecidable("the push context holds a NUL character (U+0000), which the "
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
            except Undecidable as e:
                # This object only: refused as a problem of its own (fail closed), while every
                # other object of the push is still judged and reported.
                out.append([[UNDECIDABLE, str(e)[:500]]])
        return out

    def _one(self, obj: Any, wanted: list[str], static: list[str],
             dynamic: list[str]) -> list[list[Any]]:
        if _holds_nul(obj):
            # regopy hands strings to C as NUL-terminated: it would decide on a truncated
            # string (`{"hostNetwork\0": false, "hostNetwork": true}` passes). Fail closed.
            raise Undecidable("the object holds a NUL character (U+0000), which the embedded "
                              "policy engine cannot evaluate faithfully")
        values: dict[str, Any] = {}
        # The push context is data, which rego-cpp always holds JSON-escaped: only the
        # object's strings can be in two forms.
        twice = _needs_escape(obj)
        if static and self._static is not None:
            values.update(_decide(self._static, static, obj, twice))
        if dynamic and self._dynamic is not None:
            values.update(_decide(self._dynamic, dynamic, obj, twice))
        return [[ep, values[ep]] for ep in wanted if values[ep] is not _UNDEFINED]


def _decide(compiled: tuple[Any, Any], entrypoints: list[str], obj: Any,
            twice: bool) -> dict[str, Any]:
    interp, bundle = compiled
    interp.set_input(obj)
    raw = {ep: _query(interp, bundle, ep, _lenient if twice else _strict) for ep in entrypoints}
    if not twice:
        return raw
    interp.set_input_term(json.dumps(obj, ensure_ascii=False))
    escaped = {ep: _query(interp, bundle, ep, _strict) for ep in entrypoints}
    for ep in entrypoints:
        if _canonical(raw[ep]) != _canonical(escaped[ep]):
            raise Undecidable(
                f"{ep}: the embedded engine (regopy) decides differently on strings that hold "
                f"quotes, backslashes or control characters; use the OPA engine for such objects")
    return raw


def _query(interp: Any, bundle: Any, ep: str, decode: Callable[[str], str]) -> Any:
    from regopy import rego_shared as rs

    # The low-level calls, not regopy's Output: it json.loads() the printed result, which is
    # neither JSON for an undefined rule nor for a string holding a raw `"` or `\`.
    out = rs.rego_bundle_query_entrypoint(interp._impl, bundle._impl, ep)
    try:
        text = rs.rego_output_string(out)
        if not rs.rego_output_ok(out):
            raise ValueError(f"{ep}: {text[:500]}")
        if text == "undefined":
            return _UNDEFINED
        results = _children(rs.rego_output_node(out))
        if not results:
            return _UNDEFINED
        if len(results) != 1:
            raise Undecidable(f"{ep}: {len(results)} results for one rule")
        terms = [c for c in _children(results[0]) if rs.rego_node_type(c) == rs.NodeKind.Terms]
        values = _children(terms[0]) if terms else []
        if not values:
            return _UNDEFINED
        return _value(values[0], decode, ep)
    finally:
        rs.rego_free_output(out)


def _children(node: Any) -> list[Any]:
    from regopy import rego_shared as rs

    return [rs.rego_node_get(node, i) for i in range(rs.rego_node_size(node))]


def _value(node: Any, decode: Callable[[str], str], ep: str) -> Any:
    from regopy import rego_shared as rs

    kind = rs.rego_node_type(node)
    k = rs.NodeKind
    if kind in (k.Term, k.Scalar):
        return _value(_children(node)[0], decode, ep)
    if kind == k.String:
        # the node's JSON, not its value: rego-cpp holds some strings with their quotes
        return decode(rs.rego_node_json(node))
    if kind == k.Int:
        return int(rs.rego_node_value(node))
    if kind == k.Float:
        return float(rs.rego_node_value(node))
    if kind == k.Boolean:
        return rs.rego_node_value(node) == "true"
    if kind == k.Null:
        return None
    if kind == k.Array:
        return [_value(c, decode, ep) for c in _children(node)]
    if kind == k.Set:
        # OPA answers a set as an array; order it the same way in every run
        return sorted((_value(c, decode, ep) for c in _children(node)), key=_canonical)
    if kind == k.Object:
        obj = {}
        for item in _children(node):
            key_node, value_node = _children(item)
            key = _value(key_node, decode, ep)
            obj[key if isinstance(key, str) else json.dumps(key)] = _value(value_node, decode, ep)
        return obj
    raise Undecidable(f"{ep}: the embedded engine answered a {kind.name} value")


def _strict(token: str) -> str:
    """A string as rego-cpp prints it (a JSON literal), as the string it stands for."""
    try:
        value = json.loads(token)
    except ValueError:
        value = None
    if not isinstance(value, str):
        raise Undecidable(f"the embedded engine produced a string it cannot represent: {token[:80]!r}")
    return value


def _lenient(token: str) -> str:
    """A string printed with raw (input) and JSON-literal (policy) parts mixed: undo the escapes
    only. Wrong when the input itself held such a sequence; then the escaped run disagrees."""
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise Undecidable(f"the embedded engine produced a string it cannot represent: {token[:80]!r}")
    return _ESCAPE.sub(lambda m: str(json.loads(f'"{m.group(0)}"')), token[1:-1])


def _canonical(value: Any) -> str:
    return "<undefined>" if value is _UNDEFINED else json.dumps(value, sort_keys=True)


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


def _strings(value: Any) -> Iterator[str]:
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            yield from (k for k in v if isinstance(k, str))
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)


def _needs_escape(value: Any) -> bool:
    return any(_NEEDS_ESCAPE.search(s) for s in _strings(value))


def _holds_nul(value: Any) -> bool:
    return any("\x00" in s for s in _strings(value))


def main() -> None:
    # rego-cpp prints some evaluation errors (a yaml.unmarshal or json.unmarshal parse error) on
    # fd 1, which is the reply pipe: answer on a private copy of it and point fd 1 at stderr.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    worker = Worker()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            if req["op"] == "plan":
                reply: dict[str, Any] = {"ok": True, "plan": Worker.plan(
                    [(str(n), str(s)) for n, s in req["modules"]])}
            elif req["op"] == "load":
                worker.load([(str(n), str(s)) for n, s in req["modules"]], req["static"], req["push"])
                reply = {"ok": True}
            elif req["op"] == "eval":
                reply = {"ok": True, "results": worker.evaluate(req.get("push") or {}, req["objects"],
                                                                req.get("entrypoints"))}
            else:
                reply = {"ok": False, "error": f"unknown op {req.get('op')!r}"}
        except (Undecidable, CompileError) as e:
            reply = {"ok": False, "error": str(e)[:2000]}
        except Exception as e:
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
