"""The per-object opt-out, `pushgate.io/reconcile: "false"`: the rule (`apply.reconcile_disabled`)
as a table, and the applier following it against an in-memory cluster that keeps server-side
apply's ownership of annotations (the real API server: tests/cluster/test_optout.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler import apply, errors, inventory
from reconciler.apply import RECONCILE_ANNOTATION, Applier

OURS = "pushgate"


def _live(value: str | None, *managers: str) -> dict[str, Any]:
    ann = {} if value is None else {RECONCILE_ANNOTATION: value}
    fields: dict[str, Any] = {"f:metadata": {"f:annotations": {f"f:{RECONCILE_ANNOTATION}": {}}}}
    return {"metadata": {"annotations": ann,
                         "managedFields": [{"manager": m, "operation": "Apply" if m == OURS else "Update",
                                            "fieldsV1": fields} for m in managers]}}


def _desired(value: str | None) -> dict[str, Any]:
    return {"metadata": {"annotations": {RECONCILE_ANNOTATION: value}} if value is not None else {}}


@pytest.mark.parametrize(("desired", "live", "disabled"), [
    (None, None, False),  # does not exist: always created
    ("false", None, False),  # Git's opt-out lands on create
    (None, _live(None), False),
    (None, _live("true", "kubectl-annotate"), False),
    (None, _live("False", "kubectl-annotate"), False),  # only "false" opts out
    (None, _live("false", "kubectl-annotate"), True),  # an operator's opt-out
    ("true", _live("false", "kubectl-annotate"), True),  # ... which Git cannot override
    ("true", _live("false", OURS, "kubectl-annotate"), True),  # shared: the operator's too
    ("false", _live(None), False),  # added in Git to an existing object: applied once, lands
    ("false", _live("false", OURS), True),  # landed: left alone while Git says "false"
    ("false", _live("false", "kubectl-annotate"), True),
    (None, _live("false", OURS), False),  # Git's own, removed from Git: withdrawn
    ("true", _live("false", OURS), False),  # Git's own, changed in Git: withdrawn
    (None, {"metadata": {"annotations": {RECONCILE_ANNOTATION: "false"}}}, True),  # no managedFields
])
def test_the_rule(desired: str | None, live: dict[str, Any] | None, disabled: bool) -> None:
    assert apply.reconcile_disabled(_desired(desired), live, OURS) is disabled


# -- the applier, against an in-memory cluster ----------------------------------------------------
class FakeCluster:
    """Objects by (kind, namespace, name). Server-side apply as far as the opt-out needs it: our
    fields win, an annotation only we owned and no longer send is removed, and managedFields
    say who owns which annotation. Every write is recorded."""

    field_manager = OURS

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []
        self.refuse: set[str] = set()  # names whose dry-run the "server" refuses
        self.rv = 0

    @staticmethod
    def _key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
        return kind, namespace, name

    def namespaced(self, api_version: str, kind: str) -> bool:
        return kind != "Namespace"

    def invalidate_discovery(self) -> None:
        pass

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        obj = self.objects.get(self._key(kind, namespace, name))
        return copy.deepcopy(obj)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> None:
        self.writes.append(("delete", f"{kind}/{name}"))
        self.objects.pop(self._key(kind, namespace, name), None)

    def annotate(self, kind: str, namespace: str, name: str, value: str | None,
                 manager: str = "kubectl-annotate") -> None:
        """An operator's out-of-band `kubectl annotate` (value None: remove it)."""
        obj = self.objects[self._key(kind, namespace, name)]
        ann = obj["metadata"].setdefault("annotations", {})
        if value is None:
            ann.pop(RECONCILE_ANNOTATION, None)
        else:
            ann[RECONCILE_ANNOTATION] = value
        self._own(obj, manager, set() if value is None else {RECONCILE_ANNOTATION})
        self._bump(obj)

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        if meta["name"] in self.refuse and dry_run:
            raise errors.Invalid("spec.selector: field is immutable", code=422)
        key = self._key(obj["kind"], meta.get("namespace", ""), meta["name"])
        live = self.objects.get(key)
        merged = copy.deepcopy(live) if live else {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                                                    "metadata": {"name": meta["name"]}}
        if meta.get("namespace"):
            merged["metadata"]["namespace"] = meta["namespace"]
        ann = merged["metadata"].setdefault("annotations", {})
        sent = dict(meta.get("annotations") or {})
        for k in list(ann):
            if k not in sent and apply._annotation_managers(merged, k) == {OURS}:
                del ann[k]
        ann.update(sent)
        merged["metadata"]["labels"] = {**(merged["metadata"].get("labels") or {}),
                                        **(meta.get("labels") or {})}
        merged["data"] = dict(obj.get("data") or {})
        self._own(merged, OURS, set(sent))
        if not dry_run:
            self._bump(merged)
            self.objects[key] = merged
            self.writes.append(("apply", f"{obj['kind']}/{meta['name']}"))
        return copy.deepcopy(merged)

    def _own(self, obj: dict[str, Any], manager: str, keys: set[str]) -> None:
        entries = [m for m in obj["metadata"].get("managedFields") or [] if m["manager"] != manager]
        if keys:
            entries.append({"manager": manager, "fieldsV1": {"f:metadata": {"f:annotations": {
                f"f:{k}": {} for k in keys}}}})
        obj["metadata"]["managedFields"] = entries

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)


def _cm(name: str, value: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "shop"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"value": value}}


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster()


def _applier(fake: FakeCluster) -> Applier:
    return Applier(fake, branch="main", inventory_namespace="pushgate-system")  # type: ignore[arg-type]


