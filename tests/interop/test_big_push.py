"""A push that brings many objects has them read ahead in one pass (`quarantine.ReadAhead`) for
the connectivity walk and the gate. Its verdict must be the one the plain store gives: the same
refusal, naming the same file, and the same acceptance once fixed; and when reading ahead fails
(an injected fault), the push is still judged, from the store, and the failure is logged.

Integration tests: `pushgate serve` and the stock git CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

LOGGED = "reading the pushed packs ahead failed"


@pytest.mark.parametrize("fault", ["", "read-ahead"])
def test_a_big_push_is_judged_the_same_whether_it_is_read_ahead_or_not(
        git: Git, server_factory: Callable[..., Server], tmp_path: Path, fault: str) -> None:
    server = server_factory("--workers=1", env={"PUSHGATE_FAULT": fault} if fault else None)
    work = git.init(tmp_path / "work")
    files = {f"d{i % 10}/cm{i}.yaml": samples.configmap(name=f"cm{i}", value=str(i))
             for i in range(300)}  # 300 blobs, 11 trees, a commit: read ahead
    files["d3/web.yaml"] = samples.deployment(image="nginx:latest")
    git.write(work, files)
    git.commit_all(work, "many files, one bad")
    res = git.run("push", server.url(), "main", cwd=work, check=False)
    assert res.returncode != 0 and "[remote rejected]" in res.stderr, res.stderr
    assert "remote: d3/web.yaml:" in res.stderr and "latest" in res.stderr, res.stderr
    assert server.refs() == {}

    git.write(work, {"d3/web.yaml": samples.deployment(image="nginx:1.27.3")})
    head = git.commit_all(work, "fixed")
    res = git.run("push", server.url(), "main", cwd=work, check=False)
    assert res.returncode == 0, res.stderr
    assert server.refs().get("refs/heads/main") == head
    assert (LOGGED in server.log()) is bool(fault), server.log()[-2000:]
    assert "Traceback" not in res.stderr

    # a small push is not read ahead: the fault point is not even reached
    logged = server.log().count(LOGGED)
    git.write(work, {"d0/cm0.yaml": samples.configmap(name="cm0", value="changed")})
    git.commit_all(work, "one file")
    git.run("push", "-q", server.url(), "main", cwd=work)
    assert server.log().count(LOGGED) == logged
