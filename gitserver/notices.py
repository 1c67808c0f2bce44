"""The git server's notifications: a refused push becomes a `push-refused` event per ref.

Called by `app.PushgateApp.record` once a push is decided; it only spools (see
`pushgate.notify.emit`), so a push never waits on a receiver. A dry run (`-o dry-run`) is not
a refusal and sends nothing. Pushes to the policy repository (`policies.git`) are recorded the
same way; their events name it (`details.repo`, and the message).
"""

from __future__ import annotations

import os

from gitserver.receive import PushOutcome, Refusal
from pushgate import datadir, notify
from pushgate.notify import events


def push_refused(data_dir: str, outcome: PushOutcome) -> int:
    """One `push-refused` per ref the push named (an atomic push refuses them all); how many
    notifications were spooled."""
    if outcome.accepted or outcome.refusal is Refusal.DRY_RUN:
        return 0
    refusal = outcome.refusal.value if outcome.refusal is not None else "other"
    repo = os.path.basename(outcome.repo.rstrip("/")) or datadir.REPO
    where = "" if repo == datadir.REPO else f"{repo} "  # the policy repository says so
    reason = outcome.reason.removeprefix("pushgate: ")
    errors = [v for v in outcome.violations if v.is_error]
    ordered = errors + [v for v in outcome.violations if not v.is_error]
    report = [str(v) for v in ordered[:events.MAX_DETAIL_LINES]]
    spooled = 0
    for u in outcome.updates:
        ref = u.ref.decode(errors="replace")
        branch = events.branch_of_ref(ref)
        commit = "" if u.is_delete else u.new.decode()
        message = f"push to {where}{branch} by {outcome.pusher} refused ({refusal}): {reason}"
        spooled += notify.emit(data_dir, "push-refused", message, branch=branch, commit=commit, details={
            "repo": repo, "ref": ref, "old": u.old.decode(), "new": u.new.decode(), "pusher": outcome.pusher,
            "refusal": refusal, "reason": reason, "problems": len(errors), "report": report,
            "options": list(outcome.options)})
    return spooled
