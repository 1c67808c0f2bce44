"""Where pushgate finds its pinned helper binaries: helm for the build (kustomize is handed in
by the caller), and opa for the policy side (`opa fmt --v0-v1` for Gatekeeper templates written
in Rego v0, `opa check` / `opa test` for the policies repository).

Called by `pushgate.build.build.Builder` when its caller names no helm binary. Order:
`PUSHGATE_HELM`, then the pinned helm that `scripts/tools.sh` builds into the tool cache
(`$PUSHGATE_CACHE`, default `~/.cache/pushgate`, `bin/helm-<HELM_VERSION>`), then a `helm`
next to the kustomize binary the caller uses (a container image ships them side by side).
A tree without charts never needs it; one with charts and no helm is refused, with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

_VERSIONS = Path(__file__).resolve().parents[2] / "scripts" / "tools.versions"


def pinned_version(key: str) -> str | None:
    """A version from scripts/tools.versions (None outside a checkout)."""
    try:
        lines = _VERSIONS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(key + "="):
            return line.split("=", 1)[1].strip()
    return None


def default_helm(kustomize_bin: str | None = None) -> str | None:
    return _find("helm", "PUSHGATE_HELM", "HELM_VERSION", kustomize_bin)


def default_opa(kustomize_bin: str | None = None) -> str | None:
    """`PUSHGATE_OPA`, the pinned opa of the tool cache, or an `opa` next to kustomize."""
    return _find("opa", "PUSHGATE_OPA", "OPA_VERSION", kustomize_bin)


def _find(name: str, env_var: str, version_key: str, kustomize_bin: str | None) -> str | None:
    env = os.environ.get(env_var)
    if env:
        return env
    version = pinned_version(version_key)
    cache = os.environ.get("PUSHGATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pushgate")
    candidates = [os.path.join(cache, "bin", f"{name}-{version}")] if version else []
    if kustomize_bin and os.path.isabs(kustomize_bin):
        candidates.append(os.path.join(os.path.dirname(kustomize_bin), name))
    return next((c for c in candidates if os.access(c, os.X_OK)), None)
