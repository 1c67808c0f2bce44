"""Kustomize directories pushed through the real git CLI: the server renders each root
kustomization with the pinned kustomize (found automatically) and checks the rendered objects,
reporting problems against the source file they came from. Remote bases, helm charts and build
errors are refused with a clear reason, and a refused push stores nothing.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"

BASE_KUSTOMIZATION = KUSTOMIZATION + "resources:\n  - deployment.yaml\n"

PROD_KUSTOMIZATION = KUSTOMIZATION + """namespace: prod
resources:
  - ../../base
  - namespace.yaml
patches:
  - path: replicas.yaml
"""

# A strategic-merge patch: not a complete object, so it must never be checked on its own.
REPLICAS_PATCH = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: dev
spec:
  replicas: 5
"""


def _tree(image: str = "nginx:1.27.3") -> dict[str, str | bytes]:
    return {
        # A header comment and a document marker, so the object does not start on line 1.
        "base/deployment.yaml": "# The web front end.\n---\n" + samples.deployment(namespace="dev",
                                                                                    image=image),
        "base/kustomization.yaml": BASE_KUSTOMIZATION,
        # Not listed in the kustomization: never rendered, so never checked.
        "base/notes.yaml": "scratch: [this is not valid yaml\n",
        "overlays/prod/kustomization.yaml": PROD_KUSTOMIZATION,
        "overlays/prod/namespace.yaml": samples.namespace("prod"),
        "overlays/prod/replicas.yaml": REPLICAS_PATCH,
    }


def _seed(git: Git, server: Server, tmp_path: Path) -> Path:
    work = git.init(tmp_path / "work")
    git.write(work, {"apps/ns.yaml": samples.namespace()})
    git.commit_all(work, "base")
    git.run("push", "-q", server.url(), "main", cwd=work)
    return work


def _push_change(git: Git, server: Server, work: Path,
                 files: dict[str, str | bytes]) -> subprocess.CompletedProcess[str]:
    git.write(work, files)
    git.commit_all(work, "kustomize change")
    return git.run("push", server.url(), "main", cwd=work, check=False)


def _problems(stderr: str) -> list[str]:
    lines = [line[len("remote: "):].rstrip() for line in stderr.splitlines()
             if line.startswith("remote: ")]
    return [line for line in lines if not line.startswith("pushgate: ")]


def _refused(git: Git, server: Server, work: Path, files: dict[str, str | bytes]) -> list[str]:
    """Push `files`; check it was refused and stored nothing; return the problem lines."""
    refs, objects = server.refs(), server.object_files()
    res = _push_change(git, server, work, files)
    assert res.returncode != 0, res.stderr
    assert "[remote rejected] main -> main (pushgate:" in res.stderr, res.stderr
    assert server.refs() == refs
    assert server.object_files() == objects
    assert server.quarantines() == []
    assert "pushgate-kustomize-" not in res.stderr
    return _problems(res.stderr)


def test_overlay_over_a_base_is_accepted(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    res = _push_change(git, server, work, _tree())
    assert res.returncode == 0, res.stderr
    # base/notes.yaml (invalid YAML) and the partial patch are under kustomization directories:
    # they are checked only through the rendered output, which does not include them.
    assert _problems(res.stderr) == []
    assert "pushgate: 0 errors, 0 warnings" in res.stderr
    assert server.refs()["refs/heads/main"] == git.rev_parse(work, "HEAD")


def test_rendered_violation_is_reported_at_its_source_file(git: Git, server: Server,
                                                            tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    problems = _refused(git, server, work, _tree(image="nginx:latest"))
    # Rendered through the overlay (namespace prod), reported where the object is written.
    assert problems == [
        'base/deployment.yaml:3 Deployment/prod/web [pushgate.k8s.images/deny] container "web" '
        'uses image "nginx:latest": pin a version tag or digest instead of latest']


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local port that records whether anything tried to connect to it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        yield s


def _connected(s: socket.socket) -> bool:
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize("url", ["https://github.com/x/y//base?ref=v1",
                                 "http://127.0.0.1:{port}/x/y//base?ref=v1"])
def test_remote_base_is_refused_without_network_access(git: Git, server: Server, tmp_path: Path,
                                                       listener: socket.socket, url: str) -> None:
    url = url.format(port=listener.getsockname()[1])
    work = _seed(git, server, tmp_path)
    tree = _tree()
    tree["overlays/prod/kustomization.yaml"] = PROD_KUSTOMIZATION.replace("../../base", url)
    problems = _refused(git, server, work, tree)
    assert problems == [f"overlays/prod/kustomization.yaml [kustomize] remote resource {url!r} "
                        f"refused: the gate renders offline; vendor it into the repository"]
    assert not _connected(listener), "the server tried to fetch the remote base"


def test_build_error_is_refused_with_kustomize_message(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    tree = _tree()
    tree["base/kustomization.yaml"] = BASE_KUSTOMIZATION + "  - missing.yaml\n"
    problems = _refused(git, server, work, tree)
    assert len(problems) == 1, problems
    assert problems[0].startswith("overlays/prod/kustomization.yaml [kustomize] kustomize build failed: ")
    assert re.search(r"base/missing\.yaml: no such file or directory", problems[0]), problems[0]
    assert "/tmp/" not in problems[0]
