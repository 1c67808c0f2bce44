"""The inventory of applied objects and ApplySet (KEP-3659) identities. Pure: no I/O.

Called by `apply` (what to label, what to record) and the loop (what to prune). An entry is
`namespace_name_group_kind` (Flux's format) plus the version it was applied with; pruning is the
difference between the last inventory and the new commit's objects. Only objects in the inventory
are ever deleted, and only if they still carry our part-of label.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

PART_OF = "applyset.kubernetes.io/part-of"
APPLYSET_ID = "applyset.kubernetes.io/id"
TOOLING = "applyset.kubernetes.io/tooling"
CONTAINS = "applyset.kubernetes.io/contains-group-kinds"
ADDITIONAL_NAMESPACES = "applyset.kubernetes.io/additional-namespaces"
PROTECTED_KINDS = {("", "Namespace"), ("", "PersistentVolumeClaim"),
                   ("apiextensions.k8s.io", "CustomResourceDefinition")}


@dataclass(frozen=True, order=True)
class Entry:
    namespace: str
    name: str
    group: str
    kind: str
    version: str = ""

    @property
    def id(self) -> str:
        return f"{self.namespace}_{self.name}_{self.group}_{self.kind}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @property
    def protected(self) -> bool:
        return (self.group, self.kind) in PROTECTED_KINDS

    def encode(self) -> str:
        return f"{self.id}_{self.version}"

    @staticmethod
    def decode(text: str) -> Entry:
        ns, name, group, kind, version = text.split("_", 4)
        return Entry(ns, name, group, kind, version)

    @staticmethod
    def of(obj: dict[str, object], namespaced: bool = True) -> Entry:
        api_version = str(obj.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        meta = obj.get("metadata") or {}
        assert isinstance(meta, dict)
        ns = str(meta.get("namespace") or "") if namespaced else ""
        return Entry(ns, str(meta.get("name", "")), group, str(obj.get("kind", "")), version)


def applyset_id(name: str, namespace: str, kind: str, group: str) -> str:
    """KEP-3659: applyset-<base64url(sha256("<name>.<namespace>.<kind>.<group>"))>-v1."""
    digest = hashlib.sha256(f"{name}.{namespace}.{kind}.{group}".encode()).digest()
    return "applyset-" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "-v1"


def diff(old: Iterable[Entry], new: Iterable[Entry]) -> list[Entry]:
    """What the old inventory has and the new commit does not (versions ignored): to prune.
    Ordered for deletion: ordinary objects first, Namespaces and CRDs last."""
    keep = {e.id for e in new}
    gone = sorted({e for e in old if e.id not in keep})
    return sorted(gone, key=lambda e: (e.protected, e.kind == "Namespace", e))


def encode(entries: Iterable[Entry]) -> str:
    return "\n".join(sorted({e.encode() for e in entries}))


def decode(text: str) -> list[Entry]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.count("_") >= 4:
            out.append(Entry.decode(line))
    return out


def group_kinds(entries: Iterable[Entry]) -> str:
    """The parent's contains-group-kinds annotation: "Kind.group" sorted, comma-separated."""
    return ",".join(sorted({f"{e.kind}.{e.group}" if e.group else e.kind for e in entries}))
