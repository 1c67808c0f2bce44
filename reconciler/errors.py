"""Errors of the reconciler, translated from the kubernetes client at the adapter (`cluster`).

    ClusterError                 carries the API Status reason and message (never a raw body)
    ├── Permanent                wait for a new commit: retrying cannot help
    │   ├── Invalid              422 / 400: the object is refused (immutable field, schema, ...)
    │   ├── Forbidden            403: RBAC or admission denial, quota
    │   └── NotFound             404: no such resource type (kind unknown to the server)
    └── Temporary                back off and retry
        ├── Conflict             409: someone else owns the field / the object changed
        └── Unavailable          5xx, 429, timeouts, connection refused
"""

from __future__ import annotations

import json
from typing import Any


class ClusterError(Exception):
    code: int = 0

    def __init__(self, message: str, *, reason: str = "", code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__
        self.code = code

    @property
    def permanent(self) -> bool:
        return isinstance(self, Permanent)


class Permanent(ClusterError):
    pass


class Temporary(ClusterError):
    delay: float = 2.0


class Invalid(Permanent):
    pass


class Forbidden(Permanent):
    pass


class NotFound(Permanent):
    pass


class Conflict(Temporary):
    pass


class Unavailable(Temporary):
    pass


def from_api_exception(e: Any) -> ClusterError:
    """An ApiException (or a connection error) as a ClusterError; the body is parsed for the
    Status message only, so Secret data in a request body never reaches a log or a report."""
    status = int(getattr(e, "status", 0) or 0)
    message, reason = "", ""
    body = getattr(e, "body", None)
    if isinstance(body, (str, bytes)) and body:
        try:
            doc = json.loads(body)
            message = str(doc.get("message", ""))[:1000]
            reason = str(doc.get("reason", ""))
        except ValueError:
            message = ""
    if not message:
        message = str(getattr(e, "reason", "") or type(e).__name__)[:300]
    cls: type[ClusterError]
    if status in (400, 422):
        cls = Invalid
    elif status == 403:
        cls = Forbidden
    elif status == 404:
        cls = NotFound
    elif status == 409:
        cls = Conflict
    else:
        cls = Unavailable
    return cls(message, reason=reason or cls.__name__, code=status)
