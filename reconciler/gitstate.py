"""The reconciler's view of the repository: branch heads, `refs/deployed/*`, notes, and the
objects of a commit built by the same gate code the git server runs.

Called by the loop. Writes happen under the repository lock the git server uses, so a push and a
deploy-state update never interleave; the git server refuses pushes to these refs.
"""

from __future__ import annotations

import os
from typing import Any

from dulwich.notes import Notes
from dulwich.repo import Repo

from pushgate import locks
from pushgate.core import violations as pv
from pushgate.gate import gate as gatemod
from pushgate.gate.sources import GitTree

NOTES_REF = b"refs/notes/pushgate"
REPO = "cluster.git"


class GitState:
    def __init__(self, data_dir: str, branch: str = "main", kustomize: str | None = None,
                 kubernetes_version: str = "1.37") -> None:
        self.path = os.path.join(data_dir, REPO)
        self.branch = branch
        self.head_ref = f"refs/heads/{branch}".encode()
        self.deployed_ref = f"refs/deployed/{branch}".encode()
        self.gate = gatemod.Gate(gatemod.GateConfig(kubernetes_version=kubernetes_version),
                                 engine=None, kustomize_bin=kustomize)

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

    def objects(self, sha: str) -> tuple[list[dict[str, Any]], list[pv.Violation]]:
        """The commit's objects as the gate builds them (kustomize output included)."""
        repo = self._repo()
        try:
            build = self.gate.build(GitTree(repo.object_store, sha.encode()))
        finally:
            repo.close()
        errors = [v for v in build.problems if v.is_error]
        return [m.obj for m in build.manifests], errors

    def commit_info(self, sha: str) -> dict[str, str]:
        repo = self._repo()
        try:
            c: Any = repo[sha.encode()]
            return {"sha": sha, "message": c.message.decode("utf-8", "replace").splitlines()[0][:200],
                    "author": c.author.decode("utf-8", "replace")}
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
