"""Unit tests of `pushgate.core.manifests` (and the `yamlsafe` parsing under it).

Pure and fast: bytes in, manifests and violations out. YAML tests marked `both_parsers` run on
libyaml's parser and on PyYAML's pure-Python one, which must agree on lines and outcomes.
"""

from __future__ import annotations

import json
import random
import time
import tracemalloc

import pytest

from pushgate.core import manifests, violations, yamlsafe


@pytest.fixture(params=yamlsafe.LOADERS, ids=lambda loader: loader.__name__.strip("_"))
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsafe, "LOADER", request.param)


both_parsers = pytest.mark.usefixtures("parser")


def load(text: str, path: str = "m.yaml", **limits: int) -> manifests.LoadResult:
    return manifests.load(path, text.encode(), manifests.Limits(**limits))


def only_problem(result: manifests.LoadResult) -> violations.Violation:
    assert len(result.problems) == 1, [str(p) for p in result.problems]
    return result.problems[0]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app.kubernetes.io/name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


# --- objects, lines, identity ------------------------------------------------------------


@both_parsers
def test_a_deployment_loads_with_its_identity() -> None:
    result = load(DEPLOYMENT, path="apps/web.yaml")
    assert result.problems == []
    [m] = result.manifests
    assert (m.path, m.line, m.index) == ("apps/web.yaml", 1, 0)
    assert (m.api_version, m.kind, m.namespace, m.name) == ("apps/v1", "Deployment", "shop", "web")
    assert m.ref == "Deployment/shop/web"
    assert m.key == ("apps", "Deployment", "shop", "web")
    assert m.obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_core_group_and_cluster_scoped_identity() -> None:
    [m] = load("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n").manifests
    assert (m.namespace, m.ref, m.key) == ("", "Namespace/shop", ("", "Namespace", "", "shop"))


@both_parsers
@pytest.mark.parametrize(
    ("dotted", "line"),
    [
        ("", 1),
        ("kind", 2),
        ("metadata.name", 4),
        ("metadata.labels.app.kubernetes.io/name", 7),  # a key holding dots
        ("spec.template.spec.containers.0", 12),
        ("spec.template.spec.containers.0.image", 13),
        ("spec.template.spec.containers[0].image", 13),
        ("spec.template.spec.containers.0.resources.limits", 12),  # missing: nearest parent
        ("spec.template.spec.containers.3", 11),
        ("status", 1),
    ],
)
def test_line_of_a_field(dotted: str, line: int) -> None:
    [m] = load(DEPLOYMENT).manifests
    assert m.line_of(dotted) == line


@both_parsers
def test_spans_are_compact_and_keys_shared() -> None:
    """Every cached manifest holds its spans: a scalar's is only its line (an int), a field
    list one tuple, and keys, list indexes and short values are one string per distinct text
    (bench/RESULTS.md, rss). Lines stay exact, beyond 256 list items and for merged keys."""
    text = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: &l {app: web}\n"
            "  annotations:\n    <<: *l\n    app: db\ndata:\n  items:\n"
            + "".join(f"  - v{i}\n" for i in range(300)))
    a, b = (load(text, path=f"{n}.yaml").manifests[0] for n in "ab")
    assert a.span is not None and b.span is not None
    assert a.span.fields[:2] == ("apiVersion", 1)  # a scalar's span: its line
    assert all(x is y for x, y in zip(a.span.fields[::2], b.span.fields[::2], strict=True))
    assert a.obj["metadata"]["labels"]["app"] is b.obj["metadata"]["labels"]["app"]
    assert a.line_of("data.items.0") == 11 and a.line_of("data.items.299") == 310
    assert a.line_of("data.items.300") == 10  # missing: its list
    assert a.line_of("metadata.annotations.app") == 8  # the explicit key wins over the merged one
    assert a.obj["metadata"]["annotations"] == {"app": "db"}
    assert a.span.children["metadata"].children["labels"].line == 5


