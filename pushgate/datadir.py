"""The data directory: the one contract between the git server and the reconciler.

Both sides (and the CLI) read and write the same directory; everything they agree on is named
here and nowhere else: the repository, pushgate's own refs, the notes ref, the per-branch status
file, the wake file, the push log, the persisted configuration, the gate's verdicts, the
live-check socket and token, and the policy repository with its materialised commits. The
documents are typed (`TypedDict`) so a change on one side is a type error on the other.
Shared layer: imports neither `gitserver` nor `reconciler`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote

REPO = "cluster.git"
# The policy set by GitOps: its `main` is the active policy commit (see gitserver.policyrepo),
# each accepted commit materialised, before the ref moves, under POLICY_TREES/<commit>/.
POLICY_REPO = "policies.git"
POLICY_BRANCH = b"refs/heads/main"
POLICY_TREES = "policies"
NOTES_REF = b"refs/notes/pushgate"
DEPLOYED_PREFIX = b"refs/deployed/"
OWN_REFS = (DEPLOYED_PREFIX, NOTES_REF)  # written by pushgate only; a push may never move them
WAKE = "wake"
PUSH_LOG = "pushes.jsonl"
CONFIG = "config.json"
# The live check's rendezvous in the run directory (default DATA/run; in a pod, a volume the
# two containers share): the reconciler's Unix socket and the per-pod token guarding it.
RUN_DIR = "run"
LIVE_SOCKET = "live.sock"
LIVE_TOKEN = "live.token"  # noqa: S105 - a file name, not a secret
SERVER_URL = "server.url"  # in the run dir: where `serve` listens (pushgate's own pushes go there)
IMAGES_STATUS = "automation/images.json"
_STATUS_DIR = "status"
_VERDICT_DIR = "verdicts"


# -- typed documents ----------------------------------------------------------------------------
class Condition(TypedDict):
    type: str
    status: str  # "True" | "False"
    reason: str
    message: str
    lastTransitionTime: float


class StatusDoc(TypedDict, total=False):
    """`status/<branch>.json`, written by the reconciler once per pass; read by `-o wait`, the API,
    the status page and `pushgate status`."""

    branch: str
    attached: bool
    reconcilerStarted: float
    updated: float
    conditions: list[Condition]
    lastAttemptedRevision: str
    lastAppliedRevision: str
    lastResultTemporary: bool
    history: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    progress: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    driftCount: int
    watchRelists: int
    cluster: dict[str, Any]
    result: dict[str, Any]
    leader: str
    verdict: dict[str, Any]  # the gate verdict check of the last attempted revision


class LeaseView(TypedDict):
    """`status/<branch>.lease/<identity>.json`: what one reconciler replica sees of the Lease
    (followers write nothing else), so `-o wait`, the page and `pushgate status` can say who
    leads instead of waiting silently."""

    identity: str
    holder: str
    leading: bool
    time: float


class Verdict(TypedDict):
    """`verdicts/<commit>.json`: what the gate accepted, written before the ref moves."""

    commit: str
    ref: str
    pusher: str
    time: float
    digest: str  # of the exact object set the gate checked (see pushgate.build.digest)
    objects: int
    config: str  # digest of the build configuration it was built with
    policies: str  # version of the policy set it was checked against
    # where that policy set came from: "commit:<sha>" (policies.git) or "dir:<version>" (--policies)
    policySource: NotRequired[str]


# -- paths --------------------------------------------------------------------------------------
def repo_path(data_dir: str) -> str:
    return os.path.join(data_dir, REPO)


def policy_repo_path(data_dir: str) -> str:
    return os.path.join(data_dir, POLICY_REPO)


def policy_tree_path(data_dir: str, commit: str) -> str:
    """Where an accepted policy commit's tree is materialised (read by every server worker)."""
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        raise ValueError(f"not a commit id: {commit[:60]!r}")
    return os.path.join(data_dir, POLICY_TREES, commit)


