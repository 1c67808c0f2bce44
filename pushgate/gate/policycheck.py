"""The gate of the policy repository: is a pushed policy commit fit to become the active set?

Called by the git server for a push to `main` of `policies.git` (gitserver.policyrepo), with the
commit's tree read from the quarantine. In order, stopping at the first step that finds problems:

1. the tree is written out, bounded and without symlinks (`policytree`);
2. it loads as a policy set (`policysource.load`: regopy compiles every module, conftest's
   contract holds, the Gatekeeper files and `enforcement.yaml` are valid) and OPA compiles every
   module, tests included (`opa check`);
3. the repository's own tests pass (`opa test`);
4. the new set is evaluated against the current head of every gated branch of the cluster
   repository, as the gate would check it (the persisted build configuration, a Gate with the new
   policy set), and compared with what the active set finds there: an error the active set does
   not report is an object the new set would newly reject.

Problems of steps 1-3 refuse the push; step 4's findings refuse it unless the pusher accepts
them (`-o allow-breaking`). A check that cannot decide (opa missing, the engine down, the time
limit) raises `Undecided`: the caller refuses, fail closed. Both sides of step 4 see the same
push context the warm-up uses (no pusher, no changed paths), so a rule that reads the push is
judged for an anonymous pusher.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pushgate.build.sources import SourceTree
from pushgate.core import violations as pv
from pushgate.gate import enforcement, opacli, policies, policysource, policytree
from pushgate.gate import gate as gatemod
from pushgate.gate.embedded import EmbeddedEngine

_T = TypeVar("_T")
REPO = "policies.git"  # where a problem of the repository as a whole is reported


class Undecided(Exception):
    """The check could not decide; `timeout` says whether it was the time limit."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@dataclass(frozen=True)
class Head:
    """The current head of one gated branch of the cluster repository."""

    ref: str
    sha: str
    tree: SourceTree


@dataclass
class Outcome:
    problems: list[pv.Violation] = field(default_factory=list)  # the policy set is unfit
    # per head, the errors the new set reports there and the active set does not
    breaking: list[tuple[Head, list[pv.Violation]]] = field(default_factory=list)
    source: policysource.Source | None = None  # the new set, loaded from `directory`
    directory: str = ""  # the commit's tree, written out
    tests: int = 0
    modules: int = 0

    @property
    def rejected_objects(self) -> int:
        return sum(len({v.obj or v.path for v in found}) for _head, found in self.breaking)


# What the active set finds on a head (with its enforcement overrides), given a deadline.
Current = Callable[[Head, float], Sequence[pv.Violation]]


def check(tree: SourceTree, commit: str, workdir: str, *, namespaces: Sequence[str] | None,
          heads: Sequence[Head], current: Current, current_version: str,
          gate_config: gatemod.GateConfig, kustomize: str | None, opa: str | None,
          deadline: float, say: Callable[[str], None]) -> Outcome:
    """Steps 1-4 for `commit`; the tree is written to `workdir`/tree (kept for the caller)."""
    if opa is None:
        raise Undecided(opacli.missing_message())
    out = Outcome(directory=os.path.join(workdir, "tree"))
    try:
        files = policytree.materialise(tree, out.directory)
    except policytree.TreeError as e:
        out.problems.append(pv.error(REPO, 0, "", "policy-repo", str(e)))
        return out
    rego = os.path.join(workdir, "rego")
    out.modules = policytree.rego_view(out.directory, rego)
    say(f"pushgate: policies: {files} files, {out.modules} Rego modules (tests included)")
    try:
        out.source = policysource.load(out.directory, namespaces, commit=commit)
    except policies.PolicyError as e:
        out.problems.append(opacli.located(str(e), "policy-set", REPO))
    out.problems.extend(_opa(opacli.check, opa, rego, deadline))
    if out.problems:
        return out
    say("pushgate: policies: every module compiles in both engines (regopy and opa check)")
    tests, failed = _opa(opacli.test, opa, rego, deadline)
    out.tests = tests
    if failed:
        out.problems.extend(failed)
        return out
    say(f"pushgate: policies: opa test: {tests} test{'s' if tests != 1 else ''} passed")
    assert out.source is not None
    if out.source.version == current_version:
        say("pushgate: policies: the rules and overrides are those already active: nothing to compare")
        return out
    out.breaking = _compare(out.source, heads, current, gate_config, kustomize, deadline, say)
    return out


def _opa(run: Callable[[str, str, float], _T], opa: str, directory: str, deadline: float) -> _T:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Undecided("policy check time limit exceeded", timeout=True)
    try:
        return run(opa, directory, left)
    except opacli.OpaUnavailable as e:
        raise Undecided(str(e), timeout="took more than" in str(e)) from e


def _compare(source: policysource.Source, heads: Sequence[Head], current: Current,
             config: gatemod.GateConfig, kustomize: str | None, deadline: float,
             say: Callable[[str], None]) -> list[tuple[Head, list[pv.Violation]]]:
    if not heads:
        say("pushgate: policies: the cluster repository has no gated branch yet: nothing to compare")
        return []
    gate = gatemod.Gate(config, engine=EmbeddedEngine(source.policy_set), kustomize_bin=kustomize)
    found: list[tuple[Head, list[pv.Violation]]] = []
    try:
        for head in heads:
            say(f"pushgate: policies: evaluating the new set on {_short(head.ref)} at {head.sha[:12]}")
            push = {"pusher": "", "role": "", "ref": head.ref, "changed_paths": []}
            try:
                built, new = gate.check(head.tree, push, deadline)
                before = current(head, deadline)
            except gatemod.GateTimeout as e:
                what = f"evaluating the new policies on {_short(head.ref)}: {e}"
                raise Undecided(what, timeout=True) from e
            except policies.EngineUnavailable as e:
                raise Undecided(f"evaluating the new policies on {_short(head.ref)}: {e}") from e
            old = {_key(v) for v in before if v.is_error}
            newly = sorted({v for v in enforcement.apply(new, source.overrides)
                            if v.is_error and _key(v) not in old})
            say(f"pushgate: policies: {_short(head.ref)}: {len(built.manifests)} objects, "
                f"{len({v.obj or v.path for v in newly})} newly rejected")
            if newly:
                found.append((head, newly))
    finally:
        gate.close()
    return found


def _key(v: pv.Violation) -> tuple[str, int, str, str, str]:
    return (v.path, v.line, v.obj, v.rule, v.message)


def _short(ref: str) -> str:
    return ref.removeprefix("refs/heads/")