def _paths(value: object, prefix: str = "") -> list[str]:
    """Every dotted path of a JSON value, and one missing path under each collection."""
    out = [prefix]
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for k, v in items:
        out.extend(_paths(v, f"{prefix}.{k}" if prefix else str(k)))
    if isinstance(value, (dict, list)):
        out.append(f"{prefix}.missing" if prefix else "missing")
    return out


@both_parsers
def test_a_packed_span_answers_every_line_as_the_span_does() -> None:
    """A cache keeps spans packed (manifests.packed, yamlsafe.pack): the same span comes back,
    and line_of gives the same line for every field, list item, dotted key and missing field,
    also for keys no UTF-8 text holds (a lone surrogate from a JSON escape)."""
    text = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: &l {app: web}\n"
            "  annotations:\n    <<: *l\n    app.kubernetes.io/name: db\ndata:\n  items:\n"
            + "".join(f"  - {{k: v{i}, n: [1, 2]}}\n" for i in range(300)))
    docs = [load(text).manifests[0],
            load('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"},\n'
                 ' "data": {"\\ud800": "x", "deep": [[{"a": 1}]]}}', path="m.json").manifests[0]]
    for m in docs:
        assert isinstance(m.span, yamlsafe.Span)
        assert yamlsafe.unpack(yamlsafe.pack(m.span)) == m.span
        (kept,) = manifests.packed(manifests.LoadResult([m], [])).manifests
        assert isinstance(kept.span, bytes) and kept.obj is m.obj and kept == m
        paths = [*_paths(m.obj), "metadata.annotations.app.kubernetes.io/name", "data.items[299].n[1]"]
        assert len(paths) > 15
        assert [kept.line_of(p) for p in paths] == [m.line_of(p) for p in paths]
    assert manifests.packed(manifests.LoadResult(docs[:1], [])).manifests[0].line_of(
        "data.items.299.n.1") == 310


def test_line_of_without_a_span_is_the_object_line() -> None:
    m = manifests.Manifest("x.yaml", 7, 0, {"kind": "ConfigMap"})
    assert m.line_of("metadata.name") == 7


@both_parsers
def test_multi_document_lines_and_indexes_skip_empty_documents() -> None:
    text = (
        "---\n# only a comment\n---\n"  # documents 0 and 1 (1 starts at line 3)
        + CONFIGMAP.format(name="a")  # lines 4-7
        + "---\n"  # document 2: empty
        + "---\n~\n"  # document 3: null
        + "--- \n"  # document 4 starts at line 11
        + CONFIGMAP.format(name="b")  # line 12
    )
    result = load(text)
    assert result.problems == []
    assert [(m.name, m.line, m.index) for m in result.manifests] == [("a", 4, 1), ("b", 12, 4)]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("e.yaml", ""),
        ("e.yaml", "\n\n"),
        ("e.yaml", "# nothing here\n"),
        ("e.yaml", "---\n...\n---\n"),
        ("e.json", ""),
        ("e.json", " \n\t\n"),
    ],
)
def test_empty_files_load_nothing_silently(path: str, text: str) -> None:
    assert load(text, path=path) == manifests.LoadResult([], [])


@both_parsers
def test_timestamps_stay_strings_and_objects_are_json() -> None:
    text = CONFIGMAP.format(name="a") + (
        "  creationTimestamp: 2020-01-01\n"
        "data:\n"
        "  at: 2020-01-01T10:00:00Z\n"
        "  count: 3\n"
        "  ratio: 0.5\n"
        "  flag: yes\n"
        "  empty:\n"
    )
    [m] = load(text).manifests
    assert m.obj["metadata"]["creationTimestamp"] == "2020-01-01"
    assert m.obj["data"] == {
        "at": "2020-01-01T10:00:00Z",
        "count": 3,
        "ratio": 0.5,
        "flag": True,
        "empty": None,
    }
    assert json.loads(json.dumps(m.obj, allow_nan=False)) == m.obj


