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
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from typing import Any
from urllib.parse import quote, urlencode

import urllib3.exceptions

from pushgate.core import manifests
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
        self._resources: dict[tuple[str, str], Any] = {}  # (apiVersion, kind) -> found resource
        self._auth: tuple[float, dict[str, str]] = (0.0, {})  # (when asked, headers)

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
        """The resource type of `kind` in `api_version`. Found ones are remembered until
        `invalidate_discovery` (the client's own lookup walks all of discovery every time: half
        of a reconciler's CPU at 1,000 objects); a miss asks the client, which reads discovery
        again."""
        found = self._resources.get((api_version, kind))
        if found is not None:
            return found
        try:
            with self._lock:
                # The prefix keeps a core kind's search out of every other group: without it the
                # client looks through each group that has a "v1" and fails the whole lookup on
                # one whose resources answer 404 (a CRD deleted since discovery was read).
                found = self.dyn.resources.get(prefix="apis" if "/" in api_version else "api",
                                               api_version=api_version, kind=kind)
                self._resources[(api_version, kind)] = found
                return found
        except Exception as e:
            raise self._translate(e) from e

    def invalidate_discovery(self) -> None:
        with self._lock:
            self._resources.clear()
            self.dyn.resources.invalidate_cache()

    def namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self.resource(api_version, kind).namespaced)

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False,
              timeout: float | None = None) -> dict[str, Any]:
        """Server-side apply of `obj` (as our field manager); the object as the server has it."""
        try:
            return self.send_apply(obj, dry_run=dry_run, timeout=timeout)
        except Exception as e:
            raise self._translate(e) from e

    def send_apply(self, obj: dict[str, Any], *, dry_run: bool = False,
                   timeout: float | None = None) -> dict[str, Any]:
        """`apply`, raising what the kubernetes client raises (for callers that read a 429's
        Retry-After)."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata") or {}
        query = [("fieldManager", self.field_manager)]
        if self.force_conflicts:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        return self.send("PATCH", self.object_path(res, meta.get("name"), meta.get("namespace")), query,
                         body=obj, content_type="application/apply-patch+yaml", timeout=timeout)

    @staticmethod
    def object_path(res: Any, name: Any, namespace: Any) -> str:
        if isinstance(name, str) and not manifests.path_segment(name):
            raise ValueError(f"{res.kind} name {name!r} is not a URL path segment")
        if isinstance(namespace, str) and res.namespaced and not manifests.path_segment(namespace):
            raise ValueError(f"{res.kind} namespace {namespace!r} is not a URL path segment")
        if not name or not isinstance(name, str):
            raise ValueError(f"name is required for {res.group_version}.{res.kind}")
        if res.namespaced and (not namespace or not isinstance(namespace, str)):
            raise ValueError(f"Namespace is required for {res.group_version}.{res.kind}")
        # Checked and quoted: a name must never become another path (the client formats it in
        # as it is: a ConfigMap named ".." was sent to its namespace's URL, refused only for its kind).
        return str(res.path(name=quote(name, safe=""),
                            namespace=quote(namespace, safe="") if res.namespaced else None))

    def _credentials(self) -> dict[str, str]:
        """The Authorization header, asked of the client at most once a second: its refresh hook
        (which reloads an expiring token 5 minutes early, an in-cluster token file every
        minute) re-reads every proxy variable of the environment each time it runs."""
        stamp, headers = self._auth
        now = time.monotonic()
        if now - stamp >= 1.0 or stamp == 0.0:
            headers = {}
            self.dyn.client.update_params_for_auth(headers, [], ["BearerToken"], "", "GET", None)
            self._auth = (now, headers)
        return headers

    def send(self, method: str, path: str, query: list[tuple[str, str]], *,
             body: dict[str, Any] | None = None, content_type: str = "application/json",
             timeout: float | None = None) -> dict[str, Any]:
        """One request through the client's connection pool and credentials (a refreshed token
        included), without the dynamic client's per-request work: serialising the body through
        the model sanitiser, then the answer into a ResourceInstance and back to a dict cost
        more CPU than the HTTP exchange itself. Raises as the client does: ApiException (with
        the answer's headers) for a non-2xx status, urllib3's errors for the transport."""
        from kubernetes.client.exceptions import ApiException

        api = self.dyn.client
        headers = {**api.default_headers, "Accept": "application/json"}
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = json.dumps(body, separators=(",", ":")).encode()
        headers.update(self._credentials())
        url = str(api.configuration.host) + path + (f"?{urlencode(query)}" if query else "")
        answer = api.rest_client.pool_manager.request(
            method, url, body=payload, headers=headers, redirect=False,
            timeout=urllib3.Timeout(total=timeout) if timeout else None)
        if not 200 <= answer.status <= 299:
            e = ApiException(status=answer.status, reason=answer.reason,
                             body=answer.data.decode("utf-8", "replace"))
            e.headers = answer.headers
            raise e
        doc = json.loads(answer.data)
        if not isinstance(doc, dict):
            raise ValueError(f"{method} {path}: the API server answered a JSON {type(doc).__name__}")
        return doc

    def get(self, api_version: str, kind: str, name: str, namespace: str = "", *,
            timeout: float | None = None) -> dict[str, Any] | None:
        res = self.resource(api_version, kind)
        if res.namespaced and not namespace:
            return None  # cannot exist
        try:
            return self.send("GET", self.object_path(res, name, namespace), [], timeout=timeout)
        except Exception as e:
            err = self._translate(e)
            if isinstance(err, errors.NotFound):
                return None
            raise err from e

    def list(self, api_version: str, kind: str, namespace: str, *,
             at_most: int) -> dict[str, dict[str, Any]] | None:
        """The live objects of `kind` in `namespace` (every one, for a cluster-scoped kind) by
        name, read in pages of 500; None once there are more than `at_most`."""
        res = self.resource(api_version, kind)
        if res.namespaced and not (namespace and manifests.path_segment(namespace)):
            raise errors.ClientError(f"{kind}: no namespace to list", reason="ClientError")
        path = str(res.path(namespace=quote(namespace, safe="") if res.namespaced else None))
        found: dict[str, dict[str, Any]] = {}
        token = ""
        try:
            while True:
                page = self.send("GET", path, [("limit", "500")] + ([("continue", token)] if token else []))
                for item in page.get("items") or []:
                    found[str((item.get("metadata") or {}).get("name", ""))] = item
                if len(found) > at_most:
                    return None
                token = str((page.get("metadata") or {}).get("continue") or "")
                if not token:
                    return found
        except Exception as e:
            raise self._translate(e) from e

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
