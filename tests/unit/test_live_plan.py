"""The live gate's plan and checker without a cluster: changed field paths as `git push` shows
them, Secret values never shown, prune marking by the applier's rules, and the checker's order,
static classification, 429 / timeout handling and verdicts against an in-memory cluster (the real
API server: tests/cluster/test_live_checker.py)."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from reconciler import errors, inventory, live, liveserver, plan
from reconciler.apply import PRUNE_ANNOTATION, RECONCILE_ANNOTATION
from reconciler.inventory import Entry

APPLYSET = "applyset-test-v1"


def _deploy(replicas: int = 2, image: str = "nginx:1.25", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", **extra},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": image, "env": [{"name": "MODE", "value": "a"}]},
                {"name": "sidecar", "image": "proxy:1"}]}}}}


def _secret(name: str = "s", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "shop"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


# -- changed paths ------------------------------------------------------------------------------
def test_a_scalar_change_shows_old_and_new() -> None:
    assert plan.changes(_deploy(3), _deploy(2)) == ["spec.replicas: 2 -> 3"]


def test_list_items_with_names_are_matched_by_name() -> None:
    new, old = _deploy(image="nginx:1.26"), _deploy()
    containers = new["spec"]["template"]["spec"]["containers"]
    containers.reverse()  # order alone is no change when every item is named
    containers[1]["env"].append({"name": "DEBUG", "value": "1"})
    assert plan.changes(new, old) == [
        "spec.template.spec.containers[name=web].env[name=DEBUG]: added",
        "spec.template.spec.containers[name=web].image: nginx:1.25 -> nginx:1.26",
    ]


def test_unnamed_list_items_by_index_and_keys_with_dots_quoted() -> None:
    old = {"kind": "X", "metadata": {"labels": {"app.kubernetes.io/name": "a"}},
           "spec": {"args": ["--a", "--b"]}}
    new = {"kind": "X", "metadata": {"labels": {"app.kubernetes.io/name": "b"}},
           "spec": {"args": ["--a", "--c", "--d"], "paused": True}}
    assert plan.changes(new, old) == [
        'metadata.labels["app.kubernetes.io/name"]: a -> b',
        "spec.args[1]: --b -> --c", "spec.args[2]: added", "spec.paused: added"]


def test_long_and_odd_values_are_quoted_and_cut() -> None:
    old = {"kind": "ConfigMap", "data": {"a": "x" * 100, "b": "two words", "c": {"n": 1}}}
    new = {"kind": "ConfigMap", "data": {"a": "y" * 100, "b": "", "c": "flat"}}
    assert plan.changes(new, old) == [
        f'data.a: "{"x" * 40}..." -> "{"y" * 40}..."', 'data.b: "two words" -> ""', "data.c: changed"]


def test_server_set_fields_kubectl_annotations_status_and_our_label_are_no_change() -> None:
    old = _deploy()
    old["metadata"].update(resourceVersion="1", generation=1, uid="u", creationTimestamp="t",
                           managedFields=[{"manager": "kubectl"}],
                           annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"})
    old["status"] = {"replicas": 1}
    new = _deploy()
    new["metadata"].update(resourceVersion="2", generation=2, managedFields=[{"manager": "pushgate"}],
                           labels={inventory.PART_OF: APPLYSET})
    new["status"] = {"replicas": 2}
    assert plan.changes(new, old) == []


def test_a_secret_shows_which_keys_changed_never_their_values() -> None:
    old, new = _secret(a="old-value-1", b="same", c="gone"), _secret(a="new-value-2", b="same", d="new")
    shown = plan.changes(new, old)
    assert shown == ["data.a: changed", "data.c: removed", "data.d: added"]
    text = json.dumps(shown)
    for value in ("old-value-1", "new-value-2", "gone", "new"):
        assert base64.b64encode(value.encode()).decode() not in text


def test_a_value_equal_to_a_secret_of_the_push_is_not_shown_anywhere() -> None:
    secrets = plan.secret_values([_secret(token="s3cret-token"), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
        "stringData": {"pin": "1234"}}])
    assert {"s3cret-token", base64.b64encode(b"s3cret-token").decode(), "1234"} <= secrets
    old = {"kind": "ConfigMap", "data": {"token": "public", "pin": "0000", "url": "x"}}
    new = {"kind": "ConfigMap", "data": {"token": "s3cret-token", "pin": "1234",
                                         "url": "https://u:s3cret-token@host"}}
    assert plan.changes(new, old, secrets=secrets) == [
        "data.pin: changed", "data.token: changed", "data.url: changed"]


def test_redact_blanks_secret_values_in_an_api_message() -> None:
    secrets = plan.secret_values([_secret(key="hunter2-long")])
    message = 'ConfigMap "c" is invalid: data[k]: Invalid value: "hunter2-long": bad'
    assert plan.redact(message, secrets) == 'ConfigMap "c" is invalid: data[k]: Invalid value: ' \
                                             f'"{plan.REDACTED}": bad'
    assert plan.redact("replicas: 1", plan.secret_values([_secret(one="1")])) == "replicas: 1"


def test_changes_are_capped() -> None:
    old = {"kind": "ConfigMap", "data": {}}
    new = {"kind": "ConfigMap", "data": {f"k{i:03}": "v" for i in range(plan.MAX_CHANGES + 7)}}
    shown = plan.changes(new, old)
    assert len(shown) == plan.MAX_CHANGES + 1 and shown[-1] == "... and 7 more"


# -- prune marking ------------------------------------------------------------------------------
def _live(labels: dict[str, str] | None = None, **ann: str) -> dict[str, Any]:
    return {"metadata": {"labels": {inventory.PART_OF: APPLYSET} if labels is None else labels,
                         "annotations": ann}}


CM = Entry("shop", "c", "", "ConfigMap", "v1")
NS = Entry("", "shop", "", "Namespace", "v1")


@pytest.mark.parametrize(("entry", "live_obj", "prune_protected", "expected"), [
    (CM, _live(), False, (False, False, True, True)),
    (CM, None, False, (False, False, False, False)),  # already gone: nothing to delete
    (CM, _live(labels={}), False, (False, False, False, False)),  # not ours any more
    (CM, _live(**{PRUNE_ANNOTATION: "false"}), False, (False, True, True, False)),
    (CM, _live(**{RECONCILE_ANNOTATION: "false"}), False, (False, True, True, False)),
    (NS, _live(), False, (True, False, True, False)),  # protected: kept
    (NS, _live(), True, (True, False, True, True)),  # unless --prune-protected
    (NS, _live(**{PRUNE_ANNOTATION: "true"}), False, (True, False, True, True)),
])
def test_prune_marking_follows_the_applier(entry: Entry, live_obj: dict[str, Any] | None,
                                           prune_protected: bool,
                                           expected: tuple[bool, bool, bool, bool]) -> None:
    item = plan.prune_item(entry, live_obj, APPLYSET, prune_protected=prune_protected)
    assert (item.protected, item.opted_out, item.owned, item.will_delete) == expected
    doc = item.to_json()
    assert (doc["ref"], doc["optedOut"], doc["willDelete"]) == (entry.ref, expected[1], expected[3])


def test_prune_is_the_inventory_diff_in_deletion_order() -> None:
    kept = Entry("shop", "web", "apps", "Deployment", "v1")
    items = plan.prune([NS, CM, kept], [kept], {CM.id: _live(), NS.id: _live()}, APPLYSET)
    assert [i.entry for i in items] == [CM, NS]


def test_assemble_counts_by_what_the_apply_would_do() -> None:
    seen = [plan.Seen("A", False, None, {"kind": "A"}),  # dry-run ok, absent
            plan.Seen("B", True, _deploy(2), _deploy(3)),
            plan.Seen("C", True, _deploy(2), _deploy(2)),
            plan.Seen("D", True, _deploy(2), skipped=True),
            plan.Seen("E", True, _deploy(2)),  # refused or static, exists
            plan.Seen("F", False),  # static, cannot exist yet
            plan.Seen("G")]  # unknown
    p = plan.assemble(seen, (), 4).to_json()
    assert p == {"create": ["A", "F"], "update": [{"ref": "B", "changes": ["spec.replicas: 2 -> 3"]},
                                                  {"ref": "E", "changes": []}],
                 "unchanged": ["C", "D"], "prune": [], "managed": 4}


# -- the checker against an in-memory cluster ---------------------------------------------------
def _api_error(status: int, message: str = "", reason: str = "", **headers: str) -> ApiException:
    e = ApiException(status=status, reason="x")
    e.body = json.dumps({"kind": "Status", "message": message, "reason": reason, "code": status})
    e.headers = headers
    return e


class FakeDyn:
    """GET and dry-run server-side apply over a dict; anything else would be a write."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], list[Exception]] = {}  # (verb, name) -> next errors
        self.delay = 0.0
        self.lock = threading.Lock()

    def _maybe_fail(self, verb: str, name: str) -> None:
        with self.lock:
            self.calls.append((verb, name))
            queue = self.fail.get((verb, name)) or []
            err = queue.pop(0) if queue else None
        if self.delay:
            time.sleep(self.delay)
        if err is not None:
            raise err

    def get(self, res: Any, *, name: str, namespace: str | None, _request_timeout: float) -> Any:
        self._maybe_fail("get", name)
        obj = self.store.get((res.kind, namespace or "", name))
        if obj is None:
            raise _api_error(404, "not found", "NotFound")
        return SimpleNamespace(to_dict=lambda: copy.deepcopy(obj))

    def server_side_apply(self, res: Any, *, body: dict[str, Any], name: str, namespace: str | None,
                          field_manager: str, force_conflicts: bool, dry_run: str,
                          _request_timeout: float) -> Any:
        assert dry_run == "All" and field_manager == "pushgate"
        self._maybe_fail("apply", name)
        out = copy.deepcopy(self.store.get((res.kind, namespace or "", name)) or {})
        out.update(copy.deepcopy(body))
        return SimpleNamespace(to_dict=lambda: out)


