"""`policies.git`: the policy set by GitOps, served next to the cluster repository.

Called by `gitserver.app`, whose receive factory hands a push to `policies.git` to
`PolicyReceivePackHandler`. It is the cluster repository's receive (quarantine, ref rules, one
journaled compare-and-swap of every ref under the lock) with another gate: only an admin without
scopes may push (the auth layer already answers others 403); `main` is protected (no force-push,
no deletion) and is the only ref that is checked and ever active; other branches are drafts,
stored unchecked. A push to `main` runs `pushgate.gate.policycheck` on the new commit: the tree
must load and compile in both engines, its tests must pass, and the new set must not reject
objects on the current heads of the cluster repository's gated branches that the active set
accepts, unless the push carries `-o allow-breaking` (the report then lists them). Only then is
the commit written to `DATA/policies/<commit>/` (before the ref moves: the moment `main` names
it, every worker can load it); `-o dry-run` checks and stores nothing. After the refs moved, the
worker that took the push switches at once; the others notice `main` moved before their next
push (`activepolicy`).

Known limit: a cluster push checked under the old set that lands while the policy push is
checked is not compared with the new set; its head is judged by the next policy push.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dulwich.repo import Repo

from gitserver import activepolicy, quarantine, signing
from gitserver.receive import GatedReceivePackHandler, Pusher, PushOutcome, Refusal
from gitserver.repos import RefUpdate
from pushgate import datadir, notify, observe
from pushgate.build.sources import GitTree
from pushgate.core import violations as pv
from pushgate.gate import enforcement, opacli, policycheck
from pushgate.gate import gate as gatemod

log = logging.getLogger(__name__)

ALLOW_BREAKING = "allow-breaking"


def is_policy_repo(path: str | bytes) -> bool:
    """Whether a URL path (as dulwich hands it to a handler) names policies.git."""
    name = path.decode("utf-8", "replace") if isinstance(path, bytes) else path
    return name.strip("/") == datadir.POLICY_REPO


@dataclass(frozen=True)
class PolicyGate:
    """What a policy push is checked with; one per worker, made by the app."""

    data_dir: str
    holder: activepolicy.Holder
    gate_config: gatemod.GateConfig
    gated_refs: Sequence[str]
    namespaces: Sequence[str] | None
    kustomize: str | None
    opa_url: str | None
    timeout: float

    def heads(self, repo: Any) -> list[policycheck.Head]:
        refs: Any = repo.refs
        out = []
        for ref in self.gated_refs:
            try:
                sha = refs[ref.encode()]
            except KeyError:
                continue
            out.append(policycheck.Head(ref, sha.decode(), GitTree(repo.object_store, sha)))
        return out


@dataclass
class PolicyContext:
    """One receive's `ReceiveContext` for policies.git (no RefGate: the handler checks itself)."""

    pusher: Pusher
    policy: PolicyGate
    max_pack_bytes: int
    gate_timeout: float
    done: Callable[[PushOutcome], None]
    # The cluster repository's signed-commit rule, if its refs name main: a policy change needs
    # the same signatures as a change of what is deployed.
    signing: signing.Verifier | None = None
    protected: Sequence[bytes] = (datadir.POLICY_BRANCH,)
    gate: None = None
    live: None = None

    def on_done(self, outcome: PushOutcome) -> None:
        self.done(outcome)
        if outcome.accepted:
            self.policy.holder.current()  # this worker switches now; the others before their next push
            for u in outcome.updates:
                if u.ref == datadir.POLICY_BRANCH and not u.is_delete:
                    broken = len({v.obj or v.path for v in outcome.violations})
                    notify.emit(self.policy.data_dir, "policy-change",
                                f"policies.git main is now {u.new.decode()[:12]} (pushed by "
                                f"{outcome.pusher})" + (f"; {broken} deployed objects now fail the gate "
                                                        f"(-o allow-breaking)" if broken else ""),
                                branch="main", commit=u.new.decode(),
                                details={"pusher": outcome.pusher, "breaking": broken})

    def deploy_progress(self, ref: bytes, revision: str, timeout: float) -> Iterator[str]:
        yield "-o wait: policies.git is not deployed: the accepted commit is active at once"


