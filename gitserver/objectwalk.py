"""What a fetch must send: the objects reachable from the wants and not from the haves, found by
walking only the paths where the two differ.

Called by `upload` for a fetch that has common commits (not for a clone, nor for shallow
requests, which stay dulwich's). dulwich's MissingObjectFinder first collects every object of
every common commit's tree (all 10,000+ entries of a large repository) to learn what the client
has; that walk made an incremental fetch of 10 files 3x slower than C git (bench/RESULTS.md,
fetch). Here the trees of the commits to send are walked path by path next to the trees of the
common commits, as C git's sparse walk does (`pack.useSparse`): a subtree or blob whose id is
an entry of a tree the client has on a path walked so far (the same path, or a sibling: a moved
file or directory) is not sent, a subtree not read. An object the client has only elsewhere is
sent again; the pack stays correct, only a little larger, as with C git's walk.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dulwich.objects import S_ISGITLINK, Blob, Commit, Tag, Tree

Hint = tuple[int, bytes | None] | None


class SparseFinder:
    """The missing objects as `(id, (type, name))` pairs, iterated once (dulwich's finder
    interface); `remote_has` is the set of common commits."""

    def __init__(self, store: Any, haves: Iterable[bytes], wants: Iterable[bytes], *,
                 progress: Callable[[bytes], None] | None = None,
                 get_tagged: Callable[..., dict[Any, Any]] | None = None) -> None:
        self.store = store
        self.progress = progress or (lambda _: None)
        self._tagged = (get_tagged and get_tagged()) or {}
        self._sent: set[bytes] = set()
        self._have_tags: set[bytes] = set()
        self._known: set[bytes] = set()  # entries of the client's trees on the paths walked
        self._out: list[tuple[bytes, Hint]] = []

        have_commits: set[bytes] = set()
        have_tags = self._have_tags
        for sha in haves:
            obj = self._get(sha)
            while isinstance(obj, Tag):
                have_tags.add(obj.id)
                obj = self._get(obj.object[1])
            if isinstance(obj, Commit):
                have_commits.add(obj.id)

        want_commits: list[bytes] = []
        roots: list[bytes] = []  # trees wanted directly
        for sha in wants:
            obj = self.store[sha]  # a want we do not have is the caller's error, as in dulwich
            while isinstance(obj, Tag):
                if obj.id not in have_tags:
                    self._emit(obj.id, Tag.type_num, None)
                obj = self.store[obj.object[1]]
            if isinstance(obj, Commit):
                want_commits.append(obj.id)
            elif isinstance(obj, Tree):
                roots.append(obj.id)
            elif isinstance(obj, Blob):
                self._emit(obj.id, Blob.type_num, None)

        theirs, _ = self._commits(have_commits, set(), strict=False)
        missing, common = self._commits(want_commits, {c.id for c in theirs}, strict=True)
        self.remote_has: set[bytes] = set(common) | have_tags
        for commit in missing:
            self._emit(commit.id, Commit.type_num, None)
        self._walk([c.tree for c in missing] + roots,
                   [self.store[c].tree for c in common], b"")
        self.progress(f"counting objects: {len(self._out)}, done.\n".encode("ascii"))

    def _get(self, sha: bytes) -> Any:
        try:
            return self.store[sha]
        except KeyError:
            return None  # a have we do not know: the client has more than we do

    def _commits(self, starts: Iterable[bytes], stop: set[bytes], *, strict: bool
                 ) -> tuple[list[Commit], set[bytes]]:
        """The commits `starts` reach without passing through `stop`, and the ids of `stop`
        met on the way (the boundary). An unknown id is an error only when `strict` (a want;
        a have we do not know just means the client has more than we do)."""
        found: list[Commit] = []
        boundary: set[bytes] = set()
        seen: set[bytes] = set()
        todo = list(starts)
        while todo:
            sha = todo.pop()
            if sha in seen:
                continue
            seen.add(sha)
            if sha in stop:
                boundary.add(sha)
                continue
            commit = self.store[sha] if strict else self._get(sha)
            if isinstance(commit, Commit):
                found.append(commit)
                todo.extend(commit.parents)
        return found, boundary

    def _emit(self, sha: bytes, type_num: int, name: bytes | None) -> None:
        if sha in self._sent:
            return
        self._sent.add(sha)
        self._out.append((sha, (type_num, name)))
        tag = self._tagged.get(sha)
        if tag is not None and tag not in self._sent and tag not in self._have_tags:
            self._sent.add(tag)
            self._out.append((tag, (Tag.type_num, None)))

    def _walk(self, wanted: list[bytes], had: list[bytes], name: bytes) -> None:
        """Trees `wanted` at one path, next to the trees the client has there (`had`)."""
        self._known.update(had)
        todo = [t for t in dict.fromkeys(wanted) if t not in self._known and t not in self._sent]
        if not todo:
            return
        known_trees: dict[bytes, list[bytes]] = {}  # entry name -> trees the client has there
        for sha in had:
            for entry in self.store[sha].iteritems():
                self._known.add(entry.sha)
                if stat.S_ISDIR(entry.mode):
                    known_trees.setdefault(entry.path, []).append(entry.sha)
        subtrees: dict[bytes, list[bytes]] = {}
        for sha in todo:
            self._emit(sha, Tree.type_num, name)
            for entry in self.store[sha].iteritems():
                if S_ISGITLINK(entry.mode):
                    continue  # a submodule's commit is not ours to send
                if entry.sha in self._known:
                    continue  # the client has it, here or (moved) at a path walked before
                if stat.S_ISDIR(entry.mode):
                    subtrees.setdefault(entry.path, []).append(entry.sha)
                else:
                    self._emit(entry.sha, Blob.type_num, entry.path)
        for path, trees in subtrees.items():
            self._walk(trees, known_trees.get(path, []), path)

    def __iter__(self) -> Iterator[tuple[bytes, Hint]]:
        return iter(self._out)

    def __len__(self) -> int:
        return len(self._out)
