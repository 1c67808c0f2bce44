"""The receive path: dulwich's ReceivePackHandler with our own `handle()`.

Called by dulwich.web for `git-receive-pack`. dulwich 1.2.x writes a push straight into the
repository, ignores failed compare-and-swaps, cannot parse `shallow` lines and has no push
options (see the dulwich note), so this handler replaces its flow: parse the commands, shallow
lines and push options; receive the pack into a quarantine; check ref rules, connectivity and the
gate; then, only if every ref is accepted, move the packs in and update all refs together under
the repository lock. Interop tests drive it with the real git CLI (pinned dulwich range).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dulwich.errors import GitProtocolError
from dulwich.objects import Commit
from dulwich.protocol import (
    CAPABILITY_ATOMIC,
    CAPABILITY_DELETE_REFS,
    CAPABILITY_OFS_DELTA,
    CAPABILITY_PUSH_OPTIONS,
    CAPABILITY_QUIET,
    CAPABILITY_REPORT_STATUS,
    CAPABILITY_SIDE_BAND_64K,
    SIDE_BAND_CHANNEL_DATA,
    SIDE_BAND_CHANNEL_PROGRESS,
    extract_capabilities,
    format_ref_line,
    symref_capabilities,
)
from dulwich.refs import check_ref_format
from dulwich.server import ReceivePackHandler

from gitserver import consolidate, history, live, quarantine, repos, scopes, signing
from gitserver.repos import ZERO, RefUpdate
from pushgate import datadir, faults, observe
from pushgate.core import commitsigs, manifests
from pushgate.core import violations as pv

log = logging.getLogger(__name__)

# pushgate writes these itself (deploy state, results); a push must never move them.
OWN_REFS = datadir.OWN_REFS
MAX_COMMANDS = 1000
MAX_PUSH_OPTIONS = 32


@dataclass(frozen=True)
class Pusher:
    name: str
    role: str
    groups: tuple[str, ...] = ()
    scopes: tuple[scopes.Scope, ...] = ()  # () = the role says everything
    openpgp_keys: tuple[str, ...] = ()  # OpenPGP fingerprints bound to the user (signed commits)


class Refusal(enum.Enum):
    """Why a push was refused: a typed value (metric label, push log), never parsed from text."""

    GATE = "gate"  # the gate found problems
    STALE = "stale"  # a ref moved since the pusher fetched
    PROTECTED = "protected"  # force-push or deletion of a protected branch
    OWN_REF = "own-ref"  # refs/deployed/*, refs/notes/pushgate
    REF_NAME = "ref-name"  # not a valid ref name, or named twice
    INCOMPLETE = "incomplete"  # objects missing, a branch not pointing at a commit
    PACK = "pack"  # the pack could not be read, or is over the size limit
    TIMEOUT = "timeout"  # the gate's time limit
    ENGINE = "engine"  # the policy engine is down or crashed
    INTERNAL = "internal"  # the gate failed inside: it could not decide
    LIVE = "live"  # the live cluster refuses objects (server-side dry-run)
    LIVE_UNAVAILABLE = "live-unavailable"  # the live check could not run (required mode)
    PRUNE_GUARD = "prune-guard"  # prunes that need `-o allow-prune` from a role that may prune
    SCOPE = "scope"  # a ref, path or object outside the pusher's scopes
    DRY_RUN = "dry-run"  # `-o dry-run`: checked, nothing stored
    POLICY = "policy"  # a policies.git commit that does not load, compile or pass its tests
    POLICY_BREAKING = "policy-breaking"  # it would reject deployed objects (no -o allow-breaking)
    SIGNATURE = "signature"  # a new commit without a good signature allowed for the pusher


@dataclass
class PushOutcome:
    """What one push asked for and what became of it (for metrics, logs and the status page)."""

    repo: str
    pusher: str
    updates: list[RefUpdate] = field(default_factory=list)
    accepted: bool = False
    reason: str = ""
    refusal: Refusal | None = None
    violations: list[pv.Violation] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verdicts: list[datadir.Verdict] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)  # the live plan of the reconciled branch
    # Seconds per step of the receive (pack, refs, scopes, signatures, gate, store), as reached.
    phases: dict[str, float] = field(default_factory=dict)
    _mark: float = field(default=0.0, repr=False)

    def step(self, name: str) -> None:
        """The receive has just finished step `name` (timed from the previous step's end)."""
        now = time.monotonic()
        self.phases[name] = round(now - (self._mark or now), 4)
        self._mark = now


@dataclass(frozen=True)
class GateResult:
    """The gate's answer for the new tip of one gated ref."""

    violations: list[pv.Violation]
    files: int
    objects: int
    verdict: datadir.Verdict  # recorded before the ref moves, if the push is accepted
    exceptions: list[str] = field(default_factory=list)  # exemptions granted by policies
    manifests: list[manifests.Manifest] = field(default_factory=list)  # what was checked


class LiveGate(Protocol):
    """The live check of the reconciled branch (gitserver.live adapted by the app)."""

    mode: str  # required | best-effort

    def applies(self, ref: bytes) -> bool: ...

    def check(self, built: Sequence[manifests.Manifest], deadline: float) -> live.LiveOutcome: ...

    def may_prune(self, role: str, options: Sequence[str]) -> bool: ...


class RefGate(Protocol):
    """Checks the new tip of one gated ref (pushgate.gate adapted by the app)."""

    def gated(self, ref: bytes) -> bool: ...

    def check(self, store: Any, update: RefUpdate, pusher: Pusher, changed: Sequence[str],
              deadline: float) -> GateResult:
        """Every problem of the new tip, how much was checked, and the verdict to record.
        Raises GateUnavailable when it cannot decide."""
        ...

    def record(self, verdict: datadir.Verdict) -> None:
        """Persist an accepted verdict (before the ref moves) for the reconciler to check."""
        ...


class ReceiveContext(Protocol):
    """What the app gives every receive: who pushes, which rules hold, what to call after."""

    @property
    def pusher(self) -> Pusher: ...
    @property
    def protected(self) -> Sequence[bytes]: ...
    @property
    def gate(self) -> RefGate | None: ...
    @property
    def max_pack_bytes(self) -> int: ...
    @property
    def gate_timeout(self) -> float: ...
    @property
    def live(self) -> LiveGate | None: ...
    @property
    def signing(self) -> signing.Verifier | None: ...

    def on_done(self, outcome: PushOutcome) -> None: ...

    def deploy_progress(self, ref: bytes, revision: str, timeout: float) -> Iterator[str]:
        """Lines describing the deploy of `revision` until its verdict or the timeout."""
        ...


class GatedReceivePackHandler(ReceivePackHandler):
    """dulwich's receive-pack, made quarantined, atomic and gated."""

    context: ReceiveContext  # set by the factory in `app`
    repo: Any  # a dulwich Repo (typed as the narrower BackendRepo upstream)

    def capabilities(self) -> Iterable[bytes]:
        return [
            CAPABILITY_REPORT_STATUS, CAPABILITY_DELETE_REFS, CAPABILITY_QUIET, CAPABILITY_ATOMIC,
            CAPABILITY_OFS_DELTA, CAPABILITY_SIDE_BAND_64K, CAPABILITY_PUSH_OPTIONS,
            b"object-format=" + self.repo.object_format.name.encode(),
        ]

    # -- protocol -------------------------------------------------------------------------------
    def _advertise(self) -> None:
        refs: list[tuple[bytes, bytes]] = sorted(self.repo.get_refs().items())
        symrefs = sorted(self.repo.refs.get_symrefs().items())
        if not refs:
            refs = [(b"capabilities^{}", ZERO)]
        caps = list(self.capabilities()) + symref_capabilities(symrefs)
        self.proto.write_pkt_line(format_ref_line(refs[0][0], refs[0][1], caps))
        for name, sha in refs[1:]:
            self.proto.write_pkt_line(format_ref_line(name, sha))
        self.proto.write_pkt_line(None)

    def _read_request(self) -> tuple[list[RefUpdate], list[bytes], list[str]] | None:
        line = self.proto.read_pkt_line()
        if line is None:
            return None
        shallow: list[bytes] = []
        # A shallow client names its boundary commits first (pack-protocol `shallow` lines).
        while line is not None and line.startswith(b"shallow "):
            shallow.append(line[8:48])
            line = self.proto.read_pkt_line()
        if line is None:
            return None
        line, caps = extract_capabilities(line)
        self.set_client_capabilities(caps)
        updates: list[RefUpdate] = []
        while line:
            parts = line.rstrip(b"\n").split(b" ")
            if len(parts) != 3 or len(updates) >= MAX_COMMANDS:
                raise GitProtocolError(f"invalid ref update line {line[:200]!r}")
            old, new, ref = parts
            if len(old) != 40 or len(new) != 40:
                raise GitProtocolError(f"invalid ref update line {line[:200]!r}")
            updates.append(RefUpdate(ref, old, new))
            line = self.proto.read_pkt_line()
        options: list[str] = []
        if self.has_capability(CAPABILITY_PUSH_OPTIONS):
            opt = self.proto.read_pkt_line()
            while opt:
                if len(options) < MAX_PUSH_OPTIONS:
                    options.append(opt.rstrip(b"\n").decode("utf-8", "replace")[:200])
                opt = self.proto.read_pkt_line()
        return updates, shallow, options

    def _say(self, text: str) -> None:
        """One `remote:` line for the pusher (side-band channel 2), control bytes stripped."""
        if self.has_capability(CAPABILITY_SIDE_BAND_64K):
            self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS,
                                      (pv.sanitize(text) + "\n").encode("utf-8", "replace"))

    def _report(self, unpack: str, results: Sequence[tuple[bytes, str]]) -> None:
        lines = [b"unpack " + unpack.encode() + b"\n"]
        for ref, reason in results:
            if reason == "ok":
                lines.append(b"ok " + ref + b"\n")
            else:
                one = pv.sanitize(reason)[:300].encode("utf-8", "replace")
                lines.append(b"ng " + ref + b" " + one + b"\n")
        if self.has_capability(CAPABILITY_SIDE_BAND_64K):
            # report-status travels as pkt-lines inside side-band channel 1.
            buf = b"".join(b"%04x" % (len(x) + 4) + x for x in lines) + b"0000"
            self.proto.write_sideband(SIDE_BAND_CHANNEL_DATA, buf)
            self.proto.write_pkt_line(None)
        else:
            for x in lines:
                self.proto.write_pkt_line(x)
            self.proto.write_pkt_line(None)

    # -- the receive ----------------------------------------------------------------------------
    def handle(self) -> None:
        if self.advertise_refs or not self.stateless_rpc:
            self._advertise()
            if self.advertise_refs:
                return
        request = self._read_request()
        if request is None:
            return
        updates, _shallow, options = request
        ctx = self.context
        outcome = PushOutcome(repo=self.repo.path, pusher=ctx.pusher.name, updates=updates,
                              options=options)
        start = outcome._mark = time.monotonic()
        q = quarantine.Quarantine(self.repo.object_store.path)
        try:
            unpack, results = self._receive(q, updates, outcome)
        finally:
            q.close()
            outcome.seconds = time.monotonic() - start
        try:
            ctx.on_done(outcome)  # records the push and wakes the reconciler
        except Exception:  # the push is decided; a failing observer must not turn it into a 500
            log.exception("post-receive observer failed")
        wait = _wait_seconds(options)
        if outcome.accepted and wait:
            if WAITS.acquire(blocking=False):
                try:
                    self._stream_deploy(updates, wait)
                finally:
                    WAITS.release()
            else:  # every wait slot of this worker is taken: keep its threads for others
                self._say("pushgate: -o wait: too many pushes are waiting on this server already; "
                          "the push is accepted, follow its deploy with 'pushgate status' or the "
                          "status page")
        self._report(unpack, results)
        if outcome.accepted:
            consolidate.in_background(self.repo.object_store.path)

    def _stream_deploy(self, updates: Sequence[RefUpdate], timeout: float) -> None:
        """`git push -o wait`: apply and health progress as `remote:` lines, then the verdict.
        Sent before the ref report, so the client prints it as part of the push."""
        for u in updates:
            if u.is_delete or not u.ref.startswith(b"refs/heads/"):
                continue
            try:
                for line in self.context.deploy_progress(u.ref, u.new.decode(), timeout):
                    self._say(f"pushgate: {line}")
            except Exception:
                log.exception("streaming deploy progress failed")
                self._say("pushgate: could not follow the deploy; see 'pushgate status'")

    def _receive(self, q: quarantine.Quarantine, updates: list[RefUpdate],
                 outcome: PushOutcome) -> tuple[str, list[tuple[bytes, str]]]:
        def refuse_all(refusal: Refusal, reason: str, per_ref: dict[bytes, str] | None = None,
                       unpack: str = "ok") -> tuple[str, list[tuple[bytes, str]]]:
            outcome.reason = reason
            outcome.refusal = refusal
            per_ref = per_ref or {}
            return unpack, [(u.ref, per_ref.get(u.ref, reason)) for u in updates]

        if any(not u.is_delete for u in updates):
            try:
                read_some = getattr(self.proto, "recv", None)
                q.store.add_thin_pack(self.proto.read, read_some,
                                      max_input_size=self.context.max_pack_bytes or None)
            except Exception as e:
                msg = f"pushgate: pack refused: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                if "PackInputTooLarge" in type(e).__name__ or "too large" in str(e).lower():
                    msg = (f"pushgate: pack larger than the limit of "
                           f"{self.context.max_pack_bytes} bytes")
                self._say(msg)
                return refuse_all(Refusal.PACK, msg, unpack=msg[:100])
        faults.crashpoint("after-receive")
        try:
            q.read_ahead()
        except Exception:  # only a shortcut: every check still reads the store itself
            log.exception("reading the pushed packs ahead failed; checking from the store")
        outcome.step("pack")

        checked = self._check_refs(q, updates)
        outcome.step("refs")
        if checked:
            for ref, (_code, why) in checked.items():
                self._say(f"{ref.decode(errors='replace')}: {why}")
            first = next(iter(checked.values()))[0]
            return refuse_all(first, "pushgate: push refused (atomic): another ref was refused",
                              {ref: why for ref, (_code, why) in checked.items()})

        outside = self._check_scopes(q, updates, {})
        if outside:
            return refuse_all(Refusal.SCOPE, f"pushgate: outside your scopes: {outside[0]}")
        refused = self._check_signatures(q, updates, outcome)
        if refused is not None:
            return refuse_all(*refused)
        outcome.step("scopes and signatures")
        refused = self._run_gate(q, updates, outcome)
        outcome.step("gate")
        if refused is not None:
            return refuse_all(*refused)
        if "dry-run" in outcome.options:
            self._say("pushgate: dry run: the gate accepts this push; nothing was stored")
            return refuse_all(Refusal.DRY_RUN, "pushgate: dry run, nothing stored")
        faults.crashpoint("after-gate")
        gate = self.context.gate
        for verdict in outcome.verdicts:
            assert gate is not None
            gate.record(verdict)  # before the ref moves: the reconciler may look at once

        with repos.locked(self.repo.path):
            repo = self.repo
            stale = repos.stale(repo, updates)
            if stale:
                return refuse_all(Refusal.STALE, "fetch first",
                                  {u.ref: "fetch first" for u in stale})
            q.migrate()
            faults.crashpoint("after-migrate")
            repos.commit(repo, self.repo.path, updates)
        outcome.accepted = True
        outcome.step("store")
        return "ok", [(u.ref, "ok") for u in updates]

    # -- checks ---------------------------------------------------------------------------------
    def _check_refs(self, q: quarantine.Quarantine,
                    updates: Sequence[RefUpdate]) -> dict[bytes, tuple[Refusal, str]]:
        problems: dict[bytes, tuple[Refusal, str]] = {}
        seen: set[bytes] = set()
        store: Any = q.view
        for u in updates:
            if u.ref in seen:
                problems[u.ref] = (Refusal.REF_NAME, "pushgate: ref named twice in one push")
            seen.add(u.ref)
            if not u.ref.startswith(b"refs/") or not check_ref_format(u.ref):  # type: ignore[arg-type]
                problems[u.ref] = (Refusal.REF_NAME, "pushgate: invalid ref name")
                continue
            if u.ref.startswith(OWN_REFS):
                problems[u.ref] = (Refusal.OWN_REF, "pushgate: refs/deployed/* and refs/notes/pushgate "
                                                    "are written by pushgate only")
                continue
            protected = u.ref in self.context.protected
            if u.is_delete:
                if protected:
                    problems[u.ref] = (Refusal.PROTECTED, f"pushgate: deleting protected branch "
                                                          f"{_short(u.ref)} is not allowed")
                continue
            if u.new not in store:
                problems[u.ref] = (Refusal.INCOMPLETE, "pushgate: pushed object missing from the pack")
                continue
            missing = history.missing_objects(store, self.repo.object_store, u.new, q.pushed)
            if missing:
                problems[u.ref] = (Refusal.INCOMPLETE,
                                   f"pushgate: incomplete push, missing object {missing.decode()}")
                continue
            if u.ref.startswith(b"refs/heads/") and not isinstance(store[u.new], Commit):
                problems[u.ref] = (Refusal.INCOMPLETE, "pushgate: a branch must point at a commit")
                continue
            if protected and not u.is_create and not history.is_ancestor(store, u.old, u.new):
                problems[u.ref] = (Refusal.PROTECTED, f"pushgate: non-fast-forward update of protected "
                                                      f"branch {_short(u.ref)} is not allowed")
        return problems

    def _check_scopes(self, q: quarantine.Quarantine, updates: Sequence[RefUpdate],
                      built: dict[bytes, Sequence[manifests.Manifest]]) -> list[str]:
        """What of this push lies outside the pusher's scopes: refs and changed paths, and (given
        `built`, per ref) the objects built from changed files. Reported as it is found."""
        pusher = self.context.pusher
        if not pusher.scopes:
            return []
        found: list[str] = []
        for u in updates:
            changed = [] if u.is_delete else history.changed_paths(q.store, u.old, u.new)
            objects = [scopes.Object(m.path, m.ref, m.namespace, m.kind, m.api_version.rpartition("/")[0])
                       for m in built.get(u.ref, ())]
            found.extend(scopes.problems(pusher.scopes, u.ref.decode(errors="replace"), changed, objects))
        for line in found:
            self._say(f"pushgate: {line}")
        return found

    def _check_signatures(self, q: quarantine.Quarantine, updates: Sequence[RefUpdate],
                          outcome: PushOutcome) -> tuple[Refusal, str] | None:
        """None when every new commit on a ref that requires signed commits carries a good
        signature allowed for the pusher; else why the push is refused (every bad commit said)."""
        verifier = self.context.signing
        if verifier is None:
            return None
        checked = [u for u in updates if not u.is_delete and verifier.applies(u.ref)]
        if not checked:
            return None
        known = [sha for name, sha in self.repo.get_refs().items() if name != b"HEAD"]
        try:
            commits = history.new_commits(q.store, [u.new for u in checked], known,
                                          verifier.max_commits)
        except history.TooMuchHistory as e:
            msg = f"pushgate: signed commits required, and this push cannot be checked: {e}"
            self._say(msg)
            return Refusal.SIGNATURE, msg
        if not commits:
            return None
        pusher = self.context.pusher
        refs = ", ".join(_short(u.ref) for u in checked)
        self._say(f"pushgate: checking signatures of {len(commits)} new commit"
                  f"{'s' if len(commits) != 1 else ''} for {refs}")
        header = commitsigs.signature_header(self.repo.object_format.name)
        deadline = time.monotonic() + self.context.gate_timeout
        try:
            problems = verifier.check(q.store, commits, header,
                                      signing.Signer(pusher.name, frozenset(pusher.openpgp_keys)),
                                      deadline)
        except signing.Unavailable as e:
            msg = f"pushgate: signature check could not decide, push refused: {e}"
            self._say(msg)
            return (Refusal.TIMEOUT if e.timed_out else Refusal.INTERNAL), msg
        if not problems:
            return None
        for p in problems:
            self._say(f"pushgate: {p}")
        outcome.violations = [pv.error(p.commit[:12], 0, "", "signature", f"{p.subject}: {p.why}")
                              for p in problems]
        n = len(problems)
        self._say(f"pushgate: {n} of {len(commits)} new commit{'s' if len(commits) != 1 else ''} "
                  f"lack{'s' if n == 1 else ''} a good signature allowed for {pusher.name}")
        return Refusal.SIGNATURE, (f"pushgate: {n} commit{'s' if n != 1 else ''} without a good "
                                   f"signature allowed for {pusher.name}, see above")

    def _run_gate(self, q: quarantine.Quarantine, updates: Sequence[RefUpdate],
                  outcome: PushOutcome) -> tuple[Refusal, str] | None:
        """None when every gated ref passes; else why the push is refused."""
        gate = self.context.gate
        if gate is None:
            return None
        found: list[pv.Violation] = []
        exceptions: list[str] = []
        results: list[tuple[RefUpdate, GateResult]] = []
        files = objects = 0
        checked = [u for u in updates if not u.is_delete and gate.gated(u.ref)]
        deadline = time.monotonic() + self.context.gate_timeout
        for u in checked:
            self._say(f"pushgate: checking {_short(u.ref)} at {u.new[:12].decode()}")
            try:
                changed = history.changed_paths(q.view, u.old, u.new)
                result = gate.check(q.view, u, self.context.pusher, changed, deadline)
            except GateUnavailable as e:
                msg = f"pushgate: gate unavailable, push refused: {e}"
                self._say(msg)
                return e.refusal, msg
            except Exception as e:  # a gate that fails inside must refuse, never answer 500
                rid = observe.request_id.get()
                log.exception("gate could not decide (request %s)", rid)
                what = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                msg = f"pushgate: gate could not decide: {what} (request id {rid})"
                self._say(msg)
                return Refusal.INTERNAL, msg
            results.append((u, result))
            found.extend(result.violations)
            exceptions.extend(result.exceptions)
            files += result.files
            objects += result.objects
            outcome.verdicts.append(result.verdict)
        outcome.violations = found
        if not checked:
            return None
        lines = pv.report(found, files=files, objects=objects, exceptions=len(exceptions))
        for line in lines[:-1] + exceptions:
            self._say(line)
        errors = sum(1 for v in found if v.is_error)
        self._say(f"pushgate: {lines[-1]}")
        if errors:
            outcome.verdicts.clear()
            return Refusal.GATE, f"pushgate: {errors} problem{'s' if errors != 1 else ''} found, see above"
        outside = self._check_scopes(q, [u for u, _ in results], {u.ref: r.manifests for u, r in results})
        if outside:
            outcome.verdicts.clear()
            return Refusal.SCOPE, f"pushgate: outside your scopes: {outside[0]}"
        refused = self._run_live(results, outcome, deadline)
        if refused is not None:
            outcome.verdicts.clear()
        return refused

    def _run_live(self, results: Sequence[tuple[RefUpdate, GateResult]], outcome: PushOutcome,
                  deadline: float) -> tuple[Refusal, str] | None:
        """The live check of the reconciled branch: what the cluster says, the plan, the prune
        guard. None when the push may go on."""
        gate = self.context.live
        if gate is None:
            return None
        for u, result in results:
            if not gate.applies(u.ref):
                self._say(f"pushgate: {_short(u.ref)} is not the branch the reconciler applies: "
                          f"checked statically only")
                continue
            self._say(f"pushgate: live check of {_short(u.ref)} against the cluster")
            found = gate.check(result.manifests, deadline)
            if found.unavailable:
                if gate.mode == "required":
                    msg = f"pushgate: live check unavailable, push refused: {found.unavailable}"
                    self._say(msg)
                    return Refusal.LIVE_UNAVAILABLE, msg
                self._say(f"pushgate: warning: live check skipped (best-effort): {found.unavailable}")
                continue
            outcome.plan = found.plan
            for line in pv.report(found.problems)[:-1]:
                self._say(line)
            self._say(f"pushgate: plan for {_short(u.ref)} against the live cluster:")
            for line in found.plan_lines:
                self._say(line if line.startswith("  ") else f"pushgate: {line}")
            errors = [v for v in found.problems if v.is_error]
            if errors:
                outcome.violations.extend(found.problems)
                n = len(errors)
                return Refusal.LIVE, (f"pushgate: the cluster refuses {n} object{'s' if n != 1 else ''}, "
                                      f"see above")
            if found.guard:
                pusher = self.context.pusher
                for why in found.guard:
                    self._say(f"pushgate: prune guard: {why}")
                if not gate.may_prune(pusher.role, outcome.options):
                    self._say("pushgate: prune guard: push again with -o allow-prune (as a user whose "
                              "role may prune) to confirm")
                    return Refusal.PRUNE_GUARD, "pushgate: prune guard: confirm with -o allow-prune"
                self._say(f"pushgate: prune guard: confirmed by {pusher.name} with -o allow-prune")
        return None


