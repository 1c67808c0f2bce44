"""Runs the stock `git` CLI in temporary directories, isolated from the user's configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class Git:
    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Test Pusher", "GIT_AUTHOR_EMAIL": "pusher@example.test",
            "GIT_COMMITTER_NAME": "Test Pusher", "GIT_COMMITTER_EMAIL": "pusher@example.test",
            "LC_ALL": "C",
        }
        (home / ".gitconfig").write_text(
            "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")

    def run(self, *args: str, cwd: Path | None = None, check: bool = True,
            timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True,
                             text=True, timeout=timeout, input=input, check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({res.returncode}):\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def init(self, path: Path) -> Path:
        self.run("init", "-q", "-b", "main", str(path))
        return path

    def write(self, repo: Path, files: dict[str, str | bytes]) -> None:
        for rel, content in files.items():
            p = repo / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)

    def commit_all(self, repo: Path, message: str) -> str:
        self.run("add", "-A", cwd=repo)
        self.run("commit", "-q", "--allow-empty", "-m", message, cwd=repo)
        return self.rev_parse(repo, "HEAD")

    def rev_parse(self, repo: Path, rev: str) -> str:
        return self.run("rev-parse", rev, cwd=repo).stdout.strip()
