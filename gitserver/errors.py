"""Errors of the git server, each meaning something the caller acts on.

    GitServerError
    ├── BadRepoName        the URL names no repository we serve (404, never a path outside)
    ├── ConfigError        an operator error at start: bad flag, users file, data dir (exit 2)
    └── PushRefused        a push is refused as a whole; `reason` is the one-line `ng` reason
"""

from __future__ import annotations

from pushgate import config


class GitServerError(Exception):
    """Base of the git server's errors."""


class BadRepoName(GitServerError):
    pass


class ConfigError(GitServerError, config.ConfigError):
    pass


class PushRefused(GitServerError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
