"""Warm caches keep what recent builds used and forget the rest (pushgate.core.gencache): a
worker taking push after push holds a bounded amount, not everything it ever parsed."""

from __future__ import annotations

import threading

import pytest
from dulwich.index import commit_tree
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Blob, Commit

from pushgate.build import sources
from pushgate.build.sources import MODE_FILE, GitTree
from pushgate.core.gencache import EVERY, KEEP, GenCache
from pushgate.gate import gate as gatemod
from tests.bed import samples


def test_entries_no_build_used_for_keep_rotations_are_dropped() -> None:
    c: GenCache[str, int] = GenCache(keep=3, every=1)
    c["old"], c["used"] = 1, 2
    for _ in range(2):
        c.rotate()
        assert c.get("used") == 2  # a hit moves it to the newest generation
    assert "old" in c  # still within 3 generations
    c.rotate()
    assert "old" not in c and c.get("old") is None
    assert c["used"] == 2 and len(c) == 1
    with pytest.raises(KeyError):
        c["old"]
    c["used"] = 3  # a rewrite replaces the entry wherever it was
    assert c.get("used") == 3 and len(c) == 1
    c.clear()
    assert len(c) == 0 and list(c) == []
    with pytest.raises(ValueError):
        GenCache(keep=0)


def test_a_generation_spans_every_builds() -> None:
    c: GenCache[str, int] = GenCache(keep=2, every=3)
    c["x"] = 1
    for _ in range(5):  # two generations of three builds: still there
        c.rotate()
    assert "x" in c
    c.rotate()
    assert "x" not in c


def test_concurrent_readers_of_an_old_generation_all_get_the_value() -> None:
    c: GenCache[int, int] = GenCache()
    for i in range(2000):
        c[i] = i
    c.rotate()
    misses: list[int] = []

    def read() -> None:
        misses.extend(i for i in range(2000) if c.get(i) != i)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert misses == [] and len(c) == 2000


def _commit(store: MemoryObjectStore, files: dict[str, str]) -> bytes:
    blobs = []
    for path, text in sorted(files.items()):
        blob = Blob.from_string(text.encode())
        store.add_object(blob)
        blobs.append((path.encode(), blob.id, MODE_FILE))
    c = Commit()
    c.tree = commit_tree(store, blobs)
    c.author = c.committer = b"t <t@example.test>"
    c.author_time = c.commit_time = c.author_timezone = c.commit_timezone = 0
    c.message = b"push"
    store.add_object(c)
    return c.id


def test_a_gate_taking_many_pushes_holds_a_bounded_cache() -> None:
    n, pushes, span = 40, 60, KEEP * EVERY  # builds an unused entry may outlive
    files = {f"apps/cm-{i}.yaml": samples.configmap(name=f"cm-{i}", value="0") for i in range(n)}
    store = MemoryObjectStore()
    gate = gatemod.Gate(gatemod.GateConfig(timeout=600), engine=None, kustomize_bin=None)
    try:
        sizes = []
        for push in range(1, pushes + 1):
            for i in range(5):  # 5 files change in each push
                k = (push * 5 + i) % n
                files[f"apps/cm-{k}.yaml"] = samples.configmap(name=f"cm-{k}", value=str(push))
            b, found = gate.check(GitTree(store, _commit(store, files)))
            assert len(b.manifests) == n and not list(found)
            sizes.append((len(gate.builder._parsed), gate.cache_size(), len(sources._LISTINGS)))
        # what the recent builds read: the tree and the files changed since (without forgetting:
        # 40 + 5 * 60 = 340 parsed files, and every listing of the 60 trees)
        assert all(parsed <= n + 5 * span for parsed, _, _ in sizes), sizes
        assert all(results <= n + 5 * span for _, results, _ in sizes), sizes
        # (listings are per process: the first builds may still hold other tests' ones)
        assert all(listings <= 2 * span for _, _, listings in sizes[span:]), sizes
        assert sizes[-1][0] > n  # the cache is used at all
    finally:
        gate.close()
