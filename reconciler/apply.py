"""Applying one commit's objects: server-side apply in two phases, then prune.

Called by the loop. Phase 1 dry-runs and applies Namespaces and CRDs and waits for the CRDs to be
Established; phase 2 dry-runs everything else, reports every object that fails (and skips it),
and applies the rest with bounded parallelism. Every object is labelled as a member of our
ApplySet; the inventory lives on the ApplySet parent (a ConfigMap) and is written before the
apply (a superset, so a crash never orphans an object) and after the prune.
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


@dataclass
class ObjectResult:
    ref: str
    entry: Entry
    action: str  # applied | failed | pruned | prune-failed | kept | orphaned
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
        parent = self.cluster.get("v1", "ConfigMap", self.parent_name, self.ns)
        if parent is None:
            return []
        return inventory.decode((parent.get("data") or {}).get("inventory", ""))

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
        kept = [r.entry for r in report.results if r.action == "prune-failed"]
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

        def dry(obj: dict[str, Any]) -> tuple[dict[str, Any], errors.ClusterError | None]:
            try:
                self.cluster.apply(self.labelled(obj), dry_run=True)
                return obj, None
            except errors.ClusterError as e:
                return obj, e

        with ThreadPoolExecutor(self.parallelism) as pool:
            checked = list(pool.map(dry, objects))
        good = []
        for obj, err in checked:
            if err is None:
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


def _group_kind(obj: dict[str, Any]) -> tuple[str, str]:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind", ""))
