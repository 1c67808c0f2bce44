"""Offline JSON-schema validation of Kubernetes objects, for built-in kinds and pushed CRDs.

The gate calls `SchemaSet.validate` once per object of a push (the git server and `pushgate
validate` alike). Schemas are the kubeconform-style `-local-strict` ones of the
`kubernetes-validate` wheel, so unknown fields are errors. A `SchemaSet` serves one Kubernetes
minor version; `with_crds` adds the custom resources defined by the CRDs of the same push.

Speed shapes the design: resolving `$ref`s per object (what `kubernetes_validate` does) costs
~8 ms, so each kind's references into `_definitions.json` are inlined once and one jsonschema
validator per kind is reused. A plain-Python predicate compiled from the same schema answers the
common case (valid) first; jsonschema runs only to explain an object the predicate refuses, and
is imported only then (~0.06 s, a tenth of `pushgate validate`'s start-up), or for the schema
nodes the predicate does not model (it hands those to jsonschema when it first meets them).

Each problem is a `Violation` whose rule is `schema:<dotted instance path>`. Secret values never
appear in a message.

Custom resources are judged as the API server judges them (apiextensions-apiserver), so that a
static refusal is never one the cluster would not make: `pattern` is an RE2 expression (Go's
`regexp`, through `google-re2`: `^(?i)(abort|warn)?$` is valid there and an error in Python's
`re`); `x-kubernetes-int-or-string` accepts integers and strings; `x-kubernetes-preserve-unknown-
fields` keeps a node open; `x-kubernetes-embedded-resource` requires `apiVersion` and `kind`; null
is refused where a field is not `nullable` (server-side apply refuses it too); of the formats
only `byte`, `int32` and `int64` are checked (the others are left to the API server).
CEL rules (`x-kubernetes-validations`) are not evaluated: a CRD that has them gets a warning that
the live check (server-side dry-run) is what applies them.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import importlib.util
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pushgate.core import violations
from pushgate.gate import crdrules, schemamsg

MissingSchema = Literal["error", "warning"]
_Predicate = Callable[[Any], bool]

# Annotations are dropped: jsonschema looks every key of every node up, known or not.
_ANNOTATIONS = frozenset({"description", "title", "default", "example", "examples", "$comment",
                          "$schema", "$id", "nullable", "readOnly", "writeOnly", "deprecated"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
_SCHEMA_ONE = frozenset({"items", "additionalProperties", "if", "then", "else", "contains",
                         "propertyNames", "additionalItems", "unevaluatedItems",
                         "unevaluatedProperties"})
_JUNCTORS = frozenset({"allOf", "anyOf", "oneOf", "not"})
_CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# apiVersion and kind become a file name: other shapes could walk out of the schema directory.
_KIND = re.compile(r"[A-Za-z0-9]+")
_GROUP_VERSION = re.compile(r"(?:([a-z0-9-]+)(?:\.[a-z0-9.-]+)?/)?([a-z0-9]+)")


def _check_byte(value: object) -> bool:
    # The API server decodes `format: byte` with Go's StdEncoding, which skips CR and LF.
    if isinstance(value, str):
        base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    return True


def _check_int(bits: int) -> Callable[[object], bool]:
    n = 2 ** (bits - 1)
    return lambda v: type(v) is not int or -n <= v < n


# Only formats the API server enforces when decoding; `date-time` and `double` are left alone,
# as kubeconform does, so that no valid manifest fails on a checker's stricter reading. A check
# holds, or raises one of _FORMAT_ERRORS for a value that does not conform.
_FORMAT_CHECKS: dict[str, Callable[[object], bool]] = {
    "byte": _check_byte, "int32": _check_int(32), "int64": _check_int(64)}
_FORMAT_ERRORS = (binascii.Error, ValueError)


def _conforms(value: object, fmt: str) -> bool:
    """What jsonschema's checker (`_format_checker`) says of `value`: an unknown format holds."""
    check = _FORMAT_CHECKS.get(fmt)
    if check is None:
        return True
    try:
        return bool(check(value))
    except _FORMAT_ERRORS:
        return False


@functools.cache
def _jsonschema() -> Any:
    """The jsonschema package, imported at its first use."""
    import jsonschema  # type: ignore[import-untyped]
    import jsonschema.validators  # type: ignore[import-untyped]

    return jsonschema


