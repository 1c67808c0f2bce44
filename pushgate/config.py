"""pushgate's configuration: given once, persisted in the data directory, read by every side.

Built by the CLI from a configuration file (`--config pushgate.yaml`) with flags as overrides,
validated here (each error names the key or flag to fix), and persisted by `pushgate serve` as
`<data-dir>/config.json`. The reconciler (`serve --kubeconfig`, `pushgate reconcile`) and
`pushgate validate --data-dir` read the persisted file, so the gate and the apply cannot disagree
about what a tree's objects are. Shared layer: no gitserver or reconciler imports.

    build:                        # what the tree's objects are (see pushgate.build.config)
      include: ["*.yaml", "*.yml", "*.json"]
      exclude: []                 # e.g. ["docs/*"]
      kubernetesVersion: "1.37"
      defaultNamespace: default
      limits: {maxFileBytes: 4194304, maxDocuments: 1000, maxDepth: 64, maxAliasExpansions: 1000}
      maxRenderedBytes: 33554432  # the most one render (helm, kustomize, Jsonnet) may print
      jsonnet: true               # render *.jsonnet files (as Argo CD's directory source does)
      charts:                     # optional, per chart directory (a directory with Chart.yaml)
        - path: apps/web          # rendered with `helm template`; every chart is, listed or not
          releaseName: web        # default: the directory's name
          namespace: shop         # default: defaultNamespace
          valuesFiles: [values-prod.yaml]  # relative to the chart, after its own values.yaml
    gate:
      gatedRefs: [refs/heads/main]
      protectedRefs: [refs/heads/main]
      missingSchema: error        # or warning
      timeout: 30
      policyNamespaces: []        # [] = every package; [main] = conftest's default
      liveCheck: auto             # required | best-effort | off; auto: required with a cluster
      pruneMaxObjects: 10         # the prune guard (see pushgate.core.pruneguard)
      pruneMaxShare: 0.5
      pruneRoles: [admin]         # roles that may prune past the guard with -o allow-prune
      requireSigned: []           # ref globs whose new commits must be signed by the pusher
      allowedSigners: ""          # OpenSSH allowed_signers file (principals: pushgate users)
      openpgpKeys: ""             # armored OpenPGP public keys (bound to users in the users file)
    reconcile:
      branch: main
      drift: correct              # correct | detect | off
      pruneProtected: false
      inventoryNamespace: pushgate-system
      healthTimeout: 300
      forceConflicts: true
    images:                       # image automation (see pushgate.automation); absent = off
      interval: 300               # seconds between registry scans, jitter 0.05 (+-5%)
      credentialsFile: /etc/pushgate/registry/.dockerconfigjson
    notifications:                # webhooks (see pushgate.notify.settings); [] = none
      - {name: hooks, type: generic, urlFile: /etc/pushgate/hooks/address, events: [push-refused]}
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from pushgate import datadir
from pushgate.build.config import BuildConfig, HelmChart
from pushgate.core import manifests, yamlsafe
from pushgate.notify import errors as notify_errors
from pushgate.notify import settings as notify_settings

_MAX_CONFIG_BYTES = 256 * 1024


class ConfigError(Exception):
    """An operator error in the configuration (file, flag or persisted copy): exit 2."""


@dataclass(frozen=True)
class GateSettings:
    gated_refs: tuple[str, ...] = ("refs/heads/main",)
    protected_refs: tuple[str, ...] = ("refs/heads/main",)
    missing_schema: str = "error"
    timeout: float = 30.0
    policy_namespaces: tuple[str, ...] = ()  # () = every package
    live_check: str = "auto"  # auto | required | best-effort | off
    prune_max_objects: int = 10
    prune_max_share: float = 0.5
    prune_roles: tuple[str, ...] = ("admin",)
    require_signed: tuple[str, ...] = ()  # ref globs: every new commit signed (gitserver.signing)
    allowed_signers: str = ""  # OpenSSH allowed_signers file; read by the git server only
    openpgp_keys: str = ""  # armored OpenPGP public keys; read by the git server only


@dataclass(frozen=True)
class ReconcileSettings:
    branch: str = "main"
    drift: str = "correct"
    prune_protected: bool = False
    inventory_namespace: str = "pushgate-system"
    health_timeout: float = 300.0
    force_conflicts: bool = True


@dataclass(frozen=True)
class AutomationSettings:
    """How pushgate's own commits (image bumps, automatic reverts) reach the branch: pushed over
    HTTP to this server as `user`, a user of the users file like any other (its role and scopes
    apply), through the same receive path, gate and live check as a human push."""

    user: str = ""  # "" = no automation
    token_file: str = ""  # the user's token (a mounted Secret); never logged
    url: str = ""  # the server's base URL; "" = the address `serve` listens on (run dir)
    author: str = "pushgate <pushgate@localhost>"  # author and committer of its commits
    auto_revert: tuple[str, ...] = ()  # branches whose failed commits are reverted (opt-in)
    revert_after: float = 120.0  # seconds a commit must stay Failed or Degraded first


@dataclass(frozen=True)
class ImageSettings:
    """Image automation (pushgate.automation): present = `serve` starts `pushgate automate`."""

    branch: str = ""  # the branch whose workloads are bumped; "" = reconcile.branch
    interval: float = 300.0  # seconds between registry scans
    jitter: float = 0.05  # each wait is interval * (1 +- jitter), so replicas do not scan in step
    credentials_file: str = ""  # docker config JSON (a mounted kubernetes.io/dockerconfigjson Secret)
    credentials_secret: str = ""  # "namespace/name" of such a Secret, read with the cluster credentials
    insecure_registries: tuple[str, ...] = ()  # hosts asked over plain http (loopback always is)
    retry_refused: float = 3600.0  # seconds before the same refused bump is pushed again
    timeout: float = 10.0  # seconds per registry request


@dataclass(frozen=True)
class Config:
    build: BuildConfig = field(default_factory=BuildConfig)
    gate: GateSettings = field(default_factory=GateSettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    automation: AutomationSettings = field(default_factory=AutomationSettings)
    notifications: tuple[notify_settings.Destination, ...] = ()
    images: ImageSettings | None = None  # None = no image automation

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"build": _camel(self.build.to_dict()),
                               "gate": _camel(dataclasses.asdict(self.gate)),
                               "reconcile": _camel(dataclasses.asdict(self.reconcile)),
                               "automation": _camel(dataclasses.asdict(self.automation))}
        if self.notifications:  # file paths only: the secrets stay in their files
            out["notifications"] = [notify_settings.to_dict(d) for d in self.notifications]
        if self.images is not None:
            out["images"] = _camel(dataclasses.asdict(self.images))
        return out

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with some fields of one section changed (None values are ignored: unset flags)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        current = getattr(self, section)
        updated = dataclasses.replace(current, **changes)
        out = dataclasses.replace(self, **{section: updated})
        validate(out)
        return out


_SECTIONS: dict[str, type[Any]] = {"build": BuildConfig, "gate": GateSettings,
                                   "reconcile": ReconcileSettings, "automation": AutomationSettings,
                                   "images": ImageSettings}


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        head, *rest = k.split("_")
        key = head + "".join(p.title() for p in rest)
        if isinstance(v, (list, tuple)):
            out[key] = [_camel(x) if isinstance(x, dict) else x for x in v]
        else:
            out[key] = _camel(v) if isinstance(v, dict) else v
    return out


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def from_dict(doc: Any, where: str) -> Config:
    """A Config from a parsed file or the persisted copy; unknown keys and bad values refused."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping with build, gate and reconcile sections")
    sections: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "notifications":
            try:
                sections[name] = notify_settings.parse(value, f"{where}: notifications")
            except notify_errors.SettingsError as e:
                raise ConfigError(str(e)) from e
            continue
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{where}: unknown section {name!r} (expected build, gate, reconcile, "
                              f"automation, notifications, images)")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name} must be a mapping")
        sections[name] = _section(cls, value, f"{where}: {name}")
    config = Config(**sections)
    validate(config, where)
    return config