@both_parsers
def test_merge_keys_are_allowed_and_explicit_keys_win() -> None:
    text = CONFIGMAP.format(name="a") + (
        "  labels: &common {app: web, tier: front}\n  annotations:\n    <<: *common\n    tier: back\n"
    )
    result = load(text)
    assert result.problems == []
    metadata = result.manifests[0].obj["metadata"]
    assert metadata["annotations"] == {"app": "web", "tier": "back"}
    assert metadata["annotations"] is not metadata["labels"]


@both_parsers
def test_aliases_are_copied_not_shared() -> None:
    text = CONFIGMAP.format(name="a") + "  labels: &l {app: web}\nspec:\n  selector: *l\n"
    [m] = load(text).manifests
    m.obj["spec"]["selector"]["app"] = "changed"
    assert m.obj["metadata"]["labels"] == {"app": "web"}


# --- YAML problems -----------------------------------------------------------------------


@both_parsers
def test_malformed_yaml_gives_line_and_column() -> None:
    v = only_problem(load("a: 1\nb: 2\nc: d: e\n"))
    assert (v.path, v.line, v.rule, v.obj) == ("m.yaml", 3, "yaml", "")
    assert v.message.startswith("line 3, column 5: mapping values are not allowed")


@both_parsers
def test_malformed_yaml_names_the_construct_it_was_in() -> None:
    v = only_problem(load("a: [1, 2\nb: 3\n"))
    assert v.line == 2
    assert v.message.startswith("line 2, column 2: ")
    assert v.message.endswith("(while parsing a flow sequence at line 1)")


@both_parsers
def test_documents_before_a_syntax_error_still_load() -> None:
    result = load(CONFIGMAP.format(name="a") + "---\nkey: [\n")
    assert [m.name for m in result.manifests] == ["a"]
    assert [v.rule for v in result.problems] == ["yaml"]


@both_parsers
@pytest.mark.parametrize(
    ("text", "line", "key", "first"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: a}\n", 3, "kind", 2),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
            "  template:\n    spec:\n      containers:\n        - name: web\n"
            "          image: a\n          image: b\n",
            11,
            "image",
            10,
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, 'name': b}\n", 3, "name", 3),
    ],
    ids=["top-level", "nested-in-a-list", "flow-and-quoted"],
)
def test_duplicate_keys_are_errors_naming_both_lines(text: str, line: int, key: str, first: int) -> None:
    result = load(text)
    v = only_problem(result)
    assert (v.line, v.rule) == (line, "yaml.duplicate-key")
    assert v.message == f'duplicate key "{key}" (first at line {first})'
    assert result.manifests == []


@both_parsers
def test_duplicate_key_renders_as_git_push_prints_it() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: a}\n"
    v = only_problem(load(text, path="apps/cm.yaml"))
    assert str(v) == 'apps/cm.yaml:3 [yaml.duplicate-key] duplicate key "kind" (first at line 2)'


@both_parsers
@pytest.mark.parametrize(
    ("key_line", "message"),
    [
        ("on: push", 'key "on" is read as a boolean, not a string: quote it'),
        ("yes: 1", 'key "yes" is read as a boolean, not a string: quote it'),
        ("80: http", 'key "80" is read as a number, not a string: quote it'),
        ("~: x", 'key "~" is read as null, not a string: quote it'),
        ("? [a, b]\n  : x", "key is a sequence, not a string"),
    ],
)
def test_keys_must_be_strings(key_line: str, message: str) -> None:
    v = only_problem(load(CONFIGMAP.format(name="a") + "data:\n  " + key_line + "\n"))
    assert (v.line, v.rule, v.message) == (6, "yaml.key", message)


@both_parsers
@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object/apply:os.system ['true']", "!!python/object/apply:os.system"),
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!timestamp 2020-01-01", "!!timestamp"),
        ("!!omap [a: 1]", "!!omap"),
        ("!foo bar", "!foo"),
        ("!!map [1]", "!!map"),
    ],
)
def test_tags_other_than_json_types_are_errors(value: str, tag: str) -> None:
    v = only_problem(load(CONFIGMAP.format(name="a") + f"data:\n  x: {value}\n"))
    assert (v.line, v.rule) == (6, "yaml.tag")
    assert v.message.startswith(f"tag {tag} is not allowed")


