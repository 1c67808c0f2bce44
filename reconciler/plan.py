"""The live gate's answer: each pushed object's verdict, and the plan of the push before any ref
moves: what the apply would create, update (and which fields), leave unchanged and prune. Pure:
no I/O; the `...Doc` types are the JSON the reconciler's socket (`liveserver`) sends.

Called by `live` (the live gate's checker), which feeds it the live objects it read and the
server's dry-run answers. Changed fields are shown as dotted paths, `spec.replicas: 2 -> 3` for
short scalars, `added` / `removed` / `changed` otherwise; list items by `[index]`, or by
`[name=...]` where every item has a unique name (containers, ports, env, volumes). A Secret's
values are never shown (`data.<key>: changed`), nor any value, anywhere, equal to a Secret value
of the push: the plan goes back to whoever pushed, and into `git push` output and CI logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from reconciler import apply, inventory
from reconciler.inventory import Entry

MAX_CHANGES = 50
MAX_VALUE = 40
# Secret values shorter than this are redacted only where a whole value equals them: a
# substring match on "1" or "true" would blank every message.
MIN_SUBSTRING_SECRET = 6
REDACTED = "<redacted>"

_SERVER_META = ("resourceVersion", "generation", "managedFields", "uid", "creationTimestamp",
                "selfLink", "deletionGracePeriodSeconds")
# Written by client-side `kubectl apply` only; it holds the whole object, a Secret's data too.
_KUBECTL_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9._:/@+=-]+$")


class UpdateDoc(TypedDict):
    ref: str
    changes: list[str]


class PruneDoc(TypedDict):
    """One entry the push drops from the inventory; keys camelCase, like the Kubernetes API's."""

    ref: str
    group: str
    kind: str
    namespace: str
    name: str
    protected: bool
    optedOut: bool
    owned: bool
    willDelete: bool


class PlanDoc(TypedDict):
    create: list[str]
    update: list[UpdateDoc]
    unchanged: list[str]
    prune: list[PruneDoc]
    managed: int


class ResultDoc(TypedDict):
    index: int
    outcome: str  # ok | refused | static
    reason: str
    code: int
    message: str


class ReportDoc(TypedDict):
    results: list[ResultDoc]
    plan: PlanDoc
    seconds: float


@dataclass(frozen=True)
class Seen:
    """What the live check learnt of one pushed object."""

    ref: str
    exists: bool | None = None  # None: unknown (the object could not even be read)
    live: Mapping[str, Any] | None = None
    dry: Mapping[str, Any] | None = None  # the dry-run answer, when the API server accepted it
    skipped: bool = False  # opted out on the live side: the apply leaves it alone


@dataclass(frozen=True)
class Update:
    ref: str
    changes: tuple[str, ...]  # empty: an update whose fields could not be worked out (not dry-run)


@dataclass(frozen=True)
class PruneItem:
    entry: Entry
    protected: bool  # a kind pruned only on request (Namespace, PVC, CRD)
    opted_out: bool  # the live object says reconcile=false or prune=false
    owned: bool  # the live object still carries our ApplySet label
    will_delete: bool  # what the apply's prune would do: exists, owned, not opted out, allowed

    def to_json(self) -> PruneDoc:
        e = self.entry
        return {"ref": e.ref, "group": e.group, "kind": e.kind, "namespace": e.namespace,
                "name": e.name, "protected": self.protected, "optedOut": self.opted_out,
                "owned": self.owned, "willDelete": self.will_delete}


@dataclass(frozen=True)
class Plan:
    create: tuple[str, ...] = ()
    update: tuple[Update, ...] = ()
    unchanged: tuple[str, ...] = ()
    prune: tuple[PruneItem, ...] = ()
    managed: int = 0

    def to_json(self) -> PlanDoc:
        return {"create": list(self.create),
                "update": [{"ref": u.ref, "changes": list(u.changes)} for u in self.update],
                "unchanged": list(self.unchanged),
                "prune": [p.to_json() for p in self.prune], "managed": self.managed}


@dataclass(frozen=True)
class Result:
    index: int
    outcome: str
    reason: str = ""
    code: int = 0
    message: str = ""

    def to_json(self) -> ResultDoc:
        return {"index": self.index, "outcome": self.outcome, "reason": self.reason,
                "code": self.code, "message": self.message}


