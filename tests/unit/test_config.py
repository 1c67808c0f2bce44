"""The configuration file, flags as overrides, the persisted copy, and the data-dir contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate import config as configmod
from pushgate import datadir


def _file(tmp_path: Path, text: str) -> str:
    p = tmp_path / "pushgate.yaml"
    p.write_text(text)
    return str(p)


def test_file_sets_every_section_and_persists_round_trip(tmp_path: Path) -> None:
    cfg = configmod.load_file(_file(tmp_path, """
build:
  exclude: ["docs/*"]
  kubernetesVersion: 1.36
  defaultNamespace: apps
  limits: {maxDocuments: 10}
gate:
  gatedRefs: [refs/heads/main, refs/heads/release/v1]
  missingSchema: warning
  policyNamespaces: [main]
reconcile:
  branch: release/v1
  drift: detect
  pruneProtected: true
"""))
    assert cfg.build.exclude == ("docs/*",) and cfg.build.kubernetes_version == "1.36"
    assert cfg.build.default_namespace == "apps" and cfg.build.limits.max_documents == 10
    assert cfg.gate.policy_namespaces == ("main",) and cfg.gate.missing_schema == "warning"
    assert cfg.reconcile.branch == "release/v1" and cfg.reconcile.drift == "detect"
    assert cfg.reconcile.prune_protected
    configmod.check_reconciled_branch_is_gated(cfg)
    data = tmp_path / "data"
    configmod.persist(str(data), cfg)
    assert configmod.load_persisted(str(data)) == cfg
    assert configmod.load_persisted(str(tmp_path / "empty")) is None


@pytest.mark.parametrize(("text", "needle"), [
    ("build: {exclud: [x]}\n", "build.exclud: unknown key"),
    ("bild: {}\n", "unknown section 'bild'"),
    ("build: {include: docs}\n", "expected a list"),
    ("build: {defaultNamespace: Not_A_Namespace}\n", "defaultNamespace"),
    ("gate: {timeout: fast}\n", "gate.timeout: expected a number"),
    ("reconcile: {drift: sometimes}\n", "reconcile.drift"),
    ("reconcile: {pruneProtected: yes please}\n", "expected true or false"),
    ("build: [\n", "yaml"),
    ("a: &x [*x]\n", ""),
])
def test_bad_files_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(configmod.ConfigError) as e:
        configmod.load_file(_file(tmp_path, text))
    assert needle in str(e.value) and "pushgate.yaml" in str(e.value)


def test_overrides_replace_and_validate() -> None:
    cfg = configmod.Config().replace("build", exclude=("docs/*",), include=None)
    assert cfg.build.exclude == ("docs/*",) and cfg.build.include == ("*.yaml", "*.yml", "*.json")
    with pytest.raises(configmod.ConfigError, match="kubernetesVersion"):
        configmod.Config().replace("build", kubernetes_version="9.x")


def test_the_reconciled_branch_must_be_gated() -> None:
    cfg = configmod.Config().replace("reconcile", branch="dev")
    with pytest.raises(configmod.ConfigError, match="'dev' is not gated"):
        configmod.check_reconciled_branch_is_gated(cfg)


def test_status_paths_of_branches_never_collide(tmp_path: Path) -> None:
    names = ["main", "release/v1", "release-v1", "release%2Fv1", "a/b/c", "a-b/c"]
    paths = {datadir.status_path(str(tmp_path), n) for n in names}
    assert len(paths) == len(names)
    assert all(Path(p).parent == tmp_path / "status" for p in paths)
    datadir.write_status(str(tmp_path), "release/v1", {"branch": "release/v1"})
    assert (datadir.read_status(str(tmp_path), "release/v1") or {}).get("branch") == "release/v1"
    assert datadir.read_status(str(tmp_path), "release-v1") is None


def test_verdicts_round_trip_and_refuse_bad_ids(tmp_path: Path) -> None:
    sha = "ab" * 20
    v: datadir.Verdict = {"commit": sha, "ref": "refs/heads/main", "pusher": "a", "time": 1.0,
                          "digest": "d" * 64, "objects": 3, "config": "c", "policies": "p"}
    datadir.write_verdict(str(tmp_path), v)
    assert datadir.read_verdict(str(tmp_path), sha) == v
    assert datadir.read_verdict(str(tmp_path), "cd" * 20) is None
    with pytest.raises(ValueError):
        datadir.verdict_path(str(tmp_path), "../../etc/passwd")