@both_parsers
@pytest.mark.parametrize(
    ("value", "rule", "message"),
    [
        (".inf", "yaml.value", ".inf is not a number JSON can hold"),
        ("-.Inf", "yaml.value", "-.Inf is not a number JSON can hold"),
        (".nan", "yaml.value", ".nan is not a number JSON can hold"),
        ("!!int abc", "yaml.value", "cannot read 'abc' as !!int"),
        ("*nope", "yaml", "alias *nope has no anchor before it"),
        ("&me [*me]", "yaml", "alias *me is inside its own anchor"),
    ],
)
def test_values_json_cannot_hold_are_errors(value: str, rule: str, message: str) -> None:
    v = only_problem(load(CONFIGMAP.format(name="a") + f"data:\n  x: {value}\n"))
    assert (v.line, v.rule, v.message) == (6, rule, message)


@both_parsers
def test_control_characters_are_errors_with_their_position() -> None:
    v = only_problem(load("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\x07\n"))
    assert (v.line, v.rule) == (4, "yaml")
    assert v.message == "line 4, column 10: control character U+0007 is not allowed in YAML"


# --- limits ------------------------------------------------------------------------------

LOL_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{this}: &{this} [{','.join(['*' + prev] * 9)}]\n"
    for prev, this in zip("abcdefgh", "bcdefghi", strict=True)
)


@both_parsers
def test_billion_laughs_is_refused_quickly_in_little_memory() -> None:
    assert len(LOL_BOMB) < 400  # expands to 9^9 = 387,420,489 strings
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = load(LOL_BOMB)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    v = only_problem(result)
    assert (v.line, v.rule) == (4, "yaml.limits")  # a+b+c expand to 909 nodes, d passes 1000
    assert v.message == "aliases expand to more than 1000 nodes (a YAML bomb?)"
    assert elapsed < 1.0
    assert peak < 2 * 1024 * 1024


@both_parsers
def test_alias_budget_is_per_file_across_documents() -> None:
    doc = CONFIGMAP + "  labels: &l {{a: '1', b: '2', c: '3'}}\n"
    doc += "data:\n" + "".join(f"  k{i}: *l\n" for i in range(10))  # 10 x 7 nodes
    text = "---\n".join(doc.format(name=f"cm{i}") for i in range(3))
    assert len(load(text, max_alias_expansions=210).manifests) == 3
    result = load(text, max_alias_expansions=209)
    assert [m.name for m in result.manifests] == ["cm0", "cm1"]
    assert only_problem(result).rule == "yaml.limits"


def deep(levels: int) -> str:
    """A ConfigMap whose `data` makes the document `levels` collections deep."""
    return CONFIGMAP.format(name="deep") + "data: " + "[" * (levels - 1) + "]" * (levels - 1) + "\n"


@both_parsers
def test_nesting_up_to_the_limit_loads_and_beyond_is_an_error() -> None:
    assert load(deep(64)).problems == []
    v = only_problem(load(deep(65)))
    assert (v.line, v.rule, v.message) == (5, "yaml.limits", "nesting deeper than 64 levels")


@both_parsers
def test_absurd_nesting_is_refused_quickly() -> None:
    started = time.perf_counter()
    v = only_problem(load("a: " + "[" * 50_000 + "]" * 50_000 + "\n"))
    assert v.rule == "yaml.limits"
    assert time.perf_counter() - started < 1.0


@both_parsers
def test_nesting_through_an_alias_counts() -> None:
    text = "a: &a [[[[1]]]]\nb: [[*a]]\n"  # b's alias reaches 1 + 2 + 4 = 7 levels
    assert not [v for v in load(text, max_depth=7).problems if v.rule == "yaml.limits"]
    v = only_problem(load(text, max_depth=6))
    assert (v.line, v.rule) == (2, "yaml.limits")


