"""Applying one commit's objects: server-side apply in two phases, then prune.

Called by the loop. Phase 1 dry-runs and applies Namespaces and CRDs and waits for the CRDs to be
Established; phase 2 dry-runs everything else, reports every object that fails (and skips it),
and applies the rest with bounded parallelism. A dry-run is there to read the object's opt-out
before writing it (below): where many objects share a kind and a namespace, one LIST of them
reads it instead (`_listed`), and their failures are found by the apply itself. Every object is
labelled as a member of our ApplySet; the inventory lives on the ApplySet parent (a ConfigMap)
and is written before the apply (a superset, so a crash never orphans an object) and after the
prune.

The per-object opt-out, `pushgate.io/reconcile: "false"` on the live object, means no write at
all: such an object is neither applied (action "skipped", reason ReconcileDisabled) nor pruned
(the same), and stays in the inventory, so it is neither orphaned nor forgotten; drift correction
(`drift`) leaves it alone too. When the opt-out is lifted, the next commit, restart or
leadership change applies (or prunes) it again, and drift correction does at once if its kind is
watched. Reading the opt-out costs no request in the common case (see `_phase`). Set in Git
instead, the annotation is applied like any field the first time (on create, or when it is
added to an existing object), so it lands, and from then on the object is left alone while Git
says "false". Who set it decides what lifts it: an operator's opt-out only by removing it from
the live object; Git's own (owned by our field manager alone) also by removing it from Git, or
setting another value. Prune honours any "false", whoever set it: not deleting is always safe.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pushgate import faults
from reconciler import errors, inventory
from reconciler.cluster import Cluster
from reconciler.inventory import Entry

PRUNE_ANNOTATION = "pushgate.io/prune"  # "false": never prune; "true": allow a protected kind
RECONCILE_ANNOTATION = "pushgate.io/reconcile"  # "false" on a live object: leave it alone
FIRST_KINDS = {("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition")}
# Objects of one kind in one namespace from which one LIST of them replaces a dry-run each, and
# how many live objects per one of ours that LIST may read before the dry-runs are cheaper.
LIST_MIN = 16
LIST_FACTOR = 8


@dataclass
class ObjectResult:
    ref: str
    entry: Entry
    action: str  # applied | failed | skipped | pruned | prune-failed | kept | orphaned
    reason: str = ""
    message: str = ""
    permanent: bool = True

    def line(self) -> str:
        extra = f" ({self.reason}: {self.message})" if self.message else ""
        return f"{self.ref} {self.action}{extra}"


@dataclass
class ApplyReport:
    results: list[ObjectResult] = field(default_factory=list)
    inventory: list[Entry] = field(default_factory=list)
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry id -> labelled object
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry id -> object as applied

    @property
    def failures(self) -> list[ObjectResult]:
        return [r for r in self.results if r.action in ("failed", "prune-failed")]

    @property
    def applied(self) -> list[ObjectResult]:
        return [r for r in self.results if r.action == "applied"]


class Applier:
    def __init__(self, cluster: Cluster, *, branch: str, inventory_namespace: str,
                 parallelism: int = 8, prune_protected: bool = False,
                 progress: Callable[[str], None] | None = None,
                 guard: Callable[[], None] | None = None) -> None:
        self.cluster = cluster
        self.branch = branch
        self.ns = inventory_namespace
        self.parent_name = f"pushgate-{branch.replace('/', '-')}"
        self.id = inventory.applyset_id(self.parent_name, self.ns, "ConfigMap", "")
        self.parallelism = parallelism
        self.prune_protected = prune_protected
        self.progress = progress or (lambda _msg: None)
        self.guard = guard or (lambda: None)  # raises to stop before a batch (lost leadership)

    # -- inventory parent -----------------------------------------------------------------------
    def read_inventory(self) -> list[Entry]:
        """The parent's inventory, in either format (the next `write_inventory` writes v2)."""
        parent = self.cluster.get("v1", "ConfigMap", self.parent_name, self.ns)
        if parent is None:
            return []
        try:
            return inventory.decode((parent.get("data") or {}).get("inventory", ""))
        except inventory.FormatError as e:
            # Written by a newer pushgate: guessing could prune the wrong objects.
            raise errors.Permanent(f"ConfigMap/{self.ns}/{self.parent_name}: {e}",
                                   reason="InventoryFormat") from e

    def write_inventory(self, entries: Sequence[Entry], revision: str) -> None:
        namespaces = sorted({e.namespace for e in entries if e.namespace and e.namespace != self.ns})
        self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}})
        self.cluster.apply({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": self.parent_name, "namespace": self.ns,
                "labels": {inventory.APPLYSET_ID: self.id},
                "annotations": {
                    inventory.TOOLING: "pushgate/v0.1.0",
                    inventory.CONTAINS: inventory.group_kinds(entries),
                    inventory.ADDITIONAL_NAMESPACES: ",".join(namespaces),
                },
            },
            "data": {"inventory": inventory.encode(entries), "revision": revision},
        })

    # -- apply ----------------------------------------------------------------------------------
    def labelled(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        meta = out.setdefault("metadata", {})
        labels = meta.get("labels") or {}
        labels[inventory.PART_OF] = self.id
        meta["labels"] = labels
        return out

    def entry(self, obj: dict[str, Any]) -> Entry:
        try:
            namespaced = self.cluster.namespaced(obj["apiVersion"], obj["kind"])
        except errors.NotFound:
            namespaced = bool((obj.get("metadata") or {}).get("namespace"))
        return Entry.of(obj, namespaced)

    def apply(self, objects: Sequence[dict[str, Any]], revision: str) -> ApplyReport:
        report = ApplyReport()
        old = self.read_inventory()
        first = [o for o in objects if _group_kind(o) in FIRST_KINDS]
        rest = [o for o in objects if _group_kind(o) not in FIRST_KINDS]
        desired = [self.entry(o) for o in first]
        # Superset first: a crash mid-apply must not orphan what this commit creates.
        self.write_inventory(sorted(set(old) | set(desired) | {self._guess(o) for o in rest}), revision)

        self.guard()
        self.progress(f"phase 1: {len(first)} namespace(s) and CRD(s)")
        ok_first = self._phase(first, report)
        self._wait_established([o for o in ok_first if o["kind"] == "CustomResourceDefinition"],
                               report)
        if any(o["kind"] == "CustomResourceDefinition" for o in ok_first):
            self.cluster.invalidate_discovery()
        self.guard()
        self.progress(f"phase 2: {len(rest)} object(s)")
        self._phase(rest, report)

        applied = {r.entry for r in report.applied}
        failed_old = {r.entry.id for r in report.results if r.action == "failed"}
        keep_failed = [e for e in old if e.id in failed_old]
        desired_ids = {r.entry.id for r in report.results}
        self.guard()
        self._prune([e for e in inventory.diff(old, []) if e.id not in desired_ids], report)
        # Opted out (applied or pruned) objects stay ours: not orphaned, pruned once lifted.
        kept = [r.entry for r in report.results if r.action in ("prune-failed", "skipped")]
        report.inventory = sorted(applied | set(keep_failed) | set(kept))
        self.write_inventory(report.inventory, revision)
        return report

    def _guess(self, obj: dict[str, Any]) -> Entry:
        try:
            return self.entry(obj)
        except errors.ClusterError:
            return Entry.of(obj, True)

    def _phase(self, objects: Sequence[dict[str, Any]], report: ApplyReport) -> list[dict[str, Any]]:
        if not objects:
            return []

        def dry(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None,
                                              errors.ClusterError | None]:
            """The object, what the opt-out is judged on (see `reconcile_disabled`), the error."""
            try:
                merged = self.cluster.apply(self.labelled(obj), dry_run=True)
            except errors.ClusterError as e:
                # An opted-out object is not a failure whatever the server thinks of the commit's
                # version of it; failures are few, so one GET each is cheap.
                return obj, self._live_or_none(obj), e
            # The dry-run answers with the live object, our fields merged in, at no extra cost.
            # An annotation we do not send shows through as the live object has it, unless only
            # we owned it (then the apply removes it, and the opt-out was Git's, now withdrawn).
            # Only when the commit sets the annotation itself does the answer hide the live
            # value: for those few objects, one GET.
            if RECONCILE_ANNOTATION not in _annotations(obj):
                return obj, merged, None
            try:
                return obj, self._live(obj), None
            except errors.ClusterError as e:
                return obj, None, e

        listed = self._listed(objects)
        with ThreadPoolExecutor(self.parallelism) as pool:
            dried = iter(list(pool.map(dry, [o for i, o in enumerate(objects) if i not in listed])))
        checked = [(o, listed[i], None) if i in listed else next(dried) for i, o in enumerate(objects)]
        good = []
        for obj, view, err in checked:
            if reconcile_disabled(obj, view, self.cluster.field_manager):
                report.results.append(self._skipped(obj, report))
            elif err is None:
                good.append(obj)
            else:
                report.results.append(self._failed(obj, err, "dry-run"))

        def real(obj: dict[str, Any]) -> ObjectResult:
            entry = self._guess(obj)
            labelled = self.labelled(obj)
            try:
                live = self.cluster.apply(labelled)
            except errors.ClusterError as e:
                return self._failed(obj, e, "apply")
            report.desired[entry.id] = labelled
            report.live[entry.id] = live
            self.progress(f"applied {entry.ref}")
            faults.crashpoint("during-apply")
            return ObjectResult(entry.ref, entry, "applied")

        with ThreadPoolExecutor(self.parallelism) as pool:
            results = list(pool.map(real, good))
        report.results.extend(results)
        applied = {r.ref for r in results if r.action == "applied"}
        return [o for o in good if self._guess(o).ref in applied]

    def _listed(self, objects: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any] | None]:
        """The live object (None: absent) of each object whose kind and namespace hold at least
        LIST_MIN of them, read with one LIST per kind and namespace instead of a dry-run each:
        what `reconcile_disabled` needs is on the live object, and half the requests of a full
        sync were dry-runs. Any trouble listing leaves those objects to their dry-runs."""
        groups: dict[tuple[str, str, str], list[int]] = {}
        for i, obj in enumerate(objects):
            meta = obj.get("metadata") or {}
            api_version, kind, name = obj.get("apiVersion"), obj.get("kind"), meta.get("name")
            if isinstance(api_version, str) and isinstance(kind, str) and isinstance(name, str):
                namespace = meta.get("namespace")
                groups.setdefault((api_version, kind, namespace if isinstance(namespace, str) else ""),
                                  []).append(i)
        out: dict[int, dict[str, Any] | None] = {}
        for (api_version, kind, namespace), members in groups.items():
            if len(members) < LIST_MIN:
                continue
            try:
                live = self.cluster.list(api_version, kind, namespace,
                                         at_most=len(members) * LIST_FACTOR)
            except errors.ClusterError:
                continue
            if live is None:
                continue
            for i in members:
                out[i] = live.get(objects[i]["metadata"]["name"])
        return out

    def _live(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        entry = self._guess(obj)
        return self.cluster.get(entry.api_version, entry.kind, entry.name, entry.namespace)

    def _live_or_none(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._live(obj)
        except errors.ClusterError:
            return None

    def _skipped(self, obj: dict[str, Any], report: ApplyReport) -> ObjectResult:
        entry = self._guess(obj)
        # Desired, so that drift correction takes over again once the opt-out is lifted.
        report.desired[entry.id] = self.labelled(obj)
        self.progress(f"skipped {entry.ref}: {RECONCILE_ANNOTATION}=false")
        return ObjectResult(entry.ref, entry, "skipped", "ReconcileDisabled",
                            f"{RECONCILE_ANNOTATION}=false on the live object: not applied")

    def _failed(self, obj: dict[str, Any], err: errors.ClusterError, stage: str) -> ObjectResult:
        entry = self._guess(obj)
        self.progress(f"failed {entry.ref}: {err.reason}: {err.message}")
        return ObjectResult(entry.ref, entry, "failed", err.reason, f"{stage}: {err.message}",
                            err.permanent)

    def _wait_established(self, crds: Sequence[dict[str, Any]], report: ApplyReport,
                          timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for crd in crds:
            name = crd["metadata"]["name"]
            while True:
                live = self.cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
                conds = ((live or {}).get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                    break
                if time.monotonic() > deadline:
                    entry = self._guess(crd)
                    report.results.append(ObjectResult(entry.ref, entry, "failed", "NotEstablished",
                                                       "CRD not established in time", False))
                    break
                time.sleep(0.2)
            self.progress(f"CRD {name} established")

    # -- prune ----------------------------------------------------------------------------------
    def _prune(self, gone: Sequence[Entry], report: ApplyReport) -> None:
        for e in gone:
            try:
                live = self.cluster.get(e.api_version, e.kind, e.name, e.namespace)
            except errors.ClusterError as err:
                report.results.append(ObjectResult(e.ref, e, "prune-failed", err.reason, err.message,
                                                   err.permanent))
                continue
            if live is None:
                continue
            meta = live.get("metadata") or {}
            labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
            if labels.get(inventory.PART_OF) != self.id:
                report.results.append(ObjectResult(e.ref, e, "orphaned", "NotOwned",
                                                   "no longer carries our ApplySet label: left alone"))
                continue
            if ann.get(PRUNE_ANNOTATION) == "false":
                report.results.append(ObjectResult(e.ref, e, "orphaned", "PruneDisabled",
                                                   f"{PRUNE_ANNOTATION}=false: left in the cluster"))
                continue
            if ann.get(RECONCILE_ANNOTATION) == "false":
                # Whoever set it (unlike apply, which lets Git withdraw its own opt-out): a
                # delete cannot be undone. Kept in the inventory: pruned once it is lifted.
                report.results.append(ObjectResult(
                    e.ref, e, "skipped", "ReconcileDisabled",
                    f"{RECONCILE_ANNOTATION}=false on the live object: not pruned"))
                continue
            if e.protected and not (self.prune_protected or ann.get(PRUNE_ANNOTATION) == "true"):
                # Kept on purpose and released from the inventory: not a failure.
                report.results.append(ObjectResult(
                    e.ref, e, "kept", "ProtectedKind",
                    f"{e.kind} is pruned only with --prune-protected or {PRUNE_ANNOTATION}=true"))
                continue
            try:
                self.cluster.delete(e.api_version, e.kind, e.name, e.namespace)
            except errors.ClusterError as err:
                report.results.append(ObjectResult(e.ref, e, "prune-failed", err.reason, err.message,
                                                   err.permanent))
                continue
            self.progress(f"pruned {e.ref}")
            report.results.append(ObjectResult(e.ref, e, "pruned"))


def reconcile_disabled(desired: dict[str, Any], live: dict[str, Any] | None,
                       field_manager: str) -> bool:
    """Whether applying `desired` must leave the object alone: its live state says
    `pushgate.io/reconcile: "false"` and Git has not withdrawn an opt-out of its own.

    `live` is the object as it is in the cluster, or the server's dry-run apply of `desired` when
    `desired` does not set the annotation (the live object with desired merged in: the same
    answer); None when it does not exist, and a new object is always created. Read by `drift` too.
    """
    if live is None or _annotations(live).get(RECONCILE_ANNOTATION) != "false":
        return False
    if _annotations(desired).get(RECONCILE_ANNOTATION) == "false":
        return True  # Git's own opt-out, landed by an earlier apply: left alone from now on
    # Git does not say "false" (any more): an opt-out set by anyone else stands; one that only
    # our field manager wrote came from an earlier commit, and Git has withdrawn it.
    return _annotation_managers(live, RECONCILE_ANNOTATION) != {field_manager}


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _annotation_managers(obj: dict[str, Any], key: str) -> set[str]:
    """The field managers that own annotation `key` (managedFields, fieldsV1 format)."""
    out = set()
    for mf in (obj.get("metadata") or {}).get("managedFields") or []:
        fields = ((mf.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {}
        if f"f:{key}" in fields:
            out.add(str(mf.get("manager", "")))
    return out


def _group_kind(obj: dict[str, Any]) -> tuple[str, str]:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind", ""))