@functools.cache
def _format_checker() -> Any:
    """jsonschema's format checker with the same checks as `_conforms`."""
    checker = _jsonschema().FormatChecker(formats=())
    for fmt, check in _FORMAT_CHECKS.items():
        checker.checks(fmt, raises=_FORMAT_ERRORS)(check)
    return checker


def _type_union(branches: Any) -> list[str] | None:
    # IntOrString and Quantity are `oneOf` of bare types, each with "null": one `type` list is
    # looser only where branches overlap (null, which the API server accepts), and cheaper.
    if not isinstance(branches, list) or not all(
            isinstance(b, dict) and set(b) <= {"type", "description"} for b in branches):
        return None
    names = [t for b in branches for t in ([b.get("type")] if isinstance(b.get("type"), str)
                                           else b.get("type") or [None])]
    return list(dict.fromkeys(names)) if names and all(isinstance(t, str) for t in names) else None


def _rebuild(node: dict[str, Any], sub: Callable[[Any], Any],
             junctor: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Copy one schema node without annotations, mapping `sub` over its subschemas.

    Schema-aware on purpose: JSONSchemaProps has *fields* named `$ref` and `description`.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ANNOTATIONS or key.startswith("x-"):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: sub(s) for name, s in value.items()}
        elif key in ("oneOf", "anyOf") and "type" not in node and _type_union(value):
            out["type"] = _type_union(value)
        elif key in _JUNCTORS:
            s = junctor or sub
            out[key] = [s(v) for v in value] if isinstance(value, list) else s(value)
        elif key in _SCHEMA_ONE:
            out[key] = sub(value)
        else:
            out[key] = value
    return out


_TYPES: dict[str, _Predicate] = {  # exact types: stricter than jsonschema for subclasses only
    "string": lambda x: isinstance(x, str), "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list), "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None, "number": lambda x: type(x) in (int, float),
    "integer": lambda x: type(x) is int or (type(x) is float and x.is_integer()),
}
_EXACT: dict[str, tuple[type, ...]] = {  # types each predicate above holds for without asking
    "string": (str,), "object": (dict,), "array": (list,), "boolean": (bool,), "null": (type(None),),
    "number": (int, float), "integer": (int,),
}
_FAST = frozenset({"type", "properties", "additionalProperties", "items", "required", "format",
                   "enum"})


def _accepts(node: Any, slow: Callable[[], Any], memo: dict[int, _Predicate]) -> _Predicate:
    """A predicate true only of instances `node` accepts, ~20x faster than jsonschema's walk.

    It may refuse more than the schema does (then jsonschema decides), never less; nodes with
    keywords it does not know are delegated to jsonschema whole (to the validator `slow()`
    makes, made when such a node first gets a value to decide).
    """
    if not isinstance(node, dict):
        return lambda x: node is not False
    found = memo.get(id(node))
    if found is not None:
        return found
    declared = node.get("type")
    names = [declared] if isinstance(declared, str) else declared or []
    if (not set(node) <= _FAST or not set(names) <= _TYPES.keys()
            or not isinstance(node.get("items", {}), dict)):
        found = _delegated(node, slow)
    else:
        types = tuple(_TYPES[t] for t in names) if "type" in node else None
        # the value types a node's `type` takes without asking its predicates (most values)
        exact = frozenset(t for n in names for t in _EXACT[n])
        props = {k: _accepts(s, slow, memo) for k, s in node.get("properties", {}).items()}
        extra = _accepts(node["additionalProperties"], slow, memo) \
            if "additionalProperties" in node else None
        items = _accepts(node["items"], slow, memo) if "items" in node else None
        required, fmt = node.get("required", ()), node.get("format")
        # the names as a set, unless one is not a string (then asked one by one)
        need = frozenset(required) if all(isinstance(r, str) for r in required) else None
        # Scalars only, compared with their type: True == 1 must not pass an enum of [1].
        enum = [(type(v), v) for v in node.get("enum", ()) if isinstance(v, str | int | float)]
        has_enum = "enum" in node

        def found(x: Any) -> bool:
            tx = type(x)
            if types is not None and tx not in exact and not any(t(x) for t in types):
                return False
            if isinstance(x, dict):
                for k, v in x.items():
                    check = props.get(k, extra)
                    if check is not None and not check(v):
                        return False
                if need is None:
                    if not all(r in x for r in required):
                        return False
                elif need and not need <= x.keys():
                    return False
            elif items is not None and isinstance(x, list):
                for i in x:
                    if not items(i):
                        return False
            if has_enum and (tx, x) not in enum:
                return False
            return fmt is None or _conforms(x, fmt)
    memo[id(node)] = found
    return found


