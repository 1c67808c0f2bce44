"""Writing a pushed policy commit out as a directory: bounded, no symlinks, nothing outside it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushgate.build import sources
from pushgate.build.sources import Entry
from pushgate.gate import policytree


class FakeTree:
    def __init__(self, files: dict[str, bytes], modes: dict[str, int] | None = None) -> None:
        self.files, self.modes = files, modes or {}

    def entries(self) -> Iterator[Entry]:
        for path in self.files:
            yield Entry(path, self.modes.get(path, sources.MODE_FILE), path)

    def read(self, entry: Entry) -> bytes:
        return self.files[entry.key]


def test_files_are_written_and_rego_view_holds_only_rego(tmp_path: Path) -> None:
    tree = FakeTree({"main.rego": b"package main\n", "lib/k8s.rego": b"package lib\n",
                     "lib/k8s_test.rego": b"package lib\n", "enforcement.yaml": b"rules: {}\n",
                     ".hidden/x.rego": b"package hidden\n", "README.md": b"# hi\n"})
    dest = tmp_path / "tree"
    assert policytree.materialise(tree, str(dest)) == 6
    assert (dest / "lib" / "k8s.rego").read_bytes() == b"package lib\n"
    rego = tmp_path / "rego"
    assert policytree.rego_view(str(dest), str(rego)) == 3
    found = sorted(str(p.relative_to(rego)) for p in rego.rglob("*") if p.is_file())
    assert found == ["lib/k8s.rego", "lib/k8s_test.rego", "main.rego"]


@pytest.mark.parametrize(("files", "modes", "needle"), [
    ({"../escape.rego": b"x"}, {}, "not a safe path"),
    ({"a/../../escape.rego": b"x"}, {}, "not a safe path"),
    ({"/abs.rego": b"x"}, {}, "not a safe path"),
    ({".git/config": b"x"}, {}, "not a safe path"),
    ({"link.rego": b"/etc/passwd"}, {"link.rego": sources.MODE_SYMLINK}, "symbolic links are not allowed"),
    ({"sub": b""}, {"sub": sources.MODE_SUBMODULE}, "submodules are not allowed"),
    ({"big.rego": b"x" * (1024 * 1024 + 1)}, {}, "larger than"),
])
def test_unsafe_trees_are_refused_and_nothing_is_left(tmp_path: Path, files: dict[str, bytes],
                                                       modes: dict[str, int], needle: str) -> None:
    dest = tmp_path / "tree"
    with pytest.raises(policytree.TreeError, match=needle):
        policytree.materialise(FakeTree(files, modes), str(dest))
    assert not dest.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_counts_are_bounded(tmp_path: Path) -> None:
    limits = policytree.Limits(max_files=3, max_total_bytes=10)
    with pytest.raises(policytree.TreeError, match="more than 3 files"):
        policytree.materialise(FakeTree({f"f{i}.rego": b"" for i in range(4)}), str(tmp_path / "a"), limits)
    with pytest.raises(policytree.TreeError, match="more than 10 bytes"):
        policytree.materialise(FakeTree({"a.rego": b"123456", "b.rego": b"123456"}),
                               str(tmp_path / "b"), limits)
