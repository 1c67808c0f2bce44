"""Gatekeeper at push, judged against the pinned `gator` (Gatekeeper's own offline evaluator).

The templates, constraints and objects are Gatekeeper's own: its demos and gator test suites,
read at test time from the pinned Gatekeeper module in the Go module cache that
scripts/tools.sh fills when it builds gator (never copied into this repository), plus a few of
ours for what those do not cover (libs, labelSelector/namespaceSelector, scope, names, warn and
dryrun). For every case both must report the same violations (object, constraint, message,
enforcement action), on the embedded engine and on a real OPA server; what pushgate does not
support must be refused when the policies load, never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pushgate.build.sources import DirTree
from pushgate.core import scopes
from pushgate.core import violations as pv
from pushgate.gate import gate as gatemod
from pushgate.gate import policies
from pushgate.gate.embedded import EmbeddedEngine
from pushgate.gate.opaserver import OpaServerEngine
from tests.bed import tools
from tests.bed.opa import OpaServer

Found = Counter[tuple[str, str, str, str]]  # (object, Kind/constraint, message, action)


def module_dir() -> Path:
    cache = os.environ.get("PUSHGATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pushgate")
    version = tools.versions()["GATEKEEPER_VERSION"]
    d = Path(cache) / "go" / "mod" / "github.com" / "open-policy-agent" / "gatekeeper" / f"v3@{version}"
    if not d.is_dir():
        pytest.fail(f"Gatekeeper's module is missing: {d}. scripts/tools.sh fetches it when it builds "
                    f"gator (bash scripts/tools.sh path gator)")
    return d


@dataclass(frozen=True)
class Case:
    name: str
    files: tuple[str, ...]  # under the module: templates, constraints and objects, mixed
    # What Gatekeeper's admission webhook reports and gator does not (gator hands templates no
    # namespaceObject); each backed by Gatekeeper's own end-to-end (bats) expectation.
    webhook_only: tuple[tuple[str, str, str, str], ...] = ()

    def __str__(self) -> str:
        return self.name


GK_CASES = [
    Case("agilebank-bad", ("demo/agilebank/templates", "demo/agilebank/constraints",
                           "demo/agilebank/bad_resources/opa_wrong_repo.yaml",
                           "demo/agilebank/bad_resources/namespace.yaml",
                           "demo/agilebank/bad_resources/duplicate_service.yaml",
                           "demo/agilebank/bad_resources/deployment_nolimit.yaml")),
    Case("agilebank-limits", ("demo/agilebank/templates", "demo/agilebank/constraints",
                              "demo/agilebank/bad_resources/opa_limits_too_high.yaml")),
    Case("agilebank-no-limits", ("demo/agilebank/templates", "demo/agilebank/constraints",
                                 "demo/agilebank/bad_resources/opa_no_limits.yaml")),
    Case("agilebank-good", ("demo/agilebank/templates", "demo/agilebank/constraints",
                            "demo/agilebank/good_resources")),
    Case("agilebank-dryrun", ("demo/agilebank/dryrun",)),
    Case("agilebank-warn", ("demo/agilebank/dryrun/k8suniqueingresshost_template.yaml",
                            "demo/agilebank/warn", "demo/agilebank/dryrun/existing_resources")),
    Case("basic-good", ("demo/basic/templates/k8srequiredlabels_template.yaml",
                        "demo/basic/templates/k8suniquelabel_template.yaml",
                        "demo/basic/constraints", "demo/basic/good")),
    Case("basic-bad-ns", ("demo/basic/templates/k8srequiredlabels_template.yaml",
                          "demo/basic/templates/k8suniquelabel_template.yaml",
                          "demo/basic/constraints", "demo/basic/bad/bad_ns.yaml",
                          "demo/basic/bad/no_dupe_ns_2.yaml", "demo/basic/good/no_dupe_ns.yaml")),
    Case("gator-default-violations", ("test/gator/test/fixtures/policies/default",
                                      "test/gator/test/fixtures/manifests/no-policies/with-violations.yaml",
                                      "test/gator/test/fixtures/manifests/no-policies/violating-ns.yaml")),
    Case("gator-default-clean", ("test/gator/test/fixtures/policies/default",
                                 "test/gator/test/fixtures/manifests/no-policies/no-violations.yaml")),
    Case("gator-with-violations", ("test/gator/test/fixtures/manifests/with-policies/with-violations.yaml",)),
    Case("gator-no-violations", ("test/gator/test/fixtures/manifests/with-policies/no-violations.yaml",)),
    Case("gator-defaults",
         ("test/gator/test/fixtures/manifests/with-policies/with-violations-and-defaults.yaml",)),
    Case("gator-rego-v1", ("test/gator/test/fixtures/manifests/with-policies/with-violations-rego-v1.yaml",)),
    Case("gator-violations-2", ("test/gator/test/fixtures/manifests/with-policies/with-violations-2.yaml",)),
    Case("gator-clean-2", ("test/gator/test/fixtures/manifests/with-policies/no-violations-2.yaml",)),
    Case("gator-referential", ("test/gator/test/fixtures/policies/default",
                               "test/gator/test/fixtures/manifests/referential-data")),
    Case("verify-allow", ("test/gator/verify/template.yaml", "test/gator/verify/constraint.yaml",
                          "test/gator/verify/allow_foo.yaml")),
    Case("verify-deny", ("test/gator/verify/template.yaml", "test/gator/verify/constraint.yaml",
                         "test/gator/verify/deny_foo.yaml")),
    Case("verify-scoped-deny", ("test/gator/verify/template.yaml",
                                "test/gator/verify/constraint_with_scopedEA.yaml",
                                "test/gator/verify/deny_foo.yaml")),
    Case("psp-library-templates", ("pkg/webhook/testdata/psp-all-violations",)),
    Case("bats-rego", tuple(f"test/bats/tests/{f}" for f in (
        "templates/k8srequiredlabels_template.yaml", "templates/k8srequiredlabels_template_regov1.yaml",
        "templates/k8suniquelabel_template.yaml", "templates/k8scontainterlimits_template.yaml",
        "templates/k8snamespacelabelcheck_template_rego.yaml",
        "constraints/all_cm_must_have_gatekeeper.yaml", "constraints/all_cm_gatekeeper_label_unique.yaml",
        "constraints/containers_must_be_limited.yaml", "constraints/ns_must_have_env_label_rego.yaml",
        "constraints/all_ns_must_have_label_provided.yaml", "bad/ns_without_env_label.yaml",
        "bad/opa_no_limits.yaml", "bad/bad_cm.yaml", "bad/bad_ns.yaml", "bad/no_dupe_cm_2.yaml",
        "bad/cm_in_unlabeled_ns.yaml", "good")),
         # test.bats "namespace object access - Rego engine test": the webhook denies this one
         webhook_only=(("ConfigMap/ns-without-env-label/test-cm-in-unlabeled-ns",
                        "K8sNamespaceLabelCheckRego/ns-must-have-env-label-rego",
                        "Namespace 'ns-without-env-label' does not have required label: environment",
                        "deny"),)),
    Case("oci-artifacts", ("test/gator/oci-artifacts/templates", "test/gator/oci-artifacts/constraints",
                           "test/gator/test/fixtures/manifests/no-policies/with-violations.yaml",
                           "test/gator/test/fixtures/manifests/no-policies/violating-ns.yaml")),
]


def _docs(path: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    out = []
    for f in files:
        out.extend(d for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict) and d.get("kind"))
    return out


def split(root: Path, files: tuple[str, ...], work: Path) -> tuple[Path, Path]:
    """Gatekeeper objects into a policy directory, everything else into a tree (a file each).
    Both sides get the objects as the cluster would hold them: a namespaced object without a
    namespace in the default one (pushgate's build does that; gator would leave it in none,
    which no admission request has), a nameless one named."""
    pol, tree = work / "policies", work / "tree"
    pol.mkdir(parents=True)
    tree.mkdir()
    n = 0
    for rel in files:
        for doc in _docs(root / rel):
            n += 1
            dest = pol if "gatekeeper.sh/" in str(doc.get("apiVersion")) else tree
            if dest is tree:
                meta = doc.setdefault("metadata", {})
                meta.setdefault("name", f"unnamed-{n}")
                if "namespace" not in meta and scopes.is_namespaced(doc, {}):
                    meta["namespace"] = "default"
            (dest / f"{n:03d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc))
    return pol, tree


def ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj['kind']}/{ns}/{meta['name']}" if ns else f"{obj['kind']}/{meta['name']}"


def gator(pol: Path, tree: Path) -> Found:
    res = subprocess.run([tools.path("gator"), "test", "-f", str(pol), "-f", str(tree), "-o", "json"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode in (0, 1), res.stdout + res.stderr
    ours = {ref(d) for d in _docs(tree)}
    found: Found = Counter()
    for r in json.loads(res.stdout or "null") or []:
        obj = ref(r["violatingObject"])
        if obj in ours:
            c = r["constraint"]
            action = r["enforcementAction"]
            if action == "scoped":  # what it means for gator's enforcement point
                action = scoped_for_gator(c["spec"].get("scopedEnforcementActions") or [])
            found[(obj, f"{c['kind']}/{c['metadata']['name']}", r["msg"], action)] += 1
    return found


def scoped_for_gator(rules: list[dict[str, Any]]) -> str:
    actions = {r.get("action") for r in rules
               if {"gator.gatekeeper.sh", "*"} & {p.get("name") for p in r.get("enforcementPoints") or []}}
    return next((a for a in ("deny", "warn", "dryrun") if a in actions), "none")


_ACTION = {pv.Severity.ERROR: "deny", pv.Severity.WARNING: "warn", pv.Severity.DRYRUN: "dryrun"}


def pushgate(pol: Path, tree: Path, engine: str = "embedded", opa_url: str = "") -> Found:
    ps = policies.load(str(pol))
    assert ps.gatekeeper is not None
    kinds = {c.kind for c in ps.gatekeeper.constraints}
    eng = EmbeddedEngine(ps) if engine == "embedded" else OpaServerEngine(opa_url, ps)
    config = gatemod.GateConfig(missing_schema="warning")
    g = gatemod.Gate(config, engine=eng, kustomize_bin=tools.path("kustomize"))
    try:
        _, found = g.check(DirTree(str(tree)))
    finally:
        g.close()
    out: Found = Counter()
    for v in found:
        if v.rule.split("/", 1)[0] in kinds:
            out[(v.obj, v.rule, v.message, _ACTION[v.severity])] += 1
    return out


@pytest.mark.parametrize("case", GK_CASES, ids=str)
def test_same_violations_as_gator(case: Case, tmp_path: Path) -> None:
    pol, tree = split(module_dir(), case.files, tmp_path)
    theirs = gator(pol, tree)
    mine = pushgate(pol, tree)
    extra = Counter(case.webhook_only)
    assert not theirs & extra, "gator reports it now: move it out of webhook_only"
    assert mine == theirs + extra


def test_the_cases_decide_something(tmp_path: Path) -> None:
    """The comparison is not vacuous: gator finds violations of every action in the cases."""
    actions: Counter[str] = Counter()
    for i, case in enumerate(GK_CASES):
        pol, tree = split(module_dir(), case.files, tmp_path / str(i))
        actions.update(a for (_, _, _, a) in gator(pol, tree).elements())
    assert actions["deny"] >= 5 and actions["dryrun"] >= 1 and actions["warn"] >= 1, actions


def test_same_violations_on_a_real_opa_server(tmp_path: Path) -> None:
    case = next(c for c in GK_CASES if c.name == "agilebank-bad")
    pol, tree = split(module_dir(), case.files, tmp_path)
    empty = tmp_path / "opa-policies"
    empty.mkdir()
    (empty / "noop.rego").write_text("package noop\n\nallow := true\n")
    server = OpaServer(empty, tmp_path / "opa").start()
    try:
        theirs = gator(pol, tree)
        assert theirs
        assert pushgate(pol, tree, engine="opa", opa_url=server.url) == theirs
    finally:
        server.stop()


OWN = Path(__file__).parent / "gatekeeper"


@pytest.mark.parametrize("name", sorted(p.name for p in OWN.iterdir() if p.is_dir()) if OWN.is_dir() else [])
def test_own_templates_same_as_gator(name: str, tmp_path: Path) -> None:
    src = OWN / name
    pol, tree = tmp_path / "policies", tmp_path / "tree"
    shutil.copytree(src / "policies", pol)
    shutil.copytree(src / "tree", tree)
    theirs = gator(pol, tree)
    assert theirs, "the case decides nothing"
    assert pushgate(pol, tree) == theirs


@pytest.mark.parametrize(("template", "why"), [
    ("test/bats/tests/templates/use_http_send_template.yaml", "calls http.send"),
    ("test/bats/tests/templates/k8snamespacelabelcheck_template_cel.yaml", "has no Rego"),
    ("test/bats/tests/templates/k8srequiredlabels_template_vap.yaml", "has no Rego"),
    ("test/externaldata/dummy-provider/policy/template.yaml", "external_data"),
])
def test_gatekeepers_own_unsupported_templates_refused_at_load(template: str, why: str,
                                                               tmp_path: Path) -> None:
    pol = tmp_path / "p"
    pol.mkdir()
    shutil.copy(module_dir() / template, pol / "t.yaml")
    with pytest.raises(policies.PolicyError, match=why):
        policies.load(str(pol))


def test_unknown_enforcement_action_refused_at_load(tmp_path: Path) -> None:
    """Gatekeeper's own fixture with `enforcementAction: foo`: refused, never guessed."""
    pol = tmp_path / "p"
    pol.mkdir()
    root = module_dir() / "test/gator/test/fixtures/policies"
    shutil.copy(root / "default/template_k8srequiredprobes.yaml", pol / "t.yaml")
    shutil.copy(root / "enforcement_action/k8srequiredprobes/foo.yaml", pol / "c.yaml")
    with pytest.raises(policies.PolicyError, match="enforcementAction 'foo'"):
        policies.load(str(pol))
