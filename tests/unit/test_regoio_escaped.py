"""`regoio.set_input_escaped` builds the very input rego-cpp's JSON parser makes: the embedded
worker's second run of an object whose strings hold quotes, backslashes or control characters
(see pushgate.gate.regoworker) relies on it, and compares it with the raw run.

regopy in this process (its own Interpreter, no worker): the probe asks the builtins that read
strings (length, case, search, split, regex, printing) about values and keys.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pushgate.gate import regoio

PROBE = r'''package probe

strings := [s | s := input.s[_]]

answer := {
	"input": input,
	"count": [count(s) | s := strings[_]],
	"upper": [upper(s) | s := strings[_]],
	"concat": [concat("|", [s, "x"]) | s := strings[_]],
	"split": [split(s, "\n") | s := strings[_]],
	"regex": [regex.match("^a.b$", s) | s := strings[_]],
	"newline": [x | s := strings[_]; x := s == "a\nb"],
	"quote": [x | s := strings[_]; x := s == "a\"b"],
	"keys": [k | input.o[k]],
	"key_quote": [x | input.o[k]; x := k == "q\"k"],
	"sprintf": [sprintf("%s/%v", [s, s]) | s := strings[_]],
	"marshal": [json.marshal(s) | s := strings[_]],
	"substring": [substring(s, 1, 2) | s := strings[_]],
	"trim": [trim_space(s) | s := strings[_]],
	"backslash": [contains(s, "\\") | s := strings[_]],
	"indexof": [indexof(s, "b") | s := strings[_]],
}
'''

VALUES: list[Any] = [
    {"s": ["a\nb", 'a"b', "a\\b", "\ttab ", "é\u0001x", "plain", "/", "\u2028", "💥\r"],
     "o": {'q"k': 1, "n\nk": [True, None, 1.5, -3], "ok": {"deep\\": ['"']}}},
    {"s": [], "o": {}},
    {"s": ["x"], "o": {"a": "b"}, "n": [0, 2**40, 0.25, False]},
]


@pytest.fixture(params=["c", "python"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test that takes it runs with the C walk (pushgate/gate/_regoinput.c) and without it
    (regoio builds the input in Python, as on a machine without a C compiler)."""
    if request.param == "python":
        monkeypatch.setattr(regoio, "_C", None)
    return str(request.param)


@pytest.fixture(scope="module")
def probe() -> Any:
    from regopy import Interpreter

    interp = Interpreter()
    interp.add_module("probe.rego", PROBE)
    bundle = interp.build(None, ["probe/answer"])
    assert bundle.ok()
    return interp, bundle


def _answer(probe: Any) -> str:
    """The printed answer; for an error, only its message (the error also prints the input's
    syntax tree, whose node wrappers differ between the two ways of building it)."""
    from regopy import rego_shared as rs

    interp, bundle = probe
    out = rs.rego_bundle_query_entrypoint(interp._impl, bundle._impl, "probe/answer")
    try:
        text = str(rs.rego_output_string(out))
        if text.startswith("(error"):
            return "error: " + text.split("(errormsg", 1)[1].split(")", 1)[0]
        assert rs.rego_output_ok(out), text[:300]
        return text
    finally:
        rs.rego_free_output(out)


@pytest.mark.parametrize("value", VALUES, ids=["special", "empty", "plain"])
def test_same_answers_as_the_json_parser(walk: str, probe: Any, value: Any) -> None:
    interp, _ = probe
    interp.set_input_term(json.dumps(value, ensure_ascii=False))
    parsed = _answer(probe)
    regoio.set_input_escaped(interp, value)
    assert _answer(probe) == parsed
    if value["s"]:
        # and the raw form really is another input (what the worker's second run is for)
        regoio.set_input(interp, value)
        assert _answer(probe) != parsed or value["s"] == ["x"]


def test_a_key_that_is_not_a_string_goes_through_the_parser(walk: str, probe: Any) -> None:
    interp, _ = probe
    value = {"s": ['a"b'], "o": {7: "seven", "k": "v"}}
    interp.set_input_term(json.dumps(value, ensure_ascii=False))
    parsed = _answer(probe)
    regoio.set_input_escaped(interp, value)
    assert _answer(probe) == parsed
    assert '"7"' in parsed  # JSON made the key a string


def test_an_input_the_builtins_refuse_is_refused_either_way(walk: str, probe: Any) -> None:
    interp, _ = probe
    value = {"s": ["\\u00e9"], "o": {}}  # a backslash and "u00e9", not an escape
    interp.set_input_term(json.dumps(value, ensure_ascii=False))
    parsed = _answer(probe)
    regoio.set_input_escaped(interp, value)
    assert _answer(probe) == parsed
    assert parsed.startswith("error: ") and "escape" in parsed


@pytest.mark.parametrize("value", [
    *VALUES,
    {"s": ["x"], "o": {2: "int key", False: "bool key", None: "null key"}},  # keys the C calls add as values
    {"s": ["x"], "o": {"t": ("a", "tuple")}},  # not JSON: regopy's converter decides
], ids=["special", "empty", "plain", "odd-keys", "tuple"])
def test_set_input_builds_what_regopys_converter_builds(walk: str, probe: Any, value: Any) -> None:
    interp, _ = probe
    interp.set_input(value)
    converted = _answer(probe)
    regoio.set_input(interp, value)
    assert _answer(probe) == converted
    assert '"x"' in converted or value["s"] != ["x"]  # the input really was read


def test_set_input_raises_regopys_error_and_frees_what_it_built(probe: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from regopy import rego_shared as rs

    monkeypatch.setattr(regoio, "_C", None)  # the Python walk: its calls can be replaced
    interp, _ = probe
    freed: list[Any] = []
    real_free = rs.rego.regoFreeInput
    try:
        rs.rego.regoFreeInput = lambda p: (freed.append(p), real_free(p))[1]
        with pytest.raises(rs.RegoError):
            real_int = rs.rego.regoInputInt
            # the C side adds the node but answers an error: only the answer can say so
            rs.rego.regoInputInt = lambda p, v: (real_int(p, v), rs.Code.ERROR)[1]
            try:
                regoio.set_input(interp, {"s": ["x"], "n": 3})
            finally:
                rs.rego.regoInputInt = real_int
    finally:
        rs.rego.regoFreeInput = real_free
    assert len(freed) == 1


@pytest.mark.parametrize("value", [
    {"s": ["plain", "é", "\u2028", "/", "\x7f"], "o": {"k": [1, None, True, 2.5]}},
    {"s": ["x"], "o": {"t": ("a", "tuple")}},  # regopy's converter builds it
    *[{"s": ["x", f"a{c}b"], "o": {}} for c in ('"', "\\", "\n", "\t", "\x00", "\x1f")],
    *[{"s": ["x"], "o": {"deep": [{f"k{c}": 1}]}} for c in ('"', "\\", "\r", "\x00")],
    {"s": ["x"], "o": {"t": ("a", 'tu"ple')}},
], ids=["none", "tuple", *[f"string-{i}" for i in range(6)], *[f"key-{i}" for i in range(4)],
        "tuple-quote"])
def test_set_input_says_whether_a_string_or_key_needs_escaping(walk: str, probe: Any, value: Any) -> None:
    interp, _ = probe
    # what JSON writes with a backslash, and nothing else (the worker's test for a second run)
    expected = "\\" in json.dumps(value, ensure_ascii=False)
    assert regoio.set_input(interp, value) is expected
    assert regoio.needs_escape(value) is expected
    assert regoio.holds_nul(value) is ("\\u0000" in json.dumps(value))
