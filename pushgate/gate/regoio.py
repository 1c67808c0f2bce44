"""Values across rego-cpp's C API for the embedded engine's worker: inputs in, results out.

Called only by `pushgate.gate.regoworker` (in its own process: regopy is native code). Inputs
are built with direct calls into the C API (regopy's generic converter costs about twice as
much for a 40-line Deployment); results are read node by node, because regopy's printed form is
neither JSON for an undefined rule nor for a string holding a raw `"` or `\\` (see the worker's
docstring), except for results that hold no string, number or set order to get wrong (what a
clean object gets), which are read from the printed text.
"""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

UNDEFINED = object()  # an undefined rule (absent from the results)
_ESCAPE = re.compile(r'(?:\\u[0-9a-fA-F]{4})+|\\["\\/bfnrt]')
# What JSON writes with a backslash: `"`, `\\` and the control characters (NUL included).
NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


class Undecidable(ValueError):
    """The embedded engine cannot answer faithfully for this object (it differs from OPA)."""


def set_input(interp: Any, value: Any) -> bool:
    """regopy's `Interpreter.set_input(value)`, built with direct C calls: same values, same
    errors (RegoError), 2.3x as fast as regopy's converter over bench.corpus (1.2x without
    the C walk).

    Returns whether a key or string of `value` holds a character JSON escapes (NEEDS_ESCAPE):
    found on the way, where a separate pass over the value cost the worker ~5 % an object.

    The walk is `_regoinput.build` (C, pushgate/gate/_regoinput.c) when the package was built
    with it: a bench.corpus object's input in ~60 % of the time the same walk takes in Python
    (`_set_input_py`; most of what is left is rego-cpp's own node building), which builds what
    the C walk leaves to it (a type that is not JSON's, an int beyond 64 bits, nesting deeper
    than 200) and everything when the extension is missing."""
    if _C is not None:
        from regopy import rego_shared as rs

        lib = rs.rego
        p = lib.regoNewInput()
        try:
            status, detail = _C.build(p, value, _addresses())
            if status == _BUILT:
                rs.rego_set_input(interp._impl, p)
                return bool(detail)
            if status == _REFUSED:
                raise rs.RegoError("Unable to create input", detail)
        finally:
            lib.regoFreeInput(p)
    return _set_input_py(interp, value)


def _set_input_py(interp: Any, value: Any) -> bool:
    """`set_input` in Python. (Three C calls a field, ~200 for a bench.corpus Deployment: the
    calls skip ctypes' argument conversion (`_calls`), and every answer is tested inline. Adding
    a field's string where its object is walked, instead of through another call of `add`,
    made no measurable difference.)"""
    from regopy import rego_shared as rs

    lib = rs.rego
    ok = rs.Code.OK
    new_string, new_item, new_object, new_array, new_null = _calls()
    p = lib.regoNewInput()
    h = ctypes.c_void_p(p)
    needs = NEEDS_ESCAPE.search
    special = False

    def failed(code: int) -> None:
        raise rs.RegoError("Unable to create input", code)

    def add(v: Any) -> None:
        nonlocal special
        t = type(v)
        if t is dict:
            for k, item in v.items():
                if type(k) is str:
                    if not special and needs(k):
                        special = True
                    if (code := new_string(h, k.encode("utf-8"))) != ok:
                        failed(code)
                else:
                    add(k)
                add(item)
                if (code := new_item(h)) != ok:
                    failed(code)
            if (code := new_object(h, len(v))) != ok:
                failed(code)
        elif t is list:
            for item in v:
                add(item)
            if (code := new_array(h, len(v))) != ok:
                failed(code)
        elif t is str:
            if not special and needs(v):
                special = True
            if (code := new_string(h, v.encode("utf-8"))) != ok:
                failed(code)
        elif t is bool:
            if (code := lib.regoInputBoolean(p, v)) != ok:
                failed(code)
        elif t is int:
            if (code := lib.regoInputInt(p, v)) != ok:
                failed(code)
        elif t is float:
            if (code := lib.regoInputFloat(p, v)) != ok:
                failed(code)
        elif v is None:
            if (code := new_null(h)) != ok:
                failed(code)
        else:  # not a JSON value: regopy's own converter decides (and names the type)
            raise _Foreign()

    try:
        add(value)
    except _Foreign:
        lib.regoFreeInput(p)
        interp.set_input(value)
        return needs_escape(value)
    except BaseException:
        lib.regoFreeInput(p)
        raise
    try:
        rs.rego_set_input(interp._impl, p)
    finally:
        lib.regoFreeInput(p)
    return special


