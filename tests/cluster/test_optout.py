"""The per-object opt-out on the real API server: an object annotated `pushgate.io/reconcile:
"false"` out of band gets no write when a new commit changes it (same resourceVersion, nothing in
the audit log), is not pruned when it leaves Git, and its drift is not corrected; an opt-out set
in Git lands once and then holds, and server-side apply's ownership decides who can lift it."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler import apply as applymod
from reconciler import drift, inventory
from reconciler.apply import RECONCILE_ANNOTATION, Applier, ApplyReport
from reconciler.cluster import Cluster
from reconciler.inventory import Entry
from tests.bed import deploy
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import Server

pytestmark = pytest.mark.cluster

MERGE = "application/merge-patch+json"


def _cm(ns: str, name: str, value: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"value": value}}


class _Bed:
    """An applier with a user agent of its own, so the audit log tells its requests apart."""

    def __init__(self, control_plane: ControlPlane, dynamic: Any, ns: str) -> None:
        self.cp = control_plane
        self.ns = ns
        self.agent = f"pushgate-optout-{secrets.token_hex(4)}"
        api = control_plane.api_client()
        api.user_agent = self.agent
        self.cluster = Cluster(api)
        self.applier = Applier(self.cluster, branch=f"optout-{secrets.token_hex(3)}",
                               inventory_namespace=ns)
        self.cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")

    def live(self, name: str) -> dict[str, Any] | None:
        return self.cluster.get("v1", "ConfigMap", name, self.ns)

    def annotate(self, name: str, value: str | None) -> None:
        """An operator's `kubectl annotate` (None: remove the annotation)."""
        self.cms.patch(name=name, namespace=self.ns, content_type=MERGE,
                       body={"metadata": {"annotations": {RECONCILE_ANNOTATION: value}}})

    def writes_to(self, name: str, since: float) -> list[str]:
        """Our requests that changed `name` (a dry-run changes nothing)."""
        path = f"/namespaces/{self.ns}/configmaps/{name}"
        return [f"{e['verb']} {e['requestURI']}" for e in self.cp.audit_events(self.agent, since)
                if path in e["requestURI"].split("?")[0] and "dryRun=All" not in e["requestURI"]]

    def inventory_names(self) -> set[str]:
        return {e.name for e in self.applier.read_inventory()}


def _rows(report: ApplyReport) -> dict[str, tuple[str, str]]:
    return {r.entry.name: (r.action, r.reason) for r in report.results}


def _now() -> float:
    """A start for audit queries that excludes every earlier request (timestamps are in µs)."""
    time.sleep(0.01)
    return time.time()


def _rv(obj: dict[str, Any] | None) -> str:
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])


@pytest.fixture(params=["dry-run", "listed"])
def bed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, control_plane: ControlPlane,
        dynamic: Any, namespace: str) -> _Bed:
    """Every case twice: the opt-out read from a dry-run of each object, and from one LIST of the
    namespace's objects of the kind (what a kind with many objects in a namespace gets)."""
    monkeypatch.setattr(applymod, "LIST_MIN", 10_000 if request.param == "dry-run" else 1)
    return _Bed(control_plane, dynamic, namespace)


def test_an_operators_opt_out_gets_no_write_no_prune_no_drift_correction(bed: _Bed) -> None:
    ns = bed.ns
    report = bed.applier.apply([_cm(ns, "a", "1"), _cm(ns, "b", "1")], "c1")
    assert report.failures == []
    bed.annotate("a", "false")
    rv = _rv(bed.live("a"))
    since = _now()

    report = bed.applier.apply([_cm(ns, "a", "2"), _cm(ns, "b", "2")], "c2")  # Git changes both
    assert _rows(report) == {"a": ("skipped", "ReconcileDisabled"), "b": ("applied", "")}
    assert report.failures == []
    live = bed.live("a")
    assert _rv(live) == rv and live is not None and live["data"] == {"value": "1"}
    assert bed.writes_to("a", since) == []
    assert len(bed.writes_to("b", since)) == 1  # the audit log does see our writes
    assert "a" in bed.inventory_names()

    # Drift: an out-of-band edit of the opted-out object stays, and nothing is written.
    checker = drift.DriftChecker(bed.cluster, "correct")
    checker.set_desired(report.desired, report.live)
    bed.cms.patch(name="a", namespace=ns, content_type=MERGE, body={"data": {"value": "edited"}})
    edited = bed.live("a")
    assert checker.check(Entry.of(_cm(ns, "a", "2")), edited) is None
    assert _rv(bed.live("a")) == _rv(edited)

    # Removed from Git: not pruned, still in the inventory.
    report = bed.applier.apply([_cm(ns, "b", "2")], "c3")
    assert _rows(report)["a"] == ("skipped", "ReconcileDisabled")
    assert _rv(bed.live("a")) == _rv(edited) and "a" in bed.inventory_names()
    assert bed.writes_to("a", since) == []

    # Lifted: the next pass prunes it, as Git says.
    bed.annotate("a", None)
    report = bed.applier.apply([_cm(ns, "b", "2")], "c4")
    assert _rows(report)["a"] == ("pruned", "")
    assert bed.live("a") is None and "a" not in bed.inventory_names()


