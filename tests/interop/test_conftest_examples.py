"""conftest's own Kubernetes examples, decided by `pushgate validate` and by the pinned conftest:
they must report the same failures and warnings (rule and message) for every input file, and
pushgate must count the same exceptions.

The examples are read at test time from the pinned conftest module in the Go module cache that
scripts/tools.sh fills (never copied into this repository); a missing module fails the test.
Every example directory with Kubernetes objects is either compared here or listed in
NOT_COMPARED with the reason, and where pushgate cannot decide like conftest it must refuse.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pushgate.build.sources import DirTree
from pushgate.gate import gate as gatemod
from pushgate.gate import policies
from pushgate.gate.embedded import EmbeddedEngine
from tests.bed import tools

PUSHGATE = str(Path(sys.executable).with_name("pushgate"))
Findings = Counter[tuple[str, str, str]]  # (severity, rule, message)
_LINE = re.compile(r"^(?P<warn>warning: )?(?P<path>[^\s:]+)(?::\d+)? (?:\S+ )?"
                   r"\[(?P<rule>[^\]]+)\] (?P<msg>.*)$")


def module_dir() -> Path:
    """conftest's module in the Go module cache scripts/tools.sh uses."""
    cache = os.environ.get("PUSHGATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pushgate")
    version = tools.versions()["CONFTEST_VERSION"]
    return Path(cache) / "go" / "mod" / "github.com" / "open-policy-agent" / f"conftest@{version}"


@dataclass(frozen=True)
class Example:
    dir: str  # under examples/
    policy: str  # the policy directory, under dir
    namespace: str
    inputs: tuple[str, ...] = ()  # each decided on its own; none: the kustomize build of dir
    config_file: bool = False  # conftest takes policy and namespace from dir/conftest.toml


EXAMPLES = [
    Example("kubernetes", "policy", "main", ("deployment.yaml", "deployment+service.yaml", "service.yaml")),
    Example("exceptions", "policy", "main", ("deployments.yaml",)),
    Example("configfile", "test", "conftest", ("deployment.yaml",), config_file=True),
    Example("kustomize", "policy", "main"),
]
# Example directories with Kubernetes objects that are not compared, and why.
NOT_COMPARED = {
    "kubernetes/combine": "conftest --combine: the input is every file at once; pushgate decides one object "
                          "at a time",
    "combine": "conftest --combine over users and teams, not Kubernetes objects",
    "data": "reads data.services from conftest --data files: pushgate refuses to load it "
            "(test_data_example_is_refused_not_passed)",
}


@pytest.fixture(scope="module")
def examples() -> Path:
    d = module_dir() / "examples"
    if not d.is_dir():
        pytest.fail(f"conftest's examples are missing: {d} does not exist. scripts/tools.sh fetches conftest "
                    f"{tools.versions()['CONFTEST_VERSION']} into the Go module cache when it builds it "
                    f"(bash scripts/tools.sh path conftest)")
    return d


