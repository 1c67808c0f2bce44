"""A worker's active policy set: bootstrap directory, switch when policies.git's main moves, fail
closed on a commit that does not load, old generations closed after their grace period."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from gitserver import activepolicy, receive, repos
from gitserver.repos import RefUpdate
from pushgate import datadir
from pushgate.gate import policysource

RULE = "package {pkg}\n\ndeny contains msg if {{\n\tinput.kind == \"Pod\"\n\tmsg := \"no\"\n}}\n"


def commit_files(data_dir: Path, files: dict[str, str]) -> str:
    """A commit of `files` (flat) on main of DATA/policies.git, made directly with dulwich."""
    repo = Repo(str(data_dir / datadir.POLICY_REPO))
    try:
        tree = Tree()
        for name, text in files.items():
            blob = Blob.from_string(text.encode())
            repo.object_store.add_object(blob)
            tree.add(name.encode(), 0o100644, blob.id)
        repo.object_store.add_object(tree)
        c = Commit()
        c.tree = tree.id
        refs: Any = repo.refs
        c.parents = [refs[b] for b in (datadir.POLICY_BRANCH,) if b in refs]
        c.author = c.committer = b"t <t@example.test>"
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.message = b"policies"
        repo.object_store.add_object(c)
        refs[datadir.POLICY_BRANCH] = c.id
        return str(c.id.decode())
    finally:
        repo.close()


class Closing:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def factory(made: list[activepolicy.Generation]) -> activepolicy.Factory:
    def make(source: policysource.Source) -> activepolicy.Generation:
        gate: Any = Closing()
        gen = activepolicy.Generation(source, gate, activepolicy.Unavailable("unused", ()))
        made.append(gen)
        return gen
    return make


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    repos.ensure(str(d), datadir.POLICY_REPO)
    return d


@pytest.fixture
def bootstrap(tmp_path: Path) -> Path:
    d = tmp_path / "bootstrap"
    d.mkdir()
    (d / "b.rego").write_text(RULE.format(pkg="bootstrap"))
    return d


def test_bootstrap_then_commit_then_fail_closed(data_dir: Path, bootstrap: Path) -> None:
    made: list[activepolicy.Generation] = []
    holder = activepolicy.Holder(str(data_dir), str(bootstrap), None, ["refs/heads/main"],
                                 factory(made), grace=0.0)
    first = holder.current()
    assert first.source is not None and first.source.commit == ""
    assert first.source.directory == str(bootstrap)
    assert holder.current() is first  # nothing moved: the same generation

    good = commit_files(data_dir, {"main.rego": RULE.format(pkg="main")})
    second = holder.current()
    assert second.source is not None and second.source.commit == good
    assert second.source.label == f"commit:{good}"
    assert (data_dir / "policies" / good / "main.rego").is_file()  # written out from the repository

    commit_files(data_dir, {"main.rego": "package main\n\ndeny[msg] {\n\tmsg := \"v0\"\n}\n"})
    third = holder.current()
    assert third.source is None and "not valid Rego v1" in third.error
    update = RefUpdate(b"refs/heads/main", b"0" * 40, b"1" * 40)
    assert third.ref_gate.gated(b"refs/heads/main") and not third.ref_gate.gated(b"refs/heads/other")
    with pytest.raises(receive.GateUnavailable, match="does not load"):
        third.ref_gate.check(None, update, receive.Pusher("a", "admin"), [], time.monotonic() + 1)

    # The generations replaced are closed once their grace period is over.
    holder._close_retired(time.monotonic())
    assert [g.gate.closed for g in made] == [1, 1]  # type: ignore[union-attr]
    holder.close()


def test_an_active_commit_that_does_not_load_stops_the_start(data_dir: Path, bootstrap: Path) -> None:
    commit_files(data_dir, {"main.rego": "package main\n"})
    with pytest.raises(Exception, match="no entry point"):
        activepolicy.Holder(str(data_dir), str(bootstrap), None, [], factory([]), grace=0.0)
