"""The status page, rendered by headless Chromium, shows the state of real pushes: the applied
commit with its health, the applied objects, a refused push with its reason, and drift."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def _chromium() -> str:
    res = subprocess.run(["bash", str(ROOT / "scripts" / "browser.sh")], capture_output=True, text=True,
                         check=True, timeout=900)
    return res.stdout.strip().splitlines()[-1]


def _dump_dom(url: str, tmp_path: Path) -> str:
    res = subprocess.run([
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", url,
    ], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_page_renders_pushes_objects_and_drift(git: Git, attached_server: Server, dynamic: Any,
                                               tmp_path: Path) -> None:
    ns = f"page-{secrets.token_hex(3)}"
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace(ns), "cm.yaml": samples.configmap(namespace=ns)})
    head = git.commit_all(work, "page demo commit")
    git.run("push", attached_server.url(), "main", cwd=work)
    deploy.wait_status(attached_server, deploy.verdict_for(head), what="apply")
    git.write(work, {"bad.yaml": samples.deployment(namespace=ns, image="nginx:latest")})
    git.commit_all(work, "bad one")
    git.run("push", attached_server.url("writer"), "main", cwd=work, check=False)
    dynamic.resources.get(api_version="v1", kind="ConfigMap").patch(
        name="settings", namespace=ns, body={"data": {"value": "tampered"}},
        content_type="application/merge-patch+json")
    deadline = time.monotonic() + 20
    while not deploy.status(attached_server).get("drift") and time.monotonic() < deadline:
        time.sleep(0.2)

    url = f"http://reader:{attached_server.tokens['reader']}@127.0.0.1:{attached_server.port}/"
    dom = _dump_dom(url, tmp_path)
    commits = dom.split('id="commits"', 1)[1].split("</section>", 1)[0]
    assert head[:12] in commits and "page demo commit" in commits and "Ready" in commits
    objects = dom.split('id="objects"', 1)[1].split("</section>", 1)[0]
    assert f"ConfigMap/{ns}/settings" in objects and "applied" in objects
    refused = dom.split('id="refused"', 1)[1].split("</section>", 1)[0]
    assert "writer" in refused and "pushgate.k8s.images/deny" in refused
    drift = dom.split('id="drift"', 1)[1].split("</section>", 1)[0]
    assert f"ConfigMap/{ns}/settings" in drift and "data.value" in drift
    for token in attached_server.tokens.values():
        assert token not in dom


def test_page_needs_the_read_role(attached_server: Server) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{attached_server.port}/", timeout=10)
    e.value.close()
    assert e.value.code == 401
