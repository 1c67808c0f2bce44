"""The commits a push brings (git's `rev-list TIPS --not KNOWN`), on an in-memory store: linear
history, merges from both sides, tags, clocks that disagree, and the bounds."""

from __future__ import annotations

import pytest
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Commit, ObjectID, Tag, Tree

from gitserver import history


class Graph:
    def __init__(self) -> None:
        self.store = MemoryObjectStore()
        self.tree = Tree()
        self.store.add_object(self.tree)
        self.ids: dict[str, bytes] = {}

    def commit(self, name: str, *parents: str, when: int | None = None) -> bytes:
        c = Commit()
        c.tree = self.tree.id
        c.parents = [ObjectID(self.ids[p]) for p in parents]
        c.author = c.committer = b"T <t@example.test>"
        c.commit_time = c.author_time = when if when is not None else 1_000 + len(self.ids) * 10
        c.commit_timezone = c.author_timezone = 0
        c.message = name.encode()
        self.store.add_object(c)
        self.ids[name] = c.id
        return c.id

    def names(self, shas: list[bytes]) -> list[str]:
        back = {v: k for k, v in self.ids.items()}
        return [back[s] for s in shas]

    def new(self, tips: list[str], known: list[str], limit: int = 100, **kw: int) -> list[str]:
        got = history.new_commits(self.store, [self.ids[t] for t in tips],
                                  [self.ids[k] for k in known], limit, **kw)
        return self.names(got)


def test_a_fast_forward_brings_the_commits_after_the_old_tip() -> None:
    g = Graph()
    for i, parent in enumerate([None, "c0", "c1", "c2"]):
        g.commit(f"c{i}", *([parent] if parent else []))
    assert g.new(["c3"], ["c1"]) == ["c3", "c2"]
    assert g.new(["c3"], []) == ["c3", "c2", "c1", "c0"]  # into an empty repository
    assert g.new(["c1"], ["c3"]) == []  # nothing new: already reachable


def test_a_merge_brings_every_new_commit_on_every_side() -> None:
    g = Graph()
    g.commit("base")
    g.commit("a1", "base")
    g.commit("b1", "base")
    g.commit("a2", "a1")
    g.commit("m", "a2", "b1")
    assert sorted(g.new(["m"], ["base"])) == ["a1", "a2", "b1", "m"]
    assert sorted(g.new(["m"], ["a2"])) == ["b1", "m"]  # the first parent's side was known
    assert sorted(g.new(["m"], ["a2", "b1"])) == ["m"]
    assert sorted(g.new(["m", "b1"], ["base"])) == ["a1", "a2", "b1", "m"]  # several tips


def test_tags_are_peeled() -> None:
    g = Graph()
    g.commit("c0")
    g.commit("c1", "c0")
    tag = Tag()
    tag.object = (Commit, g.ids["c1"])
    tag.name, tag.tagger, tag.tag_time, tag.tag_timezone = b"v1", b"T <t@example.test>", 1, 0
    tag.message = b"v1"
    g.store.add_object(tag)
    assert g.names(history.new_commits(g.store, [tag.id], [g.ids["c0"]], 10)) == ["c1"]
    assert history.new_commits(g.store, [g.ids["c1"]], [tag.id], 10) == []
    assert history.new_commits(g.store, [g.tree.id], [], 10) == []  # a tag of a tree: no commits


def test_clocks_that_disagree_never_hide_a_new_commit() -> None:
    g = Graph()
    g.commit("old", when=5_000)
    g.commit("known", "old", when=10)  # older than its parent
    g.commit("new", "known", when=20)
    assert g.new(["new"], ["known"]) == ["new"]
    assert g.new(["old"], ["known"]) == []  # reached from the tip first, then found to be known
    g.commit("skewed", "old", when=1)
    assert g.new(["skewed"], ["known"]) == ["skewed"]


def test_bounds() -> None:
    g = Graph()
    g.commit("c0")
    for i in range(1, 30):
        g.commit(f"c{i}", f"c{i - 1}")
    assert len(g.new(["c29"], [], limit=30)) == 30
    with pytest.raises(history.TooMuchHistory, match="30 new commits, more than the 29 checked per push"):
        g.new(["c29"], [], limit=29)
    with pytest.raises(history.TooMuchHistory, match="more than 10 commits walked"):
        g.new(["c29"], ["c0"], limit=100, max_walk=10)
