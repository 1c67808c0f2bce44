"""Inventory entries, ApplySet ids, prune diffs and error translation (pure)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from reconciler import errors, inventory
from reconciler.inventory import Entry


def test_applyset_id_follows_kep_3659() -> None:
    digest = hashlib.sha256(b"pushgate-main.pushgate-system.ConfigMap.").digest()
    want = "applyset-" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "-v1"
    assert inventory.applyset_id("pushgate-main", "pushgate-system", "ConfigMap", "") == want
    assert "=" not in want and len(want) < 64  # fits a label value


def test_entries_round_trip_and_ids_ignore_version() -> None:
    e = Entry.of({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "shop"}})
    assert e.id == "shop_web_apps_Deployment" and e.ref == "Deployment/shop/web"
    assert Entry.decode(e.encode()) == e
    cluster = Entry.of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}, False)
    assert cluster.ref == "Namespace/shop" and cluster.protected
    assert sorted(inventory.decode(inventory.encode([e, cluster]))) == sorted([e, cluster])


def test_diff_prunes_removed_objects_protected_kinds_last() -> None:
    web = Entry("shop", "web", "apps", "Deployment", "v1")
    cm = Entry("shop", "cfg", "", "ConfigMap", "v1")
    ns = Entry("", "shop", "", "Namespace", "v1")
    crd = Entry("", "w.example.com", "apiextensions.k8s.io", "CustomResourceDefinition", "v1")
    gone = inventory.diff([ns, crd, web, cm], [Entry("shop", "web", "apps", "Deployment", "v2")])
    assert gone == [cm, crd, ns]
    assert inventory.group_kinds([web, cm, ns]) == "ConfigMap,Deployment.apps,Namespace"


class _ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        self.status, self.body, self.reason = status, body, "x"


@pytest.mark.parametrize(("code", "cls", "permanent"), [
    (422, errors.Invalid, True), (400, errors.Invalid, True), (403, errors.Forbidden, True),
    (404, errors.NotFound, True), (409, errors.Conflict, False), (500, errors.Unavailable, False),
    (429, errors.Unavailable, False),
])
def test_api_errors_are_typed_permanent_or_temporary(code: int, cls: type, permanent: bool) -> None:
    body = json.dumps({"kind": "Status", "message": "field is immutable", "reason": "Invalid",
                       "details": {"causes": [{"message": "c2VjcmV0"}]}})
    err = errors.from_api_exception(_ApiError(code, body))
    assert isinstance(err, cls) and err.permanent is permanent
    assert err.message == "field is immutable"
    assert "c2VjcmV0" not in str(err)  # only the Status message, never the rest of the body


def test_status_0_is_an_outage_only_with_a_transport_cause() -> None:
    """No HTTP response: the client's TLS failure (transport) or a request it could not build."""
    odd = _ApiError(0, "")
    odd.reason = "Cannot prepare a request message for provided\n   arguments."
    err = errors.from_api_exception(odd)
    assert isinstance(err, errors.ClientError) and err.permanent
    assert err.message == "_ApiError: Cannot prepare a request message for provided arguments."
    tls = errors.from_api_exception(odd, transport=True)
    assert isinstance(tls, errors.Unavailable) and not tls.permanent and tls.reason == "Unreachable"
