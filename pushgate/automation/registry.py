"""The OCI distribution API client: list a repository's tags (the only call automation makes).

Called by `scanner`. `GET /v2/<repository>/tags/list?n=1000`, following `Link: <...>; rel="next"`
pages. Authentication follows the registry's `WWW-Authenticate` challenge, as docker and
containerd do: none (anonymous), `Basic` (the credentials), or `Bearer realm=...,service=...,
scope=...` (a token fetched from the realm, with the credentials as Basic if there are any, else
anonymously; cached until it expires). Registries on loopback addresses and those listed in
`images.insecureRegistries` are asked over plain http, every other over https with the system CAs.

Bounds: `timeout` per request, 4 MiB per answer, 100 pages, 100,000 tags. Credentials are sent
only to the registry and its token realm (never on a redirect), and never logged.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pushgate.automation import errors

_MAX_BYTES = 4 * 1024 * 1024
_MAX_PAGES = 100
_MAX_TAGS = 100_000
_DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Redirects are followed (a CDN), but `Authorization` is never carried to them."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.remove_header("Authorization")
        return new


class Client:
    def __init__(self, credentials: Callable[[str], Credentials | None] = lambda host: None, *,
                 insecure: tuple[str, ...] = (), timeout: float = 10.0, page_size: int = 1000) -> None:
        self.credentials = credentials
        self.page_size = page_size
        self.insecure = insecure
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirectAuth())
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (host, scope) -> header, expiry

    def base_url(self, registry: str) -> str:
        host = _DOCKER_HUB_API if registry == "docker.io" else registry
        return f"{'http' if self._plain(registry) else 'https'}://{host}"

    def _plain(self, registry: str) -> bool:
        if registry in self.insecure:
            return True
        if registry.startswith("["):  # [::1]:5000
            host = registry[1:registry.find("]")]
        else:
            host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def tags(self, registry: str, repository: str) -> list[str]:
        """Every tag of the repository, in the registry's order."""
        where = f"{registry}/{repository}"
        url = f"{self.base_url(registry)}/v2/{repository}/tags/list?n={self.page_size}"
        scope = f"repository:{repository}:pull"
        out: list[str] = []
        for _page in range(_MAX_PAGES):
            body, headers = self._get(registry, url, scope, where)
            try:
                doc = json.loads(body)
            except ValueError as e:
                raise errors.RegistryError(where, "the tag list is not JSON") from e
            found = doc.get("tags") if isinstance(doc, dict) else None
            out.extend(t for t in (found or []) if isinstance(t, str))
            if len(out) > _MAX_TAGS:
                raise errors.RegistryError(where, f"more than {_MAX_TAGS} tags")
            nxt = _next_link(headers.get("Link", ""))
            if not nxt:
                return out
            url = urllib.parse.urljoin(url, nxt)
            if urllib.parse.urlsplit(url).netloc != urllib.parse.urlsplit(self.base_url(registry)).netloc:
                raise errors.RegistryError(where, "the next page is on another host")
        raise errors.RegistryError(where, f"more than {_MAX_PAGES} pages of tags")

    def _get(self, registry: str, url: str, scope: str, where: str) -> tuple[bytes, Any]:
        header = self._cached(registry, scope)
        for _attempt in range(2):
            status, body, headers = self._request(url, header, where)
            if status == 200:
                return body, headers
            if status == 401 and _attempt == 0:
                header = self._authenticate(registry, headers.get("WWW-Authenticate", ""), scope, where)
                continue
            if status in (401, 403):
                why = "credentials refused" if header else "authentication required"
                raise errors.RegistryDenied(where, f"HTTP {status}: {why}")
            if status == 404:
                raise errors.RegistryError(where, "repository not found (HTTP 404)")
            if status == 429 or status >= 500:
                raise errors.RegistryUnavailable(where, f"HTTP {status}")
            raise errors.RegistryError(where, f"HTTP {status}")
        raise errors.RegistryDenied(where, "authentication failed")  # pragma: no cover

    def _request(self, url: str, authorization: str, where: str,
                 basic: str = "") -> tuple[int, bytes, Any]:
        # only http(s): base_url and the realm check above build every URL asked
        headers = {"Accept": "application/json", "User-Agent": "pushgate-image-automation"}
        req = urllib.request.Request(url, headers=headers)  # noqa: S310
        if authorization or basic:
            req.add_header("Authorization", authorization or basic)
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                return r.status, _read(r, where), r.headers
        except urllib.error.HTTPError as e:
            with e:
                return e.code, b"", e.headers
        except (OSError, ValueError) as e:  # URLError, timeouts, refused connections, TLS
            raise errors.RegistryUnavailable(where, f"cannot reach the registry: "
                                             f"{getattr(e, 'reason', e)}") from e

    def _cached(self, registry: str, scope: str) -> str:
        held = self._tokens.get((registry, scope))
        if held and held[1] > time.monotonic():
            return held[0]
        return ""

    def _authenticate(self, registry: str, challenge: str, scope: str, where: str) -> str:
        scheme, params = _challenge(challenge)
        creds = self.credentials(registry)
        basic = ""
        if creds is not None:
            basic = "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        if scheme == "basic":
            if not basic:
                raise errors.RegistryDenied(where, "the registry wants credentials and none are configured")
            self._tokens[(registry, scope)] = (basic, time.monotonic() + 3600)
            return basic
        if scheme != "bearer" or not params.get("realm"):
            raise errors.RegistryDenied(where, f"unsupported authentication challenge {challenge[:80]!r}")
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        realm = params["realm"]
        if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise errors.RegistryDenied(where, f"token realm {realm[:80]!r} is not an http(s) URL")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        status, body, _h = self._request(url, "", where, basic=basic)
        if status in (401, 403):
            raise errors.RegistryDenied(where, f"the token service refused the credentials (HTTP {status})")
        if status != 200:
            raise errors.RegistryUnavailable(where, f"the token service answered HTTP {status}")
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            expires = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError) as e:
            raise errors.RegistryError(where, "the token service's answer is not a token") from e
        if not isinstance(token, str) or not token:
            raise errors.RegistryError(where, "the token service's answer holds no token")
        header = f"Bearer {token}"
        self._tokens[(registry, scope)] = (header, time.monotonic() + max(expires - 10, 5))
        return header


def _read(r: Any, where: str) -> bytes:
    data: bytes = r.read(_MAX_BYTES + 1)
    if len(data) > _MAX_BYTES:
        raise errors.RegistryError(where, f"an answer larger than {_MAX_BYTES} bytes")
    return data


def _challenge(text: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth",service="reg",scope="repository:x:pull"` -> ("bearer", {...})."""
    scheme, _, rest = text.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _next_link(header: str) -> str:
    m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', header)
    return m.group(1) if m else ""
