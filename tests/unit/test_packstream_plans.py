"""`packstream.planned`: a clone of an unchanged repository reuses the plan of what to stream
(made once per state of the packs), streams the same bytes, and a changed set of packs (a push,
a merge) gets a plan of its own. The streamed pack is one `git index-pack` accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from dulwich.object_format import DEFAULT_OBJECT_FORMAT

from gitserver import packstream
from tests.bed.gitcli import Git


def _packs(repo: Path) -> list[str]:
    return sorted(str(p) for p in (repo / ".git" / "objects" / "pack").glob("*.pack"))


def _stream(files: list[str]) -> bytes:
    out: list[bytes] = []
    packstream.stream(files, out.append, DEFAULT_OBJECT_FORMAT)
    return b"".join(out)


def test_a_plan_is_made_once_per_state_of_the_packs(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    git = Git(tmp_path / "home")
    repo = git.init(tmp_path / "repo")
    for i in range(3):
        git.write(repo, {f"f{i}.yaml": f"a: {i}\n" * 50, "same.yaml": f"b: {i}\n" * 40})
        git.commit_all(repo, f"c{i}")
    git.run("repack", "-a", "-d", "-q", cwd=repo)
    made: list[list[str]] = []
    real = packstream.plan

    def counting(files: Any, *args: Any) -> Any:
        made.append(list(files))
        return real(files, *args)

    monkeypatch.setattr(packstream, "plan", counting)
    monkeypatch.setattr(packstream, "_plans", {})
    one = _packs(repo)
    first, again = _stream(one), _stream(one)
    assert first == again and len(made) == 1
    git.write(repo, {"new.yaml": "c: 1\n"})
    git.commit_all(repo, "another pack")
    git.run("repack", "-d", "-q", cwd=repo)  # the new objects in a pack of their own
    two = _packs(repo)
    assert len(two) == 2
    both = _stream(two)
    assert len(made) == 2 and both != first
    assert _stream(one) == first  # (git freshened its mtime: planned again, the same parts)
    for i, data in enumerate((first, both)):
        check = subprocess.run(["git", "index-pack", "--stdin", "--strict"], input=data,
                               cwd=git.init(tmp_path / f"check-{i}"), env=git.env,
                               capture_output=True, check=False)
        assert check.returncode == 0, check.stderr.decode()