_CALLS: tuple[Any, ...] = ()


def _calls() -> tuple[Any, ...]:
    """regoInputString, regoInputObjectItem, regoInputObject, regoInputArray and regoInputNull
    of the library regopy loaded, declared without argument types: called with a `c_void_p`
    handle, `bytes` and lengths (which C reads as the unsigned 32-bit count its prototype
    declares), ctypes passes them as they are instead of converting each argument (a fifth of
    each call). The functions with 64-bit or floating-point arguments keep regopy's prototypes."""
    global _CALLS
    if not _CALLS:
        lib = _library()
        calls = []
        for name in ("regoInputString", "regoInputObjectItem", "regoInputObject",
                     "regoInputArray", "regoInputNull"):
            f = getattr(lib, name)
            f.restype = ctypes.c_uint32
            calls.append(f)
        _CALLS = tuple(calls)
    return _CALLS


def _c_walk() -> Any:
    """pushgate.gate._regoinput, or None when the package was installed without a C compiler."""
    try:
        from pushgate.gate import _regoinput
    except ImportError:
        return None
    return _regoinput


_C = _c_walk()

_BUILT, _FOREIGN, _REFUSED = 0, 1, 2  # _regoinput.build's statuses
_ADDRESSES: tuple[int, ...] = ()
# The input functions _regoinput.build calls, in the order it takes their addresses.
INPUT_FUNCTIONS = ("regoInputString", "regoInputObjectItem", "regoInputObject", "regoInputArray",
                   "regoInputNull", "regoInputBoolean", "regoInputInt", "regoInputFloat")


def _addresses() -> tuple[int, ...]:
    """The addresses of INPUT_FUNCTIONS in the library regopy loaded."""
    global _ADDRESSES
    if not _ADDRESSES:
        lib = _library()
        _ADDRESSES = tuple(int(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0)
                           for name in INPUT_FUNCTIONS)
    return _ADDRESSES


def _library() -> ctypes.CDLL:
    """A handle of the library regopy loaded (already loaded: the same library, not a second
    copy), whose functions `_calls` and `_addresses` declare their own way."""
    from regopy import rego_shared as rs

    return ctypes.CDLL(rs.rego._name)


def needs_escape(value: Any) -> bool:
    """Whether a key or string anywhere in `value` holds a character JSON escapes."""
    return any(NEEDS_ESCAPE.search(s) for s in strings(value))


def holds_nul(value: Any) -> bool:
    return any("\x00" in s for s in strings(value))


