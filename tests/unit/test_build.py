"""The build (tree -> objects): exclusion, default namespace, digest, bounded kustomization
files, and the gate's schema results reported at the path a file has now (pure, no tools)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.build import build as buildmod
from pushgate.build.config import BuildConfig
from pushgate.build.sources import DirTree
from pushgate.core import scopes
from pushgate.gate import gate as gatemod
from tests.bed import samples

CRB = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: evil}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: User, name: mallory, apiGroup: rbac.authorization.k8s.io}]
"""

NO_NS = """apiVersion: apps/v1
kind: Deployment
metadata: {name: guestbook-ui}
spec:
  selector: {matchLabels: {app: guestbook-ui}}
  template:
    metadata: {labels: {app: guestbook-ui}}
    spec: {containers: [{name: ui, image: "gcr.io/heptio-images/ks-guestbook-demo:0.2"}]}
"""

CRD_CLUSTER = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {kind: Widget, plural: widgets}
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> DirTree:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return DirTree(str(tmp_path))


def _build(tmp_path: Path, files: dict[str, str], **config: object) -> buildmod.Build:
    return buildmod.Builder(BuildConfig(**config), kustomize_bin=None).build(_tree(tmp_path, files))


def test_excluded_paths_are_not_built(tmp_path: Path) -> None:
    files = {"app/web.yaml": samples.deployment(), "docs/evil.yaml": CRB}
    everything = _build(tmp_path / "a", files)
    assert {m.kind for m in everything.manifests} == {"Deployment", "ClusterRoleBinding"}
    without_docs = _build(tmp_path / "b", files, exclude=("docs/*",))
    assert [m.kind for m in without_docs.manifests] == ["Deployment"]
    assert everything.digest() != without_docs.digest()
    only_app = _build(tmp_path / "c", files, include=("web.yaml",))
    assert only_app.digest() == without_docs.digest()


def test_kustomization_in_an_excluded_directory_is_ignored(tmp_path: Path) -> None:
    files = {"app/web.yaml": samples.deployment(), "docs/kustomization.yaml": "resources: [[[\n"}
    b = _build(tmp_path, files, exclude=("docs",))
    assert not b.problems and len(b.manifests) == 1


def test_namespaced_objects_without_namespace_get_the_default(tmp_path: Path) -> None:
    files = {"ui.yaml": NO_NS, "crb.yaml": CRB, "crd.yaml": CRD_CLUSTER,
             "w.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
             "g.yaml": "apiVersion: example.org/v1\nkind: Gadget\nmetadata: {name: g}\n",
             "cm.yaml": samples.configmap(namespace="kept")}
    b = _build(tmp_path, files, default_namespace="guestbook")
    ns = {m.ref: m.namespace for m in b.manifests}
    assert ns == {"Deployment/guestbook/guestbook-ui": "guestbook", "ClusterRoleBinding/evil": "",
                  "CustomResourceDefinition/widgets.example.com": "", "Widget/w": "",
                  # a custom kind whose CRD is elsewhere counts as namespaced
                  "Gadget/guestbook/g": "guestbook", "ConfigMap/kept/settings": "kept"}
    # the source file's parsed object is never changed in place (parse results are cached)
    again = _build(tmp_path, files, default_namespace="other")
    assert {m.ref for m in again.manifests} >= {"Deployment/other/guestbook-ui"}


def test_default_namespace_makes_duplicates_visible(tmp_path: Path) -> None:
    files = {"a.yaml": samples.configmap(namespace="default"),
             "b.yaml": samples.configmap().replace("  namespace: shop\n", "")}
    b = _build(tmp_path, files)
    assert [v.rule for v in b.problems] == ["duplicate-object"]


def test_digest_ignores_file_layout_and_order(tmp_path: Path) -> None:
    one = _build(tmp_path / "a", {"all.yaml": samples.namespace() + "---\n" + samples.configmap()})
    two = _build(tmp_path / "b", {"x/cm.yaml": samples.configmap(), "y/ns.yaml": samples.namespace()})
    assert one.digest() == two.digest()
    three = _build(tmp_path / "c", {"cm.yaml": samples.configmap(value="2"), "ns.yaml": samples.namespace()})
    assert three.digest() != one.digest()


def test_config_digest_changes_with_every_setting() -> None:
    base = BuildConfig()
    variants = [BuildConfig(exclude=("docs/*",)), BuildConfig(include=("*.yaml",)),
                BuildConfig(default_namespace="apps"), BuildConfig(kubernetes_version="1.36")]
    assert len({base.digest(), *(v.digest() for v in variants)}) == 1 + len(variants)
    assert BuildConfig().digest() == base.digest()


