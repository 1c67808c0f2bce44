"""Notifications from a real `pushgate serve` (no cluster attached) to receivers on loopback:
a push the gate refuses, through the stock git CLI, arrives signed with its reason; filters by
event and branch hold; a receiver that is down gets it once back; one that never comes back
makes a dead letter counted in /metrics. No URL or key shows in logs, status or errors."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.bed import procs, samples
from tests.bed.gitcli import Git
from tests.bed.receiver import Receiver
from tests.bed.server import PUSHGATE, Server

KEY = b"interop-k3y"
SECRET = "s3cr3t-path-token"
# A policy of the test's own: these tests are about notifications, not the starter library.
POLICY = """package main

import rego.v1

deny contains msg if {
	input.kind == "Deployment"
	some c in input.spec.template.spec.containers
	endswith(c.image, ":latest")
	msg := sprintf("%s: image %s uses the latest tag", [input.metadata.name, c.image])
}
"""


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.stop()


def _secrets(tmp: Path, name: str, url: str) -> tuple[Path, Path]:
    (tmp / f"{name}.address").write_text(url + "\n")
    (tmp / f"{name}.token").write_bytes(KEY + b"\n")
    return tmp / f"{name}.address", tmp / f"{name}.token"


def _config(tmp: Path, destinations: list[dict[str, object]], gate: str = "") -> Path:
    path = tmp / "pushgate.yaml"
    path.write_text(gate + "notifications: " + json.dumps(destinations) + "\n")
    return path


def _serve(server_factory: Callable[..., Server], tmp: Path, conf: Path) -> Server:
    return server_factory(f"--config={conf}", f"--policies={samples.policy_dir(tmp / 'policies', POLICY)}")


def _push_bad(git: Git, server: Server, work: Path, branch: str,
              name: str) -> subprocess.CompletedProcess[str]:
    git.write(work, {f"{name}.yaml": samples.deployment(name=name, image="nginx:latest")})
    git.commit_all(work, f"bad {name}")
    res = git.run("push", server.url(), f"HEAD:refs/heads/{branch}", cwd=work, check=False)
    assert res.returncode != 0, res.stderr
    return res


def _metrics(server: Server) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _status(server: Server) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PUSHGATE, "status", f"--data-dir={server.data_dir}"], capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_refused_push_is_notified_signed_filtered_and_in_slack_shape(
        git: Git, server_factory: Callable[..., Server], receivers: list[Receiver], tmp_path: Path) -> None:
    hooks, chat, quiet = (Receiver(key=KEY).start(), Receiver().start(), Receiver().start())
    receivers.extend([hooks, chat, quiet])
    url, token = _secrets(tmp_path, "hooks", hooks.url(f"/{SECRET}"))
    chat_url, _ = _secrets(tmp_path, "chat", chat.url(f"/services/{SECRET}"))
    quiet_url, _ = _secrets(tmp_path, "quiet", quiet.url())
    conf = _config(tmp_path, [
        {"name": "hooks", "type": "generic-hmac", "urlFile": str(url), "hmacKeyFile": str(token),
         "branches": ["main"], "summary": "interop"},
        {"name": "chat", "type": "slack", "urlFile": str(chat_url), "events": ["push-refused"]},
        {"name": "quiet", "type": "generic", "urlFile": str(quiet_url), "events": ["health-failed"]},
    ], gate="gate: {gatedRefs: [refs/heads/main, refs/heads/dev]}\n")
    server = _serve(server_factory, tmp_path, conf)
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace(), "cm.yaml": samples.configmap()})
    git.commit_all(work, "seed")
    git.run("push", "-q", server.url(), "main", cwd=work)  # accepted: nothing to say
    git.write(work, {"cm2.yaml": samples.configmap(name="two")})
    git.commit_all(work, "fine")
    assert git.run("push", "-o", "dry-run", server.url(), "HEAD:refs/heads/main", cwd=work,
                   check=False).returncode != 0  # a dry run is not a refusal: no event
    res = _push_bad(git, server, work, "main", "web")
    head = git.rev_parse(work, "HEAD")
    _push_bad(git, server, work, "dev", "api")

    (got,) = hooks.wait(lambda g: len(g) >= 1, what="the signed push-refused")
    assert got.signed is True and got.path == f"/{SECRET}"
    doc = got.doc
    assert doc["event"] == "push-refused" and doc["severity"] == "error" and doc["branch"] == "main"
    assert doc["commit"] == head and doc["summary"] == "interop" and doc["details"]["refusal"] == "gate"
    assert doc["details"]["pusher"] == "admin" and "problem" in doc["details"]["reason"]
    assert doc["details"]["repo"] == "cluster.git"
    assert doc["details"]["report"] and all(line in res.stderr for line in doc["details"]["report"])
    assert got.headers["x-pushgate-event-id"] == doc["id"]

    slack = chat.wait(lambda g: len(g) >= 2, what="both refusals in slack")
    texts = sorted(r.doc["text"] for r in slack)
    assert all(set(r.doc) == {"text", "blocks"} for r in slack)
    assert "push to dev by admin refused (gate)" in texts[0] and "push to main" in texts[1]
    assert all("x-signature" not in r.headers for r in slack)

    assert len(hooks.events()) == 1 and quiet.events() == []  # branch and event filters
    log = server.log()
    assert "delivered to hooks" in log
    status = _status(server)
    assert "notify hooks" in status.stdout and "0 dead letters" in status.stdout
    api = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/v1/status",
        headers={"Authorization": _basic("reader", server.tokens["reader"])}), timeout=10).read())
    assert set(api["notifications"]) == {"hooks", "chat", "quiet"}
    for shown in (log, status.stdout + status.stderr, json.dumps(api),
                  (server.data_dir / "config.json").read_text()):
        assert SECRET not in shown and KEY.decode() not in shown


def test_a_receiver_down_then_back_gets_the_event_and_one_never_back_is_a_dead_letter(
        git: Git, server_factory: Callable[..., Server], receivers: list[Receiver], tmp_path: Path) -> None:
    back_port, gone_port = procs.free_port(), procs.free_port()
    late_url, late_key = _secrets(tmp_path, "late", f"http://127.0.0.1:{back_port}/{SECRET}")
    gone_url, _ = _secrets(tmp_path, "gone", f"http://127.0.0.1:{gone_port}/{SECRET}")
    conf = _config(tmp_path, [
        {"name": "late", "type": "generic-hmac", "urlFile": str(late_url), "hmacKeyFile": str(late_key),
         "retry": {"maxAttempts": 100, "maxAge": 600, "initialDelay": 0.5, "maxDelay": 1}},
        {"name": "gone", "type": "generic", "urlFile": str(gone_url),
         "retry": {"maxAttempts": 3, "maxAge": 600, "initialDelay": 0.2, "maxDelay": 0.5}},
    ])
    server = _serve(server_factory, tmp_path, conf)
    work = git.init(tmp_path / "work")
    _push_bad(git, server, work, "main", "web")
    head = git.rev_parse(work, "HEAD")
    pending = server.data_dir / "notify" / "pending"
    procs.wait_until(lambda: any(json.loads(p.read_text()).get("attempts", 0) >= 2
                                 for p in pending.glob("*-late-*.json")), 30,
                     "failed attempts to the receiver that is down", on_timeout=server.log)
    back = Receiver(port=back_port, key=KEY).start()
    receivers.append(back)
    (got,) = back.wait(lambda g: len(g) >= 1, what="the event once the receiver is back")
    assert got.signed and got.doc["commit"] == head and int(got.headers["x-pushgate-delivery-attempt"]) >= 3

    procs.wait_until(lambda: 'pushgate_notification_dead_letters_total{destination="gone"} 1.0'
                     in _metrics(server), 30, "the dead letter in /metrics", on_timeout=server.log)
    metrics = _metrics(server)
    assert 'pushgate_notifications_total{destination="late",result="delivered"} 1.0' in metrics
    assert 'pushgate_notifications_total{destination="gone",result="retried"} 2.0' in metrics
    status = _status(server)
    assert "notify gone      0 pending, 1 dead letters" in status.stdout, status.stdout
    dead = list((server.data_dir / "notify" / "dead").glob("*.json"))
    assert len(dead) == 1 and "gave up after 3 attempts" in dead[0].read_text()
    for shown in (server.log(), status.stdout, dead[0].read_text(), metrics):
        assert SECRET not in shown and KEY.decode() not in shown


def test_serve_refuses_bad_notification_settings_naming_the_key(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    subprocess.run([PUSHGATE, "user", "add", "--users", str(users), "admin", "--role", "admin"],
                   capture_output=True, check=True)
    url, _ = _secrets(tmp_path, "hooks", f"ftp://example.test/{SECRET}")
    cases = [
        ([{"name": "hooks", "type": "generic", "urlFile": str(url), "events": ["pushed"]}],
         "notifications[0] (hooks).events: unknown event 'pushed'"),
        ([{"name": "hooks", "type": "teams", "urlFile": str(url)}],
         "notifications[0] (hooks).type 'teams'"),
        ([{"name": "hooks", "type": "generic", "urlFile": str(url)}],
         f"notifications[0] (hooks).urlFile {url}: does not hold an http:// or https:// URL"),
        ([{"name": "hooks", "type": "generic", "urlFile": str(tmp_path / "absent")}],
         f"notifications[0] (hooks).urlFile {tmp_path / 'absent'}: cannot read"),
    ]
    for destinations, needle in cases:
        conf = _config(tmp_path, destinations)
        res = subprocess.run([PUSHGATE, "serve", f"--data-dir={tmp_path / 'data'}", f"--users={users}",
                              f"--listen=127.0.0.1:{procs.free_port()}", f"--config={conf}"],
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 2 and needle in res.stderr, res.stderr
        assert SECRET not in res.stderr


def _basic(user: str, token: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def test_an_accepted_policy_change_is_notified(
        git: Git, server_factory: Callable[..., Server], receivers: list[Receiver], tmp_path: Path) -> None:
    hooks = Receiver(key=KEY).start()
    receivers.append(hooks)
    url, token = _secrets(tmp_path, "hooks", hooks.url(f"/{SECRET}"))
    conf = _config(tmp_path, [{"name": "hooks", "type": "generic-hmac", "urlFile": str(url),
                               "hmacKeyFile": str(token), "events": ["policy-change"]}])
    server = _serve(server_factory, tmp_path, conf)
    work = git.init(tmp_path / "policies-work")
    git.write(work, {"main.rego": POLICY})
    head = git.commit_all(work, "policies")
    res = git.run("push", server.url("admin", "policies.git"), "HEAD:refs/heads/main", cwd=work, check=False)
    assert res.returncode == 0, res.stderr
    (got,) = hooks.wait(lambda g: len(g) >= 1, what="the policy-change event")
    assert got.signed and got.doc["event"] == "policy-change" and got.doc["commit"] == head
    assert got.doc["details"] == {"pusher": "admin", "breaking": 0}
    # a draft branch of policies.git is not a policy change
    git.run("push", server.url("admin", "policies.git"), "HEAD:refs/heads/draft", cwd=work)
    assert not list((server.data_dir / "notify" / "pending").glob("*.json"))  # nothing spooled
    assert len(hooks.events()) == 1