def test_lifting_the_opt_out_lets_drift_correction_converge(bed: _Bed) -> None:
    ns = bed.ns
    bed.applier.apply([_cm(ns, "a", "1")], "c1")
    bed.annotate("a", "false")
    report = bed.applier.apply([_cm(ns, "a", "2")], "c2")
    assert _rows(report) == {"a": ("skipped", "ReconcileDisabled")}
    checker = drift.DriftChecker(bed.cluster, "correct")
    checker.set_desired(report.desired, report.live)
    bed.annotate("a", None)
    event = checker.check(Entry.of(_cm(ns, "a", "2")), bed.live("a"))
    assert event is not None and event.corrected and "data.value" in event.fields
    live = bed.live("a")
    assert live is not None and live["data"] == {"value": "2"}


def test_an_opt_out_set_in_git_lands_once_then_holds(bed: _Bed) -> None:
    ns = bed.ns
    off = {RECONCILE_ANNOTATION: "false"}
    report = bed.applier.apply([_cm(ns, "a", "1", off)], "c1")
    assert _rows(report) == {"a": ("applied", "")}
    live = bed.live("a")
    assert live is not None and live["metadata"]["annotations"][RECONCILE_ANNOTATION] == "false"
    rv = _rv(live)

    since = _now()
    report = bed.applier.apply([_cm(ns, "a", "2", off)], "c2")
    assert _rows(report) == {"a": ("skipped", "ReconcileDisabled")}
    assert _rv(bed.live("a")) == rv and bed.writes_to("a", since) == []

    # Git removes its own opt-out: the annotation (ours alone) goes, and the change lands.
    report = bed.applier.apply([_cm(ns, "a", "3")], "c3")
    assert _rows(report) == {"a": ("applied", "")}
    live = bed.live("a")
    assert live is not None and live["data"] == {"value": "3"}
    assert RECONCILE_ANNOTATION not in (live["metadata"].get("annotations") or {})


def test_git_cannot_lift_an_operators_opt_out(bed: _Bed) -> None:
    ns = bed.ns
    bed.applier.apply([_cm(ns, "a", "1")], "c1")
    bed.annotate("a", "false")
    rv = _rv(bed.live("a"))
    report = bed.applier.apply([_cm(ns, "a", "2", {RECONCILE_ANNOTATION: "true"})], "c2")
    assert _rows(report) == {"a": ("skipped", "ReconcileDisabled")}
    assert _rv(bed.live("a")) == rv


def test_an_opted_out_object_the_server_would_refuse_is_not_a_failure(bed: _Bed) -> None:
    ns = bed.ns
    frozen = {**_cm(ns, "frozen", "1"), "immutable": True}
    assert bed.applier.apply([frozen], "c1").failures == []
    changed = {**_cm(ns, "frozen", "2"), "immutable": True}  # its data can no longer change
    report = bed.applier.apply([changed], "c2")
    assert _rows(report) == {"frozen": ("failed", "Invalid")}, [r.line() for r in report.results]
    bed.annotate("frozen", "false")  # metadata stays mutable
    report = bed.applier.apply([changed], "c3")
    assert _rows(report) == {"frozen": ("skipped", "ReconcileDisabled")} and report.failures == []


# -- end to end: commits pushed to pushgate, the loop and its watches -----------------------------
def _cm_yaml(ns: str, name: str, value: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
            f"data:\n  value: \"{value}\"\n")


