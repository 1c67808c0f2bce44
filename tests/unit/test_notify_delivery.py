"""Delivery from the outbox to a real HTTP receiver on loopback: signed, retried with backoff
while the receiver is down, delivered once it is back, buried as a dead letter when it never
comes back or refuses, and delivered exactly once by any number of dispatchers."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushgate import config as configmod
from pushgate import notify
from pushgate.notify import dispatcher, events, outbox, settings
from tests.bed import procs
from tests.bed.receiver import Receiver

KEY = b"k3y-for-tests"


class Clock:
    """A dispatcher's clock the test moves; it starts a little ahead, so what the test spools
    next is already due."""

    def __init__(self) -> None:
        self.now = time.time() + 1

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(key=KEY).start()
    yield r
    r.stop()


def _configure(data: Path, tmp: Path, url: str, **extra: Any) -> settings.Destination:
    (tmp / "address").write_text(url + "\n")
    (tmp / "token").write_bytes(KEY + b"\n")
    dest = {"name": "hooks", "type": "generic-hmac", "urlFile": str(tmp / "address"),
            "hmacKeyFile": str(tmp / "token"), "timeout": 2, **extra}
    cfg = configmod.Config(notifications=settings.parse([dest]))
    configmod.persist(str(data), cfg)
    return cfg.notifications[0]


def _files(data: Path, which: str) -> list[str]:
    d = data / "notify" / which
    return sorted(os.listdir(d)) if d.exists() else []


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 20])
def test_backoff_doubles_with_jitter_and_stays_capped(attempt: int) -> None:
    r = settings.Retry(initial_delay=1, max_delay=60)
    nominal = min(60.0, 2.0 ** (attempt - 1))
    assert dispatcher.backoff(attempt, r, rand=lambda: 0.0) == nominal / 2
    assert dispatcher.backoff(attempt, r, rand=lambda: 0.999999) == pytest.approx(nominal, rel=1e-5)
    assert nominal / 2 <= dispatcher.backoff(attempt, r) <= nominal


def test_signed_delivery_and_only_to_destinations_that_want_it(tmp_path: Path, receiver: Receiver) -> None:
    data = tmp_path / "data"
    _configure(data, tmp_path, receiver.url(), events=["push-refused"], branches=["main"])
    assert notify.emit(str(data), "commit-applied", "applied", branch="main") == 0
    assert notify.emit(str(data), "push-refused", "refused", branch="dev") == 0
    assert notify.emit(str(data), "push-refused", "refused", branch="main", commit="b" * 40) == 1
    assert len(_files(data, "pending")) == 1
    assert dispatcher.Dispatcher(str(data)).run_once() == 1
    (got,) = receiver.events()
    assert got.signed is True and got.doc["event"] == "push-refused" and got.doc["commit"] == "b" * 40
    assert got.headers["x-pushgate-event-id"] == got.doc["id"]
    assert _files(data, "pending") == [] and _files(data, "inflight") == []


def test_a_receiver_that_is_down_gets_the_event_once_it_is_back(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", Clock()
    port = procs.free_port()  # nothing listens there yet
    _configure(data, tmp_path, f"http://127.0.0.1:{port}/hook",
               retry={"maxAttempts": 10, "maxAge": 3600, "initialDelay": 2, "maxDelay": 30})
    notify.emit(str(data), "health-failed", "web is Failed", branch="main", commit="c" * 40)
    d = dispatcher.Dispatcher(str(data), clock=clock)
    d.run_once()
    d.run_once()  # not due yet: no second attempt
    (name,) = _files(data, "pending")
    record = json.loads((data / "notify" / "pending" / name).read_text())
    assert record["attempts"] == 1 and record["lastError"] == "connection refused"
    assert 1.0 <= int(name[:15]) / 1000 - clock.now <= 2.0  # half to all of initialDelay
    back = Receiver(port=port, key=KEY).start()
    try:
        clock.now += 2.5
        assert d.run_once() == 1
        (got,) = back.events()
        assert got.signed and got.doc["event"] == "health-failed"
        assert got.headers["x-pushgate-delivery-attempt"] == "2"
    finally:
        back.stop()
    assert _files(data, "pending") == [] and _files(data, "dead") == []


def test_a_receiver_that_never_comes_back_makes_a_dead_letter(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    data, clock = tmp_path / "data", Clock()
    secret_path = f"/hook/s3cr3t-{os.getpid()}"
    _configure(data, tmp_path, f"http://127.0.0.1:{procs.free_port()}{secret_path}",
               retry={"maxAttempts": 3, "maxAge": 3600, "initialDelay": 1, "maxDelay": 5})
    notify.emit(str(data), "push-refused", "refused", branch="main")
    d = dispatcher.Dispatcher(str(data), clock=clock)
    with caplog.at_level(logging.INFO, logger="pushgate.notify"):
        for _ in range(3):
            d.run_once()
            clock.now += 10
    assert _files(data, "pending") == []
    (dead,) = outbox.dead_letters(str(data))
    assert dead["attempts"] == 3 and "gave up after 3 attempts" in dead["reason"]
    assert dead["event"]["type"] == "push-refused"
    assert outbox.counts(str(data), ["hooks", "other"]) == {
        "hooks": {"pending": 0, "inflight": 0, "dead": 1}, "other": {"pending": 0, "inflight": 0, "dead": 0}}
    everything = caplog.text + "".join(p.read_text() for p in (data / "notify").rglob("*.json"))
    assert "dead letter" in caplog.text and "s3cr3t" not in everything and KEY.decode() not in everything


def test_refusals_are_permanent_and_retry_after_is_honoured(tmp_path: Path, receiver: Receiver) -> None:
    data, clock = tmp_path / "data", Clock()
    _configure(data, tmp_path, receiver.url())
    receiver.statuses[:] = [404]
    notify.emit(str(data), "drift-corrected", "corrected", branch="main")
    d = dispatcher.Dispatcher(str(data), clock=clock)
    d.run_once()
    (dead,) = outbox.dead_letters(str(data))
    assert dead["reason"] == "refused on attempt 1: HTTP 404"

    receiver.statuses[:] = [(503, {"Retry-After": "20"})]
    notify.emit(str(data), "drift-corrected", "corrected", branch="main")
    d.run_once()
    (name,) = _files(data, "pending")
    assert int(name[:15]) / 1000 - clock.now == pytest.approx(20, abs=0.01)
    record = json.loads((data / "notify" / "pending" / name).read_text())
    assert record["lastError"] == "HTTP 503"


def test_retry_after_header_is_read() -> None:
    from pushgate.notify import providers

    assert providers._retry_after("17") == 17.0
    assert providers._retry_after("soon") is None
    assert 0 <= (providers._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") or 0.0) < 1


def test_a_destination_no_longer_configured_makes_a_dead_letter(tmp_path: Path, receiver: Receiver) -> None:
    data = tmp_path / "data"
    _configure(data, tmp_path, receiver.url())
    notify.emit(str(data), "policy-change", "policies changed")
    configmod.persist(str(data), configmod.Config())
    dispatcher.Dispatcher(str(data)).run_once()
    (dead,) = outbox.dead_letters(str(data))
    assert dead["reason"] == "the destination is no longer configured" and receiver.events() == []


def test_a_down_destination_gets_one_attempt_per_pass(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _configure(data, tmp_path, f"http://127.0.0.1:{procs.free_port()}/hook")
    for i in range(5):
        notify.emit(str(data), "push-refused", f"refused {i}", branch="main")
    calls: list[str] = []

    def refused(d: settings.Destination, e: events.Event, attempt: int) -> int:
        calls.append(e.id)
        return dispatcher.providers.send(d, e, attempt)

    dispatcher.Dispatcher(str(data), send=refused).run_once()
    assert len(calls) == 1 and len(_files(data, "pending")) == 5


def test_many_dispatchers_deliver_each_event_exactly_once(tmp_path: Path, receiver: Receiver) -> None:
    data = tmp_path / "data"
    _configure(data, tmp_path, receiver.url())
    emitted = {f"{i}" for i in range(60)}
    runners = [dispatcher.Dispatcher(str(data), poll=0.01).start() for _ in range(4)]
    try:
        threads = [threading.Thread(target=lambda n=n: notify.emit(str(data), "push-refused", n,
                                                                   branch="main")) for n in emitted]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        receiver.wait(lambda got: len(got) >= len(emitted), 30, "every event")
        time.sleep(0.3)  # a double delivery would land now
    finally:
        for r in runners:
            r.stop()
    got = receiver.events()
    assert sorted(r.doc["message"] for r in got) == sorted(emitted)
    assert len({r.doc["id"] for r in got}) == len(emitted) and all(r.signed for r in got)


def test_claims_of_a_dead_dispatcher_go_back_after_the_lease(tmp_path: Path) -> None:
    data = tmp_path / "data"
    name = outbox.enqueue(str(data), "hooks", events.new("push-refused", "m"))
    claim = outbox.claim(str(data), name)
    assert claim is not None and outbox.claim(str(data), name) is None  # only one claim wins
    assert outbox.recover(str(data), time.time()) == 0  # a fresh claim stays
    assert outbox.recover(str(data), time.time() + outbox.LEASE + 1) == 1
    assert _files(data, "pending") == [name] and _files(data, "inflight") == []


def test_emit_never_raises_for_a_broken_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.json").write_text(json.dumps({"notifications": [{"name": "x", "type": "nope"}]}))
    assert notify.emit(str(data), "push-refused", "m", branch="main") == 0
    assert settings.load(str(tmp_path / "missing")) == ()