def _object_writes(fake: FakeCluster, since: int = 0) -> list[tuple[str, str]]:
    """Writes other than the inventory's own (its Namespace and parent ConfigMap)."""
    own = ("Namespace/pushgate-system", "ConfigMap/pushgate-main")
    return [w for w in fake.writes[since:] if w[1] not in own]


def _rows(report: apply.ApplyReport) -> dict[str, tuple[str, str]]:
    return {r.ref: (r.action, r.reason) for r in report.results}


def _inventory_ids(fake: FakeCluster) -> set[str]:
    parent = fake.get("v1", "ConfigMap", "pushgate-main", "pushgate-system")
    assert parent is not None
    return {e.id for e in inventory.decode(parent["data"]["inventory"])}


def test_an_operators_opt_out_means_no_write_and_no_prune(fake: FakeCluster) -> None:
    applier = _applier(fake)
    applier.apply([_cm("a", "1"), _cm("b", "1")], "c1")
    fake.annotate("ConfigMap", "shop", "a", "false")
    before = fake.get("v1", "ConfigMap", "a", "shop")

    mark = len(fake.writes)
    report = applier.apply([_cm("a", "2"), _cm("b", "2")], "c2")
    assert _object_writes(fake, mark) == [("apply", "ConfigMap/b")]
    assert fake.get("v1", "ConfigMap", "a", "shop") == before
    assert _rows(report) == {"ConfigMap/shop/a": ("skipped", "ReconcileDisabled"),
                             "ConfigMap/shop/b": ("applied", "")}
    assert report.failures == [] and "not applied" in report.results[0].message
    a_id = inventory.Entry("shop", "a", "", "ConfigMap", "v1").id
    assert a_id in {e.id for e in report.inventory} and a_id in _inventory_ids(fake)
    assert a_id in report.desired and a_id not in report.live  # drift takes over once lifted

    mark = len(fake.writes)
    report = applier.apply([_cm("b", "2")], "c3")  # "a" removed from Git
    assert ("delete", "ConfigMap/a") not in fake.writes
    assert _rows(report)["ConfigMap/shop/a"] == ("skipped", "ReconcileDisabled")
    assert "not pruned" in next(r.message for r in report.results if r.ref == "ConfigMap/shop/a")
    assert a_id in _inventory_ids(fake)  # still ours: pruned once the opt-out is lifted

    fake.annotate("ConfigMap", "shop", "a", None)
    report = applier.apply([_cm("b", "2")], "c4")
    assert _rows(report)["ConfigMap/shop/a"] == ("pruned", "")
    assert fake.get("v1", "ConfigMap", "a", "shop") is None and a_id not in _inventory_ids(fake)


def test_an_opted_out_object_the_server_would_refuse_is_skipped_not_failed(fake: FakeCluster) -> None:
    applier = _applier(fake)
    applier.apply([_cm("a", "1")], "c1")
    fake.annotate("ConfigMap", "shop", "a", "false")
    fake.refuse.add("a")
    report = applier.apply([_cm("a", "2")], "c2")
    assert _rows(report) == {"ConfigMap/shop/a": ("skipped", "ReconcileDisabled")}
    assert report.failures == []
    fake.annotate("ConfigMap", "shop", "a", None)
    report = applier.apply([_cm("a", "2")], "c3")
    assert _rows(report) == {"ConfigMap/shop/a": ("failed", "Invalid")}  # refused, once managed


def test_an_opt_out_set_in_git_lands_once_then_holds_until_git_withdraws_it(fake: FakeCluster) -> None:
    applier = _applier(fake)
    off = {RECONCILE_ANNOTATION: "false"}
    report = applier.apply([_cm("a", "1", off)], "c1")  # created, annotation and all
    assert _rows(report) == {"ConfigMap/shop/a": ("applied", "")}
    live = fake.get("v1", "ConfigMap", "a", "shop")
    assert live is not None and live["metadata"]["annotations"] == off

    mark = len(fake.writes)
    report = applier.apply([_cm("a", "2", off)], "c2")  # left alone while Git says "false"
    assert _rows(report) == {"ConfigMap/shop/a": ("skipped", "ReconcileDisabled")}
    assert _object_writes(fake, mark) == []

    report = applier.apply([_cm("a", "3")], "c3")  # Git's own opt-out, removed from Git
    assert _rows(report) == {"ConfigMap/shop/a": ("applied", "")}
    live = fake.get("v1", "ConfigMap", "a", "shop")
    assert live is not None and live["data"] == {"value": "3"}
    assert RECONCILE_ANNOTATION not in live["metadata"]["annotations"]

    # Added in Git to an object that exists: applied once, so it lands.
    report = applier.apply([_cm("a", "4", off)], "c4")
    assert _rows(report) == {"ConfigMap/shop/a": ("applied", "")}
    report = applier.apply([_cm("a", "5", off)], "c5")
    assert _rows(report) == {"ConfigMap/shop/a": ("skipped", "ReconcileDisabled")}
    live = fake.get("v1", "ConfigMap", "a", "shop")
    assert live is not None and live["data"] == {"value": "4"}


def test_git_cannot_override_an_operators_opt_out(fake: FakeCluster) -> None:
    applier = _applier(fake)
    applier.apply([_cm("a", "1")], "c1")
    fake.annotate("ConfigMap", "shop", "a", "false")
    mark = len(fake.writes)
    report = applier.apply([_cm("a", "2", {RECONCILE_ANNOTATION: "true"})], "c2")
    assert _rows(report) == {"ConfigMap/shop/a": ("skipped", "ReconcileDisabled")}
    assert _object_writes(fake, mark) == []
