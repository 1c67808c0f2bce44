"""A cold check hands each file's objects to the policy engine while the build still reads the
tree (`gate._Stream`). What the check reports must be exactly what it reports without that: an
answer made while the tree was read is used only for the very object the build finally made, so
an object whose namespace default turns out otherwise (its CRD, later in the tree, makes its kind
cluster-scoped) is decided again; a check that fails while reading leaves the engine usable.

Adapter tests: an in-memory tree keyed by content like a git tree, the real embedded engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pushgate.build.sources import MODE_FILE, Entry
from pushgate.gate import gate as gatemod
from pushgate.gate import policies, stream
from pushgate.gate.embedded import EmbeddedEngine
from pushgate.gate.feed import Feed

# Every object is reported with the namespace the policy saw, so a decision made for another
# form of the object shows in the report.
POLICY = """\
package main

deny contains msg if {
\tns := object.get(input.metadata, "namespace", "<none>")
\tmsg := concat("", [input.kind, " ", input.metadata.name, " in ", ns])
}
"""

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Cluster
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def configmap(name: str, namespace: str | None = None) -> str:
    ns = f"  namespace: {namespace}\n" if namespace else ""
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{ns}data:\n  k: v\n"


TREE = {
    # read first: the Widget is sent before the CRD that makes its kind cluster-scoped is read
    "a-widget.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
    "b-many.yaml": "---\n".join([configmap("one", "shop"), configmap("two"), configmap("three", "x")]),
    "c-list.yaml": ("apiVersion: v1\nkind: List\nitems:\n"
                    "  - {apiVersion: v1, kind: ConfigMap, metadata: {name: i1}}\n"
                    "  - {apiVersion: v1, kind: ConfigMap, metadata: {name: i2, namespace: y}}\n"),
    "d-same.yaml": configmap("two"),  # the same object as one in b-many.yaml, another file
    "e-ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
    "z-crd.yaml": CRD,
}


class Tree:
    """A commit's tree: every file keyed by its content, as git keys blobs; reading `broken`
    fails."""

    def __init__(self, files: dict[str, str], broken: str = "") -> None:
        self.files = {path: text.encode() for path, text in files.items()}
        self.broken = broken

    def entries(self) -> Iterator[Entry]:
        for path, data in sorted(self.files.items()):
            yield Entry(path, MODE_FILE, hashlib.sha1(data, usedforsecurity=False).hexdigest())

    def read(self, entry: Entry) -> bytes:
        if entry.path == self.broken:
            raise OSError(f"cannot read {entry.path}")
        return self.files[entry.path]


class Spy:
    """The real engine, recording how it was asked: by feed, or for a list of objects."""

    def __init__(self, engine: EmbeddedEngine) -> None:
        self.engine = engine
        self.policies = engine.policies
        self.feeds = 0
        self.listed: list[str] = []  # names of the objects asked for by list

    def evaluate(self, objects: Sequence[dict[str, Any]], push: dict[str, Any], timeout: float,
                 entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]:
        self.listed.extend(o["metadata"]["name"] for o in objects)
        return self.engine.evaluate(objects, push, timeout, entrypoints)

    def evaluate_feed(self, feed: Feed, push: dict[str, Any], timeout: float,
                      entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]:
        self.feeds += 1
        return self.engine.evaluate_feed(feed, push, timeout, entrypoints)

    def start(self) -> None:
        self.engine.start()

    def close(self) -> None:
        self.engine.close()


@pytest.fixture(scope="module")
def policy_set(tmp_path_factory: pytest.TempPathFactory) -> policies.PolicySet:
    d: Path = tmp_path_factory.mktemp("policies")
    (d / "main.rego").write_text(POLICY)
    return policies.load(str(d))


def report(found: list[Any]) -> list[str]:
    return sorted(f"{v.path}:{v.line} {v.message}" for v in found if v.rule.startswith("main/"))


def test_a_streamed_check_reports_exactly_what_an_unstreamed_one_does(
        policy_set: policies.PolicySet, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(EmbeddedEngine(policy_set, workers=1))
    streamed = gatemod.Gate(gatemod.GateConfig(), engine=spy, kustomize_bin=None)
    plain = gatemod.Gate(gatemod.GateConfig(), engine=EmbeddedEngine(policy_set, workers=1),
                         kustomize_bin=None)
    monkeypatch.setattr(plain, "_stream", lambda deadline: None)
    try:
        _, found = streamed.check(Tree(TREE))
        _, expected = plain.check(Tree(TREE))
        assert report(found) == report(expected)
        assert "a-widget.yaml:1 Widget w in <none>" in report(found)  # cluster-scoped, as built
        assert "b-many.yaml:9 ConfigMap two in default" in report(found)
        assert "d-same.yaml:1 ConfigMap two in default" in report(found)
        assert "c-list.yaml:4 ConfigMap i1 in default" in report(found)
        # Every object was decided from the feed, but the Widget: it was sent in the default
        # namespace (before its CRD was read) and decided again as it was built.
        assert spy.feeds == 1 and spy.listed == ["w"]

        spy.listed.clear()
        _, again = streamed.check(Tree(TREE))  # cached: the engine is not asked again
        assert report(again) == report(found) and spy.listed == [] and spy.feeds == 1
    finally:
        streamed.close()
        plain.close()


def test_a_check_that_fails_while_reading_leaves_the_engine_usable(
        policy_set: policies.PolicySet) -> None:
    spy = Spy(EmbeddedEngine(policy_set, workers=1))
    g = gatemod.Gate(gatemod.GateConfig(), engine=spy, kustomize_bin=None)
    files = {f"f{i:03}.yaml": configmap(f"c{i}", "shop") for i in range(150)}
    try:
        with pytest.raises(OSError, match=r"cannot read f120\.yaml"):
            g.check(Tree(files, broken="f120.yaml"))
        assert spy.feeds == 1
        _, found = g.check(Tree(files))  # the engine's lock was given back
        assert len(report(found)) == 150 and "f120.yaml:1 ConfigMap c120 in shop" in report(found)
    finally:
        g.close()


@pytest.mark.parametrize(("a", "b", "same"), [
    ({"a": [1, {"b": "x"}]}, {"a": [1, {"b": "x"}]}, True),
    ({"v": 1}, {"v": True}, False),  # equal to Python, not to a policy
    ({"v": 1}, {"v": 1.0}, False),
    ({"v": [0]}, {"v": [False]}, False),
    ({"v": None}, {}, False),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),  # an object's keys have no order
    ({"v": float("nan")}, {"v": float("nan")}, False),  # never taken for the same: decided again
])
def test_an_answer_is_reused_only_for_the_same_json_value(a: Any, b: Any, same: bool) -> None:
    assert stream.same(a, b) is same
    shared = {"spec": a, "metadata": {"name": "x"}}
    copy = {**shared, "metadata": {**shared["metadata"], "namespace": "n"}}
    assert stream.same(shared, copy) is False
    assert stream.same(copy, {**copy}) is True
