"""Walks over commit history for the receive path: connectivity, ancestry, changed paths, and
the commits a push brings that no ref had (for the signed-commit check).

Called by `gitserver.receive` on a quarantine's object store (which reads through to the
repository's), before anything is accepted.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Container, Iterable
from typing import Any

from dulwich.objects import Commit, Tree

from gitserver.repos import ZERO


def missing_objects(store: Any, main: Any, tip: bytes, pushed: Container[bytes] = ()) -> bytes | None:
    """The first object the new history needs and nobody has (connectivity check). Objects
    already in the repository are complete by invariant, so the walk stops there. Each commit's
    tree is walked next to its first parent's: an entry the parent has at the same path is
    checked by the parent's own walk (or is in the repository, if the parent is), so a push that
    changes 10 files of 10,000 looks up tens of objects, not every entry of the trees it touches.
    `pushed`: objects known to be in `store` (the push's own, read ahead): walked without
    asking the repository first (each miss there costs file-system calls)."""
    # (object, the parent's tree there, named a file by its tree: only its presence matters)
    todo: list[tuple[bytes, bytes | None, bool]] = [(tip, None, False)]
    seen: set[bytes] = set()
    while todo:
        sha, base, is_file = todo.pop()
        if sha in seen:
            continue
        seen.add(sha)
        if sha not in pushed:
            if sha in main:
                continue
            if sha not in store:
                return sha
        if is_file:
            continue  # as git's rev-list --objects: a blob is looked up, never read
        obj = store[sha]
        if isinstance(obj, Commit):
            todo.extend((p, None, False) for p in obj.parents)
            todo.append((obj.tree, _tree_of(store, obj.parents[0]) if obj.parents else None, False))
        elif isinstance(obj, Tree):
            known = _entries(store, base)
            for entry in obj.iteritems():
                kind = entry.mode & 0o170000
                if kind == 0o160000:
                    continue  # a submodule commit lives in another repository
                had = known.get(entry.path)
                if had is not None and had[1] == entry.sha:
                    continue  # the parent has it here: checked there
                todo.append((entry.sha, had[1] if had is not None and had[0] & 0o170000 == 0o040000
                             else None, kind != 0o040000))
        elif obj.type_name == b"tag":
            todo.append((obj.object[1], None, False))
    return None


def _tree_of(store: Any, commit: bytes) -> bytes | None:
    try:
        obj = store[commit]
    except KeyError:
        return None  # missing: the walk reports it when it gets there
    return obj.tree if isinstance(obj, Commit) else None


def _entries(store: Any, tree: bytes | None) -> dict[bytes, tuple[int, bytes]]:
    if tree is None:
        return {}
    try:
        obj = store[tree]
    except KeyError:
        return {}
    if not isinstance(obj, Tree):
        return {}
    return {e.path: (e.mode, e.sha) for e in obj.iteritems()}


def is_ancestor(store: Any, old: bytes, new: bytes, limit: int = 200_000) -> bool:
    todo = [new]
    seen: set[bytes] = set()
    while todo and len(seen) < limit:
        sha = todo.pop()
        if sha == old:
            return True
        if sha in seen or sha not in store:
            continue
        seen.add(sha)
        obj = store[sha]
        if isinstance(obj, Commit):
            todo.extend(obj.parents)
    return False


def changed_paths(store: Any, old: bytes, new: bytes) -> list[str]:
    from dulwich.diff_tree import tree_changes

    new_tree = store[new].tree
    old_tree = store[old].tree if old != ZERO and old in store else None
    out = []
    for change in tree_changes(store, old_tree, new_tree):
        for side in (change.old, change.new):
            if side is not None and side.path is not None:
                out.append(side.path.decode("utf-8", "replace"))
    return sorted(set(out))


class TooMuchHistory(Exception):
    """A push brings more new commits than may be checked one by one, or the walk that finds
    them grows past its bound."""


MAX_WALK = 200_000
_SLOP = 5  # git's rev-list walks this many more commits once only old ones are queued


def new_commits(store: Any, tips: Iterable[bytes], known: Iterable[bytes], limit: int,
                max_walk: int = MAX_WALK) -> list[bytes]:
    """The commits reachable from `tips` and from none of `known` (git's `rev-list TIPS --not
    KNOWN`), newest first; tags are peeled, and merges bring every parent's side. A walk by
    commit date from both sides, as git's: a commit reached from `known` is old and so are its
    ancestors; it stops once only old commits are queued. With skewed clocks it may keep a commit
    as new that is not (a false refusal), never the reverse. Raises TooMuchHistory past `limit`
    new commits or `max_walk` commits walked."""
    old: dict[bytes, bool] = {}  # every commit seen -> reachable from `known`
    parents: dict[bytes, list[bytes]] = {}
    queue: list[tuple[int, int, bytes]] = []
    queued_new: set[bytes] = set()
    order = itertools.count()

    def paint(sha: bytes) -> None:
        stack = [sha]
        while stack:
            s = stack.pop()
            if old.get(s) is not False:
                continue
            old[s] = True
            queued_new.discard(s)
            stack.extend(p for p in parents[s] if p in old)

    def enqueue(sha: bytes, is_old: bool) -> None:
        if sha in old:
            if is_old:
                paint(sha)
            return
        commit = _peel_commit(store, sha)
        if commit is None:
            return
        sha = commit.id
        if sha in old:
            if is_old:
                paint(sha)
            return
        old[sha] = is_old
        parents[sha] = list(commit.parents)
        heapq.heappush(queue, (-commit.commit_time, next(order), sha))
        if not is_old:
            queued_new.add(sha)

    for sha in known:
        enqueue(sha, True)
    for sha in tips:
        enqueue(sha, False)
    found: list[bytes] = []
    walked = 0
    slop = _SLOP
    while queue:
        if not queued_new:
            slop -= 1
            if slop <= 0:
                break
        else:
            slop = _SLOP
        _, _, sha = heapq.heappop(queue)
        queued_new.discard(sha)
        walked += 1
        if walked > max_walk:
            raise TooMuchHistory(f"more than {max_walk} commits walked to find the new ones")
        if not old[sha]:
            found.append(sha)
        for p in parents[sha]:
            enqueue(p, old[sha])
    new = [s for s in found if not old[s]]
    if len(new) > limit:
        raise TooMuchHistory(f"{len(new)} new commits, more than the {limit} checked per push")
    return new


def _peel_commit(store: Any, sha: bytes) -> Commit | None:
    """The commit `sha` names, through annotated tags; None for anything else or a missing one."""
    for _ in range(16):
        if sha not in store:
            return None
        obj = store[sha]
        if isinstance(obj, Commit):
            return obj
        if obj.type_name != b"tag":
            return None
        sha = obj.object[1]
    return None