@pytest.mark.parametrize("text", ["[" * 10_000, "a: " + "{x: " * 5_000 + "1" + "}" * 5_000,
                                  "resources: *x\n", "- a\n- b\n", "x: 1\n---\ny: 2\n"])
def test_hostile_kustomization_is_a_problem_not_an_exception(tmp_path: Path, text: str) -> None:
    b = _build(tmp_path, {"kustomization.yaml": text, "cm.yaml": samples.configmap()})
    assert [(v.path, v.rule) for v in b.problems] == [("kustomization.yaml", "kustomize")]
    assert not b.manifests  # the directory is a kustomization: its files only count through it


def test_schema_results_follow_a_renamed_file(tmp_path: Path) -> None:
    g = gatemod.Gate(gatemod.GateConfig(), engine=None, kustomize_bin=None)
    bad = samples.deployment().replace("replicas: 2", "replicas: two")
    first = tmp_path / "one"
    _tree(first, {"old.yaml": bad})
    _, found = g.check(DirTree(str(first)))
    assert {v.path for v in found} == {"old.yaml"}
    renamed = tmp_path / "two"
    _tree(renamed, {"new.yaml": bad})

    class Keyed(DirTree):  # a git tree keys entries by blob: same content, same key
        def entries(self):  # type: ignore[no-untyped-def]
            for e in super().entries():
                yield type(e)(e.path, e.mode, "blob-of-the-same-content")

    for tree in (Keyed(str(first)), Keyed(str(renamed))):
        _, found = g.check(tree)
    assert found and {v.path for v in found} == {"new.yaml"}


def test_builtin_scope_table_knows_the_usual_kinds() -> None:
    assert not scopes.is_namespaced({"apiVersion": "v1", "kind": "Namespace"}, {})
    assert scopes.is_namespaced({"apiVersion": "v1", "kind": "Service"}, {})
    assert not scopes.is_namespaced({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass"}, {})
    # the same kind name in another group is not the built-in one
    assert scopes.is_namespaced({"apiVersion": "example.com/v1", "kind": "Namespace"}, {})


def test_a_missing_renderer_is_named_with_how_to_get_it(tmp_path: Path) -> None:
    b = _build(tmp_path, {"app/kustomization.yaml": "resources: [cm.yaml]\n",
                          "app/cm.yaml": samples.configmap()})
    [p] = b.problems
    assert p.path == "app/kustomization.yaml" and "kustomize is not available" in p.message
    assert "scripts/tools.sh path kustomize" in p.message and "--kustomize" in p.message


def test_a_keyed_build_keeps_spans_packed_and_lines_exact(tmp_path: Path) -> None:
    """What the Builder keeps across builds holds spans packed (yamlsafe.pack), and a problem
    found in a file read from that cache (a schema error) is on the line a fresh read gives."""
    bad = samples.deployment().replace("replicas: 2", "replicas: two")
    tree = _tree(tmp_path, {"d.yaml": bad})
    line = next(i for i, s in enumerate(bad.splitlines(), 1) if "replicas: two" in s)

    class Keyed(DirTree):
        def entries(self):  # type: ignore[no-untyped-def]
            for e in super().entries():
                yield type(e)(e.path, e.mode, "blob-" + e.path)

    for t in (tree, Keyed(str(tmp_path)), Keyed(str(tmp_path))):
        g = gatemod.Gate(gatemod.GateConfig(), engine=None, kustomize_bin=None)
        b, found = g.check(t)
        packed = isinstance(b.manifests[0].span, bytes)
        assert packed == isinstance(t, Keyed)  # a directory's files are never cached
        assert [(v.path, v.line) for v in found if v.rule.startswith("schema")] == [("d.yaml", line)]


def test_the_digest_is_computed_only_when_asked(tmp_path: Path) -> None:
    """A check computes the Build's digest while the engine decides (a verdict records it);
    `pushgate validate` records none and asks for none (its engine needs the CPU)."""
    tree = _tree(tmp_path, {"d.yaml": samples.deployment()})
    g = gatemod.Gate(gatemod.GateConfig(), engine=None, kustomize_bin=None)
    assert g.check(tree)[0]._memo is not None
    b = g.check(tree, digest=False)[0]
    assert b._memo is None
    assert b.digest() == g.check(tree)[0].digest()
