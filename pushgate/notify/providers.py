"""Sending one notification: the generic JSON webhook (optionally HMAC-signed) and Slack-compatible
incoming webhooks. The adapter to the network: urllib, short timeouts, no redirects.

Called by the dispatcher, one attempt at a time; failures come back as `errors.Temporary` or
`errors.Permanent`, whose messages never hold the URL or the key (a Slack webhook URL *is* its
credential).

- generic / generic-hmac: POST of the event's JSON (`events.Event.to_json`), headers
  `X-Pushgate-Event`, `X-Pushgate-Event-Id`, `X-Pushgate-Delivery-Attempt` and, with a key,
  `X-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>` (Flux's generic-hmac header).
- slack: `{"text": ..., "blocks": [...]}` (plus `channel` / `username` when configured), which
  Slack's incoming webhooks take and Slack-compatible receivers (Mattermost, Rocket.Chat) read
  the `text` of.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from pushgate.notify import events, settings
from pushgate.notify.errors import Permanent, Temporary

USER_AGENT = "pushgate-notify/1"
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_ICONS = {events.ERROR: ":red_circle:", events.INFO: ":large_blue_circle:"}


def sign(key: bytes, body: bytes) -> str:
    """The `X-Signature` header value for `body`."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, header: str) -> bool:
    """What a receiver does (used by the tests): constant-time comparison of the signature."""
    return hmac.compare_digest(sign(key, body), header)


def body_of(d: settings.Destination, event: events.Event) -> bytes:
    """The exact bytes sent (and signed): compact, keys sorted, so a retry sends the same bytes."""
    doc = slack_payload(d, event) if d.type == "slack" else event.to_json(d.summary)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_of(d: settings.Destination, event: events.Event, attempt: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt (secrets read now: a rotated Secret takes effect)."""
    body = body_of(d, event)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if d.type != "slack":
        headers.update({"X-Pushgate-Event": event.type, "X-Pushgate-Event-Id": event.id,
                        "X-Pushgate-Delivery-Attempt": str(attempt)})
        if d.hmac_key_file:
            headers["X-Signature"] = sign(settings.read_secret(d, "hmacKeyFile").encode(), body)
    return body, headers


def send(d: settings.Destination, event: events.Event, attempt: int) -> int:
    """One attempt; the HTTP status on success (2xx)."""
    body, headers = request_of(d, event, attempt)
    url = settings.read_secret(d, "urlFile").strip()
    if not settings.valid_url(url):
        raise Permanent(f"urlFile {d.url_file}: does not hold an http:// or https:// URL")
    return post(url, body, headers, d.timeout)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # a redirect is answered as the 3xx it is


_opener = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body`; the status on 2xx, else Temporary or Permanent (messages without the URL)."""
    try:
        # S310: the scheme is http(s), checked by settings.valid_url before any request.
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        with _opener.open(req, timeout=timeout) as r:
            r.read(64 * 1024)
            return int(r.status)
    except urllib.error.HTTPError as e:
        status = int(e.code)
        retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
        e.close()
        if status in _RETRY_STATUSES:
            raise Temporary(f"HTTP {status}", retry_after) from None
        raise Permanent(f"HTTP {status}") from None
    except urllib.error.URLError as e:
        raise Temporary(_why(e.reason)) from None
    except TimeoutError:
        raise Temporary(f"no answer within {timeout:g}s") from None
    except OSError as e:  # reset mid-answer, and the like
        raise Temporary(_why(e)) from None
    except http.client.HTTPException as e:  # not HTTP at all
        raise Temporary(f"bad HTTP answer ({type(e).__name__})") from None
    except ValueError as e:  # an URL urllib cannot parse (its message would quote it)
        raise Permanent(f"unusable URL ({type(e).__name__})") from None


def _why(reason: Any) -> str:
    """What went wrong, in words that cannot hold the URL (socket errors name no host)."""
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, socket.gaierror):
        return "host name not resolved"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ssl.SSLError):  # its text may name the host: keep the short reason
        return f"TLS: {reason.reason or type(reason).__name__}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return type(reason).__name__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def slack_payload(d: settings.Destination, event: events.Event) -> dict[str, Any]:
    """Slack's incoming-webhook payload: `text` (also the notification's fallback) and blocks."""
    head = f"{_ICONS[event.severity]} *{_esc(event.reason)}*"
    where = " ".join(x for x in (f"branch `{_esc(event.branch)}`" if event.branch else "",
                                 f"commit `{event.commit[:12]}`" if event.commit else "") if x)
    summary = f"{_esc(d.summary)}: " if d.summary else ""
    text = f"{head} {summary}{_esc(event.message)}" + (f" ({where})" if where else "")
    lines = [str(x) for x in event.details.get("report", [])][:events.MAX_DETAIL_LINES]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]
    if lines:
        report = "\n".join(_esc(x) for x in lines)[:2900]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{report}```"}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"pushgate {event.type} {events.timestamp(event.time)}"}]})
    doc: dict[str, Any] = {"text": text[:3000], "blocks": blocks}
    if d.channel:
        doc["channel"] = d.channel
    if d.username:
        doc["username"] = d.username
    return doc


def _esc(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
