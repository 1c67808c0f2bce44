"""A policy repository's commit, written out as a directory the policy loader and `opa` can read.

Called by `pushgate.gate.policycheck` (a pushed policy commit, from the quarantine) and by the
git server's active-policy holder (an accepted commit whose directory is missing). The tree comes
from a push, so it is hostile until checked: only regular files are written, every path is
checked component by component (no `..`, no absolute path, no `.git`, no NUL), symlinks and
submodules are refused rather than followed or skipped, and the number of files, each file's
size and the total are bounded. Files are created with O_EXCL | O_NOFOLLOW in a directory this
module made itself, so nothing can be written outside it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from pushgate.build import sources
from pushgate.build.sources import SourceTree


class TreeError(Exception):
    """The pushed tree cannot be a policy directory; the message names the path and the reason."""


@dataclass(frozen=True)
class Limits:
    max_files: int = 2000
    max_file_bytes: int = 1024 * 1024
    max_total_bytes: int = 32 * 1024 * 1024
    max_depth: int = 32
    max_path: int = 1000


def _components(path: str, limits: Limits) -> list[str]:
    if len(path) > limits.max_path:
        raise TreeError(f"{path[:100]}...: path longer than {limits.max_path} characters")
    parts = path.split("/")
    if len(parts) > limits.max_depth:
        raise TreeError(f"{path}: nested deeper than {limits.max_depth} directories")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part or "\\" in part or part.lower() == ".git":
            raise TreeError(f"{path!r}: not a safe path in a policy repository")
    return parts


def materialise(tree: SourceTree, dest: str, limits: Limits | None = None) -> int:
    """Write every file of `tree` under `dest` (which must not exist). Returns the file count.
    On any refusal `dest` is removed again and TreeError says why."""
    limits = limits or Limits()
    os.makedirs(dest, mode=0o755)
    try:
        return _write(tree, dest, limits)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _write(tree: SourceTree, dest: str, limits: Limits) -> int:
    files = total = 0
    made: set[str] = {dest}
    for entry in tree.entries():
        parts = _components(entry.path, limits)
        if entry.mode == sources.MODE_SYMLINK:
            raise TreeError(f"{entry.path}: symbolic links are not allowed in a policy repository")
        if entry.mode == sources.MODE_SUBMODULE:
            raise TreeError(f"{entry.path}: submodules are not allowed in a policy repository")
        if not entry.is_file:
            raise TreeError(f"{entry.path}: not a regular file (mode {entry.mode:o})")
        files += 1
        if files > limits.max_files:
            raise TreeError(f"more than {limits.max_files} files in the policy repository")
        data = tree.read(entry)
        if len(data) > limits.max_file_bytes:
            raise TreeError(f"{entry.path}: larger than {limits.max_file_bytes} bytes")
        total += len(data)
        if total > limits.max_total_bytes:
            raise TreeError(f"the policy repository holds more than {limits.max_total_bytes} bytes")
        parent = dest
        for part in parts[:-1]:
            parent = os.path.join(parent, part)
            if parent not in made:
                try:
                    os.mkdir(parent, 0o755)
                except FileExistsError:
                    if os.path.islink(parent) or not os.path.isdir(parent):
                        raise TreeError(f"{entry.path}: a file and a directory share a name") from None
                made.add(parent)
        target = os.path.join(parent, parts[-1])
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except (FileExistsError, IsADirectoryError):
            raise TreeError(f"{entry.path}: a file and a directory share a name") from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return files


def rego_view(src: str, dest: str) -> int:
    """The `.rego` files of `src` (tests included) under `dest`, hard-linked, hidden directories
    left out as the policy loader leaves them out: what `opa check` and `opa test` are given, so
    OPA never reads the repository's YAML or JSON as data documents. Returns the file count."""
    count = 0
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(root, src)
        for name in sorted(names):
            if not name.endswith(".rego"):
                continue
            target_dir = dest if rel == "." else os.path.join(dest, rel)
            os.makedirs(target_dir, exist_ok=True)
            os.link(os.path.join(root, name), os.path.join(target_dir, name))
            count += 1
    return count
