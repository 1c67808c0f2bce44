"""Image automation end to end: a real distribution registry on loopback with images pushed by
the test, a real `pushgate serve` whose `images:` section starts `pushgate automate`, and the
stock git CLI. The scanner commits ONE bump commit through the gate (authored by the automation
identity, its message listing the bump), leaves a locked workload alone, commits nothing when
nothing changed, stores nothing when the gate refuses (and reports it: status file, `pushgate
status`, webhook), and does not fight a `git revert` of its bump until a newer tag appears."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, procs, samples
from tests.bed.gitcli import Git
from tests.bed.receiver import Receiver
from tests.bed.registry import OciRegistry, start_registry
from tests.bed.server import DEFAULT_USERS, PUSHGATE, Server

USERS = (*DEFAULT_USERS, ("bot", "write"))
POLICY = """package tags

deny contains msg if {
	some c in input.spec.template.spec.containers
	endswith(c.image, ":1.3.0")
	msg := sprintf("%s: image %s is known bad", [input.metadata.name, c.image])
}
"""


def workload(name: str, image: str, *, locked: bool = False) -> str:
    lock = '\n    pushgate.io/image-lock: "true"' if locked else ""
    return f"""# {name}: bumped by pushgate within 1.x
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: shop
  annotations:
    pushgate.io/image-policy.{name}: "semver:>=1.0 <2.0"{lock}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: {name}
          image: {image}   # the app
          resources:
            requests: {{cpu: 50m, memory: 64Mi}}
            limits: {{cpu: 200m, memory: 128Mi}}