class FakeCluster:
    field_manager = "pushgate"
    force_conflicts = True

    def __init__(self, kinds: dict[str, bool]) -> None:
        self.kinds = kinds  # kind -> namespaced
        self.dyn = FakeDyn()

    def resource(self, api_version: str, kind: str) -> Any:
        if kind not in self.kinds:
            raise errors.NotFound("the server has no resource type for it", reason="NoKind", code=404)
        return SimpleNamespace(kind=kind, namespaced=self.kinds[kind])

    def namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self.resource(api_version, kind).namespaced)

    # Cluster's request surface, on FakeDyn (which raises as the kubernetes client does).
    @staticmethod
    def object_path(res: Any, name: str, namespace: str | None) -> str:
        return f"{res.kind}|{namespace or ''}|{name}"

    def send(self, method: str, path: str, query: list[tuple[str, str]], *,
             timeout: float | None = None) -> dict[str, Any]:
        assert method == "GET" and not query
        kind, namespace, name = path.split("|")
        res = SimpleNamespace(kind=kind, namespaced=self.kinds[kind])
        return dict(self.dyn.get(res, name=name, namespace=namespace or None,
                                 _request_timeout=timeout or 0.0).to_dict())

    def send_apply(self, obj: dict[str, Any], *, dry_run: bool = False,
                   timeout: float | None = None) -> dict[str, Any]:
        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return dict(self.dyn.server_side_apply(
            res, body=obj, name=meta["name"], namespace=meta.get("namespace"),
            field_manager=self.field_manager, force_conflicts=self.force_conflicts,
            dry_run="All" if dry_run else "", _request_timeout=timeout or 0.0).to_dict())

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.dyn.store[(obj["kind"], meta.get("namespace", ""), meta["name"])] = obj


