"""A big push's objects read in one pass (`quarantine.ReadAhead`): it answers exactly what the
quarantine's store answers, for every object of a real pack made by git (deltas included), holds
no object over its size bound and stops holding at its total bound, and the gate builds the same
objects through it. A quarantine reads ahead only when its packs hold many objects.

Adapter tests: packs written by the stock git CLI, dulwich's object store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich.object_store import DiskObjectStore

from gitserver import quarantine
from gitserver.quarantine import ReadAhead
from pushgate.build.build import Builder
from pushgate.build.config import BuildConfig
from pushgate.build.sources import GitTree
from tests.bed.gitcli import Git

BIG = 5_000  # bytes: the test's bound on a held object


def configmap(i: int, version: int = 0) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n  namespace: shop\n"
            f"data:\n  version: \"{version}\"\n  text: |\n" + "    a line of text\n" * 20)


@pytest.fixture
def stores() -> Iterator[list[DiskObjectStore]]:
    """Stores to close after the test (their packs hold open files)."""
    opened: list[DiskObjectStore] = []
    yield opened
    for store in opened:
        store.close()  # and its alternates


def pushed_store(tmp_path: Path, files: int, stores: list[DiskObjectStore],
                 ) -> tuple[DiskObjectStore, str]:
    """A quarantine-like store whose one pack holds a whole repository (two commits, so
    that git writes deltas), reading through to an empty repository's."""
    git = Git(tmp_path / "home")
    repo = git.init(tmp_path / "repo")
    git.write(repo, {f"d{i % 7}/c{i}.yaml": configmap(i) for i in range(files)})
    git.write(repo, {"big.yaml": "# " + "x" * (BIG * 2) + "\n"})
    git.commit_all(repo, "first")
    git.write(repo, {f"d{i % 7}/c{i}.yaml": configmap(i, 1) for i in range(0, files, 3)})
    head = git.commit_all(repo, "second")
    git.run("repack", "-a", "-d", "-q", cwd=repo)
    q = tmp_path / "q"
    (q / "pack").mkdir(parents=True)
    main = tmp_path / "main"
    (main / "pack").mkdir(parents=True)
    pack_dir = repo / ".git" / "objects" / "pack"
    for name in os.listdir(pack_dir):
        shutil.copy(pack_dir / name, q / "pack" / name)
    store = DiskObjectStore(str(q), alternates=[str(main)])
    stores.append(store)
    return store, head


def all_ids(store: DiskObjectStore) -> list[bytes]:
    return sorted(sha for pack in store.packs for sha in pack)


def test_it_answers_what_the_store_answers_for_every_object(tmp_path: Path,
        stores: list[DiskObjectStore]) -> None:
    store, _head = pushed_store(tmp_path, 60, stores)
    out = subprocess.run(["git", "verify-pack", "-v", *map(str, Path(store.path, "pack").glob("*.idx"))],
                         capture_output=True, text=True, check=True).stdout
    assert "chain length" in out  # the pack holds deltas: they are resolved on the way
    ahead = ReadAhead(store, list(store.packs), 1 << 30, BIG)
    ids = all_ids(store)
    held = set(ahead.held)
    for sha in ids:
        assert sha in ahead
        assert ahead[sha].as_raw_string() == store[sha].as_raw_string()
        assert ahead[sha].type_num == store[sha].type_num
        assert ahead.get_raw(sha) == store.get_raw(sha)
    big = [sha for sha in ids if store[sha].raw_length() > BIG]
    assert len(big) == 1 and big[0] not in held  # left in its pack, still answered
    assert held == set(ids) - set(big)
    absent = b"0" * 40
    assert absent not in ahead
    with pytest.raises(KeyError):
        ahead[absent]
    assert ahead.packs == store.packs  # anything else is the store's


def test_it_stops_holding_at_its_bound_and_still_answers(tmp_path: Path,
        stores: list[DiskObjectStore]) -> None:
    store, _head = pushed_store(tmp_path, 60, stores)
    ahead = ReadAhead(store, list(store.packs), 4_000, BIG)
    assert 0 < sum(o.raw_length() for o in ahead.held.values()) <= 4_000
    assert len(ahead.held) < len(all_ids(store))
    for sha in all_ids(store):
        assert ahead[sha].as_raw_string() == store[sha].as_raw_string()


def test_the_gate_builds_the_same_objects_through_it(tmp_path: Path,
        stores: list[DiskObjectStore]) -> None:
    store, head = pushed_store(tmp_path, 60, stores)
    ahead = ReadAhead(store, list(store.packs), 1 << 30, BIG)
    direct = Builder(BuildConfig(), kustomize_bin=None).build(GitTree(store, head.encode()))
    through = Builder(BuildConfig(), kustomize_bin=None).build(GitTree(ahead, head.encode()))
    assert len(direct.manifests) == 60
    assert [(m.path, m.line, m.obj) for m in through.manifests] == [
        (m.path, m.line, m.obj) for m in direct.manifests]
    assert through.problems == direct.problems


@pytest.mark.parametrize(("files", "reads_ahead"), [(20, False), (300, True)])
def test_a_quarantine_reads_ahead_only_when_its_packs_hold_many_objects(
        tmp_path: Path, files: int, reads_ahead: bool, stores: list[DiskObjectStore]) -> None:
    store, _head = pushed_store(tmp_path, files, stores)
    objects = tmp_path / "repo-objects"
    (objects / "pack").mkdir(parents=True)
    q = quarantine.Quarantine(str(objects))
    try:
        for name in os.listdir(Path(store.path, "pack")):
            shutil.copy(Path(store.path, "pack", name), Path(q.path, "pack", name))
        q.read_ahead()
        assert isinstance(q.view, ReadAhead) is reads_ahead
        assert (len(all_ids(store)) >= quarantine.READ_AHEAD_MIN) is reads_ahead
    finally:
        q.close()
