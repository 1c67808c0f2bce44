"""The summary line counts what was checked: a tree of plain manifests, a chart and a Jsonnet file
that all pass reads "0 errors, 0 warnings; checked 3 files, N objects", not "... in 0 files";
callers that pass no counts keep the older form.
"""

from __future__ import annotations

from pathlib import Path

from pushgate.build import build as buildmod
from pushgate.build.config import BuildConfig
from pushgate.build.sources import DirTree
from pushgate.core import violations as pv
from tests.bed import samples, tools
from tests.unit.test_helm import web_tree


def test_summary_with_and_without_counts() -> None:
    problems = [pv.error("a.yaml", 1, "", "r", "bad"), pv.warning("b.yaml", 2, "", "r", "meh")]
    assert pv.summary([]) == "0 errors, 0 warnings in 0 files"
    assert pv.summary(problems) == "1 error, 1 warning in 2 files"
    assert pv.summary([], files=12, objects=40) == "0 errors, 0 warnings; checked 12 files, 40 objects"
    assert pv.summary(problems, files=1, objects=1) == "1 error, 1 warning; checked 1 file, 1 object"
    assert pv.summary([], files=3) == "0 errors, 0 warnings; checked 3 files"
    assert pv.report(problems, files=2, objects=0)[-1] == "1 error, 1 warning; checked 2 files, 0 objects"
    assert pv.report([]) == ["0 errors, 0 warnings in 0 files"]


def test_a_passing_mixed_tree_reports_what_it_checked(tmp_path: Path) -> None:
    files = web_tree()
    files["raw/cm.yaml"] = samples.configmap(namespace="shop")
    files["jsonnet/app.jsonnet"] = "{apiVersion: 'v1', kind: 'Namespace', metadata: {name: 'shop'}}"
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    b = buildmod.Builder(BuildConfig(), kustomize_bin=None, helm_bin=tools.path("helm")).build(
        DirTree(str(tmp_path)))
    assert b.problems == []
    # a chart and a Jsonnet file count as one file each, whatever they render
    assert pv.report(b.problems, files=b.files, objects=len(b.manifests)) == [
        "0 errors, 0 warnings; checked 3 files, 6 objects"]