def branch_of(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def deployed_ref(branch: str) -> bytes:
    return DEPLOYED_PREFIX + branch.encode()


def head_ref(branch: str) -> bytes:
    return b"refs/heads/" + branch.encode()


def status_path(data_dir: str, branch: str) -> str:
    """One file per branch; `/` and `%` escaped so `release/v1` and `release-v1` never collide."""
    return os.path.join(data_dir, _STATUS_DIR, quote(branch, safe="") + ".json")


def run_dir(data_dir: str) -> str:
    return os.path.join(data_dir, RUN_DIR)


def lease_dir(data_dir: str, branch: str) -> str:
    return status_path(data_dir, branch)[: -len(".json")] + ".lease"


def write_lease_view(data_dir: str, branch: str, view: LeaseView) -> None:
    name = quote(view["identity"], safe="") or "unknown"
    write_json(os.path.join(lease_dir(data_dir, branch), name + ".json"), view)


def read_lease_views(data_dir: str, branch: str, max_age: float = 60.0) -> list[LeaseView]:
    """The replicas' views seen within `max_age` seconds, newest first."""
    out: list[LeaseView] = []
    try:
        names = os.listdir(lease_dir(data_dir, branch))
    except FileNotFoundError:
        return []
    for name in names:
        doc = read_json(os.path.join(lease_dir(data_dir, branch), name))
        if isinstance(doc, dict) and time.time() - float(doc.get("time", 0)) <= max_age:
            out.append(doc)  # type: ignore[arg-type]
    return sorted(out, key=lambda v: -v["time"])


def leader_summary(data_dir: str, branch: str) -> str:
    """One line on who leads `branch`'s reconcile, from the replicas' views; "" when unknown or
    when a replica here leads (nothing to explain)."""
    views = read_lease_views(data_dir, branch)
    if not views or any(v["leading"] for v in views):
        return ""
    holder = next((v["holder"] for v in views if v["holder"]), "")
    here = ", ".join(sorted({v["identity"] for v in views}))
    if holder:
        return (f"no reconciler here leads {branch}: the Lease is held by {holder} (here: {here}); "
                f"the commit is applied by the leader, or here once the Lease is taken over")
    return f"no reconciler leads {branch} yet (here: {here}): waiting for the Lease"


def images_status_path(data_dir: str) -> str:
    """Image automation's status (`pushgate automate` writes it after each scan; the API reads it)."""
    return os.path.join(data_dir, IMAGES_STATUS)


def wake_path(data_dir: str) -> str:
    return os.path.join(data_dir, WAKE)


def push_log_path(data_dir: str) -> str:
    return os.path.join(data_dir, PUSH_LOG)


def config_path(data_dir: str) -> str:
    return os.path.join(data_dir, CONFIG)


def verdict_path(data_dir: str, commit: str) -> str:
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        raise ValueError(f"not a commit id: {commit[:60]!r}")
    return os.path.join(data_dir, _VERDICT_DIR, commit[:2], commit + ".json")


# -- documents ----------------------------------------------------------------------------------
def write_json(path: str, doc: Any, *, durable: bool = False) -> None:
    """Atomically (rename), so a reader never sees half a document."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str) -> Any:
    """The document, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def read_status(data_dir: str, branch: str) -> StatusDoc | None:
    doc = read_json(status_path(data_dir, branch))
    return doc if isinstance(doc, dict) else None  # type: ignore[return-value]


def empty_status(branch: str) -> StatusDoc:
    return {"branch": branch, "conditions": [], "history": [], "objects": [], "drift": []}


def write_status(data_dir: str, branch: str, doc: StatusDoc) -> None:
    doc["updated"] = time.time()
    write_json(status_path(data_dir, branch), doc)


def write_verdict(data_dir: str, verdict: Verdict) -> None:
    write_json(verdict_path(data_dir, verdict["commit"]), verdict, durable=True)


def policy_source_text(label: str) -> str:
    """A verdict's `policySource` for people: "policies.git 1a2b3c4d5e6f", "directory 9f8e7d6c5b4a"."""
    kind, _, value = label.partition(":")
    if kind == "commit":
        return f"policies.git {value[:12]}"
    if kind == "dir":
        return f"directory {value[:12]}"
    return label or "-"


def read_verdict(data_dir: str, commit: str) -> Verdict | None:
    doc = read_json(verdict_path(data_dir, commit))
    if not isinstance(doc, dict) or doc.get("commit") != commit or not isinstance(doc.get("digest"), str):
        return None
    return doc  # type: ignore[return-value]


def touch_wake(data_dir: str) -> None:
    """Wake the reconciler (it also polls, so a lost wake-up is harmless)."""
    path = wake_path(data_dir)
    with open(path, "a"):
        os.utime(path)
