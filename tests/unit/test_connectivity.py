"""The receive path's connectivity check (`history.missing_objects`) against the definition, on
random histories with objects left out of the push: it finds a missing object exactly when the
new history reaches one past what the repository has, and only a real one; and a push of one
changed file among 1,000 looks up tens of objects, not every entry of the trees it touches."""

from __future__ import annotations

import random
from typing import Any

import pytest
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Commit, ShaFile, Tag, Tree

from gitserver.history import missing_objects
from tests.unit.test_objectwalk import _blob, _closure, _commit, _history


class _Counted(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def __contains__(self, sha: object) -> bool:
        self.asked += 1
        return super().__contains__(sha)


class _Quarantine:
    """The pushed objects, reading through to the repository's (as `quarantine.Quarantine`)."""

    def __init__(self, objects: dict[bytes, ShaFile], main: MemoryObjectStore) -> None:
        self.objects, self.main = objects, main

    def __contains__(self, sha: bytes) -> bool:
        return sha in self.objects or sha in self.main

    def __getitem__(self, sha: bytes) -> ShaFile:
        if sha in self.objects:
            return self.objects[sha]
        return self.main[sha]


def _reference(q: _Quarantine, main: MemoryObjectStore, tip: bytes) -> set[bytes]:
    """Every object the new history reaches past the repository's that nobody has."""
    missing: set[bytes] = set()
    seen: set[bytes] = set()
    todo = [tip]
    while todo:
        sha = todo.pop()
        if sha in seen or sha in main:
            continue
        seen.add(sha)
        if sha not in q:
            missing.add(sha)
            continue
        obj = q[sha]
        if isinstance(obj, Commit):
            todo += [obj.tree, *obj.parents]
        elif isinstance(obj, Tree):
            todo += [e.sha for e in obj.iteritems() if e.mode & 0o170000 != 0o160000]
        elif isinstance(obj, Tag):
            todo.append(obj.object[1])
    return missing


@pytest.mark.parametrize("seed", range(80))
def test_a_missing_object_is_found_exactly_when_the_push_lacks_one(seed: int) -> None:
    full, commits = _history(seed, moves=seed % 2 == 0)
    rnd = random.Random(seed * 13 + 5)
    for _ in range(5):
        known = rnd.sample(commits, rnd.randint(0, 2))  # what the repository's refs hold
        main = MemoryObjectStore()
        for sha in _closure(full, known):
            main.add_object(full[sha])
        tip = rnd.choice(commits)
        new = sorted(_closure(full, [tip]) - set(_closure(full, known)))
        dropped = set(rnd.sample(new, rnd.randint(0, min(3, len(new))))) if rnd.random() < 0.7 else set()
        q = _Quarantine({sha: full[sha] for sha in new if sha not in dropped}, main)
        want = _reference(q, main, tip)
        got = missing_objects(q, main, tip)
        # the same, told which objects the push brought (as the read-ahead of its packs)
        told = missing_objects(q, main, tip, set(q.objects))
        if want:
            assert got in want and told in want, (got, told, want)
        else:
            assert got is None and told is None
        assert bool(dropped) == bool(want)  # everything dropped was needed


def test_one_changed_file_among_a_thousand_looks_up_few_objects() -> None:
    main = _Counted()
    files = {f"d{d}/f{f}.yaml".encode(): _blob(main, f"{d}-{f}") for d in range(10) for f in range(100)}
    base = _commit(main, files, [], 0)
    pushed = MemoryObjectStore()
    edited = dict(files)
    edited[b"d3/f7.yaml"] = _blob(pushed, "edited")
    tip = _commit(pushed, edited, [base], 1)
    q = _Quarantine({sha: pushed[sha] for sha in pushed}, main)
    main.asked = 0
    assert missing_objects(q, main, tip) is None
    assert main.asked <= 20, main.asked  # it was ~110: every entry of the root and of d3
    q.objects.pop(edited[b"d3/f7.yaml"])
    assert missing_objects(q, main, tip) == edited[b"d3/f7.yaml"]


def test_a_parent_that_is_itself_missing_leaves_nothing_unchecked() -> None:
    full = MemoryObjectStore()
    files = {b"a/x.yaml": _blob(full, "x"), b"b/y.yaml": _blob(full, "y")}
    first = _commit(full, files, [], 0)
    second = _commit(full, {**files, b"c/z.yaml": _blob(full, "z")}, [first], 1)
    main = MemoryObjectStore()
    objects: dict[bytes, Any] = {sha: full[sha] for sha in full}
    objects.pop(files[b"a/x.yaml"])  # unchanged by `second`, absent from its parent's push too
    assert missing_objects(_Quarantine(objects, main), main, second) == files[b"a/x.yaml"]
    objects.pop(first)  # no parent tree to walk next to: the new tree is checked whole
    assert missing_objects(_Quarantine(objects, main), main, second) in {first, files[b"a/x.yaml"]}


def test_blobs_are_looked_up_never_read() -> None:
    """As git's `rev-list --objects`: a file is looked up, its content never read (a first push
    of 5,000 files read every blob: bench/RESULTS.md, gate_incremental, the refs phase)."""
    main, pushed = MemoryObjectStore(), MemoryObjectStore()
    files = {f"d{d}/f{f}.yaml".encode(): _blob(pushed, f"{d}-{f}") for d in range(3) for f in range(5)}
    tip = _commit(pushed, files, [], 0)
    read: list[bytes] = []

    class Reading(_Quarantine):
        def __getitem__(self, sha: bytes) -> ShaFile:
            read.append(sha)
            return super().__getitem__(sha)

    q = Reading({sha: pushed[sha] for sha in pushed}, main)
    assert missing_objects(q, main, tip) is None
    assert read and not set(read) & set(files.values())
    q.objects.pop(files[b"d1/f2.yaml"])
    assert missing_objects(q, main, tip) == files[b"d1/f2.yaml"]


def test_a_file_entry_naming_another_object_type_is_refused_by_name() -> None:
    """The walk only looks a file up; reading it for the gate says what is wrong, by path."""
    from pushgate.build.sources import Entry, GitTree

    store = MemoryObjectStore()
    inner = _commit(store, {b"x.yaml": _blob(store, "x")}, [], 0)
    tree = Tree()
    tree.add(b"a.yaml", 0o100644, store[inner].tree)  # a file entry naming a tree
    store.add_object(tree)
    entry = Entry("a.yaml", 0o100644, store[inner].tree.decode())
    with pytest.raises(ValueError, match=r"a\.yaml: the tree names a file there, but object .* is a tree"):
        GitTree(store, inner).read(entry)