@dataclass(frozen=True)
class LiveReport:
    results: tuple[Result, ...]
    plan: Plan
    seconds: float

    def to_json(self) -> ReportDoc:
        return {"results": [r.to_json() for r in self.results], "plan": self.plan.to_json(),
                "seconds": round(self.seconds, 3)}


def assemble(seen: Sequence[Seen], pruned: tuple[PruneItem, ...], managed: int,
             secrets: frozenset[str] = frozenset()) -> Plan:
    """Pushed objects by what the apply would do. Only dry-run ones are compared field by field;
    the others count by existence (an update of unknown fields), an opted-out one as unchanged."""
    create: list[str] = []
    update: list[Update] = []
    unchanged: list[str] = []
    for s in seen:
        if s.skipped:
            unchanged.append(s.ref)
        elif s.dry is not None and s.live is not None:
            found = changes(s.dry, s.live, secrets=secrets)
            if found:
                update.append(Update(s.ref, tuple(found)))
            else:
                unchanged.append(s.ref)
        elif s.exists is False or s.dry is not None:
            create.append(s.ref)
        elif s.exists:
            update.append(Update(s.ref, ()))
    return Plan(tuple(create), tuple(update), tuple(unchanged), pruned, managed)


# -- changes ------------------------------------------------------------------------------------
def normalise(obj: Mapping[str, Any], applyset_label: str = inventory.PART_OF) -> dict[str, Any]:
    """`obj` without what the server sets or only kubectl writes: status, server metadata, the
    client-side apply annotation and our ApplySet label (adopting an object is not a change)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_META}
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _KUBECTL_ANNOTATIONS}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != applyset_label}
    for key, value in (("annotations", ann), ("labels", labels)):
        if value:
            meta[key] = value
        else:
            meta.pop(key, None)
    out["metadata"] = meta
    return out


def changes(new: Mapping[str, Any], old: Mapping[str, Any], *,
            secrets: frozenset[str] = frozenset()) -> list[str]:
    """What applying makes of `old` (the live object): "path: old -> new", "path: added", ...

    `new` is the server's dry-run answer. Both are normalised here. A Secret's data shows keys
    only; any other value in `secrets` is not shown either."""
    is_secret = _is_secret(new) or _is_secret(old)
    out: list[str] = []
    _walk(normalise(new), normalise(old), "", out, is_secret, secrets)
    if len(out) > MAX_CHANGES:
        out = [*out[:MAX_CHANGES], f"... and {len(out) - MAX_CHANGES} more"]
    return out


def _walk(new: Any, old: Any, path: str, out: list[str], is_secret: bool,
          secrets: frozenset[str]) -> None:
    if new == old:
        return
    if is_secret and path in ("data", "stringData") and isinstance(new, dict) and isinstance(old, dict):
        for key in sorted(set(new) | set(old)):
            if new.get(key) != old.get(key):
                verb = "added" if key not in old else "removed" if key not in new else "changed"
                out.append(f"{_join(path, key)}: {verb}")
        return
    if isinstance(new, dict) and isinstance(old, dict):
        keys = sorted(set(new) | set(old), key=str)
        _walk_keys(new, old, [(k, _join(path, str(k))) for k in keys], out, is_secret, secrets)
        return
    if isinstance(new, list) and isinstance(old, list):
        _walk_list(new, old, path, out, is_secret, secrets)
        return
    where = path or "."
    if _scalar(new) and _scalar(old) and not _is_secret_value(new, old, secrets):
        out.append(f"{where}: {_show(old)} -> {_show(new)}")
    else:
        out.append(f"{where}: changed")


def _walk_keys(new: dict[Any, Any], old: dict[Any, Any], keys: list[tuple[Any, str]], out: list[str],
               is_secret: bool, secrets: frozenset[str]) -> None:
    """Each key's field (at its dotted path): added, removed, or compared further."""
    for key, sub in keys:
        if key not in old:
            out.append(f"{sub}: added")
        elif key not in new:
            out.append(f"{sub}: removed")
        else:
            _walk(new[key], old[key], sub, out, is_secret, secrets)


