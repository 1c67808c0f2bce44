"""Named crash points for the fault tests (tests/faults): die at a chosen point as SIGKILL would,
or raise where a bug would (`fail`, PUSHGATE_FAULT), to prove the caller turns it into a refusal.

Called by gitserver (`receive`, `repos`: the receive path and its ref transaction) and reconciler
(`apply`: mid-apply). Inert unless PUSHGATE_CRASHPOINT names the point; then the process appends
the name to PUSHGATE_CRASHPOINT_MARKER (if set) and exits with 137 at the point's Nth passage
(PUSHGATE_CRASHPOINT_AFTER, default 1), with no clean-up of any kind.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

_passed: Counter[str] = Counter()
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    """Die here when PUSHGATE_CRASHPOINT names this point (fault tests only)."""
    if os.environ.get("PUSHGATE_CRASHPOINT") != name:
        return
    try:
        after = max(1, int(os.environ.get("PUSHGATE_CRASHPOINT_AFTER", "1")))
    except ValueError:
        after = 1
    with _lock:
        _passed[name] += 1
        if _passed[name] < after:
            return
        marker = os.environ.get("PUSHGATE_CRASHPOINT_MARKER")
        if marker:
            with open(marker, "a") as f:
                f.write(name + "\n")
        os._exit(137)


class InjectedFault(RuntimeError):
    """Raised where PUSHGATE_FAULT names a point: a stand-in for any bug behind that point."""


def fail(name: str) -> None:
    """Raise InjectedFault here when PUSHGATE_FAULT names this point (fault tests only)."""
    if os.environ.get("PUSHGATE_FAULT") == name:
        raise InjectedFault(f"injected fault at {name}")
