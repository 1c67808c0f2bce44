"""Kubernetes objects read from the files of a commit, and the problems found reading them.

The gate calls `load` on every pushed file that `is_manifest_path` accepts, then
`find_duplicates` over the whole commit; the reconciler does the same before it applies a commit,
so both see exactly the same objects. Pure: bytes in, values out; no I/O.

Parsing itself (safe YAML, strict JSON, limits, line numbers) lives in `yamlsafe`; this module
decides what a manifest is: a mapping with `apiVersion`, `kind` and `metadata.name` (or
`metadata.generateName`), with `List` objects and top-level JSON arrays expanded to their items.
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pushgate.core import violations, yamlsafe


@dataclass(frozen=True)
class Limits:
    """Bounds on what one pushed file may cost to read; past them the file is refused."""

    max_file_bytes: int = 4 * 1024 * 1024
    max_documents: int = 1000  # per file
    max_depth: int = 64  # nesting of mappings/sequences
    max_alias_expansions: int = 1000  # aliased nodes materialised per file ("billion laughs")


_DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and where it came from. Treat `obj` as read-only."""

    path: str  # repo-relative file path
    line: int  # 1-based line where the object starts
    index: int  # 0-based document index in the file (items of a List share their List's)
    obj: dict[str, Any]
    # For line_of; bytes (yamlsafe.pack) in what a cache keeps long (see `packed`).
    span: yamlsafe.Span | bytes | None = field(default=None, repr=False, compare=False)

    @property
    def api_version(self) -> str:
        return _text(self.obj.get("apiVersion"))

    @property
    def kind(self) -> str:
        return _text(self.obj.get("kind"))

    @property
    def namespace(self) -> str:
        return _text(_metadata(self.obj).get("namespace"))

    @property
    def name(self) -> str:
        return _text(_metadata(self.obj).get("name"))

    @property
    def ref(self) -> str:
        """How violations name the object: "Kind/namespace/name", or "Kind/name"."""
        return _ref(self.obj)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(group, kind, namespace, name): the object's identity in the cluster.

        The version is left out because `apps/v1` and `apps/v1beta2` name the same object.
        """
        group = self.api_version.rpartition("/")[0]  # "" for the core group's "v1"
        return (group, self.kind, self.namespace, self.name)

    def line_of(self, dotted_path: str) -> int:
        """Best-effort line of a field, e.g. "spec.template.spec.containers.0.image".

        A missing field gives the line of its nearest present parent, so a "missing field"
        problem points into the right block. Keys holding dots ("app.kubernetes.io/name") are
        found too; `containers[0]` is read as `containers.0`.
        """
        if self.span is None:
            return self.line
        parts = re.sub(r"\[(\d+)\]", r".\1", dotted_path).split(".") if dotted_path else []
        span = yamlsafe.unpack(self.span) if isinstance(self.span, bytes) else self.span
        i = 0
        while i < len(parts):
            for j in range(i + 1, len(parts) + 1):
                child = span.child(".".join(parts[i:j]))
                if child is not None:
                    span, i = child, j
                    break
            else:
                break
        return span.line


@dataclass(frozen=True)
class LoadResult:
    manifests: list[Manifest]  # only objects that loaded without a problem
    problems: list[violations.Violation]


def is_manifest_path(
    path: str,
    include: Sequence[str] = ("*.yaml", "*.yml", "*.json"),
    exclude: Sequence[str] = (),
) -> bool:
    """Whether a repo-relative path holds manifests.

    `include` patterns match the file name; `exclude` patterns match the whole path or any
    leading part of it, so "docs", "docs/*" and "*.tmpl.yaml" all work. Matching is
    case-sensitive, like Git paths.
    """
    if _matcher(tuple(include))(posixpath.basename(path)) is None:
        return False
    if not exclude:
        return True
    excluded = _matcher(tuple(pattern.rstrip("/") for pattern in exclude))
    parts = path.split("/")
    return not any(excluded("/".join(parts[:n])) for n in range(1, len(parts) + 1))


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """Whether a name matches any of `patterns`, as fnmatchcase does (its own translation, one
    expression for all of them: a call per pattern cost the build ~8 us a file)."""
    if not patterns:
        return lambda _name: None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


def load(path: str, data: bytes, limits: Limits = _DEFAULT_LIMITS) -> LoadResult:
    """Every object in one file's bytes; never raises for bad input."""
    json_file = path.lower().endswith(".json")
    fmt = "json" if json_file else "yaml"
    if len(data) > limits.max_file_bytes:
        message = f"file is {len(data)} bytes, over the limit of {limits.max_file_bytes}"
        return LoadResult([], [violations.error(path, 0, "", f"{fmt}.limits", message)])
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # editors on Windows add a BOM
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        message = f"not valid UTF-8 at byte {e.start} (line {line}): save the file as UTF-8"
        return LoadResult([], [violations.error(path, line, "", "encoding", message)])
    if json_file:
        parsed = yamlsafe.parse_json(path, text, max_depth=limits.max_depth)
    else:
        parsed = yamlsafe.parse_yaml(
            path,
            text,
            max_documents=limits.max_documents,
            max_depth=limits.max_depth,
            max_alias_expansions=limits.max_alias_expansions,
        )
    manifests: list[Manifest] = []
    problems = list(parsed.problems)
    for document in parsed.documents:
        for value, span in _expand(path, document, json_file, problems):
            found = _check(path, value, span)
            if found:
                problems.extend(found)
            else:
                manifests.append(Manifest(path, span.line, document.index, value, span))
    problems.sort(key=lambda v: v.line)
    return LoadResult(manifests, problems)


