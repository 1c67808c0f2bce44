"""The cluster adapter: the kubernetes DynamicClient behind a small, typed surface.

Called by `apply`, `prune`, `health` readers and the loop. Everything goes through discovery,
so custom resources work once their CRD is established. Every ApiException (and every connection
failure) leaves this module as a `reconciler.errors.ClusterError`, chained with `from e`.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

from reconciler import errors

FIELD_MANAGER = "pushgate"


class Cluster:
    def __init__(self, api_client: Any, *, field_manager: str = FIELD_MANAGER,
                 force_conflicts: bool = True) -> None:
        from kubernetes.dynamic import DynamicClient

        cache = os.path.join(tempfile.gettempdir(), f"pushgate-discovery-{os.getpid()}.json")
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
            return errors.from_api_exception(e)
        return errors.Unavailable(f"API server unreachable: {type(e).__name__}", reason="Unreachable")

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

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        res = self.resource(api_version, kind)
        try:
            out = res.get(name=name, namespace=namespace or None if res.namespaced else None)
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
