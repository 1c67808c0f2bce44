"""What goes on the wire: the event's JSON, the HMAC-SHA256 signature over the exact body bytes
(Flux's `X-Signature: sha256=<hex>`), the event id header, and the Slack payload."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from pushgate.notify import events, providers, settings


def _event() -> events.Event:
    return events.new("push-refused", "push to main by alice refused (gate): 1 problem <found> & more",
                      branch="main", commit="a" * 40, now=1764410400.25,
                      details={"refusal": "gate", "report": ["app.yaml:3 Deployment/shop/web [rule] no"]})


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b"what do ya want for nothing?"
    signature = providers.sign(b"Jefe", body)
    # RFC 4231, test case 2.
    assert signature == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert providers.verify(b"Jefe", body, signature)
    assert not providers.verify(b"Jefe", body + b" ", signature)
    assert not providers.verify(b"jefe", body, signature)


def test_generic_body_and_headers(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("k3y\n")
    (d,) = settings.parse([{"name": "hooks", "type": "generic-hmac", "urlFile": str(tmp_path / "u"),
                            "hmacKeyFile": str(tmp_path / "token"), "summary": "prod eu-1"}])
    e = _event()
    body, headers = providers.request_of(d, e, attempt=3)
    assert body == providers.request_of(d, e, attempt=4)[0]  # a retry sends the same bytes
    assert headers["X-Signature"] == "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert headers["X-Pushgate-Event-Id"] == e.id and len(e.id) == 32
    assert headers["X-Pushgate-Event"] == "push-refused" and headers["X-Pushgate-Delivery-Attempt"] == "3"
    assert headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc == {"id": e.id, "event": "push-refused", "severity": "error", "reason": "PushRefused",
                   "branch": "main", "commit": "a" * 40, "message": e.message, "summary": "prod eu-1",
                   "details": e.details, "timestamp": "2025-11-29T10:00:00.250Z",
                   "reportingController": "pushgate"}


def test_unsigned_generic_has_no_signature(tmp_path: Path) -> None:
    (d,) = settings.parse([{"name": "hooks", "type": "generic", "urlFile": str(tmp_path / "u")}])
    _body, headers = providers.request_of(d, _event(), 1)
    assert "X-Signature" not in headers


def test_slack_payload_shape(tmp_path: Path) -> None:
    (d,) = settings.parse([{"name": "chat", "type": "slack", "urlFile": str(tmp_path / "u"),
                            "summary": "prod", "channel": "#deploys", "username": "pushgate"}])
    body, headers = providers.request_of(d, _event(), 1)
    assert "X-Signature" not in headers and "X-Pushgate-Event-Id" not in headers
    doc = json.loads(body)
    assert set(doc) == {"text", "blocks", "channel", "username"} and doc["channel"] == "#deploys"
    assert doc["text"].startswith(":red_circle: *PushRefused* prod: push to main by alice refused")
    assert "&lt;found&gt; &amp; more" in doc["text"] and "<found>" not in doc["text"]
    assert "(branch `main` commit `aaaaaaaaaaaa`)" in doc["text"]
    section, report, context = doc["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": doc["text"]}}
    assert report["text"]["text"] == "```app.yaml:3 Deployment/shop/web [rule] no```"
    assert context["type"] == "context" and "push-refused" in context["elements"][0]["text"]


def test_stored_events_read_back_the_same() -> None:
    e = _event()
    assert events.from_stored(json.loads(json.dumps(events.stored(e)))) == e
