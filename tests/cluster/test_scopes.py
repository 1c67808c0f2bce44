"""The build's table of cluster-scoped built-in kinds matches the real API server's discovery,
so the default namespace is never given to a cluster-scoped kind or withheld from a namespaced one."""

from __future__ import annotations

from typing import Any

import pytest

from pushgate.core import scopes

pytestmark = pytest.mark.cluster


def test_builtin_scope_table_matches_discovery(dynamic: Any) -> None:
    crds = dynamic.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    custom = {item.spec.group for item in crds.get().items}
    served: dict[tuple[str, str], bool] = {}
    for r in dynamic.resources.search():
        if not r.name or "/" in r.name or not r.kind or r.kind.endswith("List") or r.group in custom:
            continue
        served[(r.group or "", r.kind)] = bool(r.namespaced)
    assert len(served) > 40, served  # the whole built-in API, not a partial discovery
    cluster_scoped = {gk for gk, namespaced in served.items() if not namespaced}
    missing = cluster_scoped - scopes.BUILTIN_CLUSTER_SCOPED
    assert not missing, f"cluster-scoped kinds the table lacks: {sorted(missing)}"
    wrong = {gk for gk in scopes.BUILTIN_CLUSTER_SCOPED if served.get(gk) is True}
    assert not wrong, f"namespaced kinds the table calls cluster-scoped: {sorted(wrong)}"
    for (group, kind), namespaced in served.items():
        obj = {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind}
        assert scopes.is_namespaced(obj, {}) is namespaced, (group, kind)
