"""Registry credentials from a Kubernetes Secret (type kubernetes.io/dockerconfigjson), read
through the real API server as image automation reads them, open a private registry built from
distribution's Go module; a Secret that is missing or not readable is an error naming it, never
its data."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from pushgate.automation import credentials, errors, registry
from tests.bed.controlplane import ControlPlane
from tests.bed.registry import start_registry

pytestmark = pytest.mark.cluster


def test_credentials_from_a_dockerconfigjson_secret(control_plane: ControlPlane, dynamic: Any,
                                                     namespace: str, tmp_path: Path) -> None:
    private = start_registry(tmp_path / "private", users={"robot": "s3cret"})
    try:
        private.push("team/api", "1.0.0", "1.2.0")
        auth = base64.b64encode(b"robot:s3cret").decode()
        config = json.dumps({"auths": {f"http://{private.host}/": {"auth": auth}}})
        name = f"pull-{secrets.token_hex(3)}"
        dynamic.resources.get(api_version="v1", kind="Secret").create(namespace=namespace, body={
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name},
            "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}})
        table = credentials.from_secret(f"{namespace}/{name}", str(control_plane.kubeconfig))
        assert sorted(registry.Client(table.get).tags(private.host, "team/api")) == ["1.0.0", "1.2.0"]

        with pytest.raises(credentials.CredentialsError) as missing:
            credentials.from_secret(f"{namespace}/absent", str(control_plane.kubeconfig))
        assert "HTTP 404" in str(missing.value) and "s3cret" not in str(missing.value)
        with pytest.raises(errors.RegistryDenied):
            registry.Client().tags(private.host, "team/api")
    finally:
        private.stop()