def _delegated(node: dict[str, Any], slow: Callable[[], Any]) -> _Predicate:
    """jsonschema's verdict on `node`, its validator made at the first value it decides."""
    made: list[_Predicate] = []

    def found(x: Any) -> bool:
        if not made:  # racing threads each make one: the same verdicts
            made.append(slow().evolve(schema=node).is_valid)
        return bool(made[0](x))
    return found


@dataclass(frozen=True)
class _Compiled:
    accepts: _Predicate  # the fast verdict
    make_validator: Callable[[], Any]  # jsonschema's validator (made once), to explain a refusal
    gvks: frozenset[tuple[str, str, str]] = frozenset()  # what a built-in schema file declares

    @property
    def validator(self) -> Any:
        return self.make_validator()


class _Catalog:
    """One Kubernetes minor version's schemas, compiled lazily, shared by every SchemaSet."""

    def __init__(self, minor: str, directory: Path) -> None:
        self.minor, self._dir = minor, directory
        # One lock for loading and compiling: compiles are rare, validation never takes it.
        self._lock = threading.Lock()
        self._files: frozenset[str] | None = None
        self._defs: dict[str, Any] = {}
        self._inlined: dict[str, Any] = {}
        self._kinds: dict[str, _Compiled] = {}
        self._memo: dict[int, _Predicate] = {}  # ids of nodes kept alive by `_inlined`/`_kinds`
        self._dialect: Any = None  # the `$schema` of _definitions.json

    def compiled(self, api_version: str, kind: str) -> _Compiled | None:
        name, gvk = _schema_file(api_version, kind)
        if name is None:
            return None
        entry = self._kinds.get(name)
        if entry is None:
            if self._files is None:  # racing threads list the same directory: harmless
                self._files = frozenset(p.name for p in self._dir.iterdir())
            if name not in self._files:
                return None
            with self._lock:
                entry = self._kinds.get(name) or self._compile(name)
                self._kinds[name] = entry
        # Files are named by the first label of the group: `apps.example.com/v1` must not get
        # the schema of `apps/v1`.
        return entry if gvk in entry.gvks else None

    def custom(self, schema: dict[str, Any]) -> _Compiled:
        """Compile a CRD schema already converted by `_structural`."""
        with self._lock:
            self._definitions()
            meta = self._inline_def(_OBJECT_META, set())
        schema.setdefault("properties", {}).update(
            apiVersion={"type": "string"}, kind={"type": "string"}, metadata=meta)

        @functools.cache
        def validator() -> Any:
            cls = _jsonschema().validators.extend(self._base_class(), crdrules.keywords())
            return cls(schema, format_checker=_format_checker())
        # A memo of its own: this schema dies with the push, and ids are reused.
        return _Compiled(_accepts(schema, validator, {}), validator)

    def _definitions(self) -> dict[str, Any]:
        if not self._defs:
            raw = json.loads((self._dir / "_definitions.json").read_text(encoding="utf-8"))
            self._dialect, self._defs = raw.get("$schema"), raw["$defs"]
        return self._defs

    def _base_class(self) -> Any:
        """jsonschema's validator class for the dialect _definitions.json declares."""
        self._definitions()
        return _validator_class(self._dialect, None)

    def _compile(self, name: str) -> _Compiled:
        raw = json.loads((self._dir / name).read_text(encoding="utf-8"))
        self._definitions()
        gvks = frozenset((g.get("group", ""), g.get("version", ""), g.get("kind", ""))
                         for g in raw.get("x-kubernetes-group-version-kind", []))
        schema = self._inline(raw, set())
        dialect = raw.get("$schema")

        @functools.cache
        def validator() -> Any:
            cls = _validator_class(dialect, self._base_class())
            return cls(schema, format_checker=_format_checker())
        memo = dict(self._memo)  # published only on success: a failed compile's nodes die
        accepts = _accepts(schema, validator, memo)
        self._memo = memo
        return _Compiled(accepts, validator, gvks)

    def _inline(self, node: Any, expanding: set[str]) -> Any:
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = self._inline_def(ref.rpartition("/")[2], expanding)
            rest = _rebuild({k: v for k, v in node.items() if k != "$ref"},
                            lambda s: self._inline(s, expanding))
            return {"allOf": [target], **rest} if rest else target
        return _rebuild(node, lambda s: self._inline(s, expanding))

    def _inline_def(self, name: str, expanding: set[str]) -> Any:
        done = self._inlined.get(name)
        if done is not None:
            return done
        if name in expanding:
            # Recursive definitions (JSONSchemaProps) end in a permissive schema: never a false
            # error, only less checking below that depth.
            return {}
        expanding.add(name)
        try:
            # Shared, not copied: each definition exists once in memory however often it is used.
            result = self._inlined[name] = self._inline(self._definitions()[name], expanding)
        finally:
            expanding.discard(name)
        return result


