"""The reconcile loop: level-triggered, it drives the cluster to `refs/heads/<branch>` and then
moves `refs/deployed/<branch>`.

Run by `pushgate reconcile` (its own process, the deploy shape) or started by `pushgate serve
--kubeconfig`. Woken by the git server touching `<data-dir>/wake` and by a short poll, so a lost
wake-up or a crash between push and apply is harmless. API outages back off and converge;
permanent failures wait for a new commit; every pass ends by writing the status once.

A commit is applied only when the gate accepted it and the objects this reconciler builds (with
the configuration the server persisted) have the digest the gate recorded with its verdict;
otherwise nothing is applied and the status, the commit's note and a metric say why.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from pushgate import config as configmod
from pushgate import datadir, observe
from pushgate.build import build as buildmod
from reconciler import autorevert, drift, errors, health, notices, status
from reconciler.apply import Applier, ApplyReport
from reconciler.cluster import Cluster
from reconciler.gitstate import GitState
from reconciler.inventory import Entry
from reconciler.leader import LeaderElector

log = logging.getLogger(__name__)
WAKE_FILE = datadir.WAKE


class LostLeadership(Exception):
    pass


class Reconciler:
    def __init__(self, data_dir: str, connect: Callable[[], Cluster], *, branch: str = "main",
                 inventory_namespace: str = "pushgate-system", poll: float = 1.0,
                 health_timeout: float = 300.0, kustomize: str | None = None,
                 prune_protected: bool = False, max_backoff: float = 30.0,
                 drift_mode: str = "correct", leader_elect: bool = True,
                 lease: tuple[float, float, float] = (15.0, 10.0, 2.0),
                 automation: configmod.AutomationSettings | None = None,
                 run_dir: str | None = None) -> None:
        self.data_dir = data_dir
        self.reverter = autorevert.AutoReverter(data_dir, branch,
                                                automation or configmod.AutomationSettings(), run_dir)
        self._last_report: ApplyReport | None = None  # of the last commit whose result is final
        self.connect = connect
        self.branch = branch
        self.inventory_namespace = inventory_namespace
        self.poll = poll
        self.health_timeout = health_timeout
        self.prune_protected = prune_protected
        self.max_backoff = max_backoff
        self.git = GitState(data_dir, branch)
        self.kustomize = kustomize
        self._builder: buildmod.Builder | None = None
        self.cluster: Cluster | None = None
        self.doc = status.load(data_dir, branch)
        self._retry_at = 0.0
        self._backoff = 1.0
        self._tracking: dict[str, Any] | None = None  # the applied commit whose health we follow
        self._wake_mtime = 0.0
        self.drift_mode = drift_mode  # correct | detect | off
        self._progress_lock = threading.Lock()
        self.last_pass = time.monotonic()
        self.leader_elect = leader_elect
        self.lease = lease  # duration, renew deadline, retry period (seconds)
        self.elector: LeaderElector | None = None
        self._leading = not leader_elect
        self._lease_view: tuple[str, bool] | None = None
        self._lease_written = 0.0
        self._resync = True  # at start-up: apply the head again and start watching
        self._progress_saved = 0.0
        self.watches: drift.Watches | None = None
        self.checker: drift.DriftChecker | None = None

    # -- the loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        # Announce ourselves at once: `-o wait` and the status page tell "attached" from "not".
        # Only into an empty place: another replica may be leading and writing the status.
        if not os.path.exists(status.path(self.data_dir, self.branch)):
            self.doc["attached"] = True
            self.doc["reconcilerStarted"] = time.time()
            status.save(self.data_dir, self.branch, self.doc)
        while not stop.is_set():
            self.last_pass = time.monotonic()
            try:
                self.step()
            except Exception:  # the loop must survive anything; the status says what happened
                log.exception("reconcile pass failed")
                self._retry_later()
            self._sleep(stop)

    def _sleep(self, stop: threading.Event) -> None:
        wake = os.path.join(self.data_dir, WAKE_FILE)
        deadline = time.monotonic() + self.poll
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                mtime = os.stat(wake).st_mtime
            except FileNotFoundError:
                mtime = 0.0
            if mtime != self._wake_mtime:
                self._wake_mtime = mtime
                return
            if self.watches is not None and not self.watches.events.empty():
                return
            stop.wait(0.05)

    def step(self) -> None:
        head = self.git.head()
        if head is None:
            return
        if time.monotonic() < self._retry_at:
            return
        if self.cluster is None and not self._connect():
            return
        if not self._lead():
            return
        attempted = self.doc.get("lastAttemptedRevision")
        temporary = self.doc.get("lastResultTemporary", False)
        if self._resync or head != attempted or (
                temporary and head != self.doc.get("lastAppliedRevision")):
            self._resync = False
            self.reconcile(head)
            return
        self._handle_drift()
        if self._tracking is not None:
            self._follow_health()
        elif self.reverter.tick(self.doc, head, self.git.full_message, self._assess_now):
            self._save()

    def _assess_now(self) -> tuple[str, str]:
        """The last finished commit's verdict, assessed again from the cluster."""
        report = self._last_report
        if report is None or self.cluster is None:
            result = self.doc.get("result") or {}
            return str(result.get("verdict", "Failed")), str(result.get("reason", ""))
        healths = [health.assess(self._live(r.entry)) for r in report.applied]
        return health.verdict(healths, len(report.failures))

    def _handle_drift(self) -> None:
        if self.watches is None or self.checker is None:
            return
        found = []
        latest: dict[str, tuple[Any, dict[str, Any] | None]] = {}
        while not self.watches.events.empty():
            entry, live = self.watches.events.get_nowait()
            latest[entry.id] = (entry, live)  # only the newest state of each object matters
        for entry, live in latest.values():
            try:
                event = self.checker.check(entry, live)
            except errors.Temporary as e:
                self._outage(e)
                return
            except errors.ClusterError as e:
                event = drift.DriftEvent(entry.ref, [], False, message=f"correction failed: {e.message}")
            if event is not None:
                found.append(event)
        for event in found:
            log.warning("drift on %s: %s (%s)", event.ref, ", ".join(event.fields[:5]), event.message)
            status.record_drift(self.doc, event.as_dict())
            observe.metric("drift").labels(str(event.corrected).lower()).inc()
            self.doc["driftCount"] = self.doc.get("driftCount", 0) + 1
        notices.drift_corrected(self.data_dir, self.branch, self.doc.get("lastAppliedRevision", ""),
                                [e.as_dict() for e in found if e.corrected])
        if found or self.doc.get("watchRelists") != drift.Watches.relists_total:
            self.doc["watchRelists"] = drift.Watches.relists_total
            self._save()

    def _start_drift(self, applier: Applier, report: ApplyReport) -> None:
        if self.drift_mode == "off" or self.cluster is None:
            return
        if self.watches is None or self.watches.cluster is not self.cluster:
            if self.watches is not None:
                self.watches.stop()
            self.watches = drift.Watches(self.cluster, applier.id)
            self.checker = drift.DriftChecker(self.cluster, self.drift_mode)
        assert self.checker is not None
        self.checker.set_desired(report.desired, report.live)
        # Skipped (opted-out) objects are watched too: once the opt-out is lifted, drift
        # correction takes over without waiting for the next commit.
        self.watches.ensure([r.entry for r in report.results if r.action in ("applied", "skipped")])

    def _lead(self) -> bool:
        """True while this replica holds the Lease; a follower does nothing, writes nothing."""
        if not self.leader_elect:
            return True
        assert self.cluster is not None
        if self.elector is None:
            d, r, p = self.lease
            self.elector = LeaderElector(self.cluster, self.inventory_namespace,
                                         f"pushgate-reconciler-{self.branch.replace('/', '-')}",
                                         lease_duration=d, renew_deadline=r, retry_period=p).start()
            deadline = time.monotonic() + p + 1
            while self.elector.holder == "" and time.monotonic() < deadline:
                time.sleep(0.05)
        leading = self.elector.is_leader()
        self._report_lease(leading)
        if leading and not self._leading:
            log.warning("leading as %s", self.elector.identity)
            self.doc = status.load(self.data_dir, self.branch)  # the last leader's truth
            self.doc["leader"] = self.elector.identity
            self._tracking = None
            # Whatever happened while we did not lead (or before we first did), converge again
            # from the head, which also (re)starts the drift watches.
            self._resync = True
        elif not leading and self._leading:
            log.warning("no longer leading (holder: %s)", self.elector.holder or "none")
            if isinstance(self.elector.last_error, errors.Unavailable):
                # Lost for want of the API server, not to another replica: say so once, while we
                # are still the last leader (nobody else can lead before the lease expires).
                self._outage(self.elector.last_error)
            if self.watches is not None:
                self.watches.stop()
                self.watches = None
        self._leading = leading
        return leading

    def _report_lease(self, leading: bool) -> None:
        """This replica's view of the Lease, for `-o wait`, the page and `pushgate status`:
        written on change and every few seconds (a follower writes nothing else)."""
        assert self.elector is not None
        view = (self.elector.holder, leading)
        if view == self._lease_view and time.monotonic() - self._lease_written < 5.0:
            return
        self._lease_view, self._lease_written = view, time.monotonic()
        try:
            datadir.write_lease_view(self.data_dir, self.branch, {
                "identity": self.elector.identity, "holder": self.elector.holder,
                "leading": leading, "time": time.time()})
        except OSError:
            log.warning("cannot record the Lease view", exc_info=True)

    def _guard(self) -> None:
        if self.leader_elect and (self.elector is None or not self.elector.is_leader()):
            raise LostLeadership("lease lost before an apply batch")

    def _connect(self) -> bool:
        try:
            self.cluster = self.connect()
        except errors.ClusterError as e:
            self._outage(e)
            return False
        except Exception as e:  # a kubeconfig that went bad: report what it is, retry
            self._outage(errors.ClientError(f"cannot connect: {type(e).__name__}: {e}"))
            return False
        return True

    def _outage(self, e: errors.ClusterError) -> None:
        if not isinstance(e, errors.Temporary):
            # Not an outage (a bad kubeconfig, a client bug): say what it is, and still retry,
            # since the loop has nothing else to do until it can talk to the cluster.
            status.set_condition(self.doc, "Ready", False, e.reason, f"{e.reason}: {e.message}"[:500])
            status.set_condition(self.doc, "Reconciling", False, e.reason, e.message[:500])
            self._save()
            self.cluster = None
            self._retry_later()
            return
        cl = self.doc.get("cluster") or {}
        if cl.get("reachable", True):
            cl = {"reachable": False, "since": time.time()}
        cl["message"] = f"{e.reason}: {e.message}"[:500]
        self.doc["cluster"] = cl
        status.set_condition(self.doc, "Reconciling", False, "ClusterUnavailable", cl["message"])
        status.set_condition(self.doc, "Ready", False, "ClusterUnavailable",
                             f"API server unavailable, retrying: {cl['message']}")
        self._save()
        self.cluster = None
        self._retry_later()

    def _retry_later(self) -> None:
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)

    # -- one commit -----------------------------------------------------------------------------
    def reconcile(self, head: str) -> None:
        assert self.cluster is not None
        if self._tracking and self._tracking["revision"] != head:
            self._finish(self._tracking, "Superseded", f"superseded by {head}")
        self._note_superseded(head)
        self.doc["lastAttemptedRevision"] = head
        status.set_condition(self.doc, "Reconciling", True, "Progressing", f"applying {head[:12]}")
        self._save()
        built = self._build(head)
        if built is None:
            return
        objects = built.objects
        started = time.monotonic()
        applier = Applier(self.cluster, branch=self.branch,
                          inventory_namespace=self.inventory_namespace,
                          prune_protected=self.prune_protected, progress=self._progress,
                          guard=self._guard)
        try:
            report = applier.apply(objects, head)
        except LostLeadership:
            log.warning("stopped applying %s: lease lost", head[:12])
            self._leading = False
            return
        except errors.Temporary as e:
            self.doc["lastResultTemporary"] = True
            self._outage(e)
            return
        except errors.Permanent as e:
            self._stalled(head, e.reason, e.message)
            return
        self._backoff = 1.0
        observe.metric("reconcile_seconds").observe(time.monotonic() - started)
        for r in report.results:
            observe.metric("apply").labels(r.action).inc()
        self.doc["cluster"] = {"reachable": True, "since": time.time(), "message": ""}
        temporary = any(not r.permanent for r in report.failures)
        self.doc["lastResultTemporary"] = temporary
        if temporary:
            self._retry_later()
        if not report.failures:
            self.git.mark_deployed(head)
            if self.doc.get("lastAppliedRevision") != head:  # not again after a restart
                notices.commit_applied(self.data_dir, self.branch, head,
                                       [r.action for r in report.results], self.git.commit_info(head))
            self.doc["lastAppliedRevision"] = head
        status.set_condition(self.doc, "Stalled", False, "Applied", "")
        self._tracking = {"revision": head, "report": report, "started": time.monotonic(),
                          "applied_at": time.time()}
        self.doc["objects"] = [self._object_row(r) for r in report.results]
        self._start_drift(applier, report)
        # The apply's responses are the objects as they are live right now: judge them, rather
        # than read every one again (N sequential GETs); later passes read the cluster.
        self._follow_health(report.live)

    def _build(self, head: str) -> buildmod.Build | None:
        """The commit's objects, if the gate's verdict covers exactly them; else None, with the
        commit marked Failed and the reason in status, note and metrics (nothing is applied)."""
        try:
            cfg = configmod.load_persisted(self.data_dir)
        except configmod.ConfigError as e:
            self._refuse(head, "ConfigurationInvalid", str(e))
            return None
        if cfg is None:
            self._refuse(head, "NoConfiguration", "the server has not persisted its configuration "
                                                  f"({datadir.config_path(self.data_dir)}): start "
                                                  f"'pushgate serve' on this data directory")
            return None
        if self._builder is None or self._builder.config != cfg.build:
            self._builder = buildmod.Builder(cfg.build, kustomize_bin=self.kustomize)
        verdict = datadir.read_verdict(self.data_dir, head)
        if verdict is None:
            self._refuse(head, "NoVerdict", f"the gate recorded no verdict for {head[:12]} (not "
                                            f"pushed through the gate of a gated ref): push a new "
                                            f"commit to {self.branch}")
            return None
        built = self.git.build(head, self._builder)
        problems = [v for v in built.problems if v.is_error]
        if problems:
            self._stalled(head, "BuildFailed", "; ".join(str(p) for p in problems[:5]))
            return None
        digest = built.digest()
        self.doc["verdict"] = {"revision": head, "digest": digest, "gateDigest": verdict["digest"],
                               "config": cfg.build.digest(), "gateConfig": verdict["config"],
                               "policies": verdict["policies"], "objects": len(built.manifests),
                               "policySource": verdict.get("policySource", "")}
        if digest != verdict["digest"]:
            why = (f"the build configuration changed since the push (gate: {verdict['config']}, "
                   f"now: {cfg.build.digest()})" if verdict["config"] != cfg.build.digest()
                   else "the build produced other objects than the gate checked")
            self._refuse(head, "VerdictMismatch",
                         f"not applied: the objects built for {head[:12]} ({len(built.manifests)}, "
                         f"digest {digest[:12]}) are not the ones the gate accepted "
                         f"({verdict['objects']}, digest {verdict['digest'][:12]}): {why}; "
                         f"push a new commit to have it checked again")
            return None
        return built

    def _refuse(self, head: str, reason: str, message: str) -> None:
        log.error("not applying %s: %s: %s", head[:12], reason, message)
        observe.metric("verdict_refusals").labels(reason).inc()
        if reason == "NoConfiguration":  # the server is still starting: look again shortly
            self.doc["lastResultTemporary"] = True
            status.set_condition(self.doc, "Ready", False, reason, message)
            status.set_condition(self.doc, "Reconciling", False, reason, message)
            self._save()
            self._retry_later()
            return
        self._stalled(head, reason, message)

    def _save(self) -> None:
        if not self._leading:
            return
        with self._progress_lock:
            status.save(self.data_dir, self.branch, self.doc)

    def _note_superseded(self, head: str) -> None:
        """Commits between the last attempted one and `head` will never be applied on their own:
        say so in their notes."""
        since = self.doc.get("lastAttemptedRevision") or self.git.deployed()
        for sha in self.git.between(since, head):
            if self.git.read_note(sha) is None:
                self.git.note(sha, f"pushgate: Superseded (superseded by {head})\n")

    def _progress(self, message: str) -> None:
        """Called from the applier's worker threads; saved at most twice a second so that
        `git push -o wait` can stream it."""
        with self._progress_lock:
            self.doc["progress"] = [*self.doc.get("progress", [])[-200:],
                                    {"time": time.time(), "revision": self.doc.get("lastAttemptedRevision"),
                                     "message": message}]
            if time.monotonic() - self._progress_saved > 0.5:
                self._progress_saved = time.monotonic()
                status.save(self.data_dir, self.branch, self.doc)

    def _stalled(self, head: str, reason: str, message: str) -> None:
        self.doc["lastResultTemporary"] = False
        status.set_condition(self.doc, "Stalled", True, reason, message)
        status.set_condition(self.doc, "Reconciling", False, reason, message)
        status.set_condition(self.doc, "Ready", False, reason, message)
        self._tracking = None
        entry = {"revision": head, "result": "Failed", "reason": reason, "detail": message,
                 "time": time.time()}
        notices.commit_result(self.data_dir, self.branch, head, "Failed", reason,
                              notices.previous_result(self.doc, head), message)
        # `message` is the commit's subject (from commit_info); the failure is in `detail`.
        status.record_commit(self.doc, {**entry, **self.git.commit_info(head)})
        self.git.note(head, f"pushgate: Failed ({reason})\n{message}\n")
        self._save()

    @staticmethod
    def _object_row(r: Any) -> dict[str, Any]:
        return {"ref": r.ref, "action": r.action, "reason": r.reason, "message": r.message,
                "health": "", "healthMessage": ""}

    def _follow_health(self, fresh: dict[str, dict[str, Any]] | None = None) -> None:
        """Assess the tracked commit's objects: those in `fresh` (entry id -> the object as the
        apply just returned it) as they are there, every other one as read from the cluster."""
        assert self._tracking is not None and self.cluster is not None
        report: ApplyReport = self._tracking["report"]
        healths = []
        rows = {row["ref"]: row for row in self.doc.get("objects", [])}
        for r in report.applied:
            try:
                live = fresh[r.entry.id] if fresh and r.entry.id in fresh else self._live(r.entry)
            except errors.Temporary as e:
                self._outage(e)
                return
            h = health.assess(live, applied_at=self._tracking["applied_at"])
            healths.append(h)
            if r.ref in rows:
                rows[r.ref]["health"], rows[r.ref]["healthMessage"] = h.status, h.message
        verdict, reason = health.verdict(healths, len(report.failures))
        if verdict == "Progressing" and \
                time.monotonic() - self._tracking["started"] > self.health_timeout:
            verdict, reason = "Failed", f"not healthy after {self.health_timeout:.0f}s: {reason}"
        revision = self._tracking["revision"]
        ready = verdict == "Ready"
        status.set_condition(self.doc, "Ready", ready, verdict, f"{revision[:12]}: {reason}")
        status.set_condition(self.doc, "Reconciling", verdict == "Progressing", verdict, reason)
        self.doc["result"] = {"revision": revision, "verdict": verdict, "reason": reason}
        if verdict != "Progressing":
            self._finish(self._tracking, verdict, reason)
        self._save()

    def _live(self, e: Entry) -> dict[str, Any] | None:
        assert self.cluster is not None
        return self.cluster.get(e.api_version, e.kind, e.name, e.namespace)

    def _finish(self, tracking: dict[str, Any], verdict: str, reason: str) -> None:
        revision = tracking["revision"]
        report: ApplyReport = tracking["report"]
        rows = {row["ref"]: row for row in self.doc.get("objects", [])}
        counts = {a: sum(1 for r in report.results if r.action == a)
                  for a in ("applied", "failed", "skipped", "pruned", "prune-failed")}
        lines = [f"pushgate: {verdict} ({reason})", f"revision: {revision}",
                 ", ".join(f"{k}: {v}" for k, v in counts.items())]
        gate = self.doc.get("verdict") or {}
        if gate.get("revision") == revision:
            lines.append(f"gate verdict: objects {gate.get('objects')}, digest {gate.get('digest')}, "
                         f"build config {gate.get('config')}, policies {gate.get('policies')}")
            if gate.get("policySource"):  # the policy commit (or directory) that passed it
                lines.append(f"policy source: {gate['policySource']}")
        for r in report.results:
            row = rows.get(r.ref, {})
            health_part = f" {row.get('health')}" if row.get("health") else ""
            lines.append(f"{r.line()}{health_part}")
        self.git.note(revision, "\n".join(lines) + "\n")
        observe.metric("verdicts").labels(verdict).inc()
        notices.commit_result(self.data_dir, self.branch, revision, verdict, reason,
                              notices.previous_result(self.doc, revision))
        status.record_commit(self.doc, {"revision": revision, "result": verdict, "reason": reason,
                                        "time": time.time(), **counts,
                                        **self.git.commit_info(revision)})
        self._last_report = report
        self.reverter.consider(self.doc, revision, verdict, reason)
        self._tracking = None