def _section(cls: type[Any], doc: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in doc.items():
        name = _snake(str(key))
        f = fields.get(name)
        if f is None:
            known = ", ".join(sorted(_camel({n: 0 for n in fields})))
            raise ConfigError(f"{where}.{key}: unknown key (known: {known})")
        kwargs[name] = _value(f, value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - every field has a default
        raise ConfigError(f"{where}: {e}") from e


def _value(f: dataclasses.Field[Any], value: Any, where: str) -> Any:
    factory: Any = f.default_factory
    default = f.default if f.default is not dataclasses.MISSING else factory()
    if isinstance(default, manifests.Limits):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        return _section(manifests.Limits, value, where)
    if f.name == "charts":
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise ConfigError(f"{where}: expected a list of mappings (path, releaseName, namespace, "
                              f"valuesFiles)")
        return tuple(_section(HelmChart, x, f"{where}[{i}]") for i, x in enumerate(value))
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            raise ConfigError(f"{where}: expected a list of non-empty strings")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number")
        return type(default)(value)
    if isinstance(default, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # kubernetesVersion: 1.37 written without quotes
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        return value
    raise ConfigError(f"{where}: unsupported value")  # pragma: no cover


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_K8S_VERSION = re.compile(r"^1\.\d{1,2}$")


def validate(c: Config, where: str = "configuration") -> None:
    b, g, r = c.build, c.gate, c.reconcile
    if not b.include:
        raise ConfigError(f"{where}: build.include must name at least one pattern")
    if not _DNS_LABEL.match(b.default_namespace):
        raise ConfigError(f"{where}: build.defaultNamespace {b.default_namespace!r} is not a "
                          f"namespace name (a DNS label)")
    if not _K8S_VERSION.match(b.kubernetes_version):
        raise ConfigError(f"{where}: build.kubernetesVersion {b.kubernetes_version!r}: expected "
                          f"MAJOR.MINOR such as 1.37")
    for name, value in dataclasses.asdict(b.limits).items():
        if value < 1:
            raise ConfigError(f"{where}: build.limits.{name} must be at least 1")
    if b.max_rendered_bytes < 1:
        raise ConfigError(f"{where}: build.maxRenderedBytes must be at least 1")
    _validate_charts(b.charts, where)
    if g.missing_schema not in ("error", "warning"):
        raise ConfigError(f"{where}: gate.missingSchema {g.missing_schema!r}: expected error or warning")
    if not g.timeout > 0:
        raise ConfigError(f"{where}: gate.timeout must be positive")
    for ref in g.gated_refs + g.protected_refs:
        if not ref.startswith("refs/"):
            raise ConfigError(f"{where}: ref {ref!r} must be a full ref name (refs/heads/...)")
    if g.live_check not in ("auto", "required", "best-effort", "off"):
        raise ConfigError(f"{where}: gate.liveCheck {g.live_check!r}: expected required, best-effort, "
                          f"off or auto")
    if g.prune_max_objects < 0 or not 0 < g.prune_max_share <= 1:
        raise ConfigError(f"{where}: gate.pruneMaxObjects must be >= 0 and gate.pruneMaxShare in (0, 1]")
    if not set(g.prune_roles) <= {"read", "write", "admin"}:
        raise ConfigError(f"{where}: gate.pruneRoles {list(g.prune_roles)}: roles are read, write, admin")
    if not g.gated_refs:
        raise ConfigError(f"{where}: gate.gatedRefs must name at least one ref")
    for ref in g.require_signed:
        if not ref.startswith("refs/"):
            raise ConfigError(f"{where}: gate.requireSigned {ref!r} must be a full ref pattern "
                              f"(refs/heads/main, refs/heads/*)")
    if r.drift not in ("correct", "detect", "off"):
        raise ConfigError(f"{where}: reconcile.drift {r.drift!r}: expected correct, detect or off")
    if not r.health_timeout > 0:
        raise ConfigError(f"{where}: reconcile.healthTimeout must be positive")
    if not _DNS_LABEL.match(r.inventory_namespace):
        raise ConfigError(f"{where}: reconcile.inventoryNamespace {r.inventory_namespace!r} is not a "
                          f"namespace name")
    if not r.branch or r.branch.startswith(("refs/", "/")) or ".." in r.branch:
        raise ConfigError(f"{where}: reconcile.branch {r.branch!r}: expected a branch name such as main")
    a = c.automation
    if bool(a.user) != bool(a.token_file):
        raise ConfigError(f"{where}: automation.user and automation.tokenFile go together (the user "
                          f"pushgate's own commits are pushed as, and its token)")
    if a.auto_revert and not a.user:
        raise ConfigError(f"{where}: automation.autoRevert needs automation.user and tokenFile")
    if not a.revert_after > 0:
        raise ConfigError(f"{where}: automation.revertAfter must be positive")
    if a.url and not a.url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: automation.url {a.url!r} is not an http(s) URL")
    if not re.match(r"^[^<>\n]+ <[^<>\n]+>$", a.author):
        raise ConfigError(f"{where}: automation.author {a.author!r}: expected 'Name <email>'")
    if c.images is not None:
        _validate_images(c.images, where)
        if not a.user:
            raise ConfigError(f"{where}: images needs automation.user and automation.tokenFile (bumps "
                              f"are pushed through the gate as that user)")


def _validate_images(i: ImageSettings, where: str) -> None:
    if not i.interval >= 1:
        raise ConfigError(f"{where}: images.interval must be at least 1 (seconds)")
    if not 0 <= i.jitter < 1:
        raise ConfigError(f"{where}: images.jitter must be in [0, 1)")
    if not i.timeout > 0 or i.retry_refused < 0:
        raise ConfigError(f"{where}: images.timeout must be positive and images.retryRefused >= 0")
    if i.branch and (i.branch.startswith(("refs/", "/")) or ".." in i.branch):
        raise ConfigError(f"{where}: images.branch {i.branch!r}: expected a branch name such as main")
    if i.credentials_secret and not re.match(r"^[a-z0-9-]+/[a-z0-9.-]+$", i.credentials_secret):
        raise ConfigError(f"{where}: images.credentialsSecret {i.credentials_secret!r}: expected "
                          f"namespace/name")


_RELEASE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")  # helm's release-name rule


def _validate_charts(charts: tuple[HelmChart, ...], where: str) -> None:
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(charts):
        at = f"{where}: build.charts[{i}]"
        path = c.path.strip("/")
        if not path or path.startswith("../") or path == ".." or c.path.startswith("/"):
            raise ConfigError(f"{at}.path {c.path!r}: expected a chart directory inside the "
                              f"repository (\".\" for the root)")
        if c.release_name and not _RELEASE.match(c.release_name):
            raise ConfigError(f"{at}.releaseName {c.release_name!r}: expected a DNS label of at "
                              f"most 53 characters (helm's rule)")
        if c.namespace and not _DNS_LABEL.match(c.namespace):
            raise ConfigError(f"{at}.namespace {c.namespace!r} is not a namespace name")
        for v in c.values_files:
            if v.startswith("/"):
                raise ConfigError(f"{at}.valuesFiles {v!r}: expected a path relative to the chart")
        key = (path, c.release_name)
        if key in seen:
            raise ConfigError(f"{at}: chart {c.path!r} is listed twice with the same releaseName")
        seen.add(key)


def check_reconciled_branch_is_gated(c: Config) -> None:
    """The reconciler applies only what the gate checks: its branch must be a gated ref."""
    ref = f"refs/heads/{c.reconcile.branch}"
    if ref not in c.gate.gated_refs:
        raise ConfigError(f"the reconciled branch {c.reconcile.branch!r} is not gated "
                          f"({ref} is not in gate.gatedRefs / --gated-ref: "
                          f"{', '.join(c.gate.gated_refs)}): add it, or reconcile a gated branch")


def load_file(path: str) -> Config:
    """A configuration file (YAML or JSON), read with the same bounded parser as manifests."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read: {e.strerror}") from e
    if len(data) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"--config {path}: larger than {_MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"--config {path}: not UTF-8") from e
    parsed = yamlsafe.parse_yaml(path, text, max_documents=2, max_depth=16, max_alias_expansions=10)
    if parsed.problems:
        raise ConfigError(f"--config {parsed.problems[0]}")
    if len(parsed.documents) > 1:
        raise ConfigError(f"--config {path}: expected one YAML document")
    return from_dict(parsed.documents[0].value if parsed.documents else {}, f"--config {path}")


def persist(data_dir: str, config: Config) -> None:
    datadir.write_json(datadir.config_path(data_dir), config.to_dict(), durable=True)


def load_persisted(data_dir: str) -> Config | None:
    """The configuration `pushgate serve` persisted, or None when no server has run yet."""
    doc = datadir.read_json(datadir.config_path(data_dir))
    if doc is None:
        return None
    return from_dict(doc, datadir.config_path(data_dir))
