"""Which kinds are cluster-scoped, and the default namespace for namespaced objects that name none.

Called by the build (`pushgate.build.build`) for every object of a tree, so the gate checks,
and the reconciler applies, the same namespaced object (`kubectl apply` and Argo CD's destination
namespace do the same at apply time; doing it in the build keeps the gate's view the truth).
Pure: no I/O. The table is the built-in API of the pinned Kubernetes version; a cluster test
compares it with the real API server's discovery, so it cannot go stale silently.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

# (group, kind) of every built-in cluster-scoped resource of Kubernetes 1.37 (alpha ones too).
BUILTIN_CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset({
    ("", "Namespace"), ("", "Node"), ("", "PersistentVolume"), ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("storage.k8s.io", "StorageClass"), ("storage.k8s.io", "CSIDriver"), ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"), ("storage.k8s.io", "VolumeAttributesClass"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"), ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("authentication.k8s.io", "TokenReview"), ("authentication.k8s.io", "SelfSubjectReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("resource.k8s.io", "DeviceClass"), ("resource.k8s.io", "ResourceSlice"),
    ("resource.k8s.io", "DeviceTaintRule"),
    ("internal.apiserver.k8s.io", "StorageVersion"),
    ("storagemigration.k8s.io", "StorageVersionMigration"),
})


def group_kind(obj: Mapping[str, Any]) -> tuple[str, str]:
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    return group, kind if isinstance(kind, str) else ""


def crd_scopes(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], bool]:
    """(group, kind) -> namespaced, for the CustomResourceDefinitions among `objects`."""
    out: dict[tuple[str, str], bool] = {}
    for obj in objects:
        if group_kind(obj) != ("apiextensions.k8s.io", "CustomResourceDefinition"):
            continue
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            continue
        names = spec.get("names")
        group, kind = spec.get("group"), names.get("kind") if isinstance(names, dict) else None
        if isinstance(group, str) and isinstance(kind, str):
            out[(group, kind)] = spec.get("scope") != "Cluster"
    return out


def is_namespaced(obj: Mapping[str, Any], crds: Mapping[tuple[str, str], bool]) -> bool:
    """Built-in kinds from the table, custom kinds from a CRD of the same tree. A custom kind
    whose CRD is not in the tree counts as namespaced (most are); the API server ignores the
    namespace of a cluster-scoped object, and the reconciler drops it by discovery."""
    gk = group_kind(obj)
    if gk in BUILTIN_CLUSTER_SCOPED:
        return False
    return crds.get(gk, True)


def with_default_namespace(obj: dict[str, Any], namespace: str,
                           crds: Mapping[tuple[str, str], bool]) -> dict[str, Any] | None:
    """A copy of `obj` in `namespace` when it is namespaced and names none; else None (unchanged)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or meta.get("namespace") or not is_namespaced(obj, crds):
        return None
    out = copy.copy(obj)
    out["metadata"] = {**meta, "namespace": namespace}
    return out
