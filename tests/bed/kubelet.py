"""A stand-in for the kubelet (and the scheduler) on the test control plane.

The bed has no nodes, so Pods created by the controller manager would stay Pending forever. This
thread registers one Ready node, binds unscheduled Pods to it and marks them Running and Ready,
so workload health (Deployment available, rollout complete) is computed by the real controllers.
A Pod whose container image ends in `:crashloop` is bound but left not ready, in
CrashLoopBackOff, so failure paths (progress deadline exceeded) are real too. A Pod whose image
contains `never-ready`, or that carries the annotation `bed.pushgate.dev/never-ready: "true"` (from
its template), is bound but never starts: Pending, its containers in ImagePullBackOff, as with an
image that cannot be pulled; written once, so the Pod stays so until it is deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

NODE = "bed-node"
CRASHLOOP_SUFFIX = ":crashloop"
NEVER_READY_MARKER = "never-ready"
NEVER_READY_ANNOTATION = "bed.pushgate.dev/never-ready"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubelet:
    def __init__(self, api: Any, interval: float = 0.3) -> None:
        self.core = client.CoreV1Api(api)
        self.api = api
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        self.errors: list[str] = []

    def start(self) -> FakeKubelet:
        self._register_node()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _raw(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> Any:
        resp = self.api.call_api(*self._params(method, path, body, content_type))
        resp.read()
        if resp.status >= 400:
            raise ApiException(status=resp.status, reason=str(resp.data[:300]))
        return json.loads(resp.data) if resp.data else None

    def _params(self, method: str, path: str, body: Any, content_type: str) -> Any:
        return self.api.param_serialize(
            method=method, resource_path=path, header_params={"Content-Type": content_type,
                                                               "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"])

    def _register_node(self) -> None:
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}}
        with contextlib.suppress(ApiException):
            self._raw("POST", "/api/v1/nodes", node)
        status = {"status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "test-bed kubelet stand-in", "lastHeartbeatTime": _now(),
                            "lastTransitionTime": _now()}],
        }}
        self._raw("PATCH", f"/api/v1/nodes/{NODE}/status", status,
                  "application/merge-patch+json")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._tick()
            except Exception as e:
                self.errors.append(repr(e))

    def _tick(self) -> None:
        pods = self._raw("GET", "/api/v1/pods")
        for pod in pods.get("items", []):
            meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
            ns, name = meta["namespace"], meta["name"]
            if meta.get("deletionTimestamp"):
                # No real kubelet will confirm termination: delete now so controllers move on.
                with contextlib.suppress(ApiException):
                    self._raw("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}",
                              {"gracePeriodSeconds": 0})
                continue
            if not spec.get("nodeName"):
                binding = {"apiVersion": "v1", "kind": "Binding",
                           "metadata": {"name": name, "namespace": ns},
                           "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}}
                with contextlib.suppress(ApiException):
                    self._raw("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", binding)
                continue
            if status.get("phase") in ("Running", "Succeeded", "Failed"):
                continue
            if never_ready(pod):
                if not status.get("containerStatuses"):
                    self._hold_pod(pod)
                continue
            self._start_pod(pod)

    def _hold_pod(self, pod: dict[str, Any]) -> None:
        """What a kubelet reports for an image it cannot pull: Pending, not ready, back-off."""
        meta, spec = pod["metadata"], pod["spec"]
        now = _now()
        body = {"status": {
            "phase": "Pending", "hostIP": "127.0.0.1", "startTime": now,
            "conditions": [
                {"type": t, "status": s, "lastTransitionTime": now,
                 **({} if s == "True" else {"reason": "ContainersNotReady",
                                            "message": "containers with unready status"})}
                for t, s in (("PodScheduled", "True"), ("Initialized", "True"),
                             ("ContainersReady", "False"), ("Ready", "False"))],
            "containerStatuses": [
                {"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                 "restartCount": 0, "started": False,
                 "state": {"waiting": {"reason": "ImagePullBackOff",
                                       "message": f'Back-off pulling image "{c["image"]}"'}}}
                for c in spec["containers"]],
        }}
        with contextlib.suppress(ApiException):
            self._raw("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                      body, "application/merge-patch+json")

    def _start_pod(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        crash = any(c.get("image", "").endswith(CRASHLOOP_SUFFIX) for c in spec["containers"])
        ready = "False" if crash else "True"
        now = _now()
        statuses = []
        for c in spec["containers"]:
            state: dict[str, Any] = (
                {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
                if crash else {"running": {"startedAt": now}})
            statuses.append({"name": c["name"], "image": c["image"], "imageID": "",
                             "ready": not crash, "restartCount": 3 if crash else 0,
                             "started": not crash, "state": state})
        body = {"status": {
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": "10.244.0.10",
            "podIPs": [{"ip": "10.244.0.10"}], "startTime": now,
            "conditions": [
                {"type": t, "status": s, "lastTransitionTime": now}
                for t, s in (("PodScheduled", "True"), ("Initialized", "True"),
                             ("ContainersReady", ready), ("Ready", ready))],
            "containerStatuses": statuses,
        }}
        with contextlib.suppress(ApiException):
            self._raw("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                      body, "application/merge-patch+json")


def never_ready(pod: dict[str, Any]) -> bool:
    """Whether the stand-in must leave this Pod as if its image could never be pulled."""
    annotations = pod["metadata"].get("annotations") or {}
    return annotations.get(NEVER_READY_ANNOTATION) == "true" or any(
        NEVER_READY_MARKER in c.get("image", "") for c in pod["spec"]["containers"])
