"""The sparse fetch walk against the definition, on random histories: it sends everything the
wants reach that the haves do not (complete), nothing the wants do not reach (sound), each object
once; and where no content moves between paths, exactly the difference."""

from __future__ import annotations

import random
import stat

import pytest
from dulwich.object_store import MemoryObjectStore, MissingObjectFinder
from dulwich.objects import Blob, Commit, Tag, Tree

from gitserver.objectwalk import SparseFinder

DIRS = [b"", b"a", b"a/b", b"a/b/c", b"d", b"d/e"]


def _tree(store: MemoryObjectStore, files: dict[bytes, bytes]) -> bytes:
    """Build the nested trees for `files` (path -> blob id) into `store`; the root's id."""
    def build(prefix: bytes) -> bytes:
        tree = Tree()
        children: set[bytes] = set()
        for path, blob in files.items():
            rest = path[len(prefix):] if prefix else path
            if prefix and not path.startswith(prefix):
                continue
            head, _, tail = rest.partition(b"/")
            if tail:
                children.add(head)
            else:
                tree.add(head, stat.S_IFREG | 0o644, blob)
        for child in children:
            tree.add(child, stat.S_IFDIR, build(prefix + child + b"/"))
        store.add_object(tree)
        return tree.id
    return build(b"")


def _commit(store: MemoryObjectStore, files: dict[bytes, bytes], parents: list[bytes], n: int) -> bytes:
    c = Commit()
    c.tree = _tree(store, files)
    c.parents = parents
    c.author = c.committer = b"T <t@example.com>"
    c.author_time = c.commit_time = 1_700_000_000 + n
    c.author_timezone = c.commit_timezone = 0
    c.message = f"commit {n}\n".encode()
    store.add_object(c)
    return c.id


def _blob(store: MemoryObjectStore, text: str) -> bytes:
    b = Blob.from_string(text.encode())
    store.add_object(b)
    return b.id


def _history(seed: int, moves: bool) -> tuple[MemoryObjectStore, list[bytes]]:
    rnd = random.Random(seed)
    store = MemoryObjectStore()
    files: dict[bytes, bytes] = {}
    branches: list[tuple[bytes, dict[bytes, bytes]]] = []
    commits: list[bytes] = []
    serial = 0
    for n in range(rnd.randint(4, 14)):
        files = dict(files)
        for _ in range(rnd.randint(1, 5)):
            op = rnd.random()
            if op < 0.45 or not files:
                d = rnd.choice(DIRS)
                serial += 1
                name = (d + b"/" if d else b"") + f"f{rnd.randint(0, 9)}.yaml".encode()
                files[name] = _blob(store, f"content {serial}")
            elif op < 0.7:
                del files[rnd.choice(sorted(files))]
            elif moves:
                src = rnd.choice(sorted(files))
                d = rnd.choice(DIRS)
                dst = (d + b"/" if d else b"") + f"m{rnd.randint(0, 9)}.yaml".encode()
                files[dst] = files[src]  # the same content at another path (copy or move)
                if rnd.random() < 0.5:
                    del files[src]
            else:
                path = rnd.choice(sorted(files))
                serial += 1
                files[path] = _blob(store, f"edit {serial}")
        parents = [commits[-1]] if commits else []
        if branches and rnd.random() < 0.3:  # merge an older line back in
            other, other_files = rnd.choice(branches)
            parents.append(other)
            files = {**other_files, **files}
        commits.append(_commit(store, files, parents, n))
        if rnd.random() < 0.3:
            branches.append((commits[-1], files))
    return store, commits


def _closure(store: MemoryObjectStore, tips: list[bytes]) -> set[bytes]:
    seen: set[bytes] = set()
    todo = list(tips)
    while todo:
        sha = todo.pop()
        if sha in seen:
            continue
        seen.add(sha)
        obj = store[sha]
        if isinstance(obj, Commit):
            todo += [obj.tree, *obj.parents]
        elif isinstance(obj, Tree):
            todo += [e.sha for e in obj.iteritems()]
        elif isinstance(obj, Tag):
            todo.append(obj.object[1])
    return seen


@pytest.mark.parametrize("seed", range(60))
def test_sparse_walk_sends_exactly_what_the_client_lacks(seed: int) -> None:
    moves = seed % 2 == 0
    store, commits = _history(seed, moves)
    rnd = random.Random(seed * 7 + 1)
    for _ in range(6):
        wants = rnd.sample(commits, rnd.randint(1, 2))
        haves = rnd.sample(commits, rnd.randint(0, 3))
        out = [sha for sha, _ in SparseFinder(store, haves, wants)]
        assert len(out) == len(set(out)), "an object sent twice"
        reach = _closure(store, wants)
        lacks = reach - _closure(store, haves)
        assert lacks <= set(out), f"missing {len(lacks - set(out))} objects"
        assert set(out) <= reach
        theirs = {sha for sha, _ in MissingObjectFinder(store, haves=haves, wants=wants)}
        assert lacks <= theirs
        if not moves:
            # Without copies, an object the client has is only ever at the path it had it, so
            # nothing beyond what dulwich's full walk sends.
            assert set(out) <= theirs, len(set(out) - theirs)


def test_an_unchanged_subtree_is_not_read_past_its_id() -> None:
    """The point of the walk: a fetch of one changed file reads the trees on its path only."""
    store = MemoryObjectStore()
    files = {f"big/dir{i}/f{j}.yaml".encode(): _blob(store, f"{i}-{j}") for i in range(30) for j in range(20)}
    files[b"app/cm.yaml"] = _blob(store, "v1")
    base = _commit(store, files, [], 0)
    new = _commit(store, {**files, b"app/cm.yaml": _blob(store, "v2")}, [base], 1)
    reads: list[bytes] = []

    class Counting:
        def __getitem__(self, sha: bytes) -> object:
            reads.append(sha)
            return store[sha]

    out = [sha for sha, _ in SparseFinder(Counting(), [base], [new])]
    # the commit, the root tree, app/, the new blob
    assert len(out) == 4, out
    assert len(reads) <= 10, len(reads)


def test_tags_wanted_or_included_go_with_their_objects() -> None:
    store, commits = _history(3, moves=False)
    tag = Tag()
    tag.object = (Commit, commits[-1])
    tag.name = b"v1"
    tag.tagger = b"T <t@example.com>"
    tag.tag_time, tag.tag_timezone = 1_700_000_100, 0
    tag.message = b"release\n"
    store.add_object(tag)
    # the tag wanted by name: the tag and what its commit adds
    out = {sha for sha, _ in SparseFinder(store, [commits[-2]], [tag.id])}
    assert tag.id in out and commits[-1] in out
    # include-tag: the commit wanted, its tag comes along; not when the client has the tag
    tagged = {commits[-1]: tag.id}
    out = {sha for sha, _ in SparseFinder(store, [commits[-2]], [commits[-1]],
                                          get_tagged=lambda *a: tagged)}
    assert tag.id in out
    out = {sha for sha, _ in SparseFinder(store, [commits[-2], tag.id], [commits[-1]],
                                          get_tagged=lambda *a: tagged)}
    assert tag.id not in out