MAX_WAIT = 600.0
# `-o wait` holds a request thread while it follows the deploy: at most this many per worker
# process at once (set from the thread count by the app), so waiting pushes never take the
# threads clones and pushes need.
WAITS = threading.BoundedSemaphore(8)


def set_wait_slots(threads: int) -> None:
    global WAITS
    WAITS = threading.BoundedSemaphore(max(1, threads - 8))


def _wait_seconds(options: Sequence[str]) -> float:
    """`-o wait` (120 s) or `-o wait=SECONDS` (at most MAX_WAIT); 0 when not asked."""
    for opt in options:
        if opt == "wait":
            return 120.0
        if opt.startswith("wait="):
            try:
                return max(1.0, min(MAX_WAIT, float(opt[5:])))
            except ValueError:
                return 120.0
    return 0.0


class GateUnavailable(Exception):
    """The gate could not decide (policy engine down, crashed or timed out): fail closed."""

    def __init__(self, message: str, refusal: Refusal = Refusal.ENGINE) -> None:
        super().__init__(message)
        self.refusal = refusal


def _short(ref: bytes) -> str:
    r = ref.decode(errors="replace")
    return r[len("refs/heads/"):] if r.startswith("refs/heads/") else r


HandlerFactory = Callable[..., GatedReceivePackHandler]