def _walk_list(new: list[Any], old: list[Any], path: str, out: list[str], is_secret: bool,
               secrets: frozenset[str]) -> None:
    named_new, named_old = _by_name(new), _by_name(old)
    if named_new is not None and named_old is not None:
        names = [*named_old, *(n for n in named_new if n not in named_old)]
        _walk_keys(named_new, named_old, [(n, f"{path}[name={n}]") for n in names], out, is_secret,
                   secrets)
        return
    for i in range(max(len(new), len(old))):
        sub = f"{path}[{i}]"
        if i >= len(old):
            out.append(f"{sub}: added")
        elif i >= len(new):
            out.append(f"{sub}: removed")
        else:
            _walk(new[i], old[i], sub, out, is_secret, secrets)


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    """The items by their `name`, if every one is a mapping with a unique string name."""
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    named = {str(i["name"]): i for i in items}
    return named if len(named) == len(items) else None


def _join(path: str, key: str) -> str:
    part = key if _PLAIN_KEY.match(key) else f"[{json.dumps(key)}]"
    if part.startswith("["):
        return f"{path}{part}"
    return f"{path}.{part}" if path else part


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _show(v: Any) -> str:
    if isinstance(v, str):
        short = v if len(v) <= MAX_VALUE else v[:MAX_VALUE] + "..."
        return short if _PLAIN_VALUE.match(v) and len(v) <= MAX_VALUE else json.dumps(short)
    return json.dumps(v)


def _is_secret(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def _is_secret_value(new: Any, old: Any, secrets: frozenset[str]) -> bool:
    for v in (new, old):
        if v is None or isinstance(v, bool):
            continue
        text = str(v)
        if text in secrets or any(len(s) >= MIN_SUBSTRING_SECRET and s in text for s in secrets):
            return True
    return False


# -- secrets ------------------------------------------------------------------------------------
def secret_values(objects: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Every value of every Secret among `objects`: `data` as written (base64) and decoded,
    `stringData` as written. Empty strings are no secret."""
    out: set[str] = set()
    for obj in objects:
        if not _is_secret(obj):
            continue
        for value in (obj.get("stringData") or {}).values():
            out.add(str(value))
        for value in (obj.get("data") or {}).values():
            out.add(str(value))
            try:
                out.add(base64.b64decode(str(value), validate=True).decode("utf-8"))
            except (binascii.Error, ValueError):
                continue
    out.discard("")
    return frozenset(out)


def redact(message: str, secrets: frozenset[str]) -> str:
    """`message` with every Secret value of the push long enough to match safely blanked out
    (an API server message quotes the invalid value)."""
    for s in sorted(secrets, key=len, reverse=True):
        if len(s) >= MIN_SUBSTRING_SECRET or message == s:
            message = message.replace(s, REDACTED)
    return message


# -- prune --------------------------------------------------------------------------------------
def prune_item(entry: Entry, live: Mapping[str, Any] | None, applyset_id: str, *,
               prune_protected: bool = False) -> PruneItem:
    """How the apply's prune would treat `entry` (gone from Git) given its live object, by the
    rules `apply.Applier._prune` follows."""
    meta = (live or {}).get("metadata") or {}
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    owned = live is not None and labels.get(inventory.PART_OF) == applyset_id
    opted_out = "false" in (ann.get(apply.PRUNE_ANNOTATION), ann.get(apply.RECONCILE_ANNOTATION))
    allowed = not entry.protected or prune_protected or ann.get(apply.PRUNE_ANNOTATION) == "true"
    return PruneItem(entry, entry.protected, opted_out, owned,
                     live is not None and owned and not opted_out and allowed)


def prune(old: Sequence[Entry], pushed: Iterable[Entry],
          live: Mapping[str, Mapping[str, Any] | None], applyset_id: str, *,
          prune_protected: bool = False) -> tuple[PruneItem, ...]:
    """The inventory entries the push drops (in deletion order), marked; `live` by entry id."""
    return tuple(prune_item(e, live.get(e.id), applyset_id, prune_protected=prune_protected)
                 for e in inventory.diff(old, pushed))
