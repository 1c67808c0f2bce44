"""The cluster adapter: the kubernetes DynamicClient behind a small, typed surface.

Called by `apply`, `prune`, `health` readers, `leader` and the loop. Everything goes through
discovery, so custom resources work once their CRD is established. Every exception leaves this
module as a `reconciler.errors.ClusterError`, chained with `from e`: an API response by its
status; a transport failure (`transport_failure`) as Unavailable, to be retried; anything else
(the client refusing an object, a bug) as a permanent ClientError saying what it is, because
retrying it forever while reporting an outage would hide it.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import socket
import ssl
import tempfile
import threading
from typing import Any

import urllib3.exceptions

from reconciler import errors

# Failures of the connection or of the HTTP exchange itself: the server may answer next time.
# Not urllib3.exceptions.HTTPError as a whole: it also holds LocationValueError (a bad URL) and
# other mistakes of ours that no retry can fix.
_TRANSPORT: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, socket.gaierror, socket.herror, ssl.SSLError,
    http.client.IncompleteRead, http.client.BadStatusLine,
    urllib3.exceptions.MaxRetryError, urllib3.exceptions.TimeoutError,
    urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError,
    urllib3.exceptions.SSLError, urllib3.exceptions.ProxyError,
    urllib3.exceptions.IncompleteRead, urllib3.exceptions.InvalidChunkLength,
    urllib3.exceptions.EmptyPoolError, urllib3.exceptions.ClosedPoolError,
)
_NETWORK_ERRNOS = {getattr(errno, name) for name in (
    "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH",
    "ENETDOWN", "EHOSTDOWN", "ENETRESET", "EPIPE", "ENOTCONN", "ESHUTDOWN", "EADDRNOTAVAIL",
) if hasattr(errno, name)}


def transport_failure(e: BaseException) -> bool:
    """Whether `e` is, or was explicitly caused by, a failure to reach the API server.

    Follows `__cause__` (`raise ... from`) and MaxRetryError's `reason`. `__context__` (an
    exception raised while another was handled) only for an ApiException of status 0: the client
    raises that inside its `except urllib3.exceptions.SSLError` without `from`. For anything else
    an unrelated context would turn a bug raised in an `except` block into an "outage"."""
    from kubernetes.client.exceptions import ApiException

    seen: set[int] = set()
    todo: list[BaseException] = [e]
    while todo:
        x = todo.pop()
        if id(x) in seen or len(seen) > 20:
            continue
        seen.add(id(x))
        if isinstance(x, _TRANSPORT):
            return True
        if isinstance(x, OSError) and x.errno in _NETWORK_ERRNOS:
            return True
        if isinstance(x, ApiException) and not int(getattr(x, "status", 0) or 0):
            # The client formats a TLS failure as reason "SSLError\n<detail>".
            if str(getattr(x, "reason", "") or "").startswith("SSLError"):
                return True
            if x.__context__ is not None:
                todo.append(x.__context__)
        reason = getattr(x, "reason", None)
        if isinstance(x, urllib3.exceptions.MaxRetryError) and isinstance(reason, BaseException):
            todo.append(reason)
        if x.__cause__ is not None:
            todo.append(x.__cause__)
    return False

FIELD_MANAGER = "pushgate"


class Cluster:
    def __init__(self, api_client: Any, *, field_manager: str = FIELD_MANAGER,
                 force_conflicts: bool = True) -> None:
        from kubernetes.dynamic import DynamicClient

        # One discovery cache per process and API server: the client trusts a fresh cache file
        # whatever server it came from.
        host = str(getattr(getattr(api_client, "configuration", None), "host", ""))
        tag = hashlib.sha256(host.encode()).hexdigest()[:12]
        cache = os.path.join(tempfile.gettempdir(), f"pushgate-discovery-{os.getpid()}-{tag}.json")
        try:
            self.dyn = DynamicClient(api_client, cache_file=cache)
        except Exception as e:  # discovery needs the API server
            raise self._translate(e) from e
        self.field_manager = field_manager
        self.force_conflicts = force_conflicts
        self._lock = threading.Lock()

    @staticmethod
    def from_kubeconfig(path: str | None, **kw: Any) -> Cluster:
        from kubernetes import client, config

        if path:
            api = config.new_client_from_config(config_file=path)
        else:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            api = client.ApiClient(cfg)
        # Named in audit logs, so an operator can tell our writes from everyone else's.
        api.user_agent = "pushgate-reconciler/0.1"
        return Cluster(api, **kw)

    @staticmethod
    def _translate(e: Exception) -> errors.ClusterError:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

        if isinstance(e, errors.ClusterError):
            return e
        if isinstance(e, ResourceNotFoundError):
            return errors.NotFound(f"the server has no resource type for it: {e}", reason="NoKind",
                                   code=404)
        if isinstance(e, (ApiException, DynamicApiError)):
            err = errors.from_api_exception(e, transport=transport_failure(e))
            if err.code == 500 and err.message.startswith("failed to create typed patch object"):
                # Server-side apply answers 500 for an object its schema cannot type (an unknown
                # field, a string for an integer; kubernetes/kubernetes#139253): the object's
                # fault, to wait out for a new commit, not an outage to retry forever.
                return errors.Invalid(err.message, reason="BadRequest", code=500)
            return err
        if transport_failure(e):
            return errors.Unavailable(f"API server unreachable: {errors.describe(e)}",
                                      reason="Unreachable")
        return errors.client_error(e)

    def resource(self, api_version: str, kind: str) -> Any:
        try:
            with self._lock:
                return self.dyn.resources.get(api_version=api_version, kind=kind)
        except Exception as e:
            raise self._translate(e) from e

    def invalidate_discovery(self) -> None:
        with self._lock:
            self.dyn.resources.invalidate_cache()

    def namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self.resource(api_version, kind).namespaced)

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata", {})
        kwargs: dict[str, Any] = {"field_manager": self.field_manager,
                                  "force_conflicts": self.force_conflicts}
        if dry_run:
            kwargs["dry_run"] = "All"
        try:
            out = self.dyn.server_side_apply(
                res, body=obj, name=meta.get("name"),
                namespace=meta.get("namespace") if res.namespaced else None, **kwargs)
        except Exception as e:
            raise self._translate(e) from e
        return dict(out.to_dict())

    def get(self, api_version: str, kind: str, name: str, namespace: str = "", *,
            timeout: float | None = None) -> dict[str, Any] | None:
        res = self.resource(api_version, kind)
        extra = {"_request_timeout": timeout} if timeout else {}
        try:
            out = res.get(name=name, namespace=namespace or None if res.namespaced else None, **extra)
        except Exception as e:
            err = self._translate(e)
            if isinstance(err, errors.NotFound):
                return None
            raise err from e
        return dict(out.to_dict())

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> None:
        res = self.resource(api_version, kind)
        try:
            res.delete(name=name, namespace=namespace or None if res.namespaced else None,
                       body={"propagationPolicy": "Background"})
        except Exception as e:
            err = self._translate(e)
            if isinstance(err, errors.NotFound):
                return
            raise err from e

    def watch(self, resource: Any, *, label_selector: str, resource_version: str,
              timeout: int) -> Any:
        """Raw watch events (the caller handles 410 Gone: a timed watch is never retried)."""
        return self.dyn.watch(resource, label_selector=label_selector, resource_version=resource_version,
                              timeout=timeout, allow_watch_bookmarks=True)

    def readyz(self) -> bool:
        try:
            self.dyn.request("get", "/version")
        except Exception:
            return False
        return True
