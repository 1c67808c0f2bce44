"""Safe, bounded parsing of YAML streams and JSON text into plain JSON values with line numbers.

Called only by `manifests.load`, for the gate and the reconciler. Pure: no I/O. Pushed files are
hostile: only str/int/float/bool/null/mapping/list values are built (other tags are problems;
timestamps stay strings, as the API server wants); YAML nodes are composed here from the parser's
events, counting depth and alias expansion *while* composing, so a "billion laughs" bomb is refused
before anything is expanded; duplicate keys and non-string keys (`on:`, `80:`) are problems. JSON
gets a small strict parser: `json` gives no positions, and YAML rejects tab indentation. A document
with a problem is left out of `Parsed.documents`; a syntax error or a limit ends the file.
"""

from __future__ import annotations

import json
import marshal
import math
import re
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from sys import intern
from typing import Any, NoReturn, TypeAlias

import yaml
from yaml import events
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pushgate.core import violations

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE, _NULL = (_TAG + t for t in ("str", "map", "seq", "merge", "null"))
_SCALARS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))
_KEY_TYPES = {_TAG + "bool": "a boolean", _TAG + "int": "a number", _NULL: "null"}


@dataclass(frozen=True, slots=True)
class Span:
    """The line a value starts on, and the spans of its fields (list items keyed "0", "1", ...).

    Compact, because every cached manifest holds one per value (~30 per object, half of a worker's
    cache in dicts and objects: bench/RESULTS.md, rss): `fields` is one tuple of key, child, key,
    child, ..., where a child is a Span, or just its line (an int) when it has no fields."""

    line: int
    fields: tuple[Any, ...] = ()

    def child(self, key: str) -> Span | None:
        fields = self.fields
        for i in range(0, len(fields), 2):
            if fields[i] == key:
                found = fields[i + 1]
                return found if type(found) is Span else Span(found)
        return None

    @property
    def children(self) -> Mapping[str, Span]:
        fields = self.fields
        return {fields[i]: _whole(fields[i + 1]) for i in range(0, len(fields), 2)}


def pack(span: Span) -> bytes:
    """`span` as bytes, for a span kept long (a worker's parsed-file cache): about half the
    memory the Span objects take, which was 40 % of a parsed manifest's (bench/RESULTS.md, rss).
    Spans are read only to place a problem on its line: `unpack` then."""
    return marshal.dumps(_tuples(span))


def unpack(data: bytes) -> Span:
    """The span `pack` was given (equal to it)."""
    return _spans(marshal.loads(data))  # noqa: S302 - bytes made by pack, in this process


def _tuples(span: Span) -> tuple[Any, ...]:
    # A child Span becomes a tuple; keys are strings, a leaf's line an int: tuples are only spans.
    return (span.line, tuple([_tuples(x) if type(x) is Span else x for x in span.fields]))


def _spans(packed: tuple[Any, ...]) -> Span:
    line, fields = packed
    return Span(line, tuple([_spans(x) if type(x) is tuple else x for x in fields]))


Lines: TypeAlias = "Span | int"  # a value's span while parsing: an int when it has no fields


def _span(line: int, spans: dict[str, Lines]) -> Lines:
    """The compact span of a value with these field spans (unique keys: a dict's)."""
    return Span(line, tuple(x for item in spans.items() for x in item)) if spans else line


def _keyed(key_line: int, value: Lines) -> Lines:
    """A field's span: its key's line, its value's fields."""
    return key_line if type(value) is int else Span(key_line, value.fields)  # type: ignore[union-attr]


_INTERN_LEN = 24  # characters: short values recur across manifests ("v1", "TCP", "100m")
_INDEXES = tuple(str(i) for i in range(256))


def _index(i: int) -> str:
    """A list item's key in its span: one string per index, not one per item."""
    return _INDEXES[i] if i < 256 else str(i)