@both_parsers
def test_more_documents_than_the_limit_is_an_error() -> None:
    text = "".join("---\n" + CONFIGMAP.format(name=f"cm{i}") for i in range(4))
    result = load(text, max_documents=3)
    assert len(result.manifests) == 3
    v = only_problem(result)
    assert (v.line, v.rule, v.message) == (16, "yaml.limits", "more than 3 documents")


def test_a_file_over_the_size_limit_is_not_parsed() -> None:
    result = manifests.load("big.yaml", b"a: [" * 30, manifests.Limits(max_file_bytes=100))
    v = only_problem(result)
    assert str(v) == "big.yaml [yaml.limits] file is 120 bytes, over the limit of 100"
    assert (
        manifests.load("big.yaml", b"a: [" * 25, manifests.Limits(max_file_bytes=100)).problems[0].rule
        == "yaml"
    )


# --- encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["cm.yaml", "cm.json"])
def test_bytes_that_are_not_utf8_are_an_error_with_offset_and_line(path: str) -> None:
    data = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caf\xe9\n"
    v = only_problem(manifests.load(path, data))
    assert (v.line, v.rule) == (4, "encoding")
    assert v.message.startswith("not valid UTF-8 at byte 52 (line 4)")


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("cm.yaml", CONFIGMAP.format(name="a")),
        ("cm.json", '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}'),
    ],
)
def test_a_utf8_bom_is_accepted(path: str, text: str) -> None:
    result = manifests.load(path, b"\xef\xbb\xbf" + text.encode())
    assert result.problems == []
    assert [(m.name, m.line) for m in result.manifests] == [("a", 1)]


# --- what a manifest is ------------------------------------------------------------------


@both_parsers
@pytest.mark.parametrize(
    ("text", "line", "obj", "message"),
    [
        ("kind: ConfigMap\nmetadata: {name: a}\n", 1, "ConfigMap/a", 'missing "apiVersion"'),
        ("apiVersion: v1\nmetadata:\n  name: a\n", 1, "", 'missing "kind"'),
        ("apiVersion: v1\nkind: ConfigMap\n", 1, "ConfigMap", 'missing "metadata.name"'),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n",
            3,
            "ConfigMap",
            'missing "metadata.name"',
        ),
        (
            "apiVersion: v1\nkind: 42\nmetadata: {name: a}\n",
            2,
            "",
            '"kind" must be a non-empty string, not a number',
        ),
        (
            "apiVersion: ''\nkind: ConfigMap\nmetadata: {name: a}\n",
            1,
            "ConfigMap/a",
            '"apiVersion" must be a non-empty string, not empty',
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: 123\n",
            4,
            "ConfigMap",
            '"metadata.name" must be a non-empty string, not a number',
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: [x]\n",
            5,
            "ConfigMap/a",
            '"metadata.namespace" must be a non-empty string, not a list',
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [a]\n",
            3,
            "ConfigMap",
            '"metadata" must be a mapping, not a list',
        ),
        ("- a\n- b\n", 1, "", "expected a Kubernetes object (a mapping), found a list"),
        ("hello\n", 1, "", "expected a Kubernetes object (a mapping), found a string"),
    ],
)
def test_what_is_not_a_manifest(text: str, line: int, obj: str, message: str) -> None:
    result = load(text)
    assert result.manifests == []
    v = only_problem(result)
    assert (v.line, v.obj, v.rule, v.message) == (line, obj, "manifest", message)


