"""Every request of an election round carries the elector's bound, the namespace write before
the first Lease included (a hung connection there stalled the election thread for good). The
stalled-connection behaviour itself is tested on the real API server
(tests/cluster/test_leader_stall.py); this checks the one request that test cannot reach: it
only happens when the Lease does not exist yet, after a read that answered."""

from __future__ import annotations

from typing import Any, cast

import pytest

from reconciler import errors
from reconciler.cluster import Cluster
from reconciler.leader import LeaderElector


class _Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def resource(self, api_version: str, kind: str) -> Any:
        return object()

    def get(self, api_version: str, kind: str, name: str, namespace: str = "", *,
            timeout: float | None = None) -> dict[str, Any] | None:
        self.calls.append(("get", timeout))
        return None  # no Lease yet

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False,
              timeout: float | None = None) -> dict[str, Any]:
        self.calls.append((f"apply {obj['kind']}", timeout))
        raise errors.Unavailable("API server unreachable: timed out", reason="Unreachable")


def test_the_namespace_write_before_the_first_lease_is_bounded() -> None:
    fake = _Recording()
    elector = LeaderElector(cast(Cluster, fake), "ns", "lease", lease_duration=6, renew_deadline=4)
    with pytest.raises(errors.Unavailable):
        elector.try_acquire_or_renew()
    assert fake.calls == [("get", 2.0), ("apply Namespace", 2.0)]
