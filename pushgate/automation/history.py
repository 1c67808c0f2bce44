"""The branch as automation reads it: its head, its manifest files and its revert pins.

Called by `scanner`. Reads the repository on disk with dulwich, read-only (pushgate's own
commits go through `botpush` and the server's receive path, never written here). Pins come from
`bumps.pins` over the branch's last `MAX_COMMITS` commits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from pushgate import datadir
from pushgate.automation import bumps
from pushgate.build.sources import GitTree
from pushgate.core import manifests

MAX_COMMITS = 1000  # how far back a revert is looked for


@dataclass(frozen=True)
class Snapshot:
    head: str  # the branch's commit
    files: dict[str, bytes]  # the manifest files: path -> content
    pins: dict[str, set[str]]  # image -> tags pinned out by reverts


def read(data_dir: str, branch: str, include: tuple[str, ...], exclude: tuple[str, ...],
         max_file_bytes: int) -> Snapshot | None:
    """The branch's head and files, or None when it has no commit yet."""
    from dulwich.repo import Repo

    repo = Repo(datadir.repo_path(data_dir))
    try:
        refs: dict[Any, Any] = dict(repo.refs.as_dict())
        head = refs.get(datadir.head_ref(branch))
        if head is None:
            return None
        tree = GitTree(repo.object_store, head)
        files: dict[str, bytes] = {}
        for entry in tree.entries():
            if entry.is_file and manifests.is_manifest_path(entry.path, include, exclude) \
                    and repo.object_store[cast(Any, entry.key.encode())].raw_length() <= max_file_bytes:
                files[entry.path] = tree.read(entry)
        return Snapshot(head.decode(), files, _pins(repo, head))
    finally:
        repo.close()


def _pins(repo: Any, head: bytes) -> dict[str, set[str]]:
    commits = list(_walk(repo, head))
    commits.reverse()  # oldest first
    seen = {c.sha for c in commits}
    lookup: dict[str, str] = {}
    for c in commits:
        target = bumps.reverted(c.message)
        if target and target not in seen:  # reverted from outside the window
            with contextlib.suppress(KeyError):
                lookup[target] = repo.object_store[target.encode()].message.decode("utf-8", "replace")
    return bumps.pins(commits, lookup)


def _walk(repo: Any, head: bytes) -> Iterator[bumps.Commit]:
    for entry in repo.get_walker(include=[head], max_entries=MAX_COMMITS):
        c = entry.commit
        yield bumps.Commit(c.id.decode(), c.message.decode("utf-8", "replace"))