@pytest.mark.parametrize(("meta", "line", "field", "value"), [
    ('name: ".."', 4, "name", ".."),
    ('name: "."', 4, "name", "."),
    ("name: a/b", 4, "name", "a/b"),
    ('name: "50%"', 4, "name", "50%"),
    ('name: a\n  namespace: ".."', 5, "namespace", ".."),
    ("name: a\n  namespace: x/y", 5, "namespace", "x/y"),
    ("generateName: run/", 4, "generateName", "run/"),
])
def test_a_name_that_is_not_a_url_path_segment_is_refused(meta: str, line: int, field: str,
                                                          value: str) -> None:
    # The API server refuses these for every kind: the name is a segment of the object's URL.
    result = load(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  {meta}\n")
    assert result.manifests == []
    v = only_problem(result)
    assert (v.rule, v.line) == ("manifest", line)
    assert v.message.startswith(f'"metadata.{field}" {value!r} cannot be a name'), v.message


@pytest.mark.parametrize("meta", ["name: system:controller:x", "name: a.b", "generateName: ..",
                                  "name: ...", "name: a..b"])
def test_names_the_api_server_accepts_as_path_segments_load(meta: str) -> None:
    [m] = load(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  {meta}\n").manifests
    assert m.obj["metadata"]


def test_every_missing_field_is_reported() -> None:
    result = load("metadata: {}\n")
    assert [v.message for v in result.problems] == [
        'missing "apiVersion"',
        'missing "kind"',
        'missing "metadata.name"',
    ]


def test_generate_name_stands_in_for_name() -> None:
    text = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n  namespace: db\n"
    [m] = load(text).manifests
    assert (m.name, m.ref) == ("", "Job/db/migrate-*")


@both_parsers
def test_a_yaml_list_expands_to_its_items_with_their_lines() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "  - apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: a}\n"
        "  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: b\n"
    )
    result = load(text)
    assert result.problems == []
    assert [(m.name, m.line, m.index) for m in result.manifests] == [("a", 4, 0), ("b", 7, 0)]
    assert result.manifests[1].line_of("metadata.name") == 10


def test_a_typed_list_expands_and_bad_items_are_reported() -> None:
    text = (
        "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n"
        "  - apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: web}\n"
        "  - just a string\n"
    )
    result = load(text)
    assert [m.ref for m in result.manifests] == ["Deployment/web"]
    v = only_problem(result)
    assert (v.line, v.rule) == (7, "manifest")


def test_list_items_must_be_a_list() -> None:
    v = only_problem(load("apiVersion: v1\nkind: List\nitems: {a: 1}\n"))
    assert (v.line, v.rule, v.message) == (3, "manifest", '"items" of a List must be a list')


# --- JSON --------------------------------------------------------------------------------

JSON_LIST = """\
{
  "kind": "List",
  "items": [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
    {
\t"apiVersion": "v1",
\t"kind": "ConfigMap",
\t"metadata": {"name": "b", "namespace": "ns"},
\t"data": {"n": 1e3, "t": "2020-01-01", "esc": "caf\\u00e9 \\/"}
    }
  ]
}
"""


def test_a_json_list_expands_to_its_items_with_their_lines() -> None:
    result = load(JSON_LIST, path="list.json")
    assert result.problems == []
    assert [(m.ref, m.line) for m in result.manifests] == [
        ("ConfigMap/a", 4),
        ("ConfigMap/ns/b", 5),
    ]
    b = result.manifests[1]
    assert b.obj["data"] == {"n": 1000.0, "t": "2020-01-01", "esc": "café /"}
    assert (b.line_of("metadata.namespace"), b.line_of("data.esc")) == (8, 9)


def test_a_top_level_json_array_expands_to_its_items() -> None:
    text = '[\n  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},\n' + (
        '  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}\n]\n'
    )
    result = load(text, path="ns.json")
    assert result.problems == []
    assert [(m.ref, m.line) for m in result.manifests] == [("Namespace/a", 2), ("Namespace/b", 3)]


def test_json_duplicate_keys_are_errors_naming_both_lines() -> None:
    text = '{"apiVersion": "v1",\n "kind": "ConfigMap",\n "metadata": {"name": "a",\n   "name": "b"}}'
    result = load(text, path="cm.json")
    assert result.manifests == []
    v = only_problem(result)
    assert (v.line, v.rule, v.message) == (
        4,
        "json.duplicate-key",
        'duplicate key "name" (first at line 3)',
    )


@pytest.mark.parametrize(
    "text",
    [
        '{\n  "a": 1\n  "b": 2\n}',
        '{"a": 1,}',
        "[1, 2,]",
        '{"a" 1}',
        "{'a': 1}",
        '{"a": 1}\n{"b": 2}',
        '{"a": tru}',
        '{"a": [1, 2}',
        '{"a": 01}',
        "[",
    ],
)
def test_json_syntax_errors_match_the_json_module(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    v = only_problem(load(text, path="bad.json"))
    e = expected.value
    assert (v.line, v.rule) == (e.lineno, "json")
    assert v.message == f"line {e.lineno}, column {e.colno}: {e.msg}"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ('{"a": 1e999}', "json.value"),
        ('{"a": ' + "[" * 64 + "]" * 64 + "}", "json.limits"),
        ('{"a": "tab\tinside"}', "json"),
        ('{"a": NaN}', "json"),  # Python's json module reads it, but it is not JSON
    ],
)
def test_json_values_and_nesting_are_bounded(text: str, rule: str) -> None:
    assert only_problem(load(text, path="x.json")).rule == rule


