"""Registry credentials: a docker config JSON, from a file or a Kubernetes Secret.

Called by `scanner` once per scan (a rotated Secret takes effect at the next scan). The format is
docker's `config.json` and the `.dockerconfigjson` key of a `kubernetes.io/dockerconfigjson`
Secret (what `kubectl create secret docker-registry` makes):
`{"auths": {"registry.example": {"auth": base64("user:password")}}}` or `{"username": ...,
"password": ...}`. Keys may be URLs (`https://index.docker.io/v1/` is Docker Hub). A Secret
mounted as a volume is a file: point `images.credentialsFile` at its `.dockerconfigjson`.
`images.credentialsSecret: namespace/name` reads the Secret through the API instead, with the
cluster credentials `pushgate automate` is given (`--kubeconfig`, or in-cluster). Nothing here
logs or returns a password in an error.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from pushgate.automation import errors, registry

_MAX_BYTES = 1024 * 1024
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "docker.io")


class CredentialsError(errors.AutomationError):
    """The credentials file or Secret cannot be read or is not a docker config (names where)."""


Table = dict[str, registry.Credentials]


def parse(data: bytes, where: str) -> Table:
    """{registry host: credentials} from a docker config JSON."""
    if len(data) > _MAX_BYTES:
        raise CredentialsError(f"{where}: larger than {_MAX_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise CredentialsError(f"{where}: not JSON (expected a docker config with \"auths\")") from e
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise CredentialsError(f"{where}: no \"auths\" mapping (expected a docker config JSON)")
    out: Table = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise CredentialsError(f"{where}: auths[{key!r}] is not a mapping")
        user, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise CredentialsError(f"{where}: auths[{key!r}].auth is not base64 of user:password") from e
        if not isinstance(user, str) or not isinstance(password, str) or not user:
            raise CredentialsError(f"{where}: auths[{key!r}] has no username and password")
        out[host(str(key))] = registry.Credentials(user, password)
    return out


def host(key: str) -> str:
    """A docker config key as the registry host images name: `https://index.docker.io/v1/` ->
    `docker.io`, `https://reg.example:5000/` -> `reg.example:5000`."""
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    key = key.split("/", 1)[0]
    return "docker.io" if key in _HUB_ALIASES else key


def from_file(path: str) -> Table:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError as e:
        raise CredentialsError(f"images.credentialsFile {path}: cannot read: {e.strerror}") from e
    return parse(data, f"images.credentialsFile {path}")


def from_secret_data(secret: dict[str, Any], where: str) -> Table:
    """From a Secret's `data` (base64 values) of type kubernetes.io/dockerconfigjson."""
    value = (secret or {}).get(".dockerconfigjson")
    if not isinstance(value, str):
        raise CredentialsError(f"{where}: no .dockerconfigjson key (expected a Secret of type "
                               f"kubernetes.io/dockerconfigjson)")
    try:
        data = base64.b64decode(value)
    except ValueError as e:
        raise CredentialsError(f"{where}: .dockerconfigjson is not base64") from e
    return parse(data, where)


def from_secret(ref: str, kubeconfig: str | None) -> Table:
    """Read `namespace/name` through the API (`kubeconfig`, or the in-cluster ServiceAccount)."""
    from kubernetes import client, config

    where = f"images.credentialsSecret {ref}"
    namespace, _, name = ref.partition("/")
    try:
        if kubeconfig:
            api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
        else:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api = client.CoreV1Api()
        secret = api.read_namespaced_secret(name, namespace, _request_timeout=10)
    except Exception as e:  # ApiException or transport: the body may hold Secret data, never shown
        status = getattr(e, "status", None)
        raise CredentialsError(f"{where}: cannot read the Secret"
                               f"{f' (HTTP {status})' if status else f': {type(e).__name__}'}") from None
    return from_secret_data(secret.data or {}, where)