def test_a_pushed_commit_leaves_an_opted_out_object_alone(git: Git, attached_server: Server,
                                                          dynamic: Any, tmp_path: Path) -> None:
    ns = f"optout-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n",
                     "a.yaml": _cm_yaml(ns, "a", "1"), "b.yaml": _cm_yaml(ns, "b", "1")})
    first = git.commit_all(work, "v1")
    git.run("push", attached_server.url(), "main", cwd=work)
    doc = deploy.wait_status(attached_server, deploy.verdict_for(first), what="v1")
    assert deploy.result_of(doc, first)["result"] == "Ready", doc
    cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    cms.patch(name="a", namespace=ns, content_type=MERGE,
              body={"metadata": {"annotations": {RECONCILE_ANNOTATION: "false"}}})
    rv = cms.get(name="a", namespace=ns).metadata.resourceVersion

    git.write(work, {"a.yaml": _cm_yaml(ns, "a", "2"), "b.yaml": _cm_yaml(ns, "b", "2")})
    second = git.commit_all(work, "v2")
    git.run("push", attached_server.url(), "main", cwd=work)
    doc = deploy.wait_status(attached_server, deploy.verdict_for(second), what="v2")
    assert deploy.result_of(doc, second)["result"] == "Ready", doc
    rows = {o["ref"]: o for o in doc["objects"]}
    assert (rows[f"ConfigMap/{ns}/a"]["action"], rows[f"ConfigMap/{ns}/a"]["reason"]) == (
        "skipped", "ReconcileDisabled")
    assert rows[f"ConfigMap/{ns}/b"]["action"] == "applied"
    assert cms.get(name="a", namespace=ns).metadata.resourceVersion == rv
    assert cms.get(name="b", namespace=ns).data.value == "2"
    assert attached_server.refs()["refs/deployed/main"] == second  # skipped is not a failure

    # The watch sees an out-of-band edit; the opt-out keeps it from being corrected.
    cms.patch(name="a", namespace=ns, content_type=MERGE, body={"data": {"value": "edited"}})
    cms.patch(name="b", namespace=ns, content_type=MERGE, body={"data": {"value": "edited"}})
    deadline = time.monotonic() + 20
    while cms.get(name="b", namespace=ns).data.value != "2":  # b's correction: the watch is live
        assert time.monotonic() < deadline, "drift on b was never corrected"
        time.sleep(0.2)
    time.sleep(2)
    assert cms.get(name="a", namespace=ns).data.value == "edited"
    assert not [d for d in deploy.status(attached_server).get("drift", [])
                if d["ref"] == f"ConfigMap/{ns}/a"]

    (work / "a.yaml").unlink()
    third = git.commit_all(work, "drop a")
    git.run("push", attached_server.url(), "main", cwd=work)
    doc = deploy.wait_status(attached_server, deploy.verdict_for(third), what="v3")
    rows = {o["ref"]: o for o in doc["objects"]}
    assert (rows[f"ConfigMap/{ns}/a"]["action"], rows[f"ConfigMap/{ns}/a"]["reason"]) == (
        "skipped", "ReconcileDisabled")
    assert cms.get(name="a", namespace=ns).data.value == "edited"
    assert Entry(ns, "a", "", "ConfigMap", "v1") in _inventory_listing(dynamic, ns)


def _inventory_listing(dynamic: Any, ns: str) -> list[Entry]:
    """The attached server's inventory: the ApplySet parent that lists objects of `ns`."""
    cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    for item in cms.get(label_selector=inventory.APPLYSET_ID).to_dict()["items"]:
        entries = inventory.decode((item.get("data") or {}).get("inventory", ""))
        if any(e.namespace == ns for e in entries):
            return entries
    raise AssertionError(f"no inventory lists objects of {ns}")


def test_many_objects_of_a_kind_are_read_with_one_list_and_applied_without_dry_runs(
        control_plane: ControlPlane, dynamic: Any, namespace: str) -> None:
    bed = _Bed(control_plane, dynamic, namespace)
    objects = [_cm(namespace, f"cm-{i:02d}", "1") for i in range(applymod.LIST_MIN)]
    objects.append({**_cm(namespace, "bad", "1"), "data": {"value": 5}})  # refused at apply
    listed = _spy_on_lists(bed)
    since = _now()
    report = bed.applier.apply(objects, "r1")
    rows = _rows(report)
    assert all(rows[f"cm-{i:02d}"] == ("applied", "") for i in range(applymod.LIST_MIN)), rows
    assert rows["bad"][0] == "failed" and report.failures[0].message.startswith("apply: ")
    events = [e for e in control_plane.audit_events(bed.agent, since)
              if f"/namespaces/{namespace}/configmaps" in e["requestURI"]]
    assert not [e for e in events if "dryRun=All" in e["requestURI"]], [e["requestURI"] for e in events]
    assert len(listed) == 1 and listed[0] is not None and "cm-00" not in listed[0]  # read before


def _spy_on_lists(bed: _Bed) -> list[Any]:
    """What each `Cluster.list` of the applier answered (the audit log records writes only)."""
    answers: list[Any] = []
    real = bed.cluster.list

    def spy(*args: Any, **kwargs: Any) -> Any:
        answers.append(real(*args, **kwargs))
        return answers[-1]

    bed.cluster.list = spy  # type: ignore[method-assign]
    return answers


def test_a_namespace_crowded_with_other_objects_is_not_listed(
        control_plane: ControlPlane, dynamic: Any, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bed = _Bed(control_plane, dynamic, namespace)
    for i in range(12):  # not ours
        bed.cms.create(namespace=namespace, body=_cm(namespace, f"other-{i}", "x"))
    monkeypatch.setattr(applymod, "LIST_MIN", 2)
    monkeypatch.setattr(applymod, "LIST_FACTOR", 3)  # two of ours may read 6 live objects
    listed = _spy_on_lists(bed)
    since = _now()
    report = bed.applier.apply([_cm(namespace, "a", "1"), _cm(namespace, "b", "1")], "r1")
    assert _rows(report) == {"a": ("applied", ""), "b": ("applied", "")}
    dry = [e for e in control_plane.audit_events(bed.agent, since) if "dryRun=All" in e["requestURI"]
           and f"/namespaces/{namespace}/configmaps/" in e["requestURI"]]
    assert len(dry) == 2 and listed == [None]  # the listing gave up at the first page's 12