def _validator_class(dialect: Any, default: Any) -> Any:
    """jsonschema's validator class for a schema whose `$schema` is `dialect` (None: none)."""
    return _jsonschema().validators.validator_for(
        {} if dialect is None else {"$schema": dialect}, **({} if default is None else {"default": default}))


_CATALOGS: dict[str, _Catalog] = {}
_CATALOGS_LOCK = threading.Lock()


def _schema_root() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kubernetes-validate package (schemas) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"


def supported_versions() -> list[str]:
    """The Kubernetes minor versions with bundled schemas, oldest first ("1.25", ...)."""
    found = (re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", p.name)
             for p in _schema_root().iterdir())
    return [f"{a}.{b}" for a, b in sorted({(int(m[1]), int(m[2])) for m in found if m})]


def _catalog(kubernetes_version: str) -> _Catalog:
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", kubernetes_version.strip())
    minor = f"{int(match[1])}.{int(match[2])}" if match else ""
    with _CATALOGS_LOCK:
        if minor not in _CATALOGS:
            known = supported_versions()
            if minor not in known:
                raise ValueError(
                    f"unsupported Kubernetes version {kubernetes_version!r}: schemas are bundled "
                    f"for {', '.join(known)} (give it as 1.37, 1.37.0 or v1.37.0)")
            _CATALOGS[minor] = _Catalog(minor, _schema_root() / f"v{minor}.0-local-strict")
        return _CATALOGS[minor]


def _schema_file(api_version: str, kind: str) -> tuple[str | None, tuple[str, str, str]]:
    group, _, version = api_version.rpartition("/")
    match = _GROUP_VERSION.fullmatch(api_version)
    if match is None or _KIND.fullmatch(kind) is None:
        return None, (group, version, kind)
    label = f"-{match[1]}" if match[1] else ""
    return f"{kind.lower()}{label}-{match[2]}.json", (group, version, kind)


_KEYWORD_SHAPES: dict[str, type | tuple[type, ...]] = {
    "properties": dict, "items": dict, "required": list, "enum": list, "pattern": str,
    "minimum": (int, float), "maximum": (int, float), "multipleOf": (int, float),
    "minLength": int, "maxLength": int, "minItems": int, "maxItems": int,
}


