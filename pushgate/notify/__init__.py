"""Notifications: events pushgate sends to webhooks (generic JSON, HMAC-signed, or Slack).

`emit(data_dir, "push-refused", ...)` is all a caller does: it writes the event to the outbox in
the data directory, once per configured destination that wants it, and returns; it never waits
on the network and never raises for want of a destination, a disk or a configuration (a push or
an apply must not fail because a notification could not be written). Dispatcher threads
(`dispatcher`) in the git server and the reconciler deliver from the outbox.

    events.py      the event types and their JSON (pure)
    settings.py    the `notifications` configuration, filters, the secret files
    outbox.py      the durable spool: enqueue, claim by rename, retry, dead letters
    dispatcher.py  the delivery thread: backoff, retries, dead letters counted in metrics
    providers.py   generic (X-Signature: sha256=...) and slack payloads, the HTTP POST
    errors.py      the error tree; the retry decision lives in the type

Called by gitserver.app (push refused), reconciler.loop (commit applied, health degraded or
failed, drift corrected) and whatever changes policies or bumps images (`policy-change`,
`image-bump-committed`, `image-bump-refused`). Shared layer: imports neither side.
"""

from __future__ import annotations

import logging
from typing import Any

from pushgate.notify import events, outbox, settings

log = logging.getLogger("pushgate.notify")


def emit(data_dir: str, event_type: str, message: str, *, branch: str = "", commit: str = "",
         details: dict[str, Any] | None = None) -> int:
    """Spool one event for every destination whose filters take it; how many took it.

    Raises only `events.UnknownEvent` (a caller's bug); any other failure is logged (naming no
    URL or key) and the event dropped."""
    event = events.new(event_type, message, branch=branch, commit=commit, details=details)
    try:
        wanted = [d for d in settings.load(data_dir) if d.matches(event)]
        for d in wanted:
            outbox.enqueue(data_dir, d.name, event)
    except Exception as e:
        log.warning("notification %s not spooled: %s: %s", event_type, type(e).__name__, e)
        return 0
    return len(wanted)
