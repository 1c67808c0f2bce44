"""kstatus's rules, case by case (pure): the generic rules every kind goes through, custom
resources' summary conditions, and the built-in kinds' rules where they differ from what
pushgate did before (generation first, Pods, ReplicaSets, CRDs, Jobs, partitions)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from reconciler import health

NOW = dt.datetime(2026, 12, 1, 12, 0, 30, tzinfo=dt.UTC).timestamp()


def _cr(gen: int | None = 1, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "example.com/v1", "kind": "Widget",
                           "metadata": {"name": "w", "namespace": "ns", **meta}, "spec": {"size": 1}}
    if gen is not None:
        obj["metadata"]["generation"] = gen
    if status is not None:
        obj["status"] = status
    return obj


def _c(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def _seen(*conds: dict[str, str], seen: int = 1) -> dict[str, Any]:
    return {"observedGeneration": seen, "conditions": list(conds)}


CUSTOM = [
    # Kinds without status are Current at once: nothing says otherwise (kstatus's fallback).
    ("no status", _cr(), "Current", "current"),
    ("no generation, no status", _cr(gen=None), "Current", "current"),
    ("empty status", _cr(status={}), "Current", "current"),
    ("conditions, none kstatus reads", _cr(status=_seen(_c("Synced", "False"))), "Current", "current"),
    ("deletion", _cr(status=_seen(_c("Ready", "True")), deletionTimestamp="2026-12-01T12:00:00Z"),
     "Terminating", "deletion"),
    ("generation not observed", _cr(gen=3, status=_seen(_c("Ready", "True"), seen=2)), "InProgress",
     "generation 3 not yet observed (observed: 2)"),
    # kstatus compares only when the controller writes observedGeneration at all.
    ("no observedGeneration", _cr(gen=3, status={"conditions": [_c("Ready", "True")]}), "Current", "Ready"),
    ("observedGeneration not an integer", _cr(gen=3, status={"observedGeneration": "3"}), "Current", ""),
    ("Ready=True", _cr(status=_seen(_c("Ready", "True"))), "Current", "Ready=True"),
    ("Ready=False", _cr(status=_seen(_c("Ready", "False", "Waiting", "backend not reachable"))),
     "InProgress", "Ready=False: Waiting: backend not reachable"),
    ("Ready=Unknown", _cr(status=_seen(_c("Ready", "Unknown", "Probing"))), "InProgress", "Ready=Unknown"),
    ("Ready with an odd status", _cr(status=_seen(_c("Ready", "Maybe"))), "Current", "current"),
    ("Stalled=True",
     _cr(status=_seen(_c("Ready", "False"), _c("Stalled", "True", "BadSpec", "no such size"))),
     "Failed", "Stalled: BadSpec: no such size"),
    ("Stalled=False", _cr(status=_seen(_c("Stalled", "False"), _c("Ready", "True"))), "Current", "Ready"),
    ("Reconciling=True", _cr(status=_seen(_c("Reconciling", "True", "Progressing"), _c("Ready", "True"))),
     "InProgress", "Reconciling: Progressing"),
    ("Reconciling=False, Ready=False", _cr(status=_seen(_c("Reconciling", "False"), _c("Ready", "False"))),
     "InProgress", "Ready=False"),
    # Both abnormal conditions: the first in the object's own order decides, as in kstatus.
    ("Reconciling before Stalled", _cr(status=_seen(_c("Reconciling", "True"), _c("Stalled", "True"))),
     "InProgress", "Reconciling"),
    ("Stalled before Reconciling", _cr(status=_seen(_c("Stalled", "True"), _c("Reconciling", "True"))),
     "Failed", "Stalled"),
    # A stale Stalled on a generation the controller has not seen yet says nothing about it.
    ("Stalled, generation not observed", _cr(gen=2, status=_seen(_c("Stalled", "True"), seen=1)),
     "InProgress", "not yet observed"),
    # pushgate's addition: Available is the summary when there is no Ready.
    ("Available=False", _cr(status=_seen(_c("Available", "False", "MinimumReplicasUnavailable"))),
     "InProgress", "Available=False: MinimumReplicasUnavailable"),
    ("Available=True", _cr(status=_seen(_c("Available", "True"))), "Current", "Available=True"),
    ("Ready decides over Available", _cr(status=_seen(_c("Available", "False"), _c("Ready", "True"))),
     "Current", "Ready=True"),
    ("malformed conditions", _cr(status={"conditions": ["Ready", None, {"type": "Ready"}]}), "Current", ""),
    ("conditions not a list", _cr(status={"conditions": {"Ready": "False"}}), "Current", ""),
    # Rules are keyed by group and kind: a custom `Deployment` is not an apps/v1 one.
    ("custom kind named like a built-in",
     {**_cr(status=_seen(_c("Ready", "False"))), "apiVersion": "example.com/v1", "kind": "Deployment"},
     "InProgress", "Ready=False"),
    ("APIService unavailable",
     {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.x"},
      "status": {"conditions": [_c("Available", "False", "ServiceNotFound")]}}, "InProgress",
     "ServiceNotFound"),
    ("Namespace active", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"},
                          "status": {"phase": "Active"}}, "Current", ""),
    ("Namespace terminating", {"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": "a", "deletionTimestamp": "2026-12-01T12:00:00Z"},
                               "status": {"phase": "Terminating"}}, "Terminating", ""),
]


@pytest.mark.parametrize(("obj", "want", "words"), [c[1:] for c in CUSTOM], ids=[c[0] for c in CUSTOM])
def test_generic_rules_and_custom_resources(obj: dict[str, Any], want: str, words: str) -> None:
    h = health.assess(obj, now=NOW)
    assert (h.status, words in h.message) == (want, True), h


def _dep(spec: dict[str, Any] | None = None, /, gen: int = 2, **status: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generation": gen},
            "spec": {"replicas": 2, "progressDeadlineSeconds": 600, **(spec or {})}, "status": status}


_DONE: dict[str, Any] = {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
         "availableReplicas": 2}
_AVAILABLE = _c("Available", "True", "MinimumReplicasAvailable")
_COMPLETE = _c("Progressing", "True", "NewReplicaSetAvailable")
_DEADLINE = _c("Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "web-1" has timed out')


def _pod(phase: str | None, *conds: dict[str, str], age: float = 60, **status: Any) -> dict[str, Any]:
    born = dt.datetime.fromtimestamp(NOW - age, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    st: dict[str, Any] = {"conditions": list(conds), **status}
    if phase:
        st["phase"] = phase
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": born},
            "status": st}


def _waiting(reason: str) -> list[dict[str, Any]]:
    return [{"name": "app", "ready": False, "state": {"waiting": {"reason": reason}}}]


def _sts(spec: dict[str, Any] | None = None, /, **status: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1},
            "spec": {"replicas": 3, **(spec or {})}, "status": status}


_STS: dict[str, Any] = {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
        "updatedReplicas": 3, "currentRevision": "r1", "updateRevision": "r1"}
_CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com", "generation": 1}}
_JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generation": 1}, "spec": {"completions": 3}}

BUILT_IN = [
    ("deployment rolled out", _dep(**_DONE, conditions=[_AVAILABLE, _COMPLETE]), "Current", "2/2"),
    ("deployment past its deadline", _dep(**_DONE, conditions=[_AVAILABLE, _DEADLINE]), "Failed",
     'progress deadline exceeded: ReplicaSet "web-1" has timed out'),
    # kstatus: generation first. The deadline condition belongs to the generation before; a new
    # commit is not Failed before the controller has even seen it.
    ("deadline of an older generation", _dep(gen=3, **_DONE, conditions=[_DEADLINE]), "InProgress",
     "generation 3 not yet observed"),
    ("deployment never observed", _dep(), "InProgress", "not yet observed by its controller"),
    ("deployment replicas not created", _dep(observedGeneration=2, replicas=1), "InProgress",
     "1/2 replicas created"),
    ("deployment replicas not ready", _dep(**{**_DONE, "readyReplicas": 1}), "InProgress",
     "1/2 replicas ready"),
    ("deployment rollout not complete", _dep(**_DONE, conditions=[_AVAILABLE]), "InProgress",
     "new ReplicaSet is not available"),
    ("deployment without a deadline", _dep({"progressDeadlineSeconds": 2**31 - 1}, **_DONE,
                                           conditions=[_AVAILABLE]), "Current", "2/2"),
    ("deployment not Available", _dep(**_DONE, conditions=[_COMPLETE]), "InProgress", "not Available"),
    ("deployment of 0 replicas",
     _dep({"replicas": 0}, observedGeneration=2, conditions=[_AVAILABLE, _COMPLETE]),
     "Current", "0/0"),
    ("replicaset failing", {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"generation": 1},
                            "spec": {"replicas": 1}, "status": {"observedGeneration": 1, "conditions": [
                                _c("ReplicaFailure", "True", "FailedCreate", "quota exceeded")]}},
     "InProgress", "replica failure: FailedCreate"),
    ("replicaset available", {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"generation": 1},
                              "spec": {"replicas": 1}, "status": {
                                  "observedGeneration": 1, "replicas": 1, "fullyLabeledReplicas": 1,
                                  "readyReplicas": 1, "availableReplicas": 1}}, "Current", "1/1"),
    ("statefulset done", _sts(**_STS), "Current", "3/3 replicas ready"),
    ("statefulset never observed", _sts(), "InProgress", "not yet observed"),
    ("statefulset OnDelete", _sts({"updateStrategy": {"type": "OnDelete"}}, observedGeneration=1),
     "Current", "OnDelete"),
    ("statefulset partition rolling", _sts({"updateStrategy": {"rollingUpdate": {"partition": 1}}},
                                           **{**_STS, "updatedReplicas": 1, "updateRevision": "r2"}),
     "InProgress", "1/2 replicas updated (partition 1)"),
    ("statefulset partition done", _sts({"updateStrategy": {"rollingUpdate": {"partition": 1}}},
                                        **{**_STS, "updatedReplicas": 2, "updateRevision": "r2"}),
     "Current", "partitioned rollout complete"),
    ("statefulset revision behind", _sts(**{**_STS, "updateRevision": "r2"}), "InProgress", "rolling update"),
    ("daemonset not counted yet",
     {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1},
      "status": {"observedGeneration": 1}}, "InProgress", "desiredNumberScheduled"),
    ("pod ready", _pod("Running", _c("Ready", "True")), "Current", "ready"),
    ("pod running, not ready", _pod("Running", _c("Ready", "False")), "InProgress", "not ready"),
    ("pod crash-looping",
     _pod("Running", _c("Ready", "False"), containerStatuses=_waiting("CrashLoopBackOff")),
     "Failed", "app: CrashLoopBackOff"),
    ("pod pulling in vain", _pod("Pending", containerStatuses=_waiting("ImagePullBackOff")), "InProgress",
     "app: ImagePullBackOff"),
    ("pod unschedulable, just created", _pod("Pending", _c("PodScheduled", "False", "Unschedulable"), age=5),
     "InProgress", "not scheduled yet"),
    ("pod unschedulable", _pod("Pending", _c("PodScheduled", "False", "Unschedulable", "0/1 nodes"), age=20),
     "Failed", "unschedulable: Unschedulable: 0/1 nodes"),
    ("pod succeeded", _pod("Succeeded"), "Current", "successfully"),
    ("pod failed (ran to completion)", _pod("Failed"), "Current", "not successfully"),
    ("pod not observed", _pod(None), "InProgress", "phase not reported"),
    ("job running", {**_JOB, "status": {"startTime": "2026-12-01T12:00:00Z", "active": 3}}, "Current",
     "3 active"),
    ("job suspended", {**_JOB, "status": {"conditions": [_c("Suspended", "True")]}}, "Current", "suspended"),
    ("job failed",
     {**_JOB, "status": {"failed": 4, "conditions": [_c("Failed", "True", "BackoffLimitExceeded")]}},
     "Failed", "4 pod(s) failed: BackoffLimitExceeded"),
    ("crd established",
     {**_CRD, "status": {"conditions": [_c("NamesAccepted", "True"), _c("Established", "True")]}},
     "Current", "established"),
    ("crd installing", {**_CRD, "status": {"conditions": [_c("Established", "False", "Installing")]}},
     "InProgress", "not established yet"),
    ("crd names refused", {**_CRD, "status": {"conditions": [
        _c("NamesAccepted", "False", "MultipleNamesNotAllowed", "kind Widget taken")]}},
     "Failed", "kind Widget taken"),
    ("crd not established", {**_CRD, "status": {"conditions": [_c("Established", "False", "NotAccepted")]}},
     "Failed", "NotAccepted"),
    ("pvc pending", {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}},
     "InProgress", "not bound"),
    ("secret", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, "Current", ""),
    ("pdb", {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"generation": 1},
             "status": {"observedGeneration": 1}}, "Current", ""),
    ("load balancer without an address", {"apiVersion": "v1", "kind": "Service", "spec": {
        "type": "LoadBalancer", "clusterIP": "10.0.0.9"}}, "Current", ""),
    ("load balancer without a cluster IP", {"apiVersion": "v1", "kind": "Service", "spec": {
        "type": "LoadBalancer"}}, "InProgress", "no cluster IP"),
]


@pytest.mark.parametrize(("obj", "want", "words"), [c[1:] for c in BUILT_IN], ids=[c[0] for c in BUILT_IN])
def test_built_in_kinds(obj: dict[str, Any], want: str, words: str) -> None:
    h = health.assess(obj, now=NOW)
    assert (h.status, words in h.message) == (want, True), h


def test_a_parsed_creation_timestamp_is_read_too() -> None:
    """The kubernetes client may hand back `creationTimestamp` as a datetime."""
    young = _pod("Pending", _c("PodScheduled", "False", "Unschedulable"))
    young["metadata"]["creationTimestamp"] = dt.datetime.fromtimestamp(NOW - 3, dt.UTC)
    assert health.assess(young, now=NOW).status == "InProgress"
    young["metadata"]["creationTimestamp"] = dt.datetime.fromtimestamp(NOW - 30, dt.UTC)
    assert health.assess(young, now=NOW).status == "Failed"


def test_terminating_holds_the_commit_progressing() -> None:
    leaving = health.assess(_cr(deletionTimestamp="2026-12-01T12:00:00Z"))
    assert health.verdict([leaving, health.Health("Current")], 0) == \
        ("Progressing", "1 object(s) terminating")
