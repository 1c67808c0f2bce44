"""The dispatcher: a background thread that delivers the outbox, retries with backoff and
buries what cannot be delivered.

Started by the git server (one per worker process, in `gitserver.app`) and by `pushgate
reconcile`, so notifications go out whether or not a cluster is attached; several dispatchers
over one data directory share the work safely (the outbox's claims are renames). A failed
attempt is retried after `backoff()` (exponential, capped, jittered; at least the receiver's
Retry-After) until the destination's `retry.maxAttempts` or `retry.maxAge` is reached; then the
notification is a dead letter, counted in `pushgate_notification_dead_letters_total`. One
attempt per pass goes to a destination that just failed, so a receiver that is down (or slow to
time out) never holds up the others.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from pushgate import observe
from pushgate.notify import events, outbox, providers, settings
from pushgate.notify.errors import Permanent, SettingsError, Temporary

log = logging.getLogger("pushgate.notify")
Sender = Callable[[settings.Destination, events.Event, int], int]
_RECOVER_EVERY = 10.0


def backoff(attempt: int, retry: settings.Retry, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): initialDelay doubled per
    attempt up to maxDelay, half of it fixed and half random ("equal jitter"), so the retries of
    a burst spread out but never come sooner than half the nominal delay."""
    nominal = min(retry.max_delay, retry.initial_delay * 2.0 ** min(attempt - 1, 60))
    return nominal / 2 + rand() * nominal / 2


class Dispatcher:
    def __init__(self, data_dir: str, *, poll: float = 1.0, send: Sender = providers.send,
                 clock: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self.poll = poll
        self.send = send
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recovered = 0.0
        self._config_error = ""

    def start(self) -> Dispatcher:
        self._thread = threading.Thread(target=self._run, name="pushgate-notify", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        outbox.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        # The first pass after one poll interval: an app built and closed at once (gunicorn's
        # master checks that the app builds, before the configuration is persisted) sends nothing.
        outbox.wakeup.wait(self.poll)
        while not self._stop.is_set():
            outbox.wakeup.clear()
            try:
                self.run_once()
            except Exception:  # the thread must survive anything: the next pass tries again
                log.exception("notification dispatch pass failed")
            outbox.wakeup.wait(self.poll)

    def run_once(self, now: float | None = None) -> int:
        """One pass over what is due; how many notifications it handled."""
        now = self.clock() if now is None else now
        if now - self._recovered > _RECOVER_EVERY:
            self._recovered = now
            outbox.recover(self.data_dir, now)
            outbox.clean_tmp(self.data_dir)
        try:
            destinations = {d.name: d for d in settings.load(self.data_dir)}
        except SettingsError as e:  # leave everything pending until the configuration is fixed
            if str(e) != self._config_error:
                self._config_error = str(e)
                log.error("notifications not sent: %s", e)
            return 0
        self._config_error = ""
        down: set[str] = set()
        handled = 0
        for name in outbox.due(self.data_dir, now):
            if self._stop.is_set():
                break
            if outbox.destination_of(name) in down:
                continue
            claim = outbox.claim(self.data_dir, name)
            if claim is None:
                continue  # another dispatcher has it
            handled += 1
            self._handle(claim, destinations, down, now)
        return handled

    def _handle(self, claim: outbox.Claim, destinations: dict[str, settings.Destination],
                down: set[str], now: float) -> None:
        record = claim.record
        try:
            event = events.from_stored((record or {}).get("event"))
        except (ValueError, TypeError):
            self._bury(claim, record, claim.destination, "unreadable notification record")
            return
        assert record is not None
        dest = destinations.get(str(record.get("destination")))
        if dest is None:
            self._bury(claim, record, claim.destination, "the destination is no longer configured")
            return
        attempt = int(record.get("attempts", 0)) + 1
        try:
            self.send(dest, event, attempt)
        except Permanent as e:
            record.update(attempts=attempt, lastAttempt=now, lastError=str(e))
            self._bury(claim, record, dest.name, f"refused on attempt {attempt}: {e}", event)
            return
        except Exception as e:
            # Temporary, or a bug in sending: both are worth another try later.
            if not isinstance(e, Temporary):  # the type only: its text might quote the URL
                log.error("notification %s to %s: sending failed: %s", event.type, dest.name,
                          type(e).__name__)
            why = str(e) if isinstance(e, Temporary) else f"internal error ({type(e).__name__})"
            self._retry(claim, record, dest, event, attempt, why, getattr(e, "delay", None), now)
            down.add(dest.name)
            return
        outbox.done(claim)
        observe.metric("notifications").labels(dest.name, "delivered").inc()
        log.info("notification %s %s delivered to %s (attempt %d)", event.type, event.id[:12],
                 dest.name, attempt)

    def _retry(self, claim: outbox.Claim, record: dict[str, Any], dest: settings.Destination,
               event: events.Event, attempt: int, why: str, after: float | None, now: float) -> None:
        record.update(attempts=attempt, lastAttempt=now, lastError=why)
        delay = min(dest.retry.max_delay, max(backoff(attempt, dest.retry), after or 0.0))
        age = now - float(record.get("created", now))
        if attempt >= dest.retry.max_attempts or age + delay > dest.retry.max_age:
            self._bury(claim, record, dest.name,
                       f"gave up after {attempt} attempt{'s' if attempt != 1 else ''} "
                       f"in {age:.0f}s: {why}", event)
            return
        outbox.retry(self.data_dir, claim, record, now + delay)
        observe.metric("notifications").labels(dest.name, "retried").inc()
        log.warning("notification %s %s to %s: attempt %d failed (%s); next in %.1fs",
                    event.type, event.id[:12], dest.name, attempt, why, delay)

    def _bury(self, claim: outbox.Claim, record: dict[str, Any] | None, destination: str, why: str,
              event: events.Event | None = None) -> None:
        outbox.bury(self.data_dir, claim, record, why, self.clock())
        observe.metric("notifications").labels(destination or "unknown", "dead-letter").inc()
        observe.metric("notification_dead_letters").labels(destination or "unknown").inc()
        log.error("notification %s to %s is a dead letter: %s",
                  f"{event.type} {event.id[:12]}" if event else "(unreadable)", destination or "?", why)
