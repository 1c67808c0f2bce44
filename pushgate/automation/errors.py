"""Errors of image automation; the retry decision lives in the type.

    AutomationError
    ├── PolicyError           a workload's annotations are wrong: permanent until it is edited
    └── RegistryError         a registry could not list tags (carries the image repository)
        ├── RegistryDenied    401/403 after authenticating: permanent until the credentials change
        └── RegistryUnavailable  transport failure, 429 or 5xx: temporary, tried again next scan

Called by `tagpolicy`, `workloads`, `registry` and `scanner`; a scan records each one in the
status file against the containers it affects and carries on with the others.
"""

from __future__ import annotations


class AutomationError(Exception):
    """Something image automation reports instead of bumping."""

    temporary = False


class PolicyError(AutomationError):
    """A bad `pushgate.io/image-*` annotation; the message names the value."""


class RegistryError(AutomationError):
    def __init__(self, repository: str, message: str) -> None:
        super().__init__(f"{repository}: {message}")
        self.repository = repository
        self.detail = message


class RegistryDenied(RegistryError):
    """The registry refused the credentials (or their absence)."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or answered 429 / 5xx."""

    temporary = True