def _whole(value: Lines) -> Span:
    return value if type(value) is Span else Span(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Document:
    index: int  # 0-based position in the stream, empty documents included
    value: Any  # a JSON value: dict, list, str, int, float, bool or None
    span: Span


@dataclass(frozen=True)
class Parsed:
    documents: list[Document]
    problems: list[violations.Violation]


@dataclass
class _Stop(Exception):
    """A problem after which the rest of the file cannot be trusted or is not worth reading."""

    line: int
    rule: str
    message: str


# --- YAML ------------------------------------------------------------------------------------


# Timestamps stay strings: the API server wants `creationTimestamp: 2020-01-01` as one, and a
# datetime is not JSON. `=` (YAML 1.1's "value" key) means nothing to Kubernetes either.
_RESOLVERS = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TAG + "timestamp", _TAG + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _PureLoader(yaml.SafeLoader):
    yaml_implicit_resolvers = _RESOLVERS


_Loader: TypeAlias = "yaml.SafeLoader | yaml.CSafeLoader"  # a string: CSafeLoader needs libyaml
LOADERS: tuple[type[_Loader], ...] = (_PureLoader,)

if hasattr(yaml, "CSafeLoader"):  # libyaml parses about ten times faster than pure Python

    class _FastLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _RESOLVERS

    LOADERS = (_FastLoader, *LOADERS)

LOADER: type[_Loader] = LOADERS[0]  # the tests run both


_ENDS = (events.MappingEndEvent, events.SequenceEndEvent)
_RESOLVED: dict[tuple[Any, ...], str] = {}
_RESOLVED_MAX = 50_000  # entries
_RESOLVED_LEN = 64  # characters: longer scalars are resolved each time, never held (hostile input)


def _resolve(loader: Any, kind: type[Node], value: str | None, implicit: Any) -> str:
    """The loader's implicit tag, remembered per (loader, kind, value, implicit): the same
    keys and values recur in every manifest, and PyYAML's resolver runs regexes each time."""
    if value is not None and len(value) > _RESOLVED_LEN:
        return str(loader.resolve(kind, value, implicit))  # a pushed file's own bytes
    key = (type(loader), kind, value, implicit)
    tag = _RESOLVED.get(key)
    if tag is None:
        tag = loader.resolve(kind, value, implicit)
        if len(_RESOLVED) >= _RESOLVED_MAX:
            _RESOLVED.clear()
        _RESOLVED[key] = tag
    return tag


def _text(value: str) -> str:
    """A string value as kept: short ones shared (interned), they recur across manifests."""
    return intern(value) if len(value) <= _INTERN_LEN else value


def _line(node_or_event: Any) -> int:
    mark = node_or_event.start_mark
    return int(mark.line) + 1 if mark is not None else 0


class _Composer:
    """Builds nodes from parser events, counting depth and alias expansion as it goes.

    PyYAML's composer builds graphs whose aliases expand to 10^9 nodes, leaving the cost to
    whoever walks them; here each alias spends its target's expanded size from a per-file budget.
    """

    def __init__(self, path: str, max_depth: int, max_aliases: int) -> None:
        # A _Loader: PyYAML's parser API is untyped, and its C and Python stubs differ.
        self.loader: Any = None
        self.path, self.max_depth, self.max_aliases = path, max_depth, max_aliases
        self.expanded = 0  # per file: a bomb split across documents is still a bomb
        self.anchors: dict[str, Node] = {}
        self.shapes: dict[int, tuple[int, int]] = {}  # id(collection) -> (expanded size, height)
        self.open: set[int] = set()  # collections still being composed
        self.problems: list[violations.Violation] = []

    def documents(self, max_documents: int) -> Iterator[tuple[int, Node, int]]:
        """(index, root node, number of problems before it) for each document of the stream."""
        self.loader.get_event()  # StreamStartEvent
        index = 0
        while not self.loader.check_event(events.StreamEndEvent):
            start = self.loader.get_event()  # DocumentStartEvent
            if index >= max_documents:
                raise _Stop(_line(start), "yaml.limits", f"more than {max_documents} documents")
            self.anchors, self.shapes, self.open = {}, {}, set()  # anchors are per document
            before = len(self.problems)
            node = self.compose(0)
            self.loader.get_event()  # DocumentEndEvent
            yield index, node, before
            index += 1

    def compose(self, depth: int) -> Node:
        loader = self.loader
        event = loader.get_event()
        cls = type(event)  # both parsers make exactly these classes (yaml.events)
        if cls is events.AliasEvent:
            return self._alias(event, depth)
        scalar = cls is events.ScalarEvent
        mapping = cls is events.MappingStartEvent
        kind = ScalarNode if scalar else MappingNode if mapping else SequenceNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = _resolve(loader, kind, event.value if scalar else None, event.implicit)
        if not scalar and depth >= self.max_depth:
            raise _Stop(_line(event), "yaml.limits", f"nesting deeper than {self.max_depth} levels")
        node = kind(tag, event.value if scalar else [], event.start_mark, event.end_mark)
        if event.anchor is not None:
            # YAML lets a later anchor reuse a name; aliases after it mean the new node.
            self.anchors[event.anchor] = node
        if scalar:
            return node
        self.open.add(id(node))
        values = node.value
        while type(loader.peek_event()) not in _ENDS:
            child = self.compose(depth + 1)
            values.append((child, self.compose(depth + 1)) if mapping else child)
        node.end_mark = loader.get_event().end_mark
        if mapping:
            self._check_keys(node)
        self.open.discard(id(node))
        return node

    def _alias(self, event: events.AliasEvent, depth: int) -> Node:
        target = self.anchors.get(event.anchor or "")
        if target is None:
            raise _Stop(_line(event), "yaml", f"alias *{event.anchor} has no anchor before it")
        if id(target) in self.open:
            raise _Stop(_line(event), "yaml", f"alias *{event.anchor} is inside its own anchor")
        size, height = self._shape(target)
        self.expanded += size
        if self.expanded > self.max_aliases:
            message = f"aliases expand to more than {self.max_aliases} nodes (a YAML bomb?)"
            raise _Stop(_line(event), "yaml.limits", message)
        if depth + height > self.max_depth:
            raise _Stop(_line(event), "yaml.limits", f"nesting deeper than {self.max_depth} levels")
        return target

    def _shape(self, node: Node) -> tuple[int, int]:
        """(expanded size, height) of a complete node; only alias targets are ever measured."""
        if isinstance(node, ScalarNode):
            return 1, 0
        if id(node) not in self.shapes:
            mapping = isinstance(node, MappingNode)
            children = [n for kv in node.value for n in kv] if mapping else node.value
            shapes = [self._shape(child) for child in children]
            self.shapes[id(node)] = (
                1 + sum(size for size, _ in shapes),
                1 + max((height for _, height in shapes), default=0),
            )
        return self.shapes[id(node)]

    def _check_keys(self, node: Node) -> None:
        first_line: dict[str, int] = {}
        for key, _ in node.value:
            if key.tag == _MERGE:
                continue
            if not isinstance(key, ScalarNode) or key.tag != _STR:
                message = f"key is a {_kind(key)}, not a string"
                if isinstance(key, ScalarNode):
                    what = _KEY_TYPES.get(key.tag, _short(key.tag))
                    message = f'key "{key.value}" is read as {what}, not a string: quote it'
                self.problem(key, "yaml.key", message)
            elif key.value in first_line:
                message = f'duplicate key "{key.value}" (first at line {first_line[key.value]})'
                self.problem(key, "yaml.duplicate-key", message)
            else:
                first_line[key.value] = _line(key)

    def problem(self, node: Node, rule: str, message: str) -> None:
        self.problems.append(violations.error(self.path, _line(node), "", rule, message))


def _materialise(composer: _Composer, node: Node) -> tuple[Any, Lines]:
    """The JSON value of a node (a fresh tree: aliases are copied), and its spans."""
    loader = composer.loader
    if type(node) is ScalarNode and node.tag == _STR:  # what SafeConstructor makes of it
        return _text(node.value), _line(node)
    if isinstance(node, ScalarNode) and node.tag in _SCALARS:
        try:
            value = type(loader).yaml_constructors[node.tag](loader, node)
        except (ValueError, KeyError, yaml.YAMLError):  # `!!int abc`, `!!bool maybe`
            value, message = None, f"cannot read {node.value!r} as {_short(node.tag)}"
            composer.problem(node, "yaml.value", message)
        if isinstance(value, float) and not math.isfinite(value):
            composer.problem(node, "yaml.value", f"{node.value} is not a number JSON can hold")
        return value, _line(node)
    spans: dict[str, Lines] = {}
    if isinstance(node, SequenceNode) and node.tag == _SEQ:
        items: list[Any] = []
        for i, child in enumerate(node.value):
            value, spans[_index(i)] = _materialise(composer, child)
            items.append(value)
        return items, _span(_line(node), spans)
    if isinstance(node, MappingNode) and node.tag == _MAP:
        try:
            loader.flatten_mapping(node)  # `<<` merges; explicit keys win over merged ones
        except yaml.MarkedYAMLError as e:
            composer.problem(node, "yaml", e.problem or "bad merge")
            return None, _line(node)
        fields: dict[str, Any] = {}
        for key, child in node.value:
            name = intern(key.value)  # one string per distinct key, not one per manifest
            fields[name], span = _materialise(composer, child)
            spans[name] = _keyed(_line(key), span)
        return fields, _span(_line(node), spans)
    message = f"tag {_short(node.tag)} is not allowed on a {_kind(node)}: objects are plain JSON"
    composer.problem(node, "yaml.tag", message)
    return None, _line(node)


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _kind(node: Node) -> str:
    return type(node).__name__.removesuffix("Node").lower()


def _syntax_problem(path: str, text: str, e: yaml.YAMLError) -> violations.Violation:
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        line, column, message = e.problem_mark.line + 1, e.problem_mark.column + 1, e.problem
        if e.context:
            where = f" at line {e.context_mark.line + 1}" if e.context_mark is not None else ""
            message = f"{message} ({e.context}{where})"
    elif isinstance(e, yaml.reader.ReaderError) and isinstance(e.character, int):
        # libyaml gives a byte offset and PyYAML a character offset: find the character instead.
        pos = max(text.find(chr(e.character)), 0)
        line, column = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        message = f"control character U+{e.character:04X} is not allowed in YAML"
    else:
        return violations.error(path, 0, "", "yaml", str(e))
    return violations.error(path, line, "", "yaml", f"line {line}, column {column}: {message}")


class _General(Exception):
    """The plain path met what only the general one handles (see `_plain`)."""


FAST = True  # the plain path first (tests/unit/test_yamlsafe_plain.py compares both)


def _plain(text: str, max_documents: int, max_depth: int) -> list[Document]:
    """The documents of a stream that is plain -- no anchor, alias, tag, merge key, non-string or
    duplicate key, no value JSON cannot hold, within the limits, no syntax error -- built in one
    pass over the parser's events, without composing nodes first. Raises _General at anything
    else: the caller then parses the whole text the general way, which decides and reports it.
    Two thirds of a 5,000-file parse was composing nodes and walking them again
    (bench/RESULTS.md, gate_full); most manifests are plain.

    Speed: each event is taken once (no look ahead), a scalar field or item is handled where its
    mapping or sequence is walked, a plain scalar's tag and a short non-string scalar's value are
    remembered per text (`_scalar`), and a span's fields are collected flat, as Span holds them.
    With libyaml's parser the same pass runs in C (`_yamlplain`, when built): ~3.7x faster."""
    if LOADER is _C_LOADER:
        return _plain_c(text, max_documents, max_depth)
    try:
        loader: Any = LOADER(text)  # PyYAML's pure Reader may already raise here
    except (yaml.YAMLError, ValueError) as e:
        raise _General from e
    get = loader.get_event
    tags = _PLAIN_TAGS.setdefault(type(loader), {})
    # Any: each event's position is read directly (the parsers always set one)
    scalar_event: Any = events.ScalarEvent
    mapping_start: Any = events.MappingStartEvent
    mapping_end: Any = events.MappingEndEvent
    sequence_start: Any = events.SequenceStartEvent
    sequence_end: Any = events.SequenceEndEvent

    def scalar(event: Any) -> Any:
        if event.anchor is not None or event.tag is not None:
            raise _General
        return _plain_scalar(loader, tags, event.value, event.implicit, event)

    def collection(event: Any, depth: int) -> tuple[Any, Lines]:
        if ((type(event) is not mapping_start and type(event) is not sequence_start)
                or event.anchor is not None or event.tag is not None or depth >= max_depth):
            raise _General  # an alias, an anchor, a tag, or too deep
        flat: list[Any] = []  # key, span, key, span, ...: Span.fields
        depth += 1
        if type(event) is mapping_start:
            fields: dict[str, Any] = {}
            while True:
                key = get()
                if type(key) is not scalar_event:
                    if type(key) is mapping_end:
                        break
                    raise _General  # a collection or an alias as a key
                name = scalar(key)
                if type(name) is not str:
                    raise _General
                name = intern(name)  # one string per distinct key, not one per manifest
                if name in fields:
                    raise _General
                key_line = key.start_mark.line + 1
                child = get()
                if type(child) is scalar_event:
                    fields[name] = scalar(child)
                    flat += (name, key_line)
                else:
                    fields[name], span = collection(child, depth)
                    flat += (name, _keyed(key_line, span))
            line = event.start_mark.line + 1
            return fields, Span(line, tuple(flat)) if flat else line
        items: list[Any] = []
        i = 0
        while True:
            child = get()
            if type(child) is scalar_event:
                items.append(scalar(child))
                flat += (_index(i), child.start_mark.line + 1)
            elif type(child) is sequence_end:
                break
            else:
                value, span = collection(child, depth)
                items.append(value)
                flat += (_index(i), span)
            i += 1
        line = event.start_mark.line + 1
        return items, Span(line, tuple(flat)) if flat else line

    try:
        documents: list[Document] = []
        get()  # StreamStartEvent
        index = 0
        while type(loader.peek_event()) is not events.StreamEndEvent:
            get()  # DocumentStartEvent
            if index >= max_documents:
                raise _General
            root = get()
            if type(root) is scalar_event:
                value = scalar(root)
                if value is not None:  # `---` alone, comments only, or `~`: no document
                    documents.append(Document(index, value, Span(root.start_mark.line + 1)))
            else:
                value, span = collection(root, 0)
                documents.append(Document(index, value, _whole(span)))
            get()  # DocumentEndEvent
            index += 1
        return documents
    except (yaml.YAMLError, ValueError, KeyError, RecursionError, AttributeError) as e:
        raise _General from e  # AttributeError: an event without a position (none seen)
    finally:
        loader.dispose()
        collection = scalar = None  # type: ignore[assignment]  # closures: a cycle with the parser


def _plain_scalar(loader: Any, tags: dict[str, str], value: str, implicit: Any, event: Any) -> Any:
    """The value of an untagged scalar without an anchor: a str (shared when short), or what
    its tag makes. `tags`: the loader class's plain tags (`_PLAIN_TAGS`)."""
    if implicit[0]:  # plain: the resolver's answer depends on the text alone
        tag = tags.get(value)
        if tag is None:
            tag = _resolve(loader, ScalarNode, value, implicit)
            if len(value) <= _RESOLVED_LEN:
                if len(tags) >= _RESOLVED_MAX:
                    tags.clear()
                tags[value] = tag
    else:
        tag = _resolve(loader, ScalarNode, value, implicit)
    if tag == _STR:
        return intern(value) if len(value) <= _INTERN_LEN else value
    return _scalar(loader, tag, value, event)


_PLAIN_TAGS: dict[type, dict[str, str]] = {}  # per loader class: a plain scalar's text -> its tag
# (tag, text) -> value, for short non-string scalars. Not per loader class: both loaders take
# these tags' constructors from PyYAML's SafeConstructor, so a text makes the same value in both.
_VALUES: dict[tuple[str, str], Any] = {}


def _scalar(loader: Any, tag: str, value: str, event: Any) -> Any:
    """A non-string scalar's value, made by the loader's constructor (remembered when short:
    "8080", "true", "1" recur). Raises _General for a tag JSON has no value for (a timestamp, a
    binary) and for a float JSON cannot hold."""
    found = _VALUES.get((tag, value), _VALUES)
    if found is not _VALUES:
        return found
    if tag not in _SCALARS:
        raise _General
    start, end = (event.start_mark, event.end_mark) if event is not None else (None, None)
    made = type(loader).yaml_constructors[tag](loader, ScalarNode(tag, value, start, end))
    if isinstance(made, float) and not math.isfinite(made):
        raise _General
    if len(value) <= _RESOLVED_LEN:
        if len(_VALUES) >= _RESOLVED_MAX:
            _VALUES.clear()
        _VALUES[(tag, value)] = made
    return made


def _c_plain() -> Any:
    """pushgate.core._yamlplain when it was built and calls the libyaml PyYAML's own parser
    is (the general path parses with PyYAML's: both must read a text alike), else None."""
    if not hasattr(yaml, "CSafeLoader"):
        return None
    try:
        from yaml import _yaml

        from pushgate.core import _yamlplain
    except ImportError:
        return None
    if _yamlplain.version() != _yaml.get_version_string():
        return None
    # It makes Span and Document by setting their slots, as their generated __init__ does: only
    # while they stay frozen dataclasses with these slots and nothing run at construction.
    classes: tuple[tuple[Any, tuple[str, ...]], ...] = (
        (Span, ("line", "fields")), (Document, ("index", "value", "span")))
    for cls, slots in classes:
        if (cls.__slots__ != slots or cls.__new__ is not object.__new__
                or hasattr(cls, "__post_init__") or not cls.__dataclass_params__.frozen):
            return None
    return _yamlplain


_C = _c_plain()
# The loader whose plain path runs in C: its resolver and constructors decide the scalars C
# leaves to Python (`_c_scalar`), through one shared instance (they keep no state for scalars).
_C_LOADER: Any = _FastLoader if _C is not None else None
_C_RESOLVER: Any = _C_LOADER("") if _C is not None else None
_C_TAGS: dict[str, str] = _PLAIN_TAGS.setdefault(_C_LOADER, {}) if _C is not None else {}
# (its plain tags: `_plain` clears that dict, never replaces it)


def _plain_c(text: str, max_documents: int, max_depth: int) -> list[Document]:
    try:
        found = _C.plain(text, max_documents, max_depth, _C_TAGS, _VALUES, _STR, _c_scalar, Span,
                         Document, _INDEXES)
    except (yaml.YAMLError, ValueError, KeyError, RecursionError, AttributeError) as e:
        raise _General from e
    if found is None:
        raise _General
    return found  # type: ignore[no-any-return]


def _c_scalar(value: str, plain: bool, quoted: bool) -> Any:
    """A scalar the C pass leaves to Python (one not known to be a plain string or value)."""
    return _plain_scalar(_C_RESOLVER, _C_TAGS, value, (plain, quoted), None)


def parse_yaml(
    path: str, text: str, *, max_documents: int, max_depth: int, max_alias_expansions: int
) -> Parsed:
    """Every non-empty, problem-free document of a YAML stream, and every problem found."""
    # Not with PyYAML's pure-Python parser (the fallback without libyaml): its scanner is most
    # of a parse, and a file the plain path hands over would pay it twice (50,000 nested
    # brackets: 0.4 s each time).
    if FAST and LOADER is not _PureLoader:
        try:
            return Parsed(_plain(text, max_documents, max_depth), [])
        except _General:
            pass
    documents: list[Document] = []
    composer = _Composer(path, max_depth, max_alias_expansions)
    problems = composer.problems
    try:
        composer.loader = LOADER(text)  # PyYAML's pure Reader may already raise here
        for index, node, before in composer.documents(max_documents):
            if isinstance(node, ScalarNode) and node.tag == _NULL:
                continue  # `---` alone, comments only, or `~`: kubectl skips these too
            if len(problems) > before:
                continue  # bad keys: the value would hold non-strings or hide a duplicate
            value, span = _materialise(composer, node)
            if len(problems) == before:
                documents.append(Document(index, value, _whole(span)))
    except _Stop as e:
        problems.append(violations.error(path, e.line, "", e.rule, e.message))
    except yaml.YAMLError as e:
        problems.append(_syntax_problem(path, text, e))
    except RecursionError:  # only with a max_depth far above the default
        problems.append(violations.error(path, 0, "", "yaml.limits", "nesting too deep"))
    finally:
        if composer.loader is not None:
            composer.loader.dispose()
    return Parsed(documents, problems)


# --- JSON ------------------------------------------------------------------------------------

_JSON_WS = re.compile(r"[ \t\n\r]*")


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


# Scalars are read by the json module itself (same escapes, numbers and error messages); only
# objects and arrays are walked here, to record lines and duplicate keys.
_JSON_SCALARS = json.JSONDecoder(parse_constant=_not_json)


class _JsonParser:
    """Strict JSON (RFC 8259) that records the line of every value and every duplicate key."""

    def __init__(self, path: str, text: str, max_depth: int) -> None:
        self.path, self.text, self.max_depth, self.pos = path, text, max_depth, 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.problems: list[violations.Violation] = []

    def problem(self, line: int, rule: str, message: str) -> None:
        self.problems.append(violations.error(self.path, line, "", rule, message))

    def fail(self, message: str) -> NoReturn:
        line = bisect_right(self.line_starts, self.pos)
        column = self.pos - self.line_starts[line - 1] + 1
        raise _Stop(line, "json", f"line {line}, column {column}: {message}")

    def skip(self) -> str:
        """Skip whitespace; the next character, "" at the end."""
        self.pos = _JSON_WS.match(self.text, self.pos).end()  # type: ignore[union-attr]
        return self.text[self.pos : self.pos + 1]

    def value(self, depth: int) -> tuple[Any, Lines]:
        first, line = self.skip(), bisect_right(self.line_starts, self.pos)
        if first in ("{", "["):
            if depth >= self.max_depth:
                raise _Stop(line, "json.limits", f"nesting deeper than {self.max_depth} levels")
            self.pos += 1
            return self.collection(first == "{", line, depth + 1)
        try:
            value, self.pos = _JSON_SCALARS.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as e:
            self.pos = e.pos
            self.fail(e.msg)
        except ValueError as e:  # NaN, Infinity, or more digits than int() will read
            self.fail(str(e))
        if isinstance(value, float) and not math.isfinite(value):  # 1e999
            self.problem(line, "json.value", "number out of range")
        return value, line

    def field(self, fields: dict[str, Any], spans: dict[str, Lines], depth: int) -> None:
        if self.skip() != '"':
            self.fail("Expecting property name enclosed in double quotes")
        key, key_line = self.value(depth)
        if self.skip() != ":":
            self.fail("Expecting ':' delimiter")
        self.pos += 1
        fields[key], span = self.value(depth)
        if key in spans:
            message = f'duplicate key "{key}" (first at line {_whole(spans[key]).line})'
            self.problem(_whole(key_line).line, "json.duplicate-key", message)
        else:
            spans[key] = _keyed(_whole(key_line).line, span)

    def collection(self, is_object: bool, line: int, depth: int) -> tuple[Any, Lines]:
        close = "}" if is_object else "]"
        fields: dict[str, Any] = {}
        items: list[Any] = []
        spans: dict[str, Lines] = {}
        while self.skip() != close or items or fields:  # only an empty one may close at once
            if is_object:
                self.field(fields, spans, depth)
            else:
                value, spans[str(len(items))] = self.value(depth)
                items.append(value)
            if self.skip() != ",":
                if self.skip() != close:
                    self.fail("Expecting ',' delimiter")
                break
            self.pos += 1
        self.pos += 1
        return (fields if is_object else items), _span(line, spans)


def parse_json(path: str, text: str, *, max_depth: int) -> Parsed:
    """The one JSON value of a file as a document (none if the file is blank), and its problems."""
    parser = _JsonParser(path, text, max_depth)
    if not parser.skip():
        return Parsed([], [])
    try:
        value, span = parser.value(0)
        if parser.skip():
            parser.fail("Extra data")
    except _Stop as e:
        return Parsed([], [*parser.problems, violations.error(path, e.line, "", e.rule, e.message)])
    except RecursionError:  # only with a max_depth far above the default
        return Parsed([], [violations.error(path, 0, "", "json.limits", "nesting too deep")])
    return Parsed([] if parser.problems else [Document(0, value, _whole(span))], parser.problems)
