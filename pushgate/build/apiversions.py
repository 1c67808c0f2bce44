"""The API versions a render is told the cluster serves (helm's `.Capabilities.APIVersions`).

Called by the build (`pushgate.build.build`) for `helm template --api-versions` and kustomize's
`--helm-api-versions`. Static and deterministic, so the gate and the reconciler render the same
objects: the generally available group/versions (and `group/version/Kind`) of the configured
Kubernetes minor version, read from the schemas bundled with `kubernetes-validate` (the ones the
gate validates against), plus what the CRDs among the tree's plain manifests serve. Alpha and
beta versions are left out: a cluster does not serve them by default.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_GA = re.compile(r"v\d+")
_NOT_RESOURCES = frozenset({"Status", "WatchEvent", "DeleteOptions", "APIGroup", "APIGroupList",
                            "APIResourceList", "APIVersions"})


@functools.lru_cache(maxsize=4)
def builtin(kubernetes_version: str) -> tuple[str, ...]:
    spec = importlib.util.find_spec("kubernetes_validate")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        return ()
    path = (Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
            / f"v{kubernetes_version}.0-local-strict" / "_definitions.json")
    try:
        defs = json.loads(path.read_text(encoding="utf-8"))["$defs"]
    except (OSError, ValueError, KeyError):
        return ()
    found: set[str] = set()
    for schema in defs.values():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")
            if _GA.fullmatch(version) and not kind.endswith("List") and kind not in _NOT_RESOURCES:
                gv = f"{group}/{version}" if group else version
                found.update((gv, f"{gv}/{kind}"))
    return tuple(sorted(found))


def from_crds(objects: Iterable[dict[str, Any]]) -> list[str]:
    """group/version and group/version/Kind of each served version of these CRDs."""
    found: set[str] = set()
    for o in objects:
        if o.get("kind") != "CustomResourceDefinition" or not str(o.get("apiVersion", "")).startswith(
                "apiextensions.k8s.io/"):
            continue
        spec: dict[str, Any] = o["spec"] if isinstance(o.get("spec"), dict) else {}
        group, names = spec.get("group"), spec.get("names")
        kind = names.get("kind") if isinstance(names, dict) else None
        if not isinstance(group, str) or not isinstance(kind, str):
            continue
        for v in spec.get("versions") or []:
            if isinstance(v, dict) and isinstance(v.get("name"), str) and v.get("served") is not False:
                found.update((f"{group}/{v['name']}", f"{group}/{v['name']}/{kind}"))
    return sorted(found)


def for_render(kubernetes_version: str, crds: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({*builtin(kubernetes_version), *from_crds(crds)})
