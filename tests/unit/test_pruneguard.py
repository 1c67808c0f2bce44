"""The prune guard's rules and the git server's reading of a live-check answer (pure)."""

from __future__ import annotations

from typing import Any

from gitserver import live
from pushgate.core import manifests, pruneguard

RULES = pruneguard.Rules(max_objects=10, max_share=0.5, min_namespace=2)


def _p(ref: str, ns: str = "shop", *, delete: bool = True, protected: bool = False) -> dict[str, Any]:
    return {"ref": ref, "namespace": ns, "willDelete": delete, "protected": protected}


def test_small_prunes_pass() -> None:
    assert pruneguard.reasons([_p("ConfigMap/shop/a")], 20, {"shop"}, RULES) == []
    assert pruneguard.reasons([], 0, set(), RULES) == []
    # kept objects (not ours, opted out, protected and not pruned) never count
    kept = [_p(f"ConfigMap/shop/{i}", delete=False) for i in range(50)]
    assert pruneguard.reasons(kept, 50, set(), RULES) == []


def test_protected_kinds_too_many_and_too_large_a_share() -> None:
    ns = _p("Namespace/shop", "", protected=True)
    assert pruneguard.reasons([ns], 20, {"other"}, RULES) == [
        "it deletes 1 object of a protected kind: Namespace/shop"]
    many = [_p(f"ConfigMap/shop/{i}") for i in range(11)]
    assert pruneguard.reasons(many, 100, {"shop"}, RULES) == [
        "it deletes 11 objects, more than the limit of 10"]
    share = [_p("ConfigMap/shop/a"), _p("ConfigMap/shop/b"), _p("ConfigMap/shop/c")]
    assert pruneguard.reasons(share, 4, {"shop"}, RULES) == [
        "it deletes 3 of the 4 managed objects, more than 50% of them"]


def test_emptying_a_namespace() -> None:
    gone = [_p("ConfigMap/web/a", "web"), _p("Service/web/b", "web"), _p("ConfigMap/db/c", "db")]
    assert pruneguard.reasons(gone, 30, {"db"}, RULES) == ["it deletes every object of namespace web (2)"]
    assert pruneguard.reasons(gone, 30, {"web", "db"}, RULES) == []


def _m(path: str, obj: dict[str, Any]) -> manifests.Manifest:
    return manifests.Manifest(path, 3, 0, obj)


def test_a_live_answer_becomes_report_lines_plan_and_guard() -> None:
    built = [_m("ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "new"}}),
             _m("web.yaml", {"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "web", "namespace": "new"}}),
             _m("cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "c", "namespace": "shop"}})]
    doc = {"results": [{"index": 0, "outcome": "ok"},
                       {"index": 1, "outcome": "static", "reason": "NamespaceInPush"},
                       {"index": 2, "outcome": "refused", "reason": "Forbidden", "code": 403,
                        "message": 'configmaps "c" is forbidden: exceeded quota: few'},
                       {"index": 9, "outcome": "refused", "message": "out of range: ignored"}],
           "plan": {"create": ["Namespace/new", "Deployment/new/web"],
                    "update": [{"ref": "ConfigMap/shop/c", "changes": ["data.value: 1 -> 2"]}],
                    "unchanged": [], "managed": 3,
                    "prune": [_p("ConfigMap/old/x", "old"), _p("ConfigMap/old/y", "old"),
                              _p("Secret/shop/s", delete=False)]}}
    out = live.judge(doc, built, RULES)
    assert [str(v) for v in out.problems] == [
        'cm.yaml:3 ConfigMap/shop/c [live] configmaps "c" is forbidden: exceeded quota: few']
    assert out.static_only == 1
    assert out.plan_lines == [
        "checked statically only: Deployment/new/web (its namespace arrives in this push)",
        "  create    Namespace/new", "  create    Deployment/new/web",
        "  update    ConfigMap/shop/c  data.value: 1 -> 2",
        "  prune     ConfigMap/old/x", "  prune     ConfigMap/old/y",
        "  release   Secret/shop/s  (not ours: left alone)",
        "plan: 2 to create, 1 to update, 2 to prune, 0 unchanged"]
    assert out.guard == ["it deletes 2 of the 3 managed objects, more than 50% of them",
                         "it deletes every object of namespace old (2)"]