class PolicyReceivePackHandler(GatedReceivePackHandler):
    """receive-pack for policies.git: the same quarantined, atomic receive, the policy check as gate."""

    context: PolicyContext  # set by the factory in `app`

    def _run_gate(self, q: quarantine.Quarantine, updates: Sequence[RefUpdate],
                  outcome: PushOutcome) -> tuple[Refusal, str] | None:
        pusher = self.context.pusher
        if pusher.role != "admin" or pusher.scopes:
            msg = (f"pushgate: only an admin without scopes may change the policy set "
                   f"({pusher.name} has role {pusher.role}{' with scopes' if pusher.scopes else ''})")
            self._say(msg)
            return Refusal.SCOPE, msg
        for u in updates:
            if u.is_delete:
                continue
            if u.ref != datadir.POLICY_BRANCH:
                self._say(f"pushgate: {u.ref.decode(errors='replace')} of policies.git is a draft: "
                          f"stored unchecked, never active (only main is)")
                continue
            refused = self._check_main(q, u, outcome)
            if refused is not None:
                return refused
        return None

    def _check_main(self, q: quarantine.Quarantine, u: RefUpdate,
                    outcome: PushOutcome) -> tuple[Refusal, str] | None:
        policy = self.context.policy
        commit = u.new.decode()
        if policy.opa_url:
            msg = (f"pushgate: this server evaluates policies with the OPA server at {policy.opa_url}, "
                   f"which loads its own policies: policies.git needs the embedded engine "
                   f"(serve without --opa-url)")
            self._say(msg)
            return Refusal.POLICY, msg
        self._say(f"pushgate: checking policy commit {commit[:12]}")
        root = os.path.join(self.context.policy.data_dir, datadir.POLICY_TREES)
        os.makedirs(root, exist_ok=True)
        work = tempfile.mkdtemp(dir=root, prefix=activepolicy.STAGING_PREFIX)
        deadline = time.monotonic() + policy.timeout
        cluster = Repo(datadir.repo_path(policy.data_dir))
        try:
            active = policy.holder.current()
            active_gate, source = active.gate, active.source
            if source is None or active_gate is None:
                # The fix must get in: compared with no policies, every error on a head counts.
                self._say(f"pushgate: the active policy set does not load ({active.error}): the "
                          f"new set is compared with no policies")

            def current(head: policycheck.Head, until: float) -> list[pv.Violation]:
                if source is None or active_gate is None:
                    return []
                push = {"pusher": "", "role": "", "ref": head.ref, "changed_paths": []}
                return enforcement.apply(active_gate.check(head.tree, push, until)[1], source.overrides)

            result = policycheck.check(
                GitTree(q.store, u.new), commit, work, namespaces=policy.namespaces,
                heads=policy.heads(cluster), current=current,
                current_version=source.version if source is not None else "",
                gate_config=policy.gate_config, kustomize=policy.kustomize,
                opa=opacli.find(policy.kustomize), deadline=deadline, say=self._say)
            refused = self._verdict(result, outcome)
            if refused is None and "dry-run" not in outcome.options:
                activepolicy.publish(result.directory, datadir.policy_tree_path(policy.data_dir, commit))
            return refused
        except policycheck.Undecided as e:
            msg = f"pushgate: policy check could not decide: {e}"
            self._say(msg)
            return (Refusal.TIMEOUT if e.timeout else Refusal.ENGINE), msg
        except Exception as e:  # refuse, never answer 500
            rid = observe.request_id.get()
            log.exception("policy check failed (request %s)", rid)
            msg = f"pushgate: policy check could not decide: {type(e).__name__} (request id {rid})"
            self._say(msg)
            return Refusal.INTERNAL, msg
        finally:
            cluster.close()
            shutil.rmtree(work, ignore_errors=True)

    def _verdict(self, result: policycheck.Outcome, outcome: PushOutcome) -> tuple[Refusal, str] | None:
        if result.problems:
            outcome.violations = list(result.problems)
            lines = pv.report(result.problems)
            for line in lines[:-1]:
                self._say(line)
            n = sum(1 for v in result.problems if v.is_error)
            self._say(f"pushgate: {lines[-1]}")
            return Refusal.POLICY, (f"pushgate: the policy set has {n} problem{'s' if n != 1 else ''}, "
                                    f"see above")
        allowed = ALLOW_BREAKING in outcome.options
        for head, found in result.breaking:
            n = len({v.obj or v.path for v in found})
            self._say(f"pushgate: the new policies would reject {n} object{'s' if n != 1 else ''} "
                      f"deployed on {head.ref.removeprefix('refs/heads/')} ({head.sha[:12]}):")
            for v in found:
                self._say(f"  {v}")
            outcome.violations.extend(found)
        n = result.rejected_objects
        if n and not allowed:
            self._say(f"pushgate: push again with -o {ALLOW_BREAKING} to accept the policy change "
                      f"anyway (those heads then fail the gate until fixed)")
            return Refusal.POLICY_BREAKING, (f"pushgate: the new policies would reject {n} deployed "
                                             f"object{'s' if n != 1 else ''}, see above")
        if n:
            self._say(f"pushgate: accepted with -o {ALLOW_BREAKING}: {n} deployed "
                      f"object{'s' if n != 1 else ''} listed above now fail the gate")
        self._say(f"pushgate: policy check passed: {result.modules} modules, {result.tests} tests")
        return None
