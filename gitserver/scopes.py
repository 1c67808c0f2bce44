"""Who may push what: per-user and per-group scopes (paths, refs, destination namespaces,
cluster-scoped kinds), like CODEOWNERS for paths and Argo CD's AppProjects for destinations.

Called by `auth` (parsing the users file) and `receive` (judging a push). Without scopes a
user's role says everything (the old behaviour); with any, the push must fit one of them:
every ref it moves, every path it changes, and every object built from a changed file (its
namespace, or for a cluster-scoped object its kind) must be allowed by a single scope of the
user's own or of one of their groups. An absent field in a scope allows everything of that kind.
Patterns are shell-style (`fnmatch`, `*` crosses `/`), matched case-sensitively.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

FIELDS = {"paths": "paths", "refs": "refs", "namespaces": "namespaces", "clusterKinds": "cluster_kinds"}


@dataclass(frozen=True)
class Scope:
    paths: tuple[str, ...] | None = None
    refs: tuple[str, ...] | None = None
    namespaces: tuple[str, ...] | None = None
    cluster_kinds: tuple[str, ...] | None = None  # "Kind" or "Kind.group"

    def to_json(self) -> dict[str, Any]:
        return {key: None if getattr(self, attr) is None else list(getattr(self, attr))
                for key, attr in FIELDS.items()}

    def allows_ref(self, ref: str) -> bool:
        return _match(ref, self.refs)

    def allows_path(self, path: str) -> bool:
        return _match(path, self.paths)

    def allows_object(self, namespace: str, kind: str, group: str) -> bool:
        if namespace:
            return _match(namespace, self.namespaces)
        return (_match(kind, self.cluster_kinds)
                or _match(f"{kind}.{group}" if group else kind, self.cluster_kinds))


def _match(value: str, patterns: tuple[str, ...] | None) -> bool:
    return patterns is None or any(fnmatchcase(value, p) for p in patterns)


def parse(doc: Any, where: str) -> Scope:
    """One scope from the users file; ValueError naming `where` and the bad field."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: a scope must be an object with {', '.join(FIELDS)}")
    unknown = set(doc) - set(FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown scope field {sorted(unknown)[0]!r} "
                         f"(known: {', '.join(FIELDS)})")
    values: dict[str, tuple[str, ...] | None] = {}
    for key, attr in FIELDS.items():
        v = doc.get(key)
        if v is None:
            values[attr] = None
        elif isinstance(v, list) and all(isinstance(x, str) and x for x in v):
            values[attr] = tuple(v)
        else:
            raise ValueError(f"{where}.{key}: expected a list of patterns")
    return Scope(**values)


@dataclass(frozen=True)
class Object:
    """What a scope judges of a built object: where it came from and where it goes."""

    path: str
    ref: str  # "Kind/namespace/name", for the report
    namespace: str
    kind: str
    group: str


def problems(scopes: Sequence[Scope], ref: str, changed: Iterable[str],
             objects: Iterable[Object] = ()) -> list[str]:
    """Why this push to `ref` is outside every one of `scopes` ([] when it fits one, or when the
    user has no scopes at all). Only objects built from a changed file are judged."""
    if not scopes:
        return []
    fitting = [s for s in scopes if s.allows_ref(ref)]
    if not fitting:
        return [f"{ref} is outside your scopes"]
    changed = sorted(set(changed))
    objects = [o for o in objects if o.path in set(changed)]
    for s in fitting:  # one scope must allow the whole push
        if all(s.allows_path(p) for p in changed) and all(
                s.allows_object(o.namespace, o.kind, o.group) for o in objects):
            return []
    out = [f"{p}: path outside your scopes" for p in changed
           if not any(s.allows_path(p) for s in fitting)]
    for o in objects:
        if not any(s.allows_object(o.namespace, o.kind, o.group) for s in fitting):
            where = f"namespace {o.namespace}" if o.namespace else f"cluster-scoped kind {o.kind}"
            out.append(f"{o.path}: {o.ref}: {where} is outside your scopes")
    return out or ["no single one of your scopes allows all of this push together"]


def resolve(user_scopes: Sequence[Scope], groups: Iterable[str],
            group_scopes: Mapping[str, Sequence[Scope]]) -> tuple[Scope, ...]:
    """A user's effective scopes: their own and their groups'."""
    out = list(user_scopes)
    for g in groups:
        out.extend(group_scopes.get(g, ()))
    return tuple(out)
