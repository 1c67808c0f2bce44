"""The live gate's checker: a push's objects dry-run against the live cluster before any ref moves.

Called by `liveserver` (on behalf of the git server, which holds no cluster credentials) and
constructed by the reconciler's loop with its connection. Each object is server-side applied
with dryRun=All, exactly as the apply would send it (our field manager, our ApplySet label), in
the apply's order: Namespaces and CRDs first, then the rest. The API server runs validation,
defaulting and the whole admission chain (ValidatingAdmissionPolicies, webhooks, quota) on a
dry-run, so a refusal here is one the apply would meet. Each dry-run is judged alone, though:
quota usage is not summed over the push (two new objects that fit one by one, not together, both
pass here and the second fails in the apply). What cannot be dry-run in order is "static":
members of a Namespace the push creates, custom resources of a CRD the push creates or changes,
and objects opted out on the live side (`pushgate.io/reconcile: "false"`). Alongside, the plan
(`plan`): each object's live copy is read and compared with the dry-run answer, and the branch's
inventory tells what the push would prune.

It never writes: GETs and dry-run PATCHes only. Requests run in one bounded pool shared by every
check; a 429 is retried after its Retry-After, a lost conflict after a short pause, all within
the request's timeout; any other temporary failure, or the timeout, ends the check with
`LiveUnavailable`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reconciler import apply, errors, inventory, plan
from reconciler.cluster import Cluster
from reconciler.inventory import Entry

T = TypeVar("T")

NAMESPACE_IN_PUSH = "NamespaceInPush"
CRD_IN_PUSH = "CRDInPush"
SKIPPED = "Skipped"
MAX_REQUEST_SECONDS = 30.0
DEFAULT_RETRY_AFTER = 1.0
_CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")

# The answer's types, by the names the loop and the socket know them.
Result = plan.Result
LiveReport = plan.LiveReport


class LiveUnavailable(errors.Unavailable):
    """The check could not finish: no connection, the API server unreachable or too slow, or the
    timeout passed. Temporary: the caller decides (required mode refuses, best-effort warns)."""


@dataclass(frozen=True)
class _Checked:
    result: plan.Result
    entry: Entry
    seen: plan.Seen


@dataclass
class _Run:
    """One check: its cluster, deadline and the flag that tells its queued requests to give up."""

    cluster: Cluster
    deadline: float
    timeout: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Kinds looked up in this check. The client re-reads discovery on every miss: without this a
    # push of many objects of an unknown kind would re-read it once per object.
    _kinds: dict[tuple[str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def resource(self, api_version: str, kind: str) -> Any:
        """The discovered resource; NotFound (reason NoKind) if the server has no such kind."""
        key = (api_version, kind)
        with self._lock:
            found = self._kinds.get(key)
        if found is None:
            try:
                found = self.cluster.resource(api_version, kind)
            except errors.NotFound as e:
                found = e
            with self._lock:
                self._kinds[key] = found
        if isinstance(found, errors.NotFound):
            raise found
        return found

    def entry(self, obj: Mapping[str, Any]) -> Entry:
        """`Applier.entry`: an unknown kind is namespaced if the object names a namespace."""
        try:
            namespaced = bool(self.resource(str(obj["apiVersion"]), str(obj["kind"])).namespaced)
        except errors.NotFound:
            namespaced = bool((obj.get("metadata") or {}).get("namespace"))
        return Entry.of(dict(obj), namespaced)

    def request(self, fn: Callable[[float], T]) -> T:
        """`fn(request_timeout)`, retried on 429 (after Retry-After) and on a conflict, within the
        deadline. A permanent error is raised as a ClusterError, anything else as LiveUnavailable."""
        conflicts = 0
        while True:
            left = self.deadline - time.monotonic()
            if self.cancelled.is_set():
                raise LiveUnavailable("the live check was abandoned", reason="Cancelled")
            if left <= 0:
                raise LiveUnavailable(f"the live check took longer than {self.timeout:g}s",
                                      reason="Timeout")
            try:
                return fn(min(left, MAX_REQUEST_SECONDS))
            except Exception as e:
                err = translate(e)
                if err.code == 429 and not isinstance(err, errors.Permanent):
                    delay = retry_after(e)
                elif isinstance(err, errors.Conflict) and conflicts < 3:
                    conflicts, delay = conflicts + 1, 0.2
                elif isinstance(err, errors.Temporary):
                    raise LiveUnavailable(err.message, reason=err.reason, code=err.code) from e
                elif err is e:
                    raise
                else:
                    raise err from e
                if delay >= self.deadline - time.monotonic():
                    raise LiveUnavailable(f"the API server asked to wait {delay:g}s ({err.reason}), "
                                          f"beyond the timeout of {self.timeout:g}s",
                                          reason=err.reason, code=err.code) from e
                self.cancelled.wait(delay)


class LiveChecker:
    def __init__(self, cluster_provider: Callable[[], Cluster | None], *, inventory_namespace: str,
                 parallelism: int = 8, prune_protected: bool = False) -> None:
        self._provider = cluster_provider
        self.inventory_namespace = inventory_namespace
        self.prune_protected = prune_protected
        self._pool = ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="live-check")

    def connected(self) -> bool:
        return self._provider() is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def check(self, branch: str, objects: Sequence[dict[str, Any]], timeout: float) -> plan.LiveReport:
        """Every object's verdict (same order) and the plan; LiveUnavailable if it cannot finish."""
        start = time.monotonic()
        cluster = self._provider()
        if cluster is None:
            raise LiveUnavailable("the reconciler is not connected to the cluster",
                                  reason="NotConnected")
        run = _Run(cluster, start + timeout, timeout)
        applier = apply.Applier(cluster, branch=branch, inventory_namespace=self.inventory_namespace)
        secrets = plan.secret_values(objects)
        try:
            return self._check(run, applier, objects, secrets, start)
        except LiveUnavailable:
            raise
        except errors.ClusterError as e:
            # Discovery, or an inventory in a newer format: no plan can be worked out.
            raise LiveUnavailable(f"cannot check the push: {e.message}", reason=e.reason,
                                  code=e.code) from e
        finally:
            run.cancelled.set()

    def _check(self, run: _Run, applier: apply.Applier, objects: Sequence[dict[str, Any]],
               secrets: frozenset[str], start: float) -> plan.LiveReport:
        submit = self._pool.submit
        entries = [run.request(functools.partial(_entry, run, o)) for o in objects]
        inv = submit(run.request, functools.partial(_read_inventory, run, applier))
        first = [i for i, o in enumerate(objects) if _group_kind(o) in apply.FIRST_KINDS]
        checked = dict(zip(first, self._gather(run, [
            submit(_check_one, run, applier, i, objects[i], entries[i], secrets) for i in first]),
            strict=True))
        new_ns, new_crds, changed_crds = _first_outcomes(objects, checked)
        rest = [i for i in range(len(objects)) if i not in checked]
        todo = []
        for i in rest:
            reason = static_reason(objects[i], entries[i], new_ns, new_crds, changed_crds)
            if reason:
                # A custom resource of a CRD the push only changes may exist: one GET tells.
                may_exist = reason == CRD_IN_PUSH and _group_kind(objects[i]) not in new_crds
                todo.append(submit(_static_one, run, applier, i, objects[i], entries[i], reason,
                                   may_exist))
            else:
                todo.append(submit(_check_one, run, applier, i, objects[i], entries[i], secrets))
        checked.update(zip(rest, self._gather(run, todo), strict=True))
        old = self._gather(run, [inv])[0]
        gone = inventory.diff(old, entries)
        lives = self._gather(run, [submit(_prune_target, run, e) for e in gone])
        pruned = plan.prune(old, entries, {e.id: lv for e, lv in zip(gone, lives, strict=True)},
                            applier.id, prune_protected=self.prune_protected)
        ordered = [checked[i] for i in range(len(objects))]
        return plan.LiveReport(tuple(c.result for c in ordered),
                          plan.assemble([c.seen for c in ordered], pruned, len(old), secrets),
                          time.monotonic() - start)

    @staticmethod
    def _gather(run: _Run, futures: Sequence[Future[T]]) -> list[T]:
        done, pending = wait(futures, timeout=max(0.0, run.deadline - time.monotonic()),
                             return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if pending or failed is not None:
            run.cancelled.set()
            for f in pending:
                f.cancel()
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
            raise LiveUnavailable(f"the live check took longer than {run.timeout:g}s", reason="Timeout")
        return [f.result() for f in futures]


def static_reason(obj: Mapping[str, Any], entry: Entry, new_namespaces: set[str],
                  new_crds: set[tuple[str, str]], changed_crds: set[tuple[str, str]]) -> str:
    """Why `obj` cannot be dry-run before the push is applied, or "": a custom resource of a CRD
    the push creates (the kind is not served yet) or changes (its schema may be another), an
    object in a Namespace the push creates (the API server refuses it: no such namespace)."""
    gk = _group_kind(obj)
    if gk in new_crds:
        return CRD_IN_PUSH
    if entry.namespace and entry.namespace in new_namespaces:
        return NAMESPACE_IN_PUSH
    return CRD_IN_PUSH if gk in changed_crds else ""


def _first_outcomes(objects: Sequence[Mapping[str, Any]], checked: Mapping[int, _Checked]
                    ) -> tuple[set[str], set[tuple[str, str]], set[tuple[str, str]]]:
    """Namespaces the push creates; CRDs (as the group and kind they serve) it creates, and
    changes (in spec, or so refused that nothing is known of the outcome)."""
    new_ns: set[str] = set()
    new_crds: set[tuple[str, str]] = set()
    changed: set[tuple[str, str]] = set()
    for i, c in checked.items():
        if (c.entry.group, c.entry.kind) == ("", "Namespace") and c.seen.exists is not True:
            new_ns.add(c.entry.name)
        elif (c.entry.group, c.entry.kind) == _CRD:
            spec = objects[i].get("spec") or {}
            gk = (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", "")))
            if c.seen.exists is not True:
                new_crds.add(gk)
            elif c.seen.dry is None or c.seen.live is None or any(
                    ch.startswith("spec") for ch in plan.changes(c.seen.dry, c.seen.live)):
                changed.add(gk)
    return new_ns, new_crds, changed


def _check_one(run: _Run, applier: apply.Applier, index: int, obj: dict[str, Any], entry: Entry,
               secrets: frozenset[str]) -> _Checked:
    """Read the live object, then dry-run: ok, refused, or static (opted out on the live side)."""
    labelled = applier.labelled(obj)
    try:
        live = run.request(functools.partial(_get, run, entry))
    except errors.Permanent as e:
        return _Checked(_refused(index, obj, e, secrets), entry, plan.Seen(entry.ref))
    if apply.reconcile_disabled(labelled, live, run.cluster.field_manager):
        return _Checked(_static(index, SKIPPED), entry, plan.Seen(entry.ref, True, live, skipped=True))
    try:
        dry = run.request(functools.partial(_dry_run, run, labelled))
    except errors.Permanent as e:
        return _Checked(_refused(index, obj, e, secrets), entry, plan.Seen(entry.ref, live is not None, live))
    return _Checked(plan.Result(index, "ok"), entry, plan.Seen(entry.ref, live is not None, live, dry))


def _static_one(run: _Run, applier: apply.Applier, index: int, obj: dict[str, Any], entry: Entry,
                reason: str, may_exist: bool) -> _Checked:
    """No dry-run; a GET only where the object may exist (its kind served, its namespace there)."""
    if not may_exist:
        return _Checked(_static(index, reason), entry, plan.Seen(entry.ref, False))
    try:
        live = run.request(functools.partial(_get, run, entry))
    except errors.Permanent:
        return _Checked(_static(index, reason), entry, plan.Seen(entry.ref))
    if apply.reconcile_disabled(applier.labelled(obj), live, run.cluster.field_manager):
        return _Checked(_static(index, SKIPPED), entry, plan.Seen(entry.ref, True, live, skipped=True))
    return _Checked(_static(index, reason), entry, plan.Seen(entry.ref, live is not None, live))


def _prune_target(run: _Run, entry: Entry) -> dict[str, Any] | None:
    """The live object of an entry the push drops; None if absent or unreadable (its kind gone
    with its CRD, say): the prune would not delete it either."""
    try:
        return run.request(functools.partial(_get, run, entry))
    except errors.Permanent:
        return None


_STATIC = {
    NAMESPACE_IN_PUSH: "not checked live: its Namespace is created by this push",
    CRD_IN_PUSH: "not checked live: its CustomResourceDefinition is created or changed by this push",
    SKIPPED: f"{apply.RECONCILE_ANNOTATION}=false on the live object: the apply leaves it alone",
}


def _refused(index: int, obj: Mapping[str, Any], e: errors.ClusterError,
             secrets: frozenset[str]) -> plan.Result:
    if e.reason == "NoKind":
        # Discovery's miss, not an API answer: said as the API server says an unknown kind.
        return plan.Result(index, "refused", "NotFound", 404, "the server could not find the "
                           f"requested resource: no {obj.get('kind')} in {obj.get('apiVersion')}")
    return plan.Result(index, "refused", e.reason, e.code, plan.redact(e.message, secrets))


def _static(index: int, reason: str) -> plan.Result:
    return plan.Result(index, "static", reason, 0, _STATIC[reason])


# -- requests (helpers the Cluster adapter lacks: per-request timeouts, Retry-After) ------------
def _entry(run: _Run, obj: dict[str, Any], _timeout: float) -> Entry:
    return run.entry(obj)


def _get(run: _Run, entry: Entry, timeout: float) -> dict[str, Any] | None:
    """The live object, None if it does not exist (or cannot: namespaced, without a namespace)."""
    res = run.resource(entry.api_version, entry.kind)
    if res.namespaced and not entry.namespace:
        return None
    try:
        return run.cluster.send("GET", run.cluster.object_path(res, entry.name, entry.namespace), [],
                                timeout=timeout)
    except Exception as e:
        if getattr(e, "status", None) == 404:
            return None
        raise


def _dry_run(run: _Run, obj: dict[str, Any], timeout: float) -> dict[str, Any]:
    """`Cluster.apply(obj, dry_run=True)` with a request timeout. No fieldValidation parameter:
    the apply sends none, and server-side apply refuses unknown fields whatever it says."""
    return run.cluster.send_apply(obj, dry_run=True, timeout=timeout)


def _read_inventory(run: _Run, applier: apply.Applier, timeout: float) -> list[Entry]:
    """`Applier.read_inventory` with a request timeout."""
    parent = _get(run, Entry(applier.ns, applier.parent_name, "", "ConfigMap", "v1"), timeout)
    try:
        return inventory.decode(((parent or {}).get("data") or {}).get("inventory", ""))
    except inventory.FormatError as e:
        raise errors.Permanent(f"ConfigMap/{applier.ns}/{applier.parent_name}: {e}",
                               reason="InventoryFormat") from e


def translate(e: Exception) -> errors.ClusterError:
    """`Cluster._translate` (which also reads SSA's 500 "failed to create typed patch object" as
    the object's fault, kubernetes/kubernetes#139253)."""
    return Cluster._translate(e)


def retry_after(e: BaseException) -> float:
    """The Retry-After of a 429 (seconds; the API server sends no HTTP dates), else a default."""
    seen: BaseException | None = e
    while seen is not None:
        headers = getattr(seen, "headers", None)
        if headers:
            value = str(headers.get("Retry-After", "")).strip()
            if value.isdigit():
                return max(0.1, float(value))
        seen = seen.__cause__
    return DEFAULT_RETRY_AFTER


def _group_kind(obj: Mapping[str, Any]) -> tuple[str, str]:
    return str(obj.get("apiVersion", "")).rpartition("/")[0], str(obj.get("kind", ""))
