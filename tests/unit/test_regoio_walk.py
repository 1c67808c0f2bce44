"""The C walk that builds the embedded engine's inputs (pushgate/gate/_regoinput.c, called by
`regoio.set_input`) against the Python walk it replaces: the same input for any JSON value, the
same answer to "does a string need escaping", the same errors, and the Python walk for what the
C walk leaves to it. regopy in this process, no worker.
"""

from __future__ import annotations

import ctypes
import json
import random
from typing import Any

import pytest

from pushgate.gate import regoio


@pytest.fixture(scope="module")
def echo() -> Any:
    from regopy import Interpreter

    interp = Interpreter()
    interp.add_module("echo.rego", "package echo\n\nvalue := input\n\n"
                                   "kinds := [type_name(x) | walk(input, [_, x])]\n")
    bundle = interp.build(None, ["echo/value", "echo/kinds"])
    assert bundle.ok()
    return interp, bundle


def _read(echo: Any) -> tuple[str, str]:
    """The input as rego-cpp prints it back, and the type of every node (an int and a float
    print alike)."""
    from regopy import rego_shared as rs

    interp, bundle = echo
    texts = []
    for ep in ("echo/value", "echo/kinds"):
        out = rs.rego_bundle_query_entrypoint(interp._impl, bundle._impl, ep)
        try:
            texts.append(str(rs.rego_output_string(out)))
        finally:
            rs.rego_free_output(out)
    return texts[0], texts[1]


def _both(echo: Any, value: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    interp, _ = echo
    c_special = regoio.set_input(interp, value)
    c_input = _read(echo)
    with monkeypatch.context() as m:
        m.setattr(regoio, "_C", None)
        py_special = regoio.set_input(interp, value)
        py_input = _read(echo)
    return (c_special, c_input), (py_special, py_input)


def test_the_c_walk_is_built() -> None:
    # setup.sh installs the package with its extension (a C compiler is on the test machine);
    # without it every test below would compare the Python walk with itself.
    assert regoio._C is not None


ALPHABET = ["a", "é", "💥", '"', "\\", "\n", "\t", "\x01", "\x1f", "/", "\u2028", " ", "{", "0"]


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 5 else 6)
    if kind == 0:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(6)))
    if kind == 1:
        return rng.choice([0, 1, -1, 2**31, -(2**63), 2**63 - 1, 7])
    if kind == 2:
        return rng.choice([0.0, -0.5, 1e300, 2.5])
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return rng.choice(ALPHABET)
    if kind in (6, 7):
        return {"".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 4))):
                _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]


@pytest.mark.parametrize("seed", range(40))
def test_the_c_walk_builds_what_the_python_walk_builds(echo: Any, seed: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"v": _value(random.Random(seed), 0), "n": [1, 2.5, True, None, "x"]}
    c, py = _both(echo, value, monkeypatch)
    assert c == py
    assert c[0] is ("\\" in json.dumps(value, ensure_ascii=False))
    assert '"n"' in c[1][0] and "number" in c[1][1]  # the input really was read back


@pytest.mark.parametrize("value", [
    {"big": 2**64},  # beyond 64 bits: the Python walk refuses it as before
    {"t": ("a", "tuple")},  # not JSON: regopy's converter decides
    {"o": {3: "int key"}},
    {"s": type("Sub", (str,), {})("a str subclass")},
    {"deep": json.loads("[" * 250 + "1" + "]" * 250)},
])
def test_what_the_c_walk_leaves_to_python_answers_as_before(echo: Any, value: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def outcome() -> Any:
        try:
            special = regoio.set_input(echo[0], value)
        except Exception as e:  # the same error both ways
            return type(e).__name__, str(e)[:100]
        return special, _read(echo)

    c = outcome()
    with monkeypatch.context() as m:
        m.setattr(regoio, "_C", None)
        py = outcome()
    assert c == py


def test_a_string_that_is_not_utf8_is_refused_as_before(echo: Any) -> None:
    with pytest.raises(UnicodeEncodeError):
        regoio.set_input(echo[0], {"s": "\ud800"})


def test_a_refusal_of_rego_cpp_is_raised_and_the_input_freed(echo: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from regopy import rego_shared as rs

    lib = ctypes.CDLL(rs.rego._name)
    real = lib.regoInputInt
    real.restype, real.argtypes = ctypes.c_uint32, [ctypes.c_void_p, ctypes.c_int64]
    # rego-cpp adds the node, then answers an error code: the C walk must stop and say so
    refusing = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int64)(
        lambda p, v: (real(p, v), int(rs.Code.ERROR))[1])
    addresses = list(regoio._addresses())
    addresses[regoio.INPUT_FUNCTIONS.index("regoInputInt")] = ctypes.cast(refusing, ctypes.c_void_p).value
    monkeypatch.setattr(regoio, "_ADDRESSES", tuple(addresses))
    freed: list[Any] = []
    real_free = rs.rego.regoFreeInput
    monkeypatch.setattr(rs.rego, "regoFreeInput", lambda p: (freed.append(p), real_free(p))[1])
    with pytest.raises(rs.RegoError) as err:
        regoio.set_input(echo[0], {"s": ["x"], "n": 3})
    assert err.value.code == rs.Code.ERROR
    assert len(freed) == 1
