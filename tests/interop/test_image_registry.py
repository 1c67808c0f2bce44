"""The registry client against the real distribution registry on loopback: tags listed across
pages, anonymously and with Basic auth (htpasswd, bcrypt), credentials from a docker config
file; refused and missing credentials are `RegistryDenied`, a registry that is down is
`RegistryUnavailable` (temporary)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pushgate.automation import credentials, errors, registry
from tests.bed import procs
from tests.bed.registry import start_registry


@pytest.fixture
def anonymous(tmp_path: Path):  # type: ignore[no-untyped-def]
    r = start_registry(tmp_path / "anon")
    yield r
    r.stop()


@pytest.fixture
def private(tmp_path: Path):  # type: ignore[no-untyped-def]
    r = start_registry(tmp_path / "private", users={"robot": "s3cret"})
    yield r
    r.stop()


def test_tags_are_listed_across_pages(anonymous) -> None:  # type: ignore[no-untyped-def]
    anonymous.push("shop/web", "1.0.0", "1.1.0", "2.0.0-rc.1", "latest", "main-7")
    client = registry.Client(page_size=2)
    assert sorted(client.tags(anonymous.host, "shop/web")) == \
        ["1.0.0", "1.1.0", "2.0.0-rc.1", "latest", "main-7"]
    with pytest.raises(errors.RegistryError, match="not found"):
        client.tags(anonymous.host, "shop/missing")


def test_basic_auth_from_a_docker_config_file(private, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    private.push("team/api", "3", "10")
    with pytest.raises(errors.RegistryDenied, match="none are configured"):
        registry.Client().tags(private.host, "team/api")
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"robot:s3cret").decode()
    config.write_text(json.dumps({"auths": {f"http://{private.host}/": {"auth": auth}}}))
    table = credentials.from_file(str(config))
    assert sorted(registry.Client(table.get).tags(private.host, "team/api")) == ["10", "3"]
    wrong = {private.host: registry.Credentials("robot", "nope")}
    with pytest.raises(errors.RegistryDenied) as denied:
        registry.Client(wrong.get).tags(private.host, "team/api")
    assert "nope" not in str(denied.value)


def test_a_registry_that_is_down_is_temporary() -> None:
    with pytest.raises(errors.RegistryUnavailable) as e:
        registry.Client(timeout=2).tags(f"127.0.0.1:{procs.free_port()}", "x/y")
    assert e.value.temporary


def test_secret_data_and_docker_hub_keys() -> None:
    doc = {"auths": {"https://index.docker.io/v1/": {"username": "u", "password": "p"}}}
    data = {".dockerconfigjson": base64.b64encode(json.dumps(doc).encode()).decode()}
    assert credentials.from_secret_data(data, "s") == {"docker.io": registry.Credentials("u", "p")}
    with pytest.raises(credentials.CredentialsError, match=r"no \.dockerconfigjson"):
        credentials.from_secret_data({"token": "x"}, "s")


def test_the_bearer_token_flow_with_and_without_credentials(tmp_path: Path) -> None:
    public = start_registry(tmp_path / "public", bearer=True)
    private = start_registry(tmp_path / "private", {"robot": "s3cret"}, bearer=True)
    try:
        public.push("shop/web", "1.0.0", "1.1.0")
        private.push("team/api", "7")
        client = registry.Client()
        assert sorted(client.tags(public.host, "shop/web")) == ["1.0.0", "1.1.0"]
        assert client.tags(public.host, "shop/web")  # the cached token is used again
        assert public.tokens is not None
        asked = [p for p in public.tokens.requests if "shop%2Fweb%3Apull" in p or "shop/web:pull" in p]
        assert len(asked) == 1, public.tokens.requests
        assert "service=pushgate-test-registry" in asked[0]
        with pytest.raises(errors.RegistryDenied, match="token service refused"):
            registry.Client().tags(private.host, "team/api")
        creds = {private.host: registry.Credentials("robot", "s3cret")}
        assert registry.Client(creds.get).tags(private.host, "team/api") == ["7"]
    finally:
        public.stop()
        private.stop()
