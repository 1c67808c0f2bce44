"""Where notifications go and which ones: the configuration file's `notifications` list.

Parsed here for `pushgate.config` (which persists it with the rest in `DATA/config.json`, so the
git server and the reconciler read the same destinations), checked at `serve` start by
`check_files`, and read back from the persisted copy by `emit` and the dispatcher (`load`).

    notifications:
      - name: hooks                   # DNS label; the only thing logs, errors and status show
        type: generic                 # generic | generic-hmac | slack
        urlFile: /etc/pushgate/hooks/address     # the URL is a secret: a file (a mounted Secret)
        hmacKeyFile: /etc/pushgate/hooks/token   # generic: optional; generic-hmac: required
        events: [push-refused, health-failed]    # default: every event
        branches: ["main", "release/*"]          # shell-style globs; default: every branch
        severity: info                # info (everything) | error (errors only), Flux's eventSeverity
        summary: "prod cluster"       # added to every event (Flux's Alert summary), <= 255 chars
        timeout: 5                    # seconds per attempt (at most 30)
        retry: {maxAttempts: 10, maxAge: 3600, initialDelay: 1, maxDelay: 300}
        channel: "#deploys"           # slack only, optional (legacy incoming webhooks)
        username: pushgate            # slack only, optional

The URL and the key are read when a notification is sent (a rotated Secret takes effect without
a restart) and never appear in a message: errors name the destination and the key only.
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from pushgate import datadir
from pushgate.notify import events as event_types  # the field `events` would hide `events`
from pushgate.notify.errors import SettingsError

TYPES = ("generic", "generic-hmac", "slack")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_TIMEOUT = 30.0
MAX_SUMMARY = 255  # Flux's limit on an Alert's summary
MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True)
class Retry:
    max_attempts: int = 10
    max_age: float = 3600.0
    initial_delay: float = 1.0
    max_delay: float = 300.0


@dataclass(frozen=True)
class Destination:
    name: str
    type: str
    url_file: str
    hmac_key_file: str = ""
    events: tuple[str, ...] = ()  # () = every event
    branches: tuple[str, ...] = ()  # () = every branch
    severity: str = event_types.INFO
    summary: str = ""
    timeout: float = 5.0
    retry: Retry = field(default_factory=Retry)
    channel: str = ""
    username: str = ""

    def matches(self, event: event_types.Event) -> bool:
        """Whether this destination wants `event`: its type, severity and branch. An event about
        no branch (a policy change) passes any branch filter."""
        if self.events and event.type not in self.events:
            return False
        if self.severity == event_types.ERROR and event.severity != event_types.ERROR:
            return False
        if self.branches and event.branch:
            return any(fnmatch.fnmatchcase(event.branch, g) for g in self.branches)
        return True


_KEYS = {"name": "name", "type": "type", "urlFile": "url_file", "hmacKeyFile": "hmac_key_file",
         "events": "events", "branches": "branches", "severity": "severity", "summary": "summary",
         "timeout": "timeout", "retry": "retry", "channel": "channel", "username": "username"}
_RETRY_KEYS = {"maxAttempts": "max_attempts", "maxAge": "max_age", "initialDelay": "initial_delay",
               "maxDelay": "max_delay"}


def parse(doc: Any, where: str = "notifications") -> tuple[Destination, ...]:
    """The destinations of a parsed `notifications` list; SettingsError names the bad key."""
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise SettingsError(f"{where}: expected a list of destinations (name, type, urlFile, ...)")
    out: list[Destination] = []
    for i, item in enumerate(doc):
        d = _destination(item, f"{where}[{i}]")
        if any(o.name == d.name for o in out):
            raise SettingsError(f"{where}[{i}].name: {d.name!r} is named twice")
        out.append(d)
    return tuple(out)


def _destination(doc: Any, at: str) -> Destination:
    if not isinstance(doc, dict):
        raise SettingsError(f"{at}: expected a mapping (name, type, urlFile, ...)")
    for key in doc:
        if key not in _KEYS:
            raise SettingsError(f"{at}.{key}: unknown key (known: {', '.join(sorted(_KEYS))})")
    for key in ("name", "type", "urlFile"):
        if key not in doc:
            raise SettingsError(f"{at}.{key}: required")
    name = _string(doc, "name", at)
    if not _NAME.match(name):
        raise SettingsError(f"{at}.name {name!r}: expected a DNS label (lower-case letters, digits, '-')")
    at = f"{at} ({name})"
    kind = _string(doc, "type", at)
    if kind not in TYPES:
        raise SettingsError(f"{at}.type {kind!r}: expected {', '.join(TYPES)}")
    kwargs: dict[str, Any] = {"name": name, "type": kind, "url_file": _string(doc, "urlFile", at)}
    if not kwargs["url_file"]:
        raise SettingsError(f"{at}.urlFile: expected the path of a file holding the URL")
    if "hmacKeyFile" in doc:
        if kind == "slack":
            raise SettingsError(f"{at}.hmacKeyFile: slack destinations are not signed")
        kwargs["hmac_key_file"] = _string(doc, "hmacKeyFile", at)
    if kind == "generic-hmac" and not kwargs.get("hmac_key_file"):
        raise SettingsError(f"{at}.hmacKeyFile: required for type generic-hmac")
    for key in ("events", "branches"):
        if key in doc:
            value = doc[key]
            if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
                raise SettingsError(f"{at}.{key}: expected a list of non-empty strings")
            kwargs[_KEYS[key]] = tuple(value)
    for e in kwargs.get("events", ()):
        if e not in event_types.TYPES:
            raise SettingsError(f"{at}.events: unknown event {e!r} (known: {', '.join(event_types.TYPES)})")
    if "severity" in doc:
        kwargs["severity"] = _string(doc, "severity", at)
        if kwargs["severity"] not in (event_types.INFO, event_types.ERROR):
            raise SettingsError(f"{at}.severity {kwargs['severity']!r}: expected info or error")
    if "summary" in doc:
        kwargs["summary"] = _string(doc, "summary", at)
        if len(kwargs["summary"]) > MAX_SUMMARY:
            raise SettingsError(f"{at}.summary: longer than {MAX_SUMMARY} characters")
    if "timeout" in doc:
        kwargs["timeout"] = _number(doc["timeout"], f"{at}.timeout")
        if not 0 < kwargs["timeout"] <= MAX_TIMEOUT:
            raise SettingsError(f"{at}.timeout: expected seconds in (0, {MAX_TIMEOUT:.0f}]")
    if "retry" in doc:
        kwargs["retry"] = _retry(doc["retry"], f"{at}.retry")
    for key in ("channel", "username"):
        if key in doc:
            if kind != "slack":
                raise SettingsError(f"{at}.{key}: only for type slack")
            kwargs[key] = _string(doc, key, at)
    return Destination(**kwargs)


def _retry(doc: Any, at: str) -> Retry:
    if not isinstance(doc, dict):
        raise SettingsError(f"{at}: expected a mapping ({', '.join(_RETRY_KEYS)})")
    kwargs: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in _RETRY_KEYS:
            raise SettingsError(f"{at}.{key}: unknown key (known: {', '.join(_RETRY_KEYS)})")
        kwargs[_RETRY_KEYS[key]] = _number(value, f"{at}.{key}")
    r = Retry(**{**kwargs, "max_attempts": int(kwargs.get("max_attempts", Retry.max_attempts))})
    if not 1 <= r.max_attempts <= 1000:
        raise SettingsError(f"{at}.maxAttempts: expected 1 to 1000")
    if not (r.max_age > 0 and r.initial_delay > 0 and r.max_delay >= r.initial_delay):
        raise SettingsError(f"{at}: maxAge and initialDelay must be positive and maxDelay >= initialDelay")
    return r


def _string(doc: dict[str, Any], key: str, at: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise SettingsError(f"{at}.{key}: expected a string")
    return value


def _number(value: Any, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"{at}: expected a number")
    return float(value)


def to_dict(d: Destination) -> dict[str, Any]:
    """The persisted form (`parse` reads it back); file paths only, never their contents."""
    out: dict[str, Any] = {"name": d.name, "type": d.type, "urlFile": d.url_file}
    if d.hmac_key_file:
        out["hmacKeyFile"] = d.hmac_key_file
    if d.events:
        out["events"] = list(d.events)
    if d.branches:
        out["branches"] = list(d.branches)
    out.update(severity=d.severity, summary=d.summary, timeout=d.timeout,
               retry={"maxAttempts": d.retry.max_attempts, "maxAge": d.retry.max_age,
                      "initialDelay": d.retry.initial_delay, "maxDelay": d.retry.max_delay})
    if d.type == "slack":
        out.update(channel=d.channel, username=d.username)
    return out


# -- secrets ------------------------------------------------------------------------------------
def read_secret(d: Destination, key: str) -> str:
    """The content of the destination's `urlFile` or `hmacKeyFile` (trailing newline dropped).
    A file that is missing or unreadable is Temporary: a Secret may be mounted late."""
    from pushgate.notify.errors import Temporary

    path = d.url_file if key == "urlFile" else d.hmac_key_file
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as e:
        raise Temporary(f"{key} {path}: cannot read ({e.strerror})") from None
    if len(data) > MAX_SECRET_BYTES:
        raise Temporary(f"{key} {path}: larger than {MAX_SECRET_BYTES} bytes")
    return data.decode("utf-8", "replace").rstrip("\r\n")


def check_files(destinations: tuple[Destination, ...], where: str = "notifications") -> None:
    """At start: every secret file readable, every URL file holding an http(s) URL. The errors
    name the destination, the key and the path, never the content."""
    from pushgate.notify.errors import DeliveryError

    for i, d in enumerate(destinations):
        at = f"{where}[{i}] ({d.name})"
        keys = ["urlFile"] + (["hmacKeyFile"] if d.hmac_key_file else [])
        for key in keys:
            try:
                value = read_secret(d, key)
            except DeliveryError as e:
                raise SettingsError(f"{at}.{e}") from None
            if not value.strip():
                raise SettingsError(f"{at}.{key} {d.url_file if key == 'urlFile' else d.hmac_key_file}: "
                                    f"empty")
            if key == "urlFile" and not valid_url(value):
                raise SettingsError(f"{at}.urlFile {d.url_file}: does not hold an http:// or https:// URL")


def valid_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(
        c.isspace() for c in url.strip())


# -- the persisted copy -------------------------------------------------------------------------
_cache_lock = threading.Lock()
_cache: dict[str, tuple[tuple[int, int], tuple[Destination, ...]]] = {}


def load(data_dir: str) -> tuple[Destination, ...]:
    """The destinations in the persisted configuration (`DATA/config.json`), parsed again only
    when the file changes. Raises SettingsError for a bad persisted copy."""
    path = datadir.config_path(data_dir)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ()
    stamp = (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    doc = datadir.read_json(path)
    found = parse(doc.get("notifications") if isinstance(doc, dict) else None, f"{path}: notifications")
    with _cache_lock:
        _cache[path] = (stamp, found)
    return found
