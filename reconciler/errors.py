"""Errors of the reconciler, translated from the kubernetes client at the adapter (`cluster`).

    ClusterError                 carries the API Status reason and message (never a raw body)
    ├── Permanent                wait for a new commit: retrying cannot help
    │   ├── Invalid              422 / 400: the object is refused (immutable field, schema, ...)
    │   ├── Forbidden            403: RBAC or admission denial, quota
    │   ├── NotFound             404: no such resource type (kind unknown to the server)
    │   └── ClientError          no request was made, or none could be: the client refused the
    │                            object (a namespaced object without a namespace: ValueError) or
    │                            a bug (KeyError, TypeError, ...); the message is
    │                            "TypeName: message", and reason "ClientError"
    └── Temporary                back off and retry
        ├── Conflict             409: someone else owns the field / the object changed
        └── Unavailable          5xx, 429 and other statuses; and transport failures only:
                                 connection refused or reset, timeouts, DNS, TLS, a broken
                                 HTTP exchange (reason "Unreachable")

Raised by `cluster` (every call) and `apply` (an inventory in an unknown format: a bare
`Permanent`). Read by `apply` (per-object results keep `permanent`), `leader` and the loop, which
backs off on Temporary and waits for a new commit on Permanent.
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


class ClientError(Permanent):
    pass


class Unavailable(Temporary):
    pass


def client_error(e: BaseException) -> ClientError:
    """A non-API, non-transport exception as what it is: "TypeName: message"."""
    return ClientError(describe(e), reason="ClientError")


def describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}"[:300] if text else type(e).__name__


def from_api_exception(e: Any, *, transport: bool = False) -> ClusterError:
    """An ApiException as a ClusterError; the body is parsed for the Status message only, so
    Secret data in a request body never reaches a log or a report.

    Status 0 means no HTTP response: the client raises it for a TLS failure (`transport`, which
    the adapter works out from the exception's chain) and for a request it cannot even build,
    which is a ClientError, not an outage."""
    status = int(getattr(e, "status", 0) or 0)
    if status == 0:
        text = " ".join(str(getattr(e, "reason", "") or "").split()) or type(e).__name__
        if transport:
            return Unavailable(f"API server unreachable: {text}"[:300], reason="Unreachable")
        return ClientError(f"{type(e).__name__}: {text}"[:300], reason="ClientError")
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
