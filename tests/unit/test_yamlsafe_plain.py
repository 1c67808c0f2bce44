"""yamlsafe's plain path (one pass over the parser's events) must decide exactly as its general
path (nodes composed, then materialised) on every input: the same documents, values, lines and
problems. Plain input takes the plain path; anything else falls back to the general path. Both
parsers (libyaml's and PyYAML's pure one), generated and hand-written hostile input."""

from __future__ import annotations

import random
from typing import Any

import pytest
import yaml

from pushgate.core import yamlsafe

LIMITS = {"max_documents": 20, "max_depth": 12, "max_alias_expansions": 200}

HOSTILE = [
    "",
    "# only a comment\n",
    "---\n---\n~\n---\nnull\n",
    "a: 1\na: 2\n",  # duplicate key
    "? [a, b]\n: c\n",  # non-string key
    "80: http\ntrue: yes\n~: x\n",
    "base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n",  # merge
    "a: &x [1, 2]\nb: *x\n",  # alias
    "a: !!str 1\nb: !!int '2'\nc: !custom x\n",  # tags
    "a: !!int abc\n",
    "a: .inf\nb: -.inf\nc: .nan\n",
    "a: 1e999\n",
    "'<<': quoted merge-looking key\n",
    "=: value key\n",
    "a: 2020-01-01\nb: 2020-01-01T00:00:00Z\n",
    "a: [1, 2\n",  # syntax error
    "a: b: c\n",
    "\t- tab\n",
    "a: \"\\x01\"\n",
    "a: \x07bell\n",
    "[" * 20 + "]" * 20 + "\n",  # deeper than max_depth
    "- - - - - - - - - - - - - - x\n",
    "\n".join(f"---\nk: {i}" for i in range(25)) + "\n",  # more documents than allowed
    "just a string\n",
    "- 1\n- two\n- {three: 3}\n",
    "a:\n  - b: |\n      multi\n      line\n    c: >\n      folded\n",
    "key with spaces: 'quoted: value'\n\"dq\": \"\\u00e9\\n\"\n",
    "a: 0x1F\nb: 0o17\nc: 1_000\nd: +12\ne: 010\nf: 1:30\n",
    "a: yes\nb: No\nc: on\nd: OFF\ne: ~\nf: Null\n",
    "x: " + "y" * 100 + "\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: 1\n...\n---\nb: 2\n",
    "\ufeffa: 1\n",  # a byte order mark
    "a: \x00\n",
    "? !!str k\n: v\n",  # a tag on a key
    "[a, {b: c}, [d], &x e, f]\n",
    "- |\n  text\n- ''\n- \"\"\n- !!null ''\n",
    "99999999999999999999999: big\n",
    "a: 99999999999999999999999\nb: -0.0\nc: 1_0.5\n",
]

WORDS = ["name", "app", "v1", "8080", "true", "null", "1.5", "-3", "x y", "a:b", "#c", "é", "", "~",
         "0x10", "1e3", "yes", "2020-01-01", "<<", "=", "'q'", '"d"', "\\", "\t", "\n"]


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.45:
        return rng.choice([rng.choice(WORDS), rng.randint(-5, 10**6), rng.random(), True, None])
    if roll < 0.75:
        return {rng.choice(WORDS[:12]) + str(i % 3): _random_value(rng, depth + 1)
                for i in range(rng.randint(0, 5))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def _generated(seed: int) -> str:
    rng = random.Random(seed)
    docs = [yaml.safe_dump(_random_value(rng, 0), default_flow_style=rng.choice([None, True, False]),
                           allow_unicode=rng.random() < 0.5) for _ in range(rng.randint(1, 3))]
    text = "---\n".join(docs)
    if rng.random() < 0.3:  # some damage: a tab, a stray colon, a cut, an alias
        pos = rng.randrange(len(text) + 1)
        text = text[:pos] + rng.choice(["\t", ": ", "*a", "&a ", "!!str ", "<<: ", "\n-", ""]) + text[pos:]
    return text


def _canon(span: Any) -> Any:
    if isinstance(span, int):
        return span
    return (span.line, tuple((span.fields[i], _canon(span.fields[i + 1]))
                             for i in range(0, len(span.fields), 2)))


def _parse(text: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """parse_yaml's result, by the general path only, or the plain path first (whatever parser:
    parse_yaml itself takes the plain path with libyaml's only)."""
    monkeypatch.setattr(yamlsafe, "FAST", False)
    try:
        if not fast:
            raise yamlsafe._General
        plain = yamlsafe._plain(text, LIMITS["max_documents"], LIMITS["max_depth"])
        parsed = yamlsafe.Parsed(plain, [])
    except yamlsafe._General:
        parsed = yamlsafe.parse_yaml("f.yaml", text, **LIMITS)
    docs = [(d.index, repr(d.value), _canon(d.span)) for d in parsed.documents]
    return docs, [str(p) for p in parsed.problems]


# Each loader's plain path; libyaml's twice: in C (pushgate/core/_yamlplain.c) and in Python.
PATHS = [(loader, c) for loader in yamlsafe.LOADERS for c in (True, False)
         if not c or loader is yamlsafe._C_LOADER]


@pytest.fixture(params=PATHS, ids=lambda p: p[0].__name__.strip("_") + ("-c" if p[1] else ""))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    loader, c = request.param
    monkeypatch.setattr(yamlsafe, "LOADER", loader)
    if not c:
        monkeypatch.setattr(yamlsafe, "_C_LOADER", None)


def test_the_c_plain_path_is_built() -> None:
    # setup.sh installs the package with its extensions (a C compiler and libyaml's header are
    # on the test machine): without it the "-c" cases above would not exist.
    assert yamlsafe._C is not None and yamlsafe._C_LOADER is yamlsafe.LOADER


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize("text", HOSTILE + [_generated(seed) for seed in range(300)])
def test_plain_path_decides_as_the_general_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _parse(text, True, monkeypatch) == _parse(text, False, monkeypatch)


@pytest.mark.usefixtures("loader")
def test_plain_manifests_take_the_plain_path() -> None:
    from bench import corpus

    files = corpus.generate(60)
    for text in files.values():
        docs = yamlsafe._plain(text, 20, 12)  # raises _General if it would fall back
        assert docs and all(isinstance(d.value, dict) for d in docs)
        # a leading byte order mark is skipped, as PyYAML's parsers skip it
        assert repr(yamlsafe._plain("\ufeff" + text, 20, 12)) == repr(docs)
    with pytest.raises(yamlsafe._General):
        yamlsafe._plain("a: &x 1\nb: *x\n", 20, 12)


def test_nesting_beyond_what_the_c_pass_walks_goes_to_the_general_path() -> None:
    deep = "[" * 450 + "]" * 450 + "\n"
    with pytest.raises(yamlsafe._General):
        yamlsafe._plain(deep, 20, 10_000)
    assert yamlsafe._plain("[" * 300 + "]" * 300 + "\n", 20, 10_000)[0].value is not None
