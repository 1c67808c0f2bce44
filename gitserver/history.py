"""Walks over commit history for the receive path: connectivity, ancestry, changed paths.

Called by `gitserver.receive` on a quarantine's object store (which reads through to the
repository's), before anything is accepted.
"""

from __future__ import annotations

from typing import Any

from dulwich.objects import Commit, Tree

from gitserver.repos import ZERO


def missing_objects(store: Any, main: Any, tip: bytes) -> bytes | None:
    """The first object the new history needs and nobody has (connectivity check). Objects
    already in the repository are complete by invariant, so the walk stops there."""
    todo = [tip]
    seen: set[bytes] = set()
    while todo:
        sha = todo.pop()
        if sha in seen:
            continue
        seen.add(sha)
        if sha in main:
            continue
        if sha not in store:
            return sha
        obj = store[sha]
        if isinstance(obj, Commit):
            todo.append(obj.tree)
            todo.extend(obj.parents)
        elif isinstance(obj, Tree):
            for entry in obj.iteritems():
                if entry.mode & 0o170000 == 0o160000:
                    continue  # a submodule commit lives in another repository
                todo.append(entry.sha)
        elif obj.type_name == b"tag":
            todo.append(obj.object[1])
    return None


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
