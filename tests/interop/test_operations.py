"""Operations: Prometheus metrics, JSON logs with request ids, health and readiness probes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server


def _get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_metrics_count_pushes_by_result_and_reason(git: Git, server: Server, tmp_path: Path) -> None:
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace()})
    git.commit_all(work, "good")
    git.run("push", server.url(), "main", cwd=work)
    git.write(work, {"bad.yaml": samples.deployment(image="nginx:latest")})
    git.commit_all(work, "bad")
    git.run("push", server.url(), "main", cwd=work, check=False)

    status, headers, body = _get(f"http://127.0.0.1:{server.port}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'pushgate_pushes_total{reason="ok",result="accepted"} 1.0' in body
    assert 'pushgate_pushes_total{reason="gate",result="refused"} 1.0' in body
    assert "pushgate_gate_seconds_bucket" in body and "pushgate_gate_seconds_count 2.0" in body


def test_logs_are_json_with_request_and_commit_ids(git: Git, server: Server, tmp_path: Path) -> None:
    work = git.init(tmp_path / "w")
    git.write(work, {"ns.yaml": samples.namespace()})
    head = git.commit_all(work, "good")
    git.run("push", server.url(), "main", cwd=work)
    records = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    pushes = [r for r in records if r.get("msg", "").startswith("push accepted")]
    assert pushes, server.log()[-2000:]
    assert pushes[0]["commit"] == head[:12] and pushes[0]["pusher"] == "admin"
    assert len(pushes[0]["request_id"]) >= 8


def test_probes_and_request_id_header(server: Server) -> None:
    status, headers, body = _get(f"http://127.0.0.1:{server.port}/readyz")
    assert status == 200 and json.loads(body)["checks"] == {"repository": True, "policies": True}
    assert len(headers["X-Request-Id"]) == 16
    assert _get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200


def test_readyz_fails_while_opa_is_unreachable(server_factory: object) -> None:
    from tests.bed import procs

    assert callable(server_factory)
    s = server_factory(f"--opa-url=http://127.0.0.1:{procs.free_port()}")
    status, _, body = _get(f"http://127.0.0.1:{s.port}/readyz")
    assert status == 503 and json.loads(body)["checks"]["opa"] is False
    assert _get(f"http://127.0.0.1:{s.port}/healthz")[0] == 200
