"""Users, roles and the authentication layer in front of everything else.

Called by `app` (the WSGI chain: auth -> git smart HTTP -> Flask) and by `pushgate user add`.
Tokens are 32 random bytes, so a single SHA-256 is enough to store them (no dictionary to
attack, unlike passwords); they are compared in constant time. Failed logins are rate-limited
per client address. The users file is JSON, mode 0600; `groups` and `scopes` are optional
(see `scopes`: what a user may push, by path, ref, namespace and cluster-scoped kind), and so is
`openpgpKeys`, the fingerprints of the OpenPGP keys that may sign the user's commits (`signing`):

    {"users": [{"name": "alice", "role": "write", "token_sha256": "<hex>",
                "groups": ["team-a"], "scopes": [{"paths": ["apps/alice/*"]}],
                "openpgpKeys": ["B3599DD8673243A04D0746CF2FF6E7EBB109295E"]}],
     "groups": {"team-a": {"scopes": [{"paths": ["apps/team-a/*"], "namespaces": ["team-a"],
                                       "refs": ["refs/heads/main"], "clusterKinds": []}]}}}
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gitserver import scopes as scopemod
from gitserver.errors import ConfigError
from pushgate import datadir
from pushgate.core import commitsigs

ROLES = ("read", "write", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_DUMMY = hashlib.sha256(b"pushgate-no-such-user").hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    role: str
    token_sha256: str
    groups: tuple[str, ...] = ()
    scopes: tuple[scopemod.Scope, ...] = ()  # own and groups'; () = the role says everything
    openpgp_keys: tuple[str, ...] = ()  # fingerprints of keys that may sign this user's commits

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"users file {path} does not exist (create it with "
                          f"'pushgate user add --users {path} NAME --role admin')") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"users file {path} is not readable JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("users"), list):
        raise ConfigError(f'users file {path} must hold {{"users": [...]}}')
    return doc


def _scope_list(value: Any, where: str) -> tuple[scopemod.Scope, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of scopes")
    return tuple(scopemod.parse(v, f"{where}[{i}]") for i, v in enumerate(value))


def load_users(path: str) -> dict[str, User]:
    """The users file, or ConfigError naming the file and what is wrong with it."""
    doc = _read(path)
    users: dict[str, User] = {}
    group_docs = doc.get("groups") or {}
    if not isinstance(group_docs, dict):
        raise ConfigError(f"users file {path}: groups must be an object of name -> {{scopes}}")
    try:
        group_scopes = {str(g): _scope_list((v or {}).get("scopes") if isinstance(v, dict) else v,
                                            f"groups.{g}.scopes")
                        for g, v in group_docs.items()}
    except ValueError as e:
        raise ConfigError(f"users file {path}: {e}") from e
    for i, u in enumerate(doc["users"]):
        if not isinstance(u, dict):
            raise ConfigError(f"users file {path}: entry {i} is not an object")
        name, role, digest = u.get("name"), u.get("role"), u.get("token_sha256")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"users file {path}: entry {i} has an invalid name")
        if role not in ROLES:
            raise ConfigError(f"users file {path}: user {name} has role {role!r}, "
                              f"expected one of {', '.join(ROLES)}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(f"users file {path}: user {name} has no valid token_sha256")
        groups = u.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ConfigError(f"users file {path}: user {name}: groups must be a list of names")
        missing = [g for g in groups if g not in group_scopes]
        if missing:
            raise ConfigError(f"users file {path}: user {name} is in unknown group {missing[0]!r}")
        try:
            own = _scope_list(u.get("scopes"), f"user {name}: scopes")
        except ValueError as e:
            raise ConfigError(f"users file {path}: {e}") from e
        keys = u.get("openpgpKeys") or []
        try:
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError("expected a list of fingerprints")
            fingerprints = tuple(commitsigs.fingerprint(k) for k in keys)
        except ValueError as e:
            raise ConfigError(f"users file {path}: user {name}: openpgpKeys: {e}") from e
        users[name] = User(name, role, digest, tuple(groups),
                           scopemod.resolve(own, groups, group_scopes), fingerprints)
    return users


def add_user(path: str, name: str, role: str) -> str:
    """Add (or re-key) a user; returns the new token, which is stored only as its hash."""
    if not _NAME.match(name):
        raise ConfigError(f"invalid user name {name!r}: letters, digits and ._@- only")
    if role not in ROLES:
        raise ConfigError(f"invalid role {role!r}: expected one of {', '.join(ROLES)}")
    doc: dict[str, Any] = {"users": []}
    if os.path.exists(path):
        load_users(path)  # refuse to rewrite a file that does not load
        doc = _read(path)
    token = "pg_" + secrets.token_urlsafe(32)
    # Everything else in the file (groups, scopes, other users' fields) is kept as it is.
    entries = [u for u in doc["users"] if not (isinstance(u, dict) and u.get("name") == name)]
    old = next((u for u in doc["users"] if isinstance(u, dict) and u.get("name") == name), {})
    entries.append({**old, "name": name, "role": role, "token_sha256": _digest(token)})
    doc["users"] = sorted(entries, key=lambda u: str(u.get("name")))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".users-")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return token


class Authenticator:
    """Checks Basic credentials (user name + token) against the users file, reloaded on change."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = 0.0
        self._users: dict[str, User] = {}
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        mtime = os.stat(self.path).st_mtime
        if mtime != self._mtime:
            self._users = load_users(self.path)
            self._mtime = mtime

    @staticmethod
    def matches(user: User, token: str) -> bool:
        return hmac.compare_digest(_digest(token), user.token_sha256)

    def check(self, name: str, token: str) -> User | None:
        with self._lock:
            with contextlib.suppress(OSError, ConfigError):  # keep the last good file
                self._reload()
            user = self._users.get(name)
        expected = user.token_sha256 if user else _DUMMY
        ok = hmac.compare_digest(_digest(token), expected)
        return user if ok and user is not None else None


