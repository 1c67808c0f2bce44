"""Per-rule enforcement overrides (`enforcement.yaml`): parsing, refusals, and what they do."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.core import violations as pv
from pushgate.gate import enforcement, policies, policysource

MODULES = {
    "labels.rego": """package team.labels

deny contains msg if {
\tinput.kind == "ConfigMap"
\tmsg := "needs an owner"
}
""",
    "images.rego": """package team.images

deny contains msg if {
\tinput.kind == "Pod"
\tmsg := "no bare pods"
}

warn contains msg if {
\tinput.kind == "Pod"
\tmsg := "really"
}
""",
}


def write_policies(tmp_path: Path, overrides: str | None) -> Path:
    d = tmp_path / "p"
    d.mkdir()
    for name, src in MODULES.items():
        (d / name).write_text(src)
    if overrides is not None:
        (d / "enforcement.yaml").write_text(overrides)
    return d


def test_no_file_means_no_overrides(tmp_path: Path) -> None:
    source = policysource.load(str(write_policies(tmp_path, None)))
    assert source.overrides == enforcement.NONE
    assert source.version == source.policy_set.version
    assert source.label == f"dir:{source.version}"


def test_overrides_apply_by_rule_then_package(tmp_path: Path) -> None:
    source = policysource.load(str(write_policies(tmp_path, """\
rules:
  team.labels/deny: warn
  team.images: off
  team.images/warn: deny
""")))
    assert source.overrides.rules == {"team.labels/deny": "warn", "team.images": "off",
                                      "team.images/warn": "deny"}
    assert source.version != source.policy_set.version  # overrides change what a verdict means
    found = [pv.error("a.yaml", 3, "ConfigMap/x/y", "team.labels/deny", "needs an owner"),
             pv.error("b.yaml", 1, "Pod/x/p", "team.images/deny", "no bare pods"),
             pv.warning("b.yaml", 1, "Pod/x/p", "team.images/warn", "really"),
             pv.error("c.yaml", 2, "Pod/x/q", "spec.containers", "schema problem")]
    out = enforcement.apply(found, source.overrides)
    assert out == [pv.warning("a.yaml", 3, "ConfigMap/x/y", "team.labels/deny", "needs an owner"),
                   pv.error("b.yaml", 1, "Pod/x/p", "team.images/warn", "really"),
                   found[3]]
    kept = enforcement.apply_findings(policies.Findings(found, ["exc"]), source.overrides)  # type: ignore[list-item]
    assert kept.exceptions == ["exc"] and len(kept) == 3


@pytest.mark.parametrize(("text", "needle"), [
    ("rules:\n  team.label/deny: warn\n",
     "enforcement.yaml:2: team.label/deny is neither a rule nor a package"),
    ("rules:\n  team.labels/deny: block\n", "enforcement.yaml:2: team.labels/deny: 'block' is not one of"),
    ("rulez: {}\n", "expected a mapping with one key, 'rules'"),
    ("rules: [a]\n", "'rules' must map"),
    ("rules: {a: [\n", "enforcement.yaml"),
])
def test_bad_overrides_are_refused_with_file_and_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(policies.PolicyError) as e:
        policysource.load(str(write_policies(tmp_path, text)))
    assert needle in str(e.value)


def test_a_bare_off_is_off(tmp_path: Path) -> None:
    # YAML 1.1 reads `off` as false; it is taken for what was written.
    source = policysource.load(str(write_policies(tmp_path, "rules:\n  team.labels: off\n")))
    assert source.overrides.rules == {"team.labels": "off"}
    assert enforcement.apply([pv.error("a", 1, "", "team.labels/deny", "m")], source.overrides) == []
