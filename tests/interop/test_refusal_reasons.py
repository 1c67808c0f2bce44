"""Every refusal carries a typed reason: in the push log and as the pushes metric's label. Each
reason is produced the way it happens in use (the stock git client, or a hand-built request for
what git will not send), and a gate that fails inside refuses cleanly instead of answering 500."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gitserver.receive import Refusal
from tests.bed import procs, rawgit, samples, signers
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server


def _metrics(server: Server) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _last_push(server: Server) -> dict[str, object]:
    lines = (server.data_dir / "pushes.jsonl").read_text().splitlines()
    return dict(json.loads(lines[-1]))


def _seed(git: Git, server: Server, tmp_path: Path) -> tuple[Path, str]:
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace(), "cm.yaml": samples.configmap()})
    head = git.commit_all(work, "seed")
    git.run("push", "-q", server.url(), "main", cwd=work)
    return work, head


def test_every_refusal_reason_is_typed_and_counted(git: Git, server_factory: Callable[..., Server],
                                                   tmp_path: Path) -> None:
    server = server_factory("--workers=1")
    work, head = _seed(git, server, tmp_path)
    seen: dict[str, str] = {}

    def refused(expect: Refusal, res: subprocess.CompletedProcess[str] | list[bytes]) -> None:
        if isinstance(res, subprocess.CompletedProcess):
            assert res.returncode != 0, res.stderr
        else:
            assert any(line.startswith(b"ng ") for line in res), res
        entry = _last_push(server)
        assert entry["accepted"] is False and entry["refusal"] == expect.value, entry
        seen[expect.value] = str(entry["reason"])

    # gate: a manifest the gate refuses
    git.write(work, {"bad.yaml": samples.deployment(image="nginx:latest")})
    git.commit_all(work, "bad")
    refused(Refusal.GATE, git.run("push", server.url(), "main", cwd=work, check=False))
    # dry-run: checked, nothing stored
    git.run("reset", "-q", "--hard", head, cwd=work)
    git.write(work, {"cm2.yaml": samples.configmap(name="two")})
    git.commit_all(work, "fine")
    refused(Refusal.DRY_RUN, git.run("push", "-o", "dry-run", server.url(), "main", cwd=work,
                                     check=False))
    # protected: force-push of main
    git.run("reset", "-q", "--hard", head, cwd=work)
    git.write(work, {"cm3.yaml": samples.configmap(name="three")})
    git.commit_all(work, "fine")
    git.run("push", "-q", server.url(), "main", cwd=work)
    git.run("reset", "-q", "--hard", head, cwd=work)
    git.commit_all(work, "rewrite")
    refused(Refusal.PROTECTED, git.run("push", "--force", server.url(), "main", cwd=work, check=False))
    # own-ref: pushgate's deploy state
    refused(Refusal.OWN_REF, git.run("push", server.url(), "HEAD:refs/deployed/main", cwd=work,
                                     check=False))
    # ref-name: a name git itself would refuse, sent by hand
    refused(Refusal.REF_NAME, rawgit.push(server, [f"{rawgit.ZERO} {head} refs/heads/a..b".encode()]))
    # incomplete: a tip that is not in the pack
    refused(Refusal.INCOMPLETE, rawgit.push(server, [f"{rawgit.ZERO} {'1' * 40} refs/heads/x".encode()]))
    # pack: garbage where the pack should be
    refused(Refusal.PACK, rawgit.push(server, [f"{rawgit.ZERO} {head} refs/heads/y".encode()],
                                      pack=b"PACK\x00\x00\x00\x02\x00\x00\x00\x01garbage"))
    # stale: the branch moved since the pusher looked (old value no longer current)
    git.run("push", "-q", server.url(), f"{head}:refs/heads/feature", cwd=work)
    tip = git.rev_parse(work, "HEAD")
    git.run("push", "-q", server.url(), "HEAD:refs/heads/other", cwd=work)  # tip's objects stored
    refused(Refusal.STALE, rawgit.push(server, [f"{tip} {tip} refs/heads/feature".encode()]))

    body = _metrics(server)
    for label in seen:
        assert f'pushgate_pushes_total{{reason="{label}",result="refused"}} 1.0' in body, (label, body)
    assert 'reason="other"' not in body


def test_gate_timeout_engine_and_internal_failures_are_typed(git: Git, server_factory: Callable[..., Server],
                                                             tmp_path: Path) -> None:
    closed = procs.free_port()
    allowed = signers.allowed_signers(tmp_path / "allowed_signers",
                                      {"admin": signers.ssh_key(tmp_path / "keys", "admin")})
    cases = [
        (Refusal.TIMEOUT, ("--gate-timeout=0.0001",), {}),
        (Refusal.ENGINE, (f"--opa-url=http://127.0.0.1:{closed}",), {}),
        (Refusal.INTERNAL, (), {"PUSHGATE_FAULT": "gate-check"}),
        # signature: an unsigned commit where signed ones are required
        (Refusal.SIGNATURE, ("--require-signed=refs/heads/*", f"--allowed-signers={allowed}"), {}),
    ]
    for i, (expect, args, env) in enumerate(cases):
        server = server_factory("--workers=1", *args, env=env)
        work = git.init(tmp_path / f"w{i}")
        git.write(work, {"ns.yaml": samples.namespace()})
        git.commit_all(work, "x")
        res = git.run("push", server.url(), "main", cwd=work, check=False)
        assert res.returncode != 0 and "[remote rejected]" in res.stderr, res.stderr
        assert server.refs() == {}
        entry = _last_push(server)
        assert entry["refusal"] == expect.value, entry
        assert f'pushgate_pushes_total{{reason="{expect.value}",result="refused"}} 1.0' in _metrics(server)
        if expect is Refusal.INTERNAL:
            assert "pushgate: gate could not decide: InjectedFault: injected fault at gate-check" \
                   in res.stderr, res.stderr
            records = [json.loads(x) for x in server.log().splitlines() if x.startswith("{")]
            logged = [r for r in records if r.get("msg", "").startswith("gate could not decide")]
            assert logged and logged[0]["request_id"] in res.stderr, server.log()[-2000:]
        assert "Internal Server Error" not in server.log()


def test_hostile_kustomization_is_a_clean_refusal(git: Git, server: Server, tmp_path: Path) -> None:
    work, _ = _seed(git, server, tmp_path)
    git.write(work, {"app/kustomization.yaml": "resources: " + "[" * 10_000 + "\n",
                     "app/cm.yaml": samples.configmap(name="k")})
    git.commit_all(work, "deep")
    res = git.run("push", server.url(), "main", cwd=work, check=False)
    assert res.returncode != 0
    assert "remote: app/kustomization.yaml:" in res.stderr and "[kustomize]" in res.stderr, res.stderr
    assert _last_push(server)["refusal"] == Refusal.GATE.value
    assert "Traceback" not in server.log() and "RecursionError" not in server.log()
    # the same tree through `pushgate validate`: the same report, no traceback
    out = subprocess.run([PUSHGATE, "validate", str(work)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout
    assert "app/kustomization.yaml:" in out.stdout and "[kustomize]" in out.stdout, out.stdout


def test_the_push_log_says_where_the_server_time_went(git: Git, server_factory: Callable[..., Server],
                                                      tmp_path: Path) -> None:
    server = server_factory("--workers=1")
    work, _head = _seed(git, server, tmp_path)
    accepted = _last_push(server)
    phases = accepted["phases"]
    assert isinstance(phases, dict)
    assert list(phases) == ["pack", "refs", "scopes and signatures", "gate", "store"], phases
    assert all(isinstance(v, float) and v >= 0 for v in phases.values())
    assert sum(phases.values()) <= float(str(accepted["seconds"])) + 0.01
    git.write(work, {"bad.yaml": samples.deployment(image="nginx:latest")})
    git.commit_all(work, "bad")
    git.run("push", server.url(), "main", cwd=work, check=False)
    refused = _last_push(server)
    assert refused["accepted"] is False
    assert list(refused["phases"]) == ["pack", "refs", "scopes and signatures", "gate"]  # type: ignore[call-overload]