class RateLimiter:
    """At most `limit` failed logins per client address within `window` seconds, counted on disk
    so that every worker process (and replica on the shared volume) sees the same failures."""

    def __init__(self, directory: str, limit: int = 10, window: float = 60.0) -> None:
        self.directory, self.limit, self.window = directory, limit, window
        os.makedirs(directory, exist_ok=True)

    def _file(self, client: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(client.encode()).hexdigest()[:24])

    def _recent(self, client: str) -> list[float]:
        try:
            with open(self._file(client)) as f:
                stamps = [float(x) for x in f.read().split()]
        except (FileNotFoundError, ValueError):
            return []
        now = time.time()
        return [t for t in stamps if now - t <= self.window]

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= self.limit

    def fail(self, client: str) -> None:
        path = self._file(client)
        recent = self._recent(client)[-(self.limit * 2):]
        # Append-only writes of one short line are atomic enough; the file is rewritten when
        # old entries pile up, so it stays small.
        if recent and len(recent) * 2 < self._count_lines(path):
            with open(path + ".tmp", "w") as f:
                f.write("".join(f"{t}\n" for t in recent))
            os.replace(path + ".tmp", path)
        with open(path, "a") as f:
            f.write(f"{time.time()}\n")

    @staticmethod
    def _count_lines(path: str) -> int:
        try:
            with open(path) as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0


def required_role(environ: dict[str, Any]) -> str | None:
    """The role a request needs; None for the open probe and metrics endpoints."""
    path = environ.get("PATH_INFO", "")
    if path in ("/healthz", "/readyz", "/metrics"):
        return None
    query = environ.get("QUERY_STRING", "")
    if path.endswith("/git-receive-pack") or "service=git-receive-pack" in query:
        # The policy set decides what every push may contain: only an admin changes it.
        return "admin" if path.lstrip("/").split("/", 1)[0] == datadir.POLICY_REPO else "write"
    return "read"


StartResponse = Callable[..., Any]


class AuthMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]], auth: Authenticator,
                 limiter: RateLimiter, anonymous_role: str | None = None) -> None:
        self.app, self.auth, self.limiter = app, auth, limiter
        self.anonymous_role = anonymous_role

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        need = required_role(environ)
        if need is None:
            return self.app(environ, start_response)
        # Behind the front (gunicorn on a private Unix socket) the front names the client.
        client = environ.get("HTTP_X_PUSHGATE_CLIENT") or environ.get("REMOTE_ADDR") or "?"
        if self.limiter.blocked(client):
            return _respond(start_response, "429 Too Many Requests",
                            "pushgate: too many failed logins from your address; wait a minute\n",
                            [("Retry-After", "60")])
        user = None
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Basic "):
            try:
                name, _, token = base64.b64decode(header[6:], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                name, token = "", ""
            user = self.auth.check(name, token)
            if user is None:
                self.limiter.fail(client)
        elif self.anonymous_role is not None:
            user = User("anonymous", self.anonymous_role, "")
        if user is None:
            return _respond(start_response, "401 Unauthorized",
                            "pushgate: authentication required (user name + token)\n",
                            [("WWW-Authenticate", 'Basic realm="pushgate"')])
        if not user.can(need):
            return _respond(start_response, "403 Forbidden",
                            f"pushgate: user {user.name} has role {user.role}; "
                            f"this needs role {need}\n")
        environ["pushgate.user"] = user
        return self.app(environ, start_response)


def _respond(start_response: StartResponse, status: str, body: str,
             headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data))), *(headers or [])])
    return [data]