def packed(result: LoadResult) -> LoadResult:
    """`result` with its manifests' spans packed (yamlsafe.pack): what a cache keeps across
    builds. Every answer stays the same (line_of unpacks)."""
    return LoadResult([m if type(m.span) is not yamlsafe.Span
                       else Manifest(m.path, m.line, m.index, m.obj, yamlsafe.pack(m.span))
                       for m in result.manifests], result.problems)


def find_duplicates(manifests: Iterable[Manifest]) -> list[violations.Violation]:
    """One error per extra occurrence of an object, naming where it was first seen.

    Pass the manifests of a whole commit, in a stable order (by path): the first occurrence is
    the one the others are reported against.
    """
    first: dict[tuple[str, str, str, str], Manifest] = {}
    problems: list[violations.Violation] = []
    for manifest in manifests:
        if not manifest.name:
            continue  # generateName: every apply creates a new object
        seen = first.setdefault(manifest.key, manifest)
        if seen is not manifest:
            message = f"duplicate of {seen.ref} at {seen.path}:{seen.line}"
            problems.append(
                violations.error(manifest.path, manifest.line, manifest.ref, "duplicate-object", message)
            )
    return problems


def _expand(
    path: str, document: yamlsafe.Document, json_file: bool, problems: list[violations.Violation]
) -> list[tuple[Any, yamlsafe.Span]]:
    """The objects of a document: itself, or the items of a List or of a top-level JSON array."""
    value, span = document.value, document.span
    if isinstance(value, dict) and _is_list(value):
        items, items_span = value.get("items"), span.child("items") or span
        if not isinstance(items, list):
            message = f'"items" of a {_text(value.get("kind"))} must be a list'
            problems.append(violations.error(path, items_span.line, "", "manifest", message))
            return []
    elif isinstance(value, list) and json_file:
        items, items_span = value, span
    else:
        return [(value, span)]
    spans = items_span.children
    return [(item, spans[str(i)]) for i, item in enumerate(items)]


def _is_list(obj: dict[str, Any]) -> bool:
    # kubectl treats any kind ending in "List" (v1 List, DeploymentList, ...) that has `items` as a
    # list of objects; do the same so the gate checks what kubectl would apply.
    kind = obj.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and "items" in obj


def _check(path: str, obj: Any, span: yamlsafe.Span) -> list[violations.Violation]:
    """What keeps a value from being a Kubernetes object; [] if nothing."""
    if not isinstance(obj, dict):
        message = f"expected a Kubernetes object (a mapping), found {_describe(obj)}"
        return [violations.error(path, span.line, "", "manifest", message)]
    where = Manifest(path, span.line, 0, obj, span)
    found: list[violations.Violation] = []

    def problem(field_path: str, message: str) -> None:
        line = where.line_of(field_path)
        found.append(violations.error(path, line, where.ref, "manifest", message))

    for key in ("apiVersion", "kind"):
        if key not in obj:
            problem(key, f'missing "{key}"')
        elif not (isinstance(obj[key], str) and obj[key]):
            problem(key, f'"{key}" must be a non-empty string, not {_describe(obj[key])}')
    metadata = obj.get("metadata")
    if metadata is None:
        problem("metadata", 'missing "metadata.name"')
    elif not isinstance(metadata, dict):
        problem("metadata", f'"metadata" must be a mapping, not {_describe(metadata)}')
    else:
        if "name" not in metadata and "generateName" not in metadata:
            problem("metadata", 'missing "metadata.name"')
        for key in ("name", "generateName", "namespace"):
            value = metadata.get(key)
            if key in metadata and not (isinstance(value, str) and value):
                message = f'"metadata.{key}" must be a non-empty string, not {_describe(value)}'
                problem(f"metadata.{key}", message)
            elif isinstance(value, str) and not path_segment(value, prefix=key == "generateName"):
                problem(f"metadata.{key}", f'"metadata.{key}" {value!r} cannot be a name: it is '
                        'a segment of the object\'s URL, and the API server refuses "." and ".." '
                        'and any name containing "/" or "%"')
    return found


def path_segment(name: str, *, prefix: bool = False) -> bool:
    """Whether the API server accepts `name` as an object's name (or a generateName `prefix`):
    it is a segment of the object's URL path (apimachinery's ValidatePathSegmentName)."""
    if not prefix and name in (".", ".."):
        return False
    return "/" not in name and "%" not in name


def _describe(value: Any) -> str:
    if value is None or value == "":
        return "empty"
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", dict: "a mapping"}
    return names.get(type(value), f"a {type(value).__name__}")


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _ref(obj: dict[str, Any]) -> str:
    metadata = _metadata(obj)
    kind, namespace = _text(obj.get("kind")), _text(metadata.get("namespace"))
    generated = _text(metadata.get("generateName"))
    name = _text(metadata.get("name")) or (generated + "*" if generated else "")
    if not (kind and name):
        return kind
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