def strings(value: Any) -> Iterator[str]:
    """Every string of a value, keys included."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            yield from (k for k in v if isinstance(k, str))
            todo.extend(v.values())
        elif isinstance(v, (list, tuple)):
            todo.extend(v)


class _Foreign(Exception):
    pass


def set_input_escaped(interp: Any, value: Any) -> None:
    """The input as regopy's `Interpreter.set_input_term(json.dumps(value, ensure_ascii=False))`
    makes it: every string held as the body of its JSON literal (`a\\"b` for a"b). Built with the
    same direct calls as `set_input`, from a copy whose strings are written that way: rego-cpp's
    JSON parser takes about three times as long for the same input (identical query results on
    strings, keys and the builtins that read them: tests/unit/test_regoio_escaped.py). A value that
    is not plain JSON (a key that is not a string) goes through the parser, as before."""
    try:
        body = _escaped(value)
    except _Foreign:
        interp.set_input_term(json.dumps(value, ensure_ascii=False))
        return
    set_input(interp, body)


def _escaped(value: Any) -> Any:
    t = type(value)
    if t is str:
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _Foreign()
            out[json.dumps(k, ensure_ascii=False)[1:-1]] = _escaped(v)
        return out
    if t is list:
        return [_escaped(v) for v in value]
    return value


def query(interp: Any, bundle: Any, ep: str, decode: Callable[[str], str], arrays: int = 0) -> Any:
    """The value of entry point `ep` for the current input (UNDEFINED when undefined). `arrays`:
    how many outer levels of the value are arrays by construction (not sets): those may have
    any length and still be read from the printed text."""
    from regopy import rego_shared as rs

    # The low-level calls, not regopy's Output: it json.loads() the printed result, which is
    # neither JSON for an undefined rule nor for a string holding a raw `"` or `\`.
    out = rs.rego_bundle_query_entrypoint(interp._impl, bundle._impl, ep)
    try:
        text = rs.rego_output_string(out)
        if not rs.rego_output_ok(out):
            raise ValueError(f"{ep}: {text[:500]}")
        if text == "undefined":
            return UNDEFINED
        plain = _plain_text(text, arrays)
        if plain is not None:
            return plain[0]
        results = _children(rs.rego_output_node(out))
        if not results:
            return UNDEFINED
        if len(results) != 1:
            raise Undecidable(f"{ep}: {len(results)} results for one rule")
        terms = [c for c in _children(results[0]) if rs.rego_node_type(c) == rs.NodeKind.Terms]
        values = _children(terms[0]) if terms else []
        if not values:
            return UNDEFINED
        return _value(values[0], decode, ep)
    finally:
        rs.rego_free_output(out)


def _plain_text(text: str, arrays: int = 0) -> tuple[Any] | None:
    """The value of a printed result that holds no string, number or non-empty collection of
    more than one element (what a clean object gets: `[[[]], [], ...]`), read from the text:
    decoding it node by node would give the same (strings, numbers and set order are where the
    two could differ, so those are left to the node walk). None when the text is anything else."""
    if (text, arrays) in _PLAIN_TEXTS:  # the same few texts recur: checked once each
        return (json.loads(text)["expressions"][0],)
    if not text.startswith('{"expressions":[') or '"' in text[14:]:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or len(doc) != 1:
        return None
    exprs = doc.get("expressions")
    if not isinstance(exprs, list) or len(exprs) != 1 or not _plain(exprs[0], arrays):
        return None
    if len(text) <= _PLAIN_TEXT_LEN:
        if len(_PLAIN_TEXTS) >= _PLAIN_TEXTS_MAX:
            _PLAIN_TEXTS.clear()
        _PLAIN_TEXTS.add((text, arrays))
    return (exprs[0],)


# Printed results `_plain_text` accepted (a clean object's, `{"expressions":[[[[]],[[]],...]]}`):
# one json.loads each time instead of the check (~10 us a query). Short ones, a bounded number.
_PLAIN_TEXTS: set[tuple[str, int]] = set()
_PLAIN_TEXTS_MAX = 256
_PLAIN_TEXT_LEN = 512  # characters


def _plain(value: Any, arrays: int = 0) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, list):
        return (arrays > 0 or len(value) <= 1) and all(_plain(v, arrays - 1) for v in value)
    return isinstance(value, dict) and not value


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
        return sorted((_value(c, decode, ep) for c in _children(node)), key=canonical)
    if kind == k.Object:
        obj = {}
        for item in _children(node):
            key_node, value_node = _children(item)
            key = _value(key_node, decode, ep)
            obj[key if isinstance(key, str) else json.dumps(key)] = _value(value_node, decode, ep)
        return obj
    raise Undecidable(f"{ep}: the embedded engine answered a {kind.name} value")


def strict(token: str) -> str:
    """A string as rego-cpp prints it (a JSON literal), as the string it stands for."""
    try:
        value = json.loads(token)
    except ValueError:
        value = None
    if not isinstance(value, str):
        raise Undecidable(f"the embedded engine produced a string it cannot represent: {token[:80]!r}")
    return value


def lenient(token: str) -> str:
    """A string printed with raw (input) and JSON-literal (policy) parts mixed: undo the escapes
    only. Wrong when the input itself held such a sequence; then the escaped run disagrees."""
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise Undecidable(f"the embedded engine produced a string it cannot represent: {token[:80]!r}")
    return _ESCAPE.sub(lambda m: str(json.loads(f'"{m.group(0)}"')), token[1:-1])


def canonical(value: Any) -> str:
    return "<undefined>" if value is UNDEFINED else json.dumps(value, sort_keys=True)
