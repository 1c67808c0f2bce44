"""Automatic revert (opt-in per branch): a commit that stays Failed or Degraded is undone by a
`git revert` pushed through pushgate's own gate.

Called by the loop (the leader only): `consider()` when a commit's result becomes final,
`tick()` on every pass. A commit is reverted when, `automation.revertAfter` seconds after it
turned Failed or Degraded, it is still the branch head and still unhealthy (assessed again, so a
commit that recovered is left alone). Never: a commit that is itself a revert, one with no
healthy commit before it in the history (nothing known-good to return to), one that is no longer
the head (a newer commit supersedes it, and reverting an older commit than the last healthy one
is impossible by construction), or the same commit twice (recorded in the status document, so
a restart or a new leader does not repeat it). The revert is authored by the automation
identity and goes through the same receive path, gate and live check as a human push
(`pushgate.automation.botpush`); refused or not, the outcome is recorded and notified.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pushgate import config as configmod
from pushgate import notify
from pushgate.automation import botpush

log = logging.getLogger(__name__)
FINAL_BAD = ("Failed", "Degraded")


class AutoReverter:
    def __init__(self, data_dir: str, branch: str, settings: configmod.AutomationSettings,
                 run_dir: str | None = None) -> None:
        self.data_dir = data_dir
        self.branch = branch
        self.settings = settings
        self.run_dir = run_dir
        self.enabled = branch in settings.auto_revert

    def _state(self, doc: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = doc.setdefault("autoRevert", {})
        state.setdefault("done", {})
        return state

    def consider(self, doc: dict[str, Any], revision: str, verdict: str, reason: str) -> None:
        """A commit's result became final: start (or cancel) the wait before a revert."""
        if not self.enabled:
            return
        state = self._state(doc)
        if verdict in FINAL_BAD and revision not in state["done"]:
            state["pending"] = {"revision": revision, "verdict": verdict, "reason": reason,
                                "since": time.time()}
        elif (state.get("pending") or {}).get("revision") == revision:
            state.pop("pending", None)

    def tick(self, doc: dict[str, Any], head: str, message: Callable[[str], str],
             assess: Callable[[], tuple[str, str]]) -> bool:
        """Revert the pending commit if its time has come. Returns whether `doc` changed.
        `message(sha)`: a commit's full message; `assess()`: the head's verdict now."""
        if not self.enabled:
            return False
        state = self._state(doc)
        pending = state.get("pending")
        if not pending:
            return False
        revision = pending["revision"]
        if head != revision:
            state.pop("pending")
            return True  # superseded by a newer commit: it decides now
        if time.time() - pending["since"] < self.settings.revert_after:
            return False
        state.pop("pending")
        why = self._refusal(doc, revision, message(revision))
        if why is None:
            verdict, now = assess()
            if verdict not in FINAL_BAD:
                why = f"recovered ({verdict}: {now})"
        if why is not None:
            state["done"][revision] = {"result": "skipped", "reason": why, "time": time.time()}
            log.info("automatic revert of %s skipped: %s", revision[:12], why)
            return True
        self._revert(state, revision, pending, message(revision))
        return True

    def _refusal(self, doc: dict[str, Any], revision: str, text: str) -> str | None:
        if "This reverts commit " in text or text.startswith('Revert "'):
            return "it is itself a revert"
        history = [h for h in doc.get("history", []) if h.get("revision") != revision]
        if not any(h.get("result") == "Ready" for h in history):
            return "no healthy commit before it to return to"
        return None

    def _revert(self, state: dict[str, Any], revision: str, pending: dict[str, Any], text: str) -> None:
        subject = text.splitlines()[0] if text else revision[:12]
        waited = time.time() - pending["since"]
        msg = (f'Revert "{subject}"\n\nThis reverts commit {revision}.\n\n'
               f"pushgate: {pending['verdict']} for {waited:.0f}s: {pending['reason']}\n")
        record: dict[str, Any] = {"time": time.time(), "verdict": pending["verdict"]}
        try:
            res = botpush.revert(self.data_dir, self.branch, revision, msg, base=revision,
                                 who=botpush.identity(self.data_dir, run_dir=self.run_dir))
        except botpush.BotPushError as e:
            record.update(result="refused", reason=str(e), lines=[])
        else:
            record.update(result="accepted" if res.accepted else "refused", reason=res.reason,
                          commit=res.commit, lines=res.lines[-40:])
        state["done"][revision] = record
        if record["result"] == "accepted":
            log.warning("reverted %s (%s) with %s", revision[:12], pending["verdict"], record["commit"][:12])
            notify.emit(self.data_dir, "revert-committed",
                        f"{revision[:12]} on {self.branch} stayed {pending['verdict']} for {waited:.0f}s: "
                        f"reverted by {record['commit'][:12]}",
                        branch=self.branch, commit=record["commit"],
                        details={"reverted": revision, "reason": pending["reason"]})
        else:
            log.warning("automatic revert of %s refused: %s", revision[:12], record["reason"])
            notify.emit(self.data_dir, "revert-refused",
                        f"reverting {revision[:12]} on {self.branch} was refused: {record['reason']}",
                        branch=self.branch, commit=revision,
                        details={"reverted": revision, "lines": record["lines"]})
