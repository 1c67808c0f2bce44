"""Source trees the gate reads: a commit's tree in a git object store, or a working directory.

Called by the gate (`pushgate.gate.gate`), the git server (quarantined commits), `pushgate
validate` (a directory) and the reconciler (the deploy branch's commit). Both kinds list entries
with their git mode, so symlinks and submodules are seen for what they are.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_SYMLINK = 0o120000
MODE_SUBMODULE = 0o160000
MODE_TREE = 0o040000


@dataclass(frozen=True)
class Entry:
    path: str  # "/"-separated, relative to the tree's root
    mode: int
    key: str  # content identity: the blob sha for git trees, "" for directories

    @property
    def is_file(self) -> bool:
        return self.mode in (MODE_FILE, MODE_EXEC)


class SourceTree(Protocol):
    def entries(self) -> Iterator[Entry]: ...

    def read(self, entry: Entry) -> bytes: ...


class GitTree:
    """The tree of one commit in a dulwich object store (quarantined or not)."""

    def __init__(self, store: Any, commit_sha: bytes) -> None:
        self.store = store
        self.tree_sha: bytes = store[commit_sha].tree

    def entries(self) -> Iterator[Entry]:
        stack: list[tuple[str, bytes]] = [("", self.tree_sha)]
        while stack:
            prefix, sha = stack.pop()
            for item in self.store[sha].iteritems():
                name = item.path.decode("utf-8", "surrogateescape")
                path = f"{prefix}{name}"
                if item.mode == MODE_TREE or stat.S_ISDIR(item.mode):
                    stack.append((path + "/", item.sha))
                else:
                    yield Entry(path, item.mode, item.sha.decode())

    def read(self, entry: Entry) -> bytes:
        data: bytes = self.store[entry.key.encode()].data
        return data


class DirTree:
    """A working directory (for `pushgate validate`); `.git` is skipped, symlinks are not followed."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def entries(self) -> Iterator[Entry]:
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            keep = []
            for d in sorted(dirnames):
                full = os.path.join(dirpath, d)
                if d == ".git":
                    continue
                if os.path.islink(full):
                    yield Entry(rel_dir + d, MODE_SYMLINK, "")
                elif os.path.exists(os.path.join(full, ".git")):
                    yield Entry(rel_dir + d, MODE_SUBMODULE, "")
                else:
                    keep.append(d)
            dirnames[:] = keep
            for f in sorted(filenames):
                st = os.lstat(os.path.join(dirpath, f))
                if stat.S_ISLNK(st.st_mode):
                    mode = MODE_SYMLINK
                elif stat.S_ISREG(st.st_mode):
                    mode = MODE_EXEC if st.st_mode & 0o111 else MODE_FILE
                else:
                    continue
                yield Entry(rel_dir + f, mode, "")

    def read(self, entry: Entry) -> bytes:
        with open(os.path.join(self.root, entry.path), "rb") as f:
            return f.read()
