"""The `notifications` configuration: parsed with errors naming the key, persisted with the rest,
filters by event, severity and branch, and secret files whose contents no error ever shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate import cli
from pushgate import config as configmod
from pushgate.notify import events, settings
from pushgate.notify.errors import SettingsError

SECRET_URL = "https://hooks.example.test/services/T000/B000/s3cr3t-token"


def _dest(**extra: object) -> dict[str, object]:
    return {"name": "hooks", "type": "generic", "urlFile": "/etc/hooks/address", **extra}


def test_a_destination_round_trips_through_the_persisted_configuration(tmp_path: Path) -> None:
    cfg = configmod.from_dict({"notifications": [
        _dest(hmacKeyFile="/etc/hooks/token", events=["push-refused", "health-failed"],
              branches=["main", "release/*"], severity="error", summary="prod", timeout=2,
              retry={"maxAttempts": 3, "maxAge": 60, "initialDelay": 0.5, "maxDelay": 10}),
        {"name": "chat", "type": "slack", "urlFile": "/etc/chat/address", "channel": "#deploys"},
    ]}, "test")
    hooks, chat = cfg.notifications
    assert hooks.events == ("push-refused", "health-failed") and hooks.retry.max_attempts == 3
    assert chat.type == "slack" and chat.channel == "#deploys" and chat.events == ()
    configmod.persist(str(tmp_path), cfg)
    assert configmod.load_persisted(str(tmp_path)) == cfg
    assert settings.load(str(tmp_path)) == cfg.notifications
    assert configmod.from_dict({}, "test").to_dict().get("notifications") is None


@pytest.mark.parametrize(("entry", "needle"), [
    (_dest(events=["push-refuse"]), "notifications[0] (hooks).events: unknown event 'push-refuse'"),
    (_dest(type="teams"), "notifications[0] (hooks).type 'teams': expected generic, generic-hmac, slack"),
    (_dest(url="x"), "notifications[0].url: unknown key"),
    ({"name": "hooks", "type": "generic"}, "notifications[0].urlFile: required"),
    (_dest(name="Hooks!"), "notifications[0].name 'Hooks!'"),
    (_dest(type="generic-hmac"), "(hooks).hmacKeyFile: required for type generic-hmac"),
    (_dest(type="slack", hmacKeyFile="/k"), "(hooks).hmacKeyFile: slack destinations are not signed"),
    (_dest(channel="#x"), "(hooks).channel: only for type slack"),
    (_dest(severity="warning"), "(hooks).severity 'warning': expected info or error"),
    (_dest(branches="main"), "(hooks).branches: expected a list"),
    (_dest(timeout=90), "(hooks).timeout: expected seconds in (0, 30]"),
    (_dest(retry={"maxAttempts": 0}), "(hooks).retry.maxAttempts: expected 1 to 1000"),
    (_dest(retry={"tries": 3}), "(hooks).retry.tries: unknown key"),
    (_dest(summary="x" * 300), "(hooks).summary: longer than 255"),
])
def test_bad_destinations_name_the_key(entry: dict[str, object], needle: str) -> None:
    with pytest.raises(configmod.ConfigError) as e:
        configmod.from_dict({"notifications": [entry]}, "--config f.yaml")
    assert needle in str(e.value)
    assert str(e.value).startswith("--config f.yaml: notifications[0]")


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(configmod.ConfigError, match=r"notifications\[1\]\.name: 'hooks' is named twice"):
        configmod.from_dict({"notifications": [_dest(), _dest()]}, "f")


def test_a_bad_file_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "pushgate.yaml"
    conf.write_text("notifications:\n  - {name: hooks, type: generic, urlFile: /x, events: [pushed]}\n")
    (tmp_path / "tree").mkdir()
    assert cli.main(["render", f"--config={conf}", str(tmp_path / "tree")]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "notifications[0] (hooks).events: unknown event 'pushed'" in err


@pytest.mark.parametrize(("filters", "event", "wanted"), [
    ({}, events.new("commit-applied", "m", branch="main"), True),
    ({"events": ["push-refused"]}, events.new("commit-applied", "m", branch="main"), False),
    ({"events": ["push-refused"]}, events.new("push-refused", "m", branch="main"), True),
    ({"branches": ["release/*"]}, events.new("push-refused", "m", branch="release/v1"), True),
    ({"branches": ["release/*"]}, events.new("push-refused", "m", branch="main"), False),
    ({"branches": ["main"]}, events.new("push-refused", "m", branch="refs/tags/v1"), False),
    ({"branches": ["main"]}, events.new("policy-change", "m"), True),  # about no branch
    ({"severity": "error"}, events.new("commit-applied", "m", branch="main"), False),
    ({"severity": "error"}, events.new("health-failed", "m", branch="main"), True),
])
def test_filters_by_event_branch_and_severity(filters: dict[str, object], event: events.Event,
                                              wanted: bool) -> None:
    (d,) = settings.parse([_dest(**filters)])
    assert d.matches(event) is wanted


def test_secret_files_are_checked_and_never_shown(tmp_path: Path) -> None:
    url, key = tmp_path / "address", tmp_path / "token"
    (d,) = settings.parse([_dest(urlFile=str(url), hmacKeyFile=str(key))])
    with pytest.raises(SettingsError, match=r"notifications\[0\] \(hooks\)\.urlFile .*: cannot read"):
        settings.check_files((d,))
    url.write_text("not a url " + SECRET_URL + "\n")
    key.write_text("k3y\n")
    with pytest.raises(SettingsError) as e:
        settings.check_files((d,))
    assert "does not hold an http:// or https:// URL" in str(e.value)
    assert "s3cr3t" not in str(e.value) and "k3y" not in str(e.value)
    url.write_text(SECRET_URL + "\n")
    settings.check_files((d,))
    assert settings.read_secret(d, "urlFile") == SECRET_URL  # the trailing newline dropped
    assert settings.read_secret(d, "hmacKeyFile") == "k3y"


def test_unknown_event_types_are_a_callers_bug() -> None:
    with pytest.raises(events.UnknownEvent):
        events.new("pushed", "m")
    assert set(events.TYPES) >= {"image-bump-committed", "image-bump-refused", "policy-change"}