def test_a_json_scalar_is_not_a_manifest() -> None:
    v = only_problem(load('"hello"', path="x.json"))
    assert (v.rule, v.message) == (
        "manifest",
        "expected a Kubernetes object (a mapping), found a string",
    )


# --- duplicates across files -------------------------------------------------------------


def test_duplicates_across_files_name_both() -> None:
    first = load(DEPLOYMENT, path="apps/web.yaml").manifests
    second = load(CONFIGMAP.format(name="x") + "---\n" + DEPLOYMENT, path="apps/copy.yaml")
    [v] = manifests.find_duplicates([*first, *second.manifests])
    assert (v.path, v.line, v.obj, v.rule) == (
        "apps/copy.yaml",
        6,
        "Deployment/shop/web",
        "duplicate-object",
    )
    assert str(v) == (
        "apps/copy.yaml:6 Deployment/shop/web [duplicate-object] "
        "duplicate of Deployment/shop/web at apps/web.yaml:1"
    )


def object_at(path: str, api_version: str, kind: str, name: str, namespace: str = "") -> manifests.Manifest:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return manifests.Manifest(path, 1, 0, {"apiVersion": api_version, "kind": kind, "metadata": metadata})


@pytest.mark.parametrize(
    ("other", "duplicate"),
    [
        (object_at("b.yaml", "apps/v1", "Deployment", "web", "shop"), True),
        (object_at("b.yaml", "apps/v1beta2", "Deployment", "web", "shop"), True),  # same group
        (object_at("b.yaml", "apps/v1", "Deployment", "web", "other"), False),
        (object_at("b.yaml", "apps/v1", "StatefulSet", "web", "shop"), False),
        (object_at("b.yaml", "example.com/v1", "Deployment", "web", "shop"), False),
        (object_at("b.yaml", "apps/v1", "Deployment", "web"), False),
    ],
)
def test_what_counts_as_the_same_object(other: manifests.Manifest, duplicate: bool) -> None:
    web = object_at("a.yaml", "apps/v1", "Deployment", "web", "shop")
    assert bool(manifests.find_duplicates([web, other])) is duplicate


def test_every_extra_occurrence_is_reported_against_the_first() -> None:
    copies = [object_at(f"{n}.yaml", "v1", "Namespace", "shop") for n in "abc"]
    found = manifests.find_duplicates(copies)
    assert [(v.path, v.message) for v in found] == [
        ("b.yaml", "duplicate of Namespace/shop at a.yaml:1"),
        ("c.yaml", "duplicate of Namespace/shop at a.yaml:1"),
    ]


def test_generated_names_are_never_duplicates() -> None:
    job = "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: migrate-}\n"
    found = load(job + "---\n" + job).manifests
    assert len(found) == 2
    assert manifests.find_duplicates(found) == []


