"""The inventory of applied objects and ApplySet (KEP-3659) identities. Pure: no I/O.

Called by `apply` (what to label, what to record, reading and writing the parent's
`data.inventory`) and the loop (what to prune, `Entry.id` / `ref` / `api_version`). An entry is
`namespace_name_group_kind` (Flux's format) plus the version it was applied with; pruning is the
difference between the last inventory and the new commit's objects. Only objects in the inventory
are ever deleted, and only if they still carry our part-of label.

The text format (v2) is one line per entry, `ns_name_group_kind_version`, each field
percent-escaped so that "_" can only ever be a separator:

    #pushgate-inventory v2
    shop_web_apps_Deployment_v1
    shop_read%5Fonly_rbac.authorization.k8s.io_Role_v1
    _shop__Namespace_v1

"%", "_", "#" and every whitespace or unprintable character are written as %XX (UTF-8 bytes);
everything else is written as is. So an ordinary entry reads exactly as it did in v1 (an older
reconciler still reads it), and every string round-trips: RBAC names are path segments and may
hold "_", ":", "@", spaces or any other character but "/" (the API server also refuses "%" and
"." / "..", but the format does not depend on that). The header tells v2 from v1, whose lines
were joined with "_" and never escaped: those are decoded best-effort (see `_decode_v1`) and the
next write is v2.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

PART_OF = "applyset.kubernetes.io/part-of"
APPLYSET_ID = "applyset.kubernetes.io/id"
TOOLING = "applyset.kubernetes.io/tooling"
CONTAINS = "applyset.kubernetes.io/contains-group-kinds"
ADDITIONAL_NAMESPACES = "applyset.kubernetes.io/additional-namespaces"
PROTECTED_KINDS = {("", "Namespace"), ("", "PersistentVolumeClaim"),
                   ("apiextensions.k8s.io", "CustomResourceDefinition")}

HEADER = "#pushgate-inventory v2"
_HEADER_PREFIX = "#pushgate-inventory "
_SEP = "_"
# "#" too, so that no entry line can ever be taken for a header or a comment.
_ALWAYS_ESCAPED = frozenset("%_#")


class FormatError(ValueError):
    """An inventory written in a format this version cannot read (a newer pushgate's)."""


def escape(field: str) -> str:
    """`field` with "%", "_", "#", whitespace and unprintable characters as %XX (UTF-8)."""
    out = []
    for ch in field:
        if ch in _ALWAYS_ESCAPED or ch.isspace() or not ch.isprintable():
            # surrogatepass: a lone surrogate (possible in a str decoded from JSON) must
            # round-trip too rather than make the whole inventory unwritable.
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
        else:
            out.append(ch)
    return "".join(out)


def unescape(field: str) -> str:
    return urllib.parse.unquote(field, encoding="utf-8", errors="surrogatepass")


@dataclass(frozen=True, order=True)
class Entry:
    namespace: str
    name: str
    group: str
    kind: str
    version: str = ""

    @property
    def id(self) -> str:
        """Unique per (namespace, name, group, kind), version ignored: a dict key, and the first
        four fields of the encoded line."""
        return _SEP.join(escape(f) for f in (self.namespace, self.name, self.group, self.kind))

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
        """One v2 line."""
        return f"{self.id}{_SEP}{escape(self.version)}"

    @staticmethod
    def decode(text: str) -> Entry:
        """One v2 line; ValueError unless it has exactly five fields."""
        fields = text.split(_SEP)
        if len(fields) != 5:
            raise ValueError(f"an inventory line has 5 fields, not {len(fields)}")
        ns, name, group, kind, version = (unescape(f) for f in fields)
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
    """The v2 text: the header, then one sorted line per entry."""
    return "\n".join([HEADER, *sorted({e.encode() for e in entries})])


def decode(text: str) -> list[Entry]:
    """Entries of a v2 text, or of a v1 text (no header) best-effort; lines that cannot be read
    are skipped (at worst an object is orphaned, never a wrong one deleted). FormatError for a
    format newer than v2."""
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if lines and lines[0].startswith(_HEADER_PREFIX):
        if lines[0] != HEADER:
            raise FormatError(f"inventory format {lines[0][len(_HEADER_PREFIX):]!r} is newer than "
                              f"this pushgate reads ({HEADER[len(_HEADER_PREFIX):]})")
        out = []
        for line in lines[1:]:
            try:
                out.append(Entry.decode(line))
            except ValueError:
                continue
        return out
    return [e for e in (_decode_v1(line) for line in lines) if e is not None]


def _decode_v1(line: str) -> Entry | None:
    """A v1 line, `ns_name_group_kind_version` joined with "_" and never escaped. Only the name
    can hold "_": the namespace is a DNS label, the group a DNS subdomain, the kind an identifier
    and the version like v1beta1, none with "_". So the namespace is split off at the first "_",
    version, kind and group at the last three, and whatever is left is the name (`read_only`)."""
    ns, sep, rest = line.partition(_SEP)
    if not sep:
        return None
    parts = rest.rsplit(_SEP, 3)
    if len(parts) != 4:
        return None
    name, group, kind, version = parts
    return Entry(ns, name, group, kind, version)


def group_kinds(entries: Iterable[Entry]) -> str:
    """The parent's contains-group-kinds annotation: "Kind.group" sorted, comma-separated."""
    return ",".join(sorted({f"{e.kind}.{e.group}" if e.group else e.kind for e in entries}))
