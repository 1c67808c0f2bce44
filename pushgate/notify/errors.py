"""Errors of pushgate.notify, and where the retry decision lives.

    NotifyError
    ├── SettingsError           the `notifications` configuration is wrong (exit 2, names the key)
    └── DeliveryError           one delivery attempt failed; never carries a URL or a key
        ├── Temporary(delay)    connection refused, timeout, 408/425/429/5xx, secret file missing:
        │                       retry with backoff (`delay`: the receiver's Retry-After, if any)
        └── Permanent           any other 4xx, a redirect, a file that holds no http(s) URL:
                                straight to the dead letters

Raised by `settings` and `providers`; the dispatcher acts on the type.
"""

from __future__ import annotations


class NotifyError(Exception):
    pass


class SettingsError(NotifyError):
    """An operator error in the notifications configuration; the message names the key."""


class DeliveryError(NotifyError):
    """A failed delivery: the message names what happened, never the URL or the key."""


class Temporary(DeliveryError):
    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Permanent(DeliveryError):
    pass