"""


@pytest.fixture
def oci(tmp_path: Path) -> Iterator[OciRegistry]:
    r = start_registry(tmp_path / "registry")
    yield r
    r.stop()


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def server(server_factory: Callable[..., Server], tmp_path: Path, hooks: Receiver) -> Server:
    policies = samples.policy_dir(tmp_path / "policies", POLICY)
    (tmp_path / "hook.address").write_text(hooks.url() + "\n")

    def config(workdir: Path) -> str:
        return (f"automation:\n  user: bot\n  tokenFile: {workdir / 'tokens' / 'bot'}\n"
                f"  author: pushgate-bot <bot@pushgate.test>\n"
                f"images:\n  interval: 1\n  jitter: 0\n"
                f"notifications:\n  - {{name: hooks, type: generic, urlFile: {tmp_path / 'hook.address'},"
                f" events: [image-bump-committed, image-bump-refused]}}\n")

    return server_factory(f"--policies={policies}", users=USERS, config=config)


def head(server: Server) -> str:
    return server.refs().get("refs/heads/main", "")


def status(server: Server) -> dict[str, Any]:
    try:
        return json.loads((server.data_dir / "automation" / "images.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def scans_after(server: Server, n: int = 2) -> dict[str, Any]:
    """The status once `n` more scans have finished."""
    start = status(server).get("scans", 0)
    procs.wait_until(lambda: status(server).get("scans", 0) >= start + n, 30, f"{n} more image scans",
                     on_timeout=server.log)
    return status(server)


def wait_head_change(server: Server, old: str) -> str:
    procs.wait_until(lambda: head(server) not in ("", old), 30, "a bump commit on main",
                     on_timeout=lambda: json.dumps(status(server), indent=1) + server.log()[-3000:])
    return head(server)


def seed(git: Git, server: Server, tmp_path: Path, files: dict[str, str]) -> tuple[Path, str]:
    work = git.init(tmp_path / "work")
    git.write(work, {"ns.yaml": samples.namespace(), **files})
    sha = git.commit_all(work, "seed")
    git.run("push", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    return work, sha


def test_one_bump_commit_through_the_gate_lock_honoured_and_nothing_when_nothing_changed(
        git: Git, server: Server, oci: OciRegistry, hooks: Receiver, tmp_path: Path) -> None:
    oci.push("shop/web", "1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0")
    oci.push("shop/api", "1.0.0", "1.4.0")
    web_yaml = workload("web", f"{oci.host}/shop/web:1.0.0")
    files = {"apps/web.yaml": web_yaml, "apps/api.yaml": workload("api", f"{oci.host}/shop/api:1.0.0"),
             "apps/frozen.yaml": workload("frozen", f"{oci.host}/shop/web:1.0.0", locked=True)}
    _, seeded = seed(git, server, tmp_path, files)
    bumped = wait_head_change(server, seeded)

    clone = tmp_path / "clone"
    git.run("clone", "-q", server.url("reader"), str(clone))
    log = git.run("log", "-1", "--format=%an <%ae>%n%P%n%B", cwd=clone).stdout
    assert log.splitlines()[:2] == ["pushgate-bot <bot@pushgate.test>", seeded]
    assert log.splitlines()[2:] == [
        "pushgate: bump images", "",
        f"apps/api.yaml: Deployment/shop/api api: {oci.host}/shop/api 1.0.0 -> 1.4.0",
        f"apps/web.yaml: Deployment/shop/web web: {oci.host}/shop/web 1.0.0 -> 1.1.0", ""]
    # only the image scalar changed: the comment after it, the header comment, the rest stay
    assert (clone / "apps/web.yaml").read_text() == web_yaml.replace("web:1.0.0   #", "web:1.1.0   #")
    assert (clone / "apps/frozen.yaml").read_text() == files["apps/frozen.yaml"]  # locked
    assert git.run("rev-list", "--count", "HEAD", cwd=clone).stdout.strip() == "2"  # ONE commit

    doc = scans_after(server)
    assert head(server) == bumped  # nothing changed: no commit
    assert doc["result"] == "unchanged" and doc["lastCommit"]["commit"] == bumped
    frozen = next(c for c in doc["containers"] if c["workload"] == "Deployment/shop/frozen")
    assert frozen["locked"] and "latest" not in frozen
    (got,) = hooks.wait(lambda g: len(g) >= 1, what="image-bump-committed")
    assert got.doc["event"] == "image-bump-committed" and got.doc["commit"] == bumped
    assert len(got.doc["details"]["bumps"]) == 2


def test_a_bump_the_gate_refuses_is_not_stored_and_is_reported(
        git: Git, server: Server, oci: OciRegistry, hooks: Receiver, tmp_path: Path) -> None:
    oci.push("shop/web", "1.0.0")
    _, seeded = seed(git, server, tmp_path, {"web.yaml": workload("web", f"{oci.host}/shop/web:1.0.0")})
    scans_after(server, 1)
    before = server.refs(), server.object_files()
    oci.push("shop/web", "1.3.0")
    procs.wait_until(lambda: status(server).get("result") == "refused", 30, "the refused bump",
                     on_timeout=lambda: json.dumps(status(server), indent=1))
    assert (server.refs(), server.object_files()) == before  # nothing stored
    assert server.quarantines() == []
    doc = status(server)
    refusal = doc["lastRefusal"]
    assert refusal["base"] == seeded
    assert refusal["bumps"] == [f"web.yaml: Deployment/shop/web web: {oci.host}/shop/web 1.0.0 -> 1.3.0"]
    assert any("[tags/deny] web: image" in line and ":1.3.0 is known bad" in line
               for line in refusal["lines"]), refusal["lines"]
    (got,) = hooks.wait(lambda g: any(r.doc["event"] == "image-bump-refused" for r in g),
                        what="image-bump-refused")[:1]
    assert got.doc["details"]["bumps"] == refusal["bumps"]
    assert any("known bad" in line for line in got.doc["details"]["report"])
    # the same bump on the same head is held, not pushed (and refused) at every scan
    doc = scans_after(server)
    assert doc["result"] == "held" and head(server) == seeded
    assert len(hooks.events("image-bump-refused")) == 1
    out = subprocess.run([PUSHGATE, "status", f"--data-dir={server.data_dir}"], capture_output=True,
                         text=True, check=False).stdout
    assert "images         held" in out and "known bad" in out
    # ... and on the status page and in /api/v1/status
    api = deploy.status(server)
    assert api["images"]["lastRefusal"]["commit"] == refusal["commit"]
    html = deploy.page(server)
    assert 'id="images"' in html and "Last refused bump" in html and "known bad" in html


def test_a_reverted_bump_is_not_bumped_again_until_a_newer_tag(
        git: Git, server: Server, oci: OciRegistry, tmp_path: Path) -> None:
    oci.push("shop/web", "1.0.0", "1.1.0")
    work, seeded = seed(git, server, tmp_path, {"web.yaml": workload("web", f"{oci.host}/shop/web:1.0.0")})
    bumped = wait_head_change(server, seeded)
    git.run("pull", "-q", server.url("writer"), "main", cwd=work)
    git.run("revert", "--no-edit", "HEAD", cwd=work)
    git.run("push", server.url("writer"), "HEAD:refs/heads/main", cwd=work)
    reverted = head(server)
    assert reverted != bumped
    doc = scans_after(server, 3)
    assert head(server) == reverted, "the scanner fought the rollback"
    web = next(c for c in doc["containers"] if c["container"] == "web")
    assert web["pinned"] == ["1.1.0"] and web["image"].endswith(":1.0.0")

    oci.push("shop/web", "1.2.0")
    again = wait_head_change(server, reverted)
    git.run("pull", "-q", server.url("writer"), "main", cwd=work)
    assert git.run("log", "-1", "--format=%B", cwd=work).stdout.splitlines()[2] == \
        f"web.yaml: Deployment/shop/web web: {oci.host}/shop/web 1.0.0 -> 1.2.0"
    assert git.rev_parse(work, "HEAD") == again
