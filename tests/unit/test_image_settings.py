"""The `images` section: off when absent, persisted when present, each bad value named, and it
needs the automation user its bumps are pushed as."""

from __future__ import annotations

import pytest

from pushgate import config

AUTOMATION = {"user": "bot", "tokenFile": "/run/bot.token"}


def test_absent_is_off_and_present_is_persisted() -> None:
    assert config.from_dict({}, "c").images is None
    assert "images" not in config.Config().to_dict()
    images = {"interval": 60, "insecureRegistries": ["r:5000"]}
    c = config.from_dict({"automation": AUTOMATION, "images": images}, "c")
    assert c.images == config.ImageSettings(interval=60.0, insecure_registries=("r:5000",))
    assert config.from_dict(c.to_dict(), "persisted") == c


@pytest.mark.parametrize(("images", "message"), [
    ({"interval": 0.5}, "images.interval must be at least 1"),
    ({"jitter": 1}, r"images.jitter must be in \[0, 1\)"),
    ({"branch": "refs/heads/main"}, "images.branch 'refs/heads/main'"),
    ({"credentialsSecret": "just-a-name"}, "expected namespace/name"),
    ({"every": 5}, r"images.every: unknown key"),
])
def test_bad_values_are_named(images: dict[str, object], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.from_dict({"automation": AUTOMATION, "images": images}, "c")


def test_images_need_the_automation_user() -> None:
    with pytest.raises(config.ConfigError, match=r"images needs automation\.user"):
        config.from_dict({"images": {}}, "c")
