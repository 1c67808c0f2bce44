"""The build configuration: which files are manifests, how they are read and completed.

One frozen value used by every caller of the build (gate, reconciler, `validate`, `render`);
its `digest()` is recorded with each gate verdict, so a reconciler built with another
configuration refuses to apply rather than apply something the gate never saw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pushgate.core import manifests

# Bumped whenever the build's semantics change (what it reads, how it completes objects): a
# verdict recorded by an older build then no longer matches, and the commit is gated again.
BUILD_FORMAT = 2


@dataclass(frozen=True)
class BuildConfig:
    include: tuple[str, ...] = ("*.yaml", "*.yml", "*.json")
    exclude: tuple[str, ...] = ()
    limits: manifests.Limits = field(default_factory=manifests.Limits)
    kubernetes_version: str = "1.37"
    # Namespaced objects that name no namespace are put here (as kubectl and Argo CD do).
    default_namespace: str = "default"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["include"], d["exclude"] = list(self.include), list(self.exclude)
        return d

    def digest(self) -> str:
        doc = {"format": BUILD_FORMAT, **self.to_dict()}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
