"""Crash safety of the receive path's storage: a journaled ref transaction is rolled forward at
start-up, and start-up removes only quarantines nobody holds (dulwich repos on disk, no server)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from gitserver import quarantine, repos


def _commit(repo: Repo, message: bytes, parents: list[bytes]) -> bytes:
    blob = Blob.from_string(message)
    tree = Tree()
    tree.add(b"f", 0o100644, blob.id)
    c = Commit()
    c.tree, c.parents, c.message = tree.id, parents, message
    c.author = c.committer = b"T <t@example.test>"
    c.author_time = c.commit_time = 0
    c.author_timezone = c.commit_timezone = 0
    for obj in (blob, tree, c):
        repo.object_store.add_object(obj)
    return bytes(c.id)


def test_journal_is_rolled_forward_at_start(tmp_path: Path) -> None:
    path = repos.ensure(str(tmp_path))
    repo = Repo(path)
    a = _commit(repo, b"a", [])
    b = _commit(repo, b"b", [a])
    repo.refs[b"refs/heads/main"] = a
    # A crash after the journal was written and one of two refs moved.
    journal = [{"ref": "refs/heads/main", "old": a.decode(), "new": b.decode()},
               {"ref": "refs/heads/other", "old": "0" * 40, "new": b.decode()}]
    Path(path, "pushgate-journal.json").write_text(json.dumps(journal))
    repo.refs[b"refs/heads/main"] = b
    notes = repos.recover(path)
    repo = Repo(path)
    assert repo.refs[b"refs/heads/main"] == b
    assert repo.refs[b"refs/heads/other"] == b
    assert not Path(path, "pushgate-journal.json").exists()
    assert notes and "rolled forward 2" in notes[0]


def test_a_ref_lock_left_by_the_killed_writer_does_not_stop_the_roll_forward(tmp_path: Path) -> None:
    """Found by the random-kill test: a SIGKILL inside dulwich's ref write leaves
    `refs/heads/main.lock`; the roll forward failed on it at every start (FileLocked)."""
    path = repos.ensure(str(tmp_path))
    repo = Repo(path)
    a = _commit(repo, b"a", [])
    b = _commit(repo, b"b", [a])
    repo.refs[b"refs/heads/main"] = a
    Path(path, "pushgate-journal.json").write_text(json.dumps(
        [{"ref": "refs/heads/main", "old": a.decode(), "new": b.decode()}]))
    Path(path, "refs/heads/main.lock").write_bytes(b.hex().encode()[:10])  # half written
    notes = repos.recover(path)
    assert Repo(path).refs[b"refs/heads/main"] == b
    assert not Path(path, "refs/heads/main.lock").exists()
    assert not Path(path, "pushgate-journal.json").exists()
    assert any("stale lock refs/heads/main.lock" in n for n in notes), notes


def test_journal_does_not_clobber_a_ref_that_moved_on(tmp_path: Path) -> None:
    path = repos.ensure(str(tmp_path))
    repo = Repo(path)
    a = _commit(repo, b"a", [])
    b = _commit(repo, b"b", [a])
    c = _commit(repo, b"c", [a])
    repo.refs[b"refs/heads/main"] = c
    Path(path, "pushgate-journal.json").write_text(json.dumps(
        [{"ref": "refs/heads/main", "old": a.decode(), "new": b.decode()}]))
    repos.recover(path)
    assert Repo(path).refs[b"refs/heads/main"] == c


def test_sweep_removes_only_unlocked_quarantines(tmp_path: Path) -> None:
    path = repos.ensure(str(tmp_path))
    objects = os.path.join(path, "objects")
    live = quarantine.Quarantine(objects)
    dead = quarantine.Quarantine(objects)
    dead_name = os.path.basename(dead.path)
    # Simulate a crashed process: its lock is released but the directory stays.
    assert dead._lock_fd is not None
    os.close(dead._lock_fd)
    dead._lock_fd = None
    removed = quarantine.sweep(objects)
    assert removed == [dead_name]
    assert os.path.isdir(live.path)
    live.close()
    assert not os.path.exists(live.path)


def test_commit_is_compare_and_swap(tmp_path: Path) -> None:
    path = repos.ensure(str(tmp_path))
    repo = Repo(path)
    a = _commit(repo, b"a", [])
    b = _commit(repo, b"b", [a])
    repo.refs[b"refs/heads/main"] = a
    ups = [repos.RefUpdate(b"refs/heads/main", b, a)]  # wrong old value
    assert repos.stale(repo, ups) == ups
    ok = [repos.RefUpdate(b"refs/heads/main", a, b)]
    assert repos.stale(repo, ok) == []
    with repos.locked(path):
        repos.commit(repo, path, ok)
    assert Repo(path).refs[b"refs/heads/main"] == b
    assert repos.recent_tips(path) == {b"refs/pushgate/recent/0": a}