def _structural(node: Any, closing: bool = True) -> Any:
    """A CRD's OpenAPI v3 structural schema as JSON schema, with unknown fields closed off.

    Raises ValueError where a keyword would break validation. Not a metaschema check: that takes
    jsonschema over a second for a CRD embedding a PodSpec; the API server checks the rest.
    """
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise ValueError(f"a schema must be an object, not {schemamsg.show(node)}")
    for key, shape in _KEYWORD_SHAPES.items():
        if key in node and not isinstance(node[key], shape):
            raise ValueError(f"{key} is not of the right type ({schemamsg.show(node[key])})")
    declared = node.get("type")
    if declared is not None and (not isinstance(declared, str) or declared not in _TYPES):
        raise ValueError(f"unknown type {schemamsg.show(declared)}")
    if "pattern" in node:
        try:
            crdrules.check_pattern(node["pattern"])
        except crdrules.PatternError as e:
            raise ValueError(f"pattern {schemamsg.show(node['pattern'])} is not a valid regex: {e} "
                             f"(RE2 syntax, as the API server reads it)") from e
    # Branches of allOf/anyOf/oneOf/not only restrict values: closing them would refuse fields
    # that the structural part allows.
    out = _rebuild(node, lambda s: _structural(s, closing), lambda s: _structural(s, False))
    if node.get("x-kubernetes-int-or-string") is True and "type" not in node:
        out["type"] = ["integer", "string"]
    elif node.get("nullable") is True and isinstance(declared, str):
        out["type"] = [declared, "null"]
    for bound in ("minimum", "maximum"):
        # OpenAPI 3.0 (draft 4) spells exclusive bounds as booleans beside the limit.
        key = "exclusive" + bound.capitalize()
        if isinstance(flag := node.get(key), bool):
            del out[key]
            if flag and bound in out:
                out[key] = out.pop(bound)
    if (closing and node.get("x-kubernetes-preserve-unknown-fields") is not True
            and "additionalProperties" not in node
            and ("properties" in node or declared == "object")):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-embedded-resource") is True:
        props = out.setdefault("properties", {})
        for field, kind in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
            props.setdefault(field, {"type": kind})
        # The API server requires both, non-empty (objectmeta.validateEmbeddedResource).
        for field in ("apiVersion", "kind"):
            props[field] = {"allOf": [props[field], {"type": "string", "minLength": 1}]}
        out["required"] = sorted({*out.get("required", ()), "apiVersion", "kind"})
    return out


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _custom_resources(crds: Iterable[dict[str, Any]],
                      catalog: _Catalog) -> dict[tuple[str, str], _Compiled | str]:
    """The compiled schema, or why there is none, per (apiVersion, kind) served by these CRDs."""
    found: dict[tuple[str, str], _Compiled | str] = {}
    for crd in crds:
        if (crd.get("apiVersion"), crd.get("kind")) != _CRD:
            continue
        group, kind = _get(crd, "spec", "group"), _get(crd, "spec", "names", "kind")
        versions = _get(crd, "spec", "versions")
        if not (isinstance(group, str) and isinstance(kind, str) and isinstance(versions, list)):
            continue  # malformed: the CRD's own schema check reports it
        for entry in versions:
            name, raw = _get(entry, "name"), _get(entry, "schema", "openAPIV3Schema")
            if not isinstance(name, str) or _get(entry, "served") is False:
                continue
            custom: _Compiled | str
            try:
                custom = catalog.custom(_structural(raw) if isinstance(raw, dict) else {})
            except ValueError as e:
                crd_name = _get(crd, "metadata", "name") or f"{kind}.{group}"
                custom = (f"the schema of {group}/{name} {kind} in CustomResourceDefinition "
                          f"{crd_name} is invalid: {schemamsg.short(str(e), 160)}")
            found[(f"{group}/{name}", kind)] = custom
    return found


class SchemaSet:
    """The schemas of one Kubernetes version, plus the CRDs of one push (see `with_crds`).

    Thread-safe: compiled schemas are cached per kind and shared by every `SchemaSet` of the
    same version, views made by `with_crds` included.
    """

    __slots__ = ("_catalog", "_custom", "_missing")

    def __init__(self, kubernetes_version: str = "1.37", *,
                 missing_schema: MissingSchema = "error") -> None:
        if missing_schema not in ("error", "warning"):
            raise ValueError(f"missing_schema must be 'error' or 'warning', not {missing_schema!r}")
        self._catalog = _catalog(kubernetes_version)
        self._missing: MissingSchema = missing_schema
        self._custom: Mapping[tuple[str, str], _Compiled | str] = {}

    @property
    def kubernetes_version(self) -> str:
        return self._catalog.minor

    def with_crds(self, crds: Iterable[dict[str, Any]]) -> SchemaSet:
        """A view that also validates the custom resources these CRD objects define."""
        view = copy.copy(self)
        view._custom = {**self._custom, **_custom_resources(crds, self._catalog)}
        return view

    def validate(self, obj: dict[str, Any], *, path: str, line_of: Callable[[str], int],
                 ref: str) -> list[violations.Violation]:
        """Every schema problem of `obj`, sorted by line; `line_of` maps a dotted path to a line
        ("" is the object itself)."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind):
            return [violations.error(path, line_of(""), ref, "schema",
                                     "apiVersion and kind must be non-empty strings")]
        compiled = (self._catalog.compiled(api_version, kind)
                    or self._custom.get((api_version, kind)))
        if compiled is None:
            make = violations.error if self._missing == "error" else violations.warning
            return [make(path, line_of(""), ref, "schema",
                         f"no schema for {api_version} {kind} in Kubernetes {self._catalog.minor} "
                         "(and no CRD in this push defines it)")]
        if isinstance(compiled, str):
            return [violations.error(path, line_of(""), ref, "schema", compiled)]
        notes = crdrules.cel_note(obj, path, line_of, ref) if (api_version, kind) == _CRD else []
        if compiled.accepts(obj):
            return notes
        found = notes + [
            violations.error(path, line_of(at), ref, f"schema:{rule}" if rule else "schema", text)
            for rule, at, text in schemamsg.problems(compiled.validator.iter_errors(obj), kind == "Secret")
        ]
        return sorted(found, key=lambda v: (v.line, v.rule, v.message))
