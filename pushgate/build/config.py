"""The build configuration: which files are manifests, how they are read and completed.

One frozen value used by every caller of the build (gate, reconciler, `validate`, `render`);
its `digest()` is recorded with each gate verdict, so a reconciler built with another
configuration refuses to apply rather than apply something the gate never saw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pushgate.core import manifests

# Bumped whenever the build's semantics change (what it reads, how it completes objects): a
# verdict recorded by an older build then no longer matches, and the commit is gated again.
# 3: Helm charts, kustomize helmCharts and Jsonnet rendered; rendered output read with
# `max_rendered_bytes`.
BUILD_FORMAT = 3


@dataclass(frozen=True)
class HelmChart:
    """How one chart directory is rendered (`build.charts`); a chart not listed gets the defaults.

    Several entries for one directory render it several times (release names must differ).
    """

    path: str = ""  # the chart directory, repo-relative ("." for a chart at the root)
    release_name: str = ""  # "" = the chart directory's name
    namespace: str = ""  # "" = `default_namespace`
    # Relative to the chart directory, applied in order after the chart's own values.yaml.
    values_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildConfig:
    include: tuple[str, ...] = ("*.yaml", "*.yml", "*.json")
    exclude: tuple[str, ...] = ()
    limits: manifests.Limits = field(default_factory=manifests.Limits)
    kubernetes_version: str = "1.37"
    # Namespaced objects that name no namespace are put here (as kubectl and Argo CD do).
    default_namespace: str = "default"
    charts: tuple[HelmChart, ...] = ()
    # Render every *.jsonnet file (Argo CD's directory source does so by default).
    jsonnet: bool = True
    # The most a render (helm, kustomize, Jsonnet) may print; its output is then read with
    # `limits` for everything else.
    max_rendered_bytes: int = 32 * 1024 * 1024

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["include"], d["exclude"] = list(self.include), list(self.exclude)
        d["charts"] = [{**asdict(c), "values_files": list(c.values_files)} for c in self.charts]
        return d

    def rendered_limits(self) -> manifests.Limits:
        """The limits a render's output is read with: the file limits, but its own size bound."""
        return replace(self.limits, max_file_bytes=self.max_rendered_bytes)

    def digest(self) -> str:
        doc = {"format": BUILD_FORMAT, **self.to_dict()}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