KINDS = {"Namespace": False, "CustomResourceDefinition": False, "ConfigMap": True, "Deployment": True}


def _ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _cm(ns: str, name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": data}


def _crd(group: str, kind: str, version: str = "v1") -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{kind.lower()}s.{group}"},
            "spec": {"group": group, "names": {"kind": kind}, "versions": [{"name": version}]}}


def _widget(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "ex.io/v1", "kind": "Widget", "metadata": {"name": name, "namespace": ns},
            "spec": {"size": 1}}


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster(dict(KINDS))


def _check(fake: FakeCluster, objects: list[dict[str, Any]], timeout: float = 10,
           **kw: Any) -> live.LiveReport:
    checker = live.LiveChecker(lambda: fake, inventory_namespace="pg", **kw)  # type: ignore[arg-type,return-value]
    try:
        return checker.check("main", objects, timeout)
    finally:
        checker.close()


def _rows(report: live.LiveReport) -> list[tuple[str, str]]:
    return [(r.outcome, r.reason) for r in report.results]


def test_namespaces_and_crds_are_checked_before_the_rest_and_never_written(fake: FakeCluster) -> None:
    fake.put(_ns("shop"))
    objects = [_cm("shop", "a"), _crd("ex.io", "Widget"), _ns("shop"), _cm("shop", "b")]
    report = _check(fake, objects, parallelism=1)
    assert _rows(report) == [("ok", "")] * 2 + [("ok", "")] * 2
    names = [name for verb, name in fake.dyn.calls if verb == "apply"]
    assert set(names[:2]) == {"widgets.ex.io", "shop"} and set(names[2:]) == {"a", "b"}
    assert {verb for verb, _ in fake.dyn.calls} == {"get", "apply"}  # and apply is dry-run only


