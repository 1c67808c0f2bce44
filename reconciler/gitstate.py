"""The reconciler's view of the repository: branch heads, `refs/deployed/*`, notes, and the
objects of a commit built by the same build step (and configuration) the gate runs.

Called by the loop. Writes happen under the repository lock the git server uses, so a push and a
deploy-state update never interleave; the git server refuses pushes to these refs.
"""

from __future__ import annotations

import os
from typing import Any

from dulwich.notes import Notes
from dulwich.repo import Repo

from pushgate import datadir, locks
from pushgate.build import build as buildmod
from pushgate.build.sources import GitTree

NOTES_REF = datadir.NOTES_REF


class GitState:
    def __init__(self, data_dir: str, branch: str = "main") -> None:
        self.path = datadir.repo_path(data_dir)
        self.branch = branch
        self.head_ref = datadir.head_ref(branch)
        self.deployed_ref = datadir.deployed_ref(branch)

    def _repo(self) -> Repo:
        return Repo(self.path)

    def _read(self, ref: bytes) -> str | None:
        if not os.path.exists(os.path.join(self.path, "HEAD")):
            return None
        repo = self._repo()
        try:
            refs: Any = repo.refs
            return bytes(refs[ref]).decode()
        except KeyError:
            return None
        finally:
            repo.close()

    def head(self) -> str | None:
        return self._read(self.head_ref)

    def deployed(self) -> str | None:
        return self._read(self.deployed_ref)

    def build(self, sha: str, builder: buildmod.Builder) -> buildmod.Build:
        """The commit's objects as the gate built them (same step, same configuration)."""
        repo = self._repo()
        try:
            return builder.build(GitTree(repo.object_store, sha.encode()))
        finally:
            repo.close()

    def commit_info(self, sha: str) -> dict[str, str]:
        repo = self._repo()
        try:
            c: Any = repo[sha.encode()]
            return {"sha": sha, "message": c.message.decode("utf-8", "replace").splitlines()[0][:200],
                    "author": c.author.decode("utf-8", "replace")}
        finally:
            repo.close()

    def full_message(self, sha: str) -> str:
        repo = self._repo()
        try:
            c: Any = repo[sha.encode()]
            return str(c.message.decode("utf-8", "replace"))
        finally:
            repo.close()

    def between(self, old: str | None, new: str, limit: int = 1000) -> list[str]:
        """First-parent commits after `old` up to `new`, excluding both, newest first."""
        repo = self._repo()
        out: list[str] = []
        try:
            sha = new.encode()
            while len(out) < limit:
                commit: Any = repo[sha]
                if not commit.parents:
                    break
                sha = commit.parents[0]
                if old is not None and sha == old.encode():
                    return out
                out.append(sha.decode())
        except KeyError:
            return out
        finally:
            repo.close()
        return out if old is None else []

    def mark_deployed(self, sha: str) -> None:
        with locks.exclusive(os.path.join(self.path, locks.REPO_LOCK)):
            repo = self._repo()
            try:
                refs: Any = repo.refs
                refs[self.deployed_ref] = sha.encode()
            finally:
                repo.close()

    def note(self, sha: str, text: str) -> None:
        with locks.exclusive(os.path.join(self.path, locks.REPO_LOCK)):
            repo = self._repo()
            try:
                Notes(repo.object_store, repo.refs).set_note(
                    sha.encode(), text.encode(), notes_ref=NOTES_REF,
                    author=b"pushgate <pushgate@localhost>", committer=b"pushgate <pushgate@localhost>",
                    message=b"pushgate: deploy result")
            finally:
                repo.close()

    def read_note(self, sha: str) -> str | None:
        repo = self._repo()
        try:
            raw = Notes(repo.object_store, repo.refs).get_note(sha.encode(), notes_ref=NOTES_REF)
            return raw.decode() if raw is not None else None
        finally:
            repo.close()
