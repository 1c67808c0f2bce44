"""Leader election over a coordination.k8s.io/v1 Lease, so that of several replicas sharing the
repositories only one reconciles.

Used by the loop. A background thread acquires or renews the Lease every `retry_period`; a leader
that cannot renew within `renew_deadline` stops leading at once (before another replica can take
over at `lease_duration`). Expiry is judged the way client-go does: by how long this process has
observed the same lease record unchanged, not by comparing clocks.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from typing import Any

from reconciler import errors
from reconciler.cluster import Cluster

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, cluster: Cluster, namespace: str, name: str, *, lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0,
                 identity: str | None = None) -> None:
        self.cluster = cluster
        self.namespace, self.name = namespace, name
        self.lease_duration, self.renew_deadline = lease_duration, renew_deadline
        self.retry_period = retry_period
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self._renewed_at = 0.0  # monotonic time of our last successful acquire/renew
        self._observed: tuple[str, str] = ("", "")
        self._observed_at = 0.0
        self.holder = ""
        self.last_error: errors.ClusterError | None = None  # of the last acquire/renew, if it failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="leader-election")

    def start(self) -> LeaderElector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def is_leader(self) -> bool:
        return self.holder == self.identity and time.monotonic() - self._renewed_at < self.renew_deadline

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_acquire_or_renew()
                self.last_error = None
            except errors.ClusterError as e:
                self.last_error = e
                log.info("lease %s/%s: %s", self.namespace, self.name, e.message)
            except Exception as e:  # the elector must outlive anything, or nobody ever takes over
                self.last_error = errors.client_error(e)
                log.exception("lease %s/%s: unexpected failure", self.namespace, self.name)
            self._stop.wait(self.retry_period)

    @property
    def _timeout(self) -> float:
        """Per request: one hung connection must not stall renewal past the renew deadline
        (nor a follower's takeover forever)."""
        return max(1.0, min(self.renew_deadline / 2, 5.0))

    def try_acquire_or_renew(self) -> bool:
        res = self.cluster.resource("coordination.k8s.io/v1", "Lease")
        lease = self.cluster.get("coordination.k8s.io/v1", "Lease", self.name, self.namespace,
                                 timeout=self._timeout)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                "renewTime": _now()}
        if lease is None:
            self.cluster.apply({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": self.namespace}}, timeout=self._timeout)
            fresh = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": self.name, "namespace": self.namespace},
                     "spec": {**spec, "acquireTime": _now(), "leaseTransitions": 0}}
            return self._write(res, fresh, create=True)
        current = lease.get("spec") or {}
        record = (current.get("holderIdentity") or "", current.get("renewTime") or "")
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        self.holder = record[0]
        mine = record[0] == self.identity
        expired = time.monotonic() - self._observed_at > self.lease_duration
        if not mine and record[0] and not expired:
            return False
        new_spec: dict[str, Any] = {**current, **spec}
        body: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                "metadata": {"name": self.name, "namespace": self.namespace,
                                             "resourceVersion": lease["metadata"]["resourceVersion"]},
                                "spec": new_spec}
        if not mine:
            new_spec["acquireTime"] = _now()
            new_spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
            log.warning("taking over lease %s/%s from %s", self.namespace, self.name, record[0] or "nobody")
        return self._write(res, body, create=False)

    def _write(self, res: Any, body: dict[str, Any], *, create: bool) -> bool:
        try:
            if create:
                res.create(body=body, namespace=self.namespace, _request_timeout=self._timeout)
            else:  # compare-and-swap on resourceVersion
                res.replace(body=body, namespace=self.namespace, _request_timeout=self._timeout)
        except Exception as e:
            err = Cluster._translate(e)
            if isinstance(err, errors.Conflict) or err.code == 409:
                return False  # someone else wrote first
            raise err from e
        self.holder = self.identity
        self._renewed_at = time.monotonic()
        self._observed = (self.identity, body["spec"]["renewTime"])
        self._observed_at = time.monotonic()
        return True