def test_members_of_a_new_namespace_and_resources_of_a_new_crd_are_static(fake: FakeCluster) -> None:
    objects = [_ns("new"), _cm("new", "a"), _crd("ex.io", "Widget"), _widget("old", "w")]
    fake.put(_ns("old"))
    report = _check(fake, objects)
    assert _rows(report) == [("ok", ""), ("static", "NamespaceInPush"), ("ok", ""),
                             ("static", "CRDInPush")]
    assert report.plan.create == ("Namespace/new", "ConfigMap/new/a",
                                  "CustomResourceDefinition/widgets.ex.io", "Widget/old/w")
    assert ("get", "a") not in fake.dyn.calls and ("get", "w") not in fake.dyn.calls


def test_resources_of_a_changed_crd_are_static_but_counted_by_existence(fake: FakeCluster) -> None:
    fake.kinds["Widget"] = True
    fake.put(_crd("ex.io", "Widget"))
    fake.put(_widget("old", "w"))
    report = _check(fake, [_crd("ex.io", "Widget", "v2"), _widget("old", "w"), _widget("old", "x")])
    assert _rows(report) == [("ok", ""), ("static", "CRDInPush"), ("static", "CRDInPush")]
    assert report.plan.update[0].ref == "CustomResourceDefinition/widgets.ex.io"
    assert report.plan.update[1] == plan.Update("Widget/old/w", ())
    assert report.plan.create == ("Widget/old/x",)
    # An unchanged CRD: its resources are dry-run like any other object.
    report = _check(fake, [_crd("ex.io", "Widget"), _widget("old", "w")])
    assert _rows(report) == [("ok", ""), ("ok", "")]


def test_an_object_opted_out_on_the_live_side_is_skipped_without_a_dry_run(fake: FakeCluster) -> None:
    cm = _cm("shop", "a")
    cm["metadata"]["annotations"] = {RECONCILE_ANNOTATION: "false"}
    cm["metadata"]["managedFields"] = [{"manager": "kubectl-annotate", "fieldsV1": {
        "f:metadata": {"f:annotations": {f"f:{RECONCILE_ANNOTATION}": {}}}}}]
    fake.put(cm)
    report = _check(fake, [_cm("shop", "a", k="v")])
    assert _rows(report) == [("static", "Skipped")]
    assert report.plan.unchanged == ("ConfigMap/shop/a",)
    assert ("apply", "a") not in fake.dyn.calls


def test_refusals_keep_the_api_servers_reason_code_and_message(fake: FakeCluster) -> None:
    fake.dyn.fail["apply", "bad"] = [_api_error(422, 'ConfigMap "bad" is invalid: hush-secret-1', "Invalid")]
    fake.dyn.fail["apply", "typed"] = [_api_error(500, "failed to create typed patch object (x): .bogus: "
                                              "field not declared in schema")]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
              "stringData": {"k": "hush-secret-1"}}
    fake.kinds["Secret"] = True
    objects = [_cm("shop", "bad"), _cm("shop", "typed"), _widget("shop", "w"), secret]
    report = _check(fake, objects)
    bad, typed, nokind, _ = report.results
    assert (bad.outcome, bad.reason, bad.code) == ("refused", "Invalid", 422)
    assert bad.message == f'ConfigMap "bad" is invalid: {plan.REDACTED}'
    assert (typed.outcome, typed.reason, typed.code) == ("refused", "BadRequest", 500)
    assert typed.message.endswith("field not declared in schema")
    assert (nokind.outcome, nokind.reason, nokind.code) == ("refused", "NotFound", 404)
    assert report.plan.create == ("ConfigMap/shop/bad", "ConfigMap/shop/typed", "Secret/shop/s")


def test_429_is_retried_after_retry_after(fake: FakeCluster) -> None:
    fake.dyn.fail["get", "a"] = [_api_error(429, "slow down", "TooManyRequests", **{"Retry-After": "1"})]
    started = time.monotonic()
    report = _check(fake, [_cm("shop", "a")])
    assert _rows(report) == [("ok", "")]
    assert 1.0 <= time.monotonic() - started < 5
    assert fake.dyn.calls.count(("get", "a")) == 2


def test_429_asking_for_more_than_the_timeout_gives_up_at_once(fake: FakeCluster) -> None:
    fake.dyn.fail["get", "a"] = [_api_error(429, "slow down", "TooManyRequests", **{"Retry-After": "30"})]
    started = time.monotonic()
    with pytest.raises(live.LiveUnavailable) as info:
        _check(fake, [_cm("shop", "a")], timeout=5)
    assert time.monotonic() - started < 2
    assert "30s" in info.value.message