def copy(examples: Path, ex: Example, dest: Path) -> Path:
    """The example's directory, writable (the module cache is read-only)."""
    shutil.copytree(examples / ex.dir, dest, ignore=shutil.ignore_patterns("combine"))
    for p in [dest, *dest.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    return dest


def conftest(ex: Example, work: Path, target: str, stdin: str | None = None) -> tuple[Findings, int]:
    """conftest's failures and warnings for one input (a file, or "-" with `stdin`), and how
    many exceptions it counted."""
    where = [] if ex.config_file else ["--policy", ex.policy, "--namespace", ex.namespace]
    res = subprocess.run([tools.path("conftest"), "test", *where, "--no-color", "-o", "json", target],
                         cwd=work, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode in (0, 1), res.stdout + res.stderr
    found: Findings = Counter()
    exceptions = 0
    for result in json.loads(res.stdout):
        for kind, severity in (("failures", "error"), ("warnings", "warning")):
            for item in result.get(kind) or []:
                pkg, _, rule = item["metadata"]["query"].removeprefix("data.").rpartition(".")
                found[(severity, f"{pkg}/{rule}", item["msg"])] += 1
        exceptions += len(result.get("exceptions") or [])
    return found, exceptions


def pushgate(ex: Example, tree: Path, policy_dir: Path) -> dict[str, Findings]:
    """`pushgate validate`'s policy findings, by file."""
    res = subprocess.run([PUSHGATE, "validate", str(tree), f"--policies={policy_dir}",
                          f"--policy-namespace={ex.namespace}", f"--kustomize={tools.path('kustomize')}",
                          "--missing-schema=warning"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode in (0, 1), res.stdout + res.stderr
    by_file: dict[str, Findings] = {}
    for line in res.stdout.splitlines():
        m = _LINE.match(line)
        if m and m["rule"].startswith(f"{ex.namespace}/"):
            severity = "warning" if m["warn"] else "error"
            by_file.setdefault(m["path"], Counter())[(severity, m["rule"], m["msg"])] += 1
    return by_file


def exceptions_counted(ex: Example, tree: Path, policy_dir: Path) -> int:
    """The exceptions pushgate's gate grants over `tree` (the CLI does not print them yet)."""
    ps = policies.load(str(policy_dir), namespaces=(ex.namespace,))
    g = gatemod.Gate(gatemod.GateConfig(missing_schema="warning"), engine=EmbeddedEngine(ps),
                     kustomize_bin=tools.path("kustomize"))
    try:
        _, found = g.check(DirTree(str(tree)))
    finally:
        g.close()
    assert isinstance(found, policies.Findings)
    return len(found.exceptions)


@pytest.mark.parametrize("ex", [e for e in EXAMPLES if e.inputs], ids=lambda e: e.dir)
def test_each_input_file_decided_like_conftest(examples: Path, ex: Example, tmp_path: Path) -> None:
    work = copy(examples, ex, tmp_path / "example")
    for name in ex.inputs:
        theirs, their_exceptions = conftest(ex, work, name)
        tree = tmp_path / f"tree-{name}"
        tree.mkdir()
        shutil.copy(work / name, tree / name)  # alone: other files would only add duplicates
        mine = pushgate(ex, tree, work / ex.policy).get(name, Counter())
        assert mine == theirs, name
        assert exceptions_counted(ex, tree, work / ex.policy) == their_exceptions, name
    assert any(conftest(ex, work, name)[0] for name in ex.inputs), "the example decides nothing"


def test_kustomize_example_decided_like_conftest_on_the_build(examples: Path, tmp_path: Path) -> None:
    ex = next(e for e in EXAMPLES if e.dir == "kustomize")
    work = copy(examples, ex, tmp_path / "example")
    built = subprocess.run([tools.path("kustomize"), "build", str(work)], capture_output=True, text=True,
                           timeout=120, check=True).stdout
    assert len(list(yaml.safe_load_all(built))) == 3
    theirs, _ = conftest(ex, work, "-", stdin=built)
    by_file = pushgate(ex, work, work / ex.policy)
    mine = sum(by_file.values(), Counter())
    assert mine == theirs
    assert theirs, "the example decides nothing"


def test_every_kubernetes_example_is_compared_or_explained(examples: Path) -> None:
    with_objects = set()
    for f in [*examples.rglob("*.yaml"), *examples.rglob("*.yml")]:
        try:
            docs = list(yaml.safe_load_all(f.read_text()))
        except yaml.YAMLError:
            continue
        if any(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs):
            rel = f.parent.relative_to(examples).as_posix()
            with_objects.add(rel)
    covered = {e.dir for e in EXAMPLES} | set(NOT_COMPARED)
    assert with_objects <= covered, sorted(with_objects - covered)
    assert {"kubernetes", "exceptions", "kustomize"} <= with_objects


def test_data_example_is_refused_not_passed(examples: Path) -> None:
    # conftest denies its Service when given `--data exclusions`; pushgate has no such data, so
    # it must not load the policy (a rule reading absent data would pass everything)
    with pytest.raises(policies.PolicyError):
        policies.load(str(examples / "data" / "policy"), namespaces=("main",))
