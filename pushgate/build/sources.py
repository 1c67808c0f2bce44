"""Source trees the gate reads: a commit's tree in a git object store, or a working directory.

Called by the gate (`pushgate.gate.gate`), the git server (quarantined commits), `pushgate
validate` (a directory) and the reconciler (the deploy branch's commit). Both kinds list entries
with their git mode, so symlinks and submodules are seen for what they are.

A git tree's listing is cached per (path, tree sha), for this process: a tree object is named by
its content, so the same sha at the same path lists the same entries, in whichever store it is
read. A push that changes 10 files of 5,000 reads only the trees on the paths to them.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pushgate.core.gencache import GenCache

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
        """Every non-directory entry: a tree's own entries in tree order, then its
        subdirectories', last one first (the order of a depth-first walk with a stack)."""
        return iter(_listing(self.store, "", self.tree_sha))

    def read(self, entry: Entry) -> bytes:
        obj = self.store[entry.key.encode()]
        if obj.type_name != b"blob":  # a hand-made tree; the connectivity walk only looked it up
            raise ValueError(f"{entry.path}: the tree names a file there, but object {entry.key} "
                             f"is a {obj.type_name.decode()}")
        data: bytes = obj.data
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


_LISTINGS: GenCache[tuple[str, bytes], tuple[Entry, ...]] = GenCache()
_LISTINGS_MAX = 2_000_000  # entries held in all cached listings together (pointers, mostly shared)
_listed = 0


def rotate_listings() -> None:
    """A build starts (Builder.build): listings no recent build read are dropped."""
    _LISTINGS.rotate()


def _listing(store: Any, prefix: str, sha: bytes) -> tuple[Entry, ...]:
    """Every entry under tree `sha` at `prefix`, from the cache where that tree was listed before.
    Iterative (a hostile tree may nest thousands of directories)."""
    global _listed
    hit = _LISTINGS.get((prefix, sha))
    if hit is not None:
        return hit
    # Frames of trees being listed: (prefix, sha, own entries, subdirectories last first,
    # next subdirectory to list, listings of those done).
    frames: list[tuple[str, bytes, list[Entry], list[tuple[str, bytes]], list[int],
                       list[tuple[Entry, ...]]]] = [_frame(store, prefix, sha)]
    while True:
        pre, tree, own, subdirs, at, parts = frames[-1]
        if at[0] < len(subdirs):
            sub = subdirs[at[0]]
            at[0] += 1
            cached = _LISTINGS.get(sub)
            if cached is not None:
                parts.append(cached)
            else:
                frames.append(_frame(store, *sub))
            continue
        frames.pop()
        done = tuple(itertools.chain(own, *parts))
        if _listed + len(done) > _LISTINGS_MAX:
            _LISTINGS.clear()
            _listed = 0
        _LISTINGS[(pre, tree)] = done
        _listed += len(done)
        if not frames:
            return done
        frames[-1][5].append(done)


def _frame(store: Any, prefix: str, sha: bytes) -> tuple[str, bytes, list[Entry], list[tuple[str, bytes]],
                                                         list[int], list[tuple[Entry, ...]]]:
    own: list[Entry] = []
    subdirs: list[tuple[str, bytes]] = []
    for item in store[sha].iteritems():
        path = prefix + item.path.decode("utf-8", "surrogateescape")
        if item.mode == MODE_TREE or stat.S_ISDIR(item.mode):
            subdirs.append((path + "/", item.sha))
        else:
            own.append(Entry(path, item.mode, item.sha.decode()))
    subdirs.reverse()
    return prefix, sha, own, subdirs, [0], []