def test_the_timeout_covers_the_whole_check(fake: FakeCluster) -> None:
    fake.dyn.delay = 0.4
    started = time.monotonic()
    with pytest.raises(live.LiveUnavailable) as info:
        _check(fake, [_cm("shop", f"c{i}") for i in range(20)], timeout=1, parallelism=2)
    assert time.monotonic() - started < 1.5
    assert info.value.reason in ("Timeout", "Cancelled")


def test_an_unreachable_or_failing_api_server_makes_the_check_unavailable(fake: FakeCluster) -> None:
    fake.dyn.fail["get", "a"] = [ConnectionRefusedError(111, "refused")]
    with pytest.raises(live.LiveUnavailable) as info:
        _check(fake, [_cm("shop", "a"), _cm("shop", "b")])
    assert info.value.reason == "Unreachable"
    fake.dyn.fail["get", "a"] = [_api_error(503, "etcd is down", "ServiceUnavailable")]
    with pytest.raises(live.LiveUnavailable, match="etcd is down"):
        _check(fake, [_cm("shop", "a")])


def test_no_connection_is_unavailable() -> None:
    checker = live.LiveChecker(lambda: None, inventory_namespace="pg")
    assert not checker.connected()
    with pytest.raises(live.LiveUnavailable) as info:
        checker.check("main", [], 1)
    assert info.value.reason == "NotConnected" and not info.value.permanent
    checker.close()


def test_the_plan_prunes_what_the_inventory_has_and_the_push_drops(fake: FakeCluster) -> None:
    from reconciler.apply import Applier

    applier = Applier(fake, branch="main", inventory_namespace="pg")  # type: ignore[arg-type]
    old = [Entry("shop", "a", "", "ConfigMap", "v1"), Entry("shop", "gone", "", "ConfigMap", "v1")]
    fake.put({"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": applier.parent_name, "namespace": "pg"},
              "data": {"inventory": inventory.encode(old)}})
    fake.put(_cm("shop", "a"))
    gone = _cm("shop", "gone")
    gone["metadata"]["labels"] = {inventory.PART_OF: applier.id}
    fake.put(gone)
    report = _check(fake, [_cm("shop", "a")])
    doc = report.to_json()["plan"]
    assert doc["managed"] == 2 and doc["unchanged"] == ["ConfigMap/shop/a"]
    assert [(p["ref"], p["willDelete"]) for p in doc["prune"]] == [("ConfigMap/shop/gone", True)]


@pytest.mark.parametrize(("obj", "reason"), [
    (_cm("new", "a"), "NamespaceInPush"),
    (_cm("old", "a"), ""),
    (_widget("old", "w"), "CRDInPush"),
    (_widget("new", "w"), "CRDInPush"),  # the kind first: it is not even served
    ({"apiVersion": "ex.io/v1", "kind": "Gadget", "metadata": {"name": "g"}}, "CRDInPush"),
])
def test_static_reason(obj: dict[str, Any], reason: str) -> None:
    entry = Entry.of(obj, obj["kind"] != "Gadget")
    assert live.static_reason(obj, entry, {"new"}, {("ex.io", "Widget")}, {("ex.io", "Gadget")}) == reason


def test_retry_after_reads_the_header_through_the_chain() -> None:
    inner = _api_error(429, **{"Retry-After": "3"})
    try:
        raise errors.Unavailable("x", code=429) from inner
    except errors.Unavailable as e:
        assert live.retry_after(e) == 3.0
    assert live.retry_after(_api_error(429)) == live.DEFAULT_RETRY_AFTER


@pytest.mark.parametrize(("doc", "error"), [
    ([], "a JSON object"),
    ({"objects": []}, "branch"),
    ({"branch": "main", "objects": {}}, "objects"),
    ({"branch": "main", "objects": [{"apiVersion": "v1", "kind": "ConfigMap"}]}, "objects[0]"),
    ({"branch": "main", "objects": [], "timeout": 0}, "timeout"),
    ({"branch": "main", "objects": [], "timeout": True}, "timeout"),
    ({"branch": "main", "objects": [], "timeout": "5"}, "timeout"),
])
def test_a_malformed_check_request_is_refused(doc: Any, error: str) -> None:
    with pytest.raises(liveserver.BadRequest, match=error.replace("[", r"\[")):
        liveserver.parse_check(doc)


def test_a_check_request_defaults_and_caps_its_timeout() -> None:
    assert liveserver.parse_check({"branch": "b", "objects": []}).timeout == liveserver.DEFAULT_TIMEOUT
    req = liveserver.parse_check({"branch": "b", "objects": [_cm("shop", "a")], "timeout": 9999})
    assert req.timeout == liveserver.MAX_TIMEOUT and req.objects == [_cm("shop", "a")]