# --- which paths hold manifests ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "include", "exclude", "expected"),
    [
        ("apps/web.yaml", None, (), True),
        ("apps/web.yml", None, (), True),
        ("crds/thing.json", None, (), True),
        ("README.md", None, (), False),
        ("apps/web.YAML", None, (), False),  # case-sensitive, like Git paths
        ("apps/kustomization.yaml", ("kustomization.yaml",), (), True),
        ("apps/web.yaml", ("kustomization.yaml",), (), False),
        ("docs/example.yaml", None, ("docs/*",), False),
        ("docs/deep/example.yaml", None, ("docs/*",), False),
        ("apps/docs/example.yaml", None, ("docs/*",), True),  # exclude anchors at the root
        ("docs/example.yaml", None, ("docs",), False),
        ("docs/example.yaml", None, ("docs/",), False),
        ("documents/example.yaml", None, ("docs",), True),  # whole path components only
        ("apps/web.tmpl.yaml", None, ("*.tmpl.yaml",), False),
        ("apps/web.yaml", None, ("*.tmpl.yaml",), True),
        ("apps/secret.sops.yaml", None, ("docs/*", "*.sops.yaml"), False),
    ],
)
def test_is_manifest_path(
    path: str, include: tuple[str, ...] | None, exclude: tuple[str, ...], expected: bool
) -> None:
    if include is None:
        assert manifests.is_manifest_path(path, exclude=exclude) is expected
    else:
        assert manifests.is_manifest_path(path, include, exclude) is expected


def test_is_manifest_path_matches_as_fnmatchcase_per_pattern() -> None:
    # the patterns are matched as one expression: the same answers as fnmatchcase one by one
    import fnmatch
    import itertools
    import posixpath

    def one_by_one(path: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
        if not any(fnmatch.fnmatchcase(posixpath.basename(path), p) for p in include):
            return False
        parts = path.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        return not any(fnmatch.fnmatchcase(pr, p.rstrip("/")) for p in exclude for pr in prefixes)

    names = ["a.yaml", "b.yml", "c.json", "d.txt", "x.tmpl.yaml", "[x].yaml", "Y.YAML", "e.yaml\n",
             "f.ya?l", ".hidden.yaml"]
    dirs = ["", "docs/", "apps/web/", "docs/sub/", "a*b/", "[d]/", "a|b/"]
    includes = [("*.yaml", "*.yml", "*.json"), ("*",), ("*.ya?l",), ("[a-c].*",), ("[!a]*",), (),
                ("a.yaml|b.yml",)]
    excludes = [(), ("docs",), ("docs/",), ("*.tmpl.yaml",), ("apps/*",), ("[d]",), ("a*b", "docs/sub"),
                ("a|b",)]
    for d, name, include, exclude in itertools.product(dirs, names, includes, excludes):
        path = d + name
        assert manifests.is_manifest_path(path, include, exclude) is one_by_one(path, include, exclude), (
            path, include, exclude)


# --- hostile input never raises ----------------------------------------------------------


@both_parsers
@pytest.mark.parametrize("path", ["fuzz.yaml", "fuzz.json"])
def test_mangled_input_never_raises(path: str) -> None:
    rng = random.Random(1234)
    seeds = [DEPLOYMENT.encode(), JSON_LIST.encode(), LOL_BOMB.encode(), b"a: &x [*x]\n"]
    alphabet = b"{}[]:,-&*!|>'\"#%@`?\n\t \\\x00\xff\xc3"
    for _ in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            data[pos : pos + rng.randint(0, 3)] = bytes(rng.choices(alphabet, k=rng.randint(0, 3)))
        result = manifests.load(path, bytes(data))
        for m in result.manifests:
            json.dumps(m.obj, allow_nan=False)
        assert all(isinstance(v, violations.Violation) for v in result.problems)


def test_long_scalars_are_never_held_by_the_tag_cache() -> None:
    """The implicit-tag cache keeps short scalars only: a hostile file of many big distinct
    values must not be held in memory after it was refused or checked."""
    yamlsafe._RESOLVED.clear()
    text = "".join(f"k{i}: {'x' * 5000}{i}\n" for i in range(200))
    parsed = yamlsafe.parse_yaml("big.yaml", text, max_documents=10, max_depth=10,
                                 max_alias_expansions=100)
    assert len(parsed.documents) == 1 and len(parsed.documents[0].value) == 200
    held = sum(len(k[2] or "") for k in yamlsafe._RESOLVED)
    assert held < 5000, held
