"""The automatic revert's rules, as pure logic (the revert itself is proved on the real bed in
tests/cluster/test_auto_revert.py): when it waits, when it never reverts, and once per commit."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pushgate import config as configmod
from pushgate.automation import botpush
from reconciler import autorevert, health

BAD, GOOD, NEWER = "b" * 40, "a" * 40, "c" * 40


def reverter(**kw: Any) -> autorevert.AutoReverter:
    settings = configmod.AutomationSettings(user="bot", token_file="/dev/null", auto_revert=("main",),
                                            revert_after=kw.pop("after", 0.0) or 0.001)
    return autorevert.AutoReverter("/nonexistent", "main", settings)


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def fake_revert(data_dir: str, branch: str, commit: str, message: str, **kw: Any) -> botpush.Result:
        calls.append(commit)
        return botpush.Result(True, NEWER, ["pushgate: 0 errors, 0 warnings"], "accepted")

    monkeypatch.setattr(botpush, "revert", fake_revert)
    monkeypatch.setattr(botpush, "identity", lambda *a, **k: None)
    monkeypatch.setattr(autorevert.notify, "emit", lambda *a, **k: 1)
    return calls


def doc(*history: tuple[str, str]) -> dict[str, Any]:
    return {"history": [{"revision": r, "result": v} for r, v in history]}


def failing() -> tuple[str, str]:
    return "Failed", "1 object(s) failed"


def test_reverts_a_failed_head_once(pushed: list[str]) -> None:
    r, d = reverter(), doc((BAD, "Failed"), (GOOD, "Ready"))
    r.consider(d, BAD, "Failed", "1 object(s) failed")
    time.sleep(0.01)
    assert r.tick(d, BAD, lambda _: "upgrade web", failing)
    assert pushed == [BAD] and d["autoRevert"]["done"][BAD]["result"] == "accepted"
    r.consider(d, BAD, "Failed", "again, after a restart re-applied it")
    assert not r.tick(d, BAD, lambda _: "upgrade web", failing)
    assert pushed == [BAD]  # never twice


def test_waits_for_revert_after(pushed: list[str]) -> None:
    r, d = reverter(after=3600), doc((BAD, "Degraded"), (GOOD, "Ready"))
    r.consider(d, BAD, "Degraded", "1 object(s) could not be applied")
    assert not r.tick(d, BAD, lambda _: "x", failing)
    assert pushed == [] and d["autoRevert"]["pending"]["revision"] == BAD


@pytest.mark.parametrize(("message", "history", "now", "why"), [
    ('Revert "upgrade"\n\nThis reverts commit ' + GOOD + ".", ((BAD, "Failed"), (GOOD, "Ready")), failing,
     "it is itself a revert"),
    ("first commit", ((BAD, "Failed"),), failing, "no healthy commit before it"),
    ("upgrade", ((BAD, "Failed"), (GOOD, "Ready")), lambda: ("Ready", "all objects applied and healthy"),
     "recovered"),
])
def test_never_reverts(pushed: list[str], message: str, history: tuple[tuple[str, str], ...],
                       now: Any, why: str) -> None:
    r, d = reverter(), doc(*history)
    r.consider(d, BAD, "Failed", "x")
    time.sleep(0.01)
    assert r.tick(d, BAD, lambda _: message, now)
    assert pushed == []
    done = d["autoRevert"]["done"][BAD]
    assert done["result"] == "skipped" and why in done["reason"]


def test_a_newer_head_supersedes_the_pending_revert(pushed: list[str]) -> None:
    r, d = reverter(), doc((BAD, "Failed"), (GOOD, "Ready"))
    r.consider(d, BAD, "Failed", "x")
    time.sleep(0.01)
    assert r.tick(d, NEWER, lambda _: "x", failing)
    assert pushed == [] and "pending" not in d["autoRevert"]


def test_a_branch_not_opted_in_is_left_alone(pushed: list[str]) -> None:
    r = autorevert.AutoReverter("/x", "release", configmod.AutomationSettings(auto_revert=("main",)))
    d = doc((BAD, "Failed"), (GOOD, "Ready"))
    r.consider(d, BAD, "Failed", "x")
    assert not r.tick(d, BAD, lambda _: "x", failing) and "autoRevert" not in d


def test_a_stale_progress_deadline_is_not_a_verdict() -> None:
    """After a rollback the controller keeps ProgressDeadlineExceeded until the rollout makes
    progress: older than the apply, it means in progress, not failed."""
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "generation": 3},
           "spec": {"replicas": 1, "progressDeadlineSeconds": 600},
           "status": {"observedGeneration": 3, "replicas": 1, "conditions": [
               {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "lastUpdateTime": "2026-11-29T12:00:00Z"}]}}
    applied = 1795953660.0  # 2026-11-29T12:01:00Z
    assert health.assess(dep, applied_at=applied).status == health.IN_PROGRESS
    assert health.assess(dep, applied_at=applied - 120).status == health.FAILED
    assert health.assess(dep).status == health.FAILED
