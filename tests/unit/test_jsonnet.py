"""Jsonnet in the build, as Argo CD's directory source renders it: each *.jsonnet file evaluated
(an object, an array of objects or a List), *.libsonnet only imported, imports confined to the
tree, errors at the file and line go-jsonnet names, and evaluation bounded in time, memory and
output. `build.jsonnet: false` turns it off.
"""

from __future__ import annotations

import time
from pathlib import Path

from pushgate.build import build as buildmod
from pushgate.build.config import BuildConfig
from pushgate.build.sources import DirTree

LIB = """{
  configMap(name, data):: {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: name },
    data: data,
  },
}
"""

APP = """local k = import 'lib/k.libsonnet';
local settings = importstr 'settings.txt';
[
  k.configMap('one', { value: settings }),
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web' },
    spec: { ports: [{ port: 80 }], selector: { app: 'web' } },
  },
]
"""


def _build(root: Path, files: dict[str, str], deadline: float | None = None,
           **config: object) -> buildmod.Build:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    builder = buildmod.Builder(BuildConfig(**config), kustomize_bin=None, helm_bin=None)  # type: ignore[arg-type]
    return builder.build(DirTree(str(root)), deadline)


def _app() -> dict[str, str]:
    return {"app/main.jsonnet": APP, "app/lib/k.libsonnet": LIB, "app/settings.txt": "on\n"}


def test_an_array_of_objects_with_imports(tmp_path: Path) -> None:
    b = _build(tmp_path, _app())
    assert b.problems == []
    got = {m.ref: (m.path, m.line) for m in b.manifests}
    # the Service states its kind in main.jsonnet; the ConfigMap's is in the library
    assert got == {"ConfigMap/default/one": ("app/main.jsonnet", 0),
                   "Service/default/web": ("app/main.jsonnet", 7)}
    assert b.manifests[0].obj["data"] == {"value": "on\n"}
    assert b.files == 1


def test_an_object_and_a_list(tmp_path: Path) -> None:
    b = _build(tmp_path, {
        "one.jsonnet": "{apiVersion: 'v1', kind: 'Namespace', metadata: {name: 'shop'}}",
        "list.jsonnet": "{apiVersion: 'v1', kind: 'List', items: [{apiVersion: 'v1', kind: 'ConfigMap', "
                        "metadata: {name: 'a', namespace: 'shop'}}]}"})
    assert b.problems == []
    assert sorted(m.ref for m in b.manifests) == ["ConfigMap/shop/a", "Namespace/shop"]


def test_output_that_is_not_objects_is_refused_at_the_file(tmp_path: Path) -> None:
    b = _build(tmp_path, {"app.jsonnet": "{ deployment: { kind: 'Deployment' } }"})
    assert [str(p) for p in b.problems] == ['app.jsonnet [manifest] missing "apiVersion"',
                                            'app.jsonnet [manifest] missing "kind"',
                                            'app.jsonnet [manifest] missing "metadata.name"']


def test_errors_point_at_the_file_and_line(tmp_path: Path) -> None:
    files = _app()
    files["app/lib/k.libsonnet"] = LIB.replace("data: data,", "data: error 'no data for ' + name,")
    files["broken.jsonnet"] = "{\n  a: 1,\n  b: }\n"
    b = _build(tmp_path, files)
    assert b.manifests == []
    assert sorted(str(p) for p in b.problems) == [
        "app/lib/k.libsonnet:6 [jsonnet] app/main.jsonnet: no data for one",
        'broken.jsonnet:3 [jsonnet] Unexpected: "}" while parsing terminal']


def test_imports_stay_inside_the_tree(tmp_path: Path) -> None:
    b = _build(tmp_path / "t", {
        "abs.jsonnet": "importstr '/etc/passwd'",
        "up.jsonnet": "importstr '../../../../../../etc/passwd'"})
    assert b.manifests == []
    assert sorted(str(p) for p in b.problems) == [
        "abs.jsonnet:1 [jsonnet] importer error: import '/etc/passwd': absolute paths are not allowed "
        "(imports resolve inside the repository)",
        "up.jsonnet:1 [jsonnet] importer error: import '../../../../../../etc/passwd': not found in the "
        "repository"]


def test_a_file_that_runs_too_long_is_cut_and_named(tmp_path: Path) -> None:
    start = time.monotonic()
    b = _build(tmp_path, {
        "a.jsonnet": "{apiVersion: 'v1', kind: 'Namespace', metadata: {name: 'a'}}",
        "b.jsonnet": "[x for x in std.range(1, 6000) for y in std.range(1, 6000) if false]",
        "c.jsonnet": "{apiVersion: 'v1', kind: 'Namespace', metadata: {name: 'c'}}"},
        deadline=time.monotonic() + 3)
    assert time.monotonic() - start < 20
    assert [m.ref for m in b.manifests] == ["Namespace/a"]
    msgs = sorted(str(p) for p in b.problems)
    assert msgs[0].startswith("b.jsonnet [jsonnet] Jsonnet evaluation did not finish within"), msgs
    assert msgs[1].startswith("c.jsonnet [jsonnet] not evaluated: an earlier file"), msgs


def test_memory_and_output_are_bounded(tmp_path: Path) -> None:
    b = _build(tmp_path, {"big.jsonnet": "std.makeArray(20000, function(i) '%s')" % ("x" * 100)},
               max_rendered_bytes=100_000)
    assert [str(p) for p in b.problems] == [
        "big.jsonnet [jsonnet] Jsonnet evaluation printed more than 100000 bytes (the build's limit on "
        "rendered output)"]
    b = _build(tmp_path / "mem", {"bomb.jsonnet": "std.length(std.repeat('x', 2000000000))"})
    assert [str(p) for p in b.problems] == ["bomb.jsonnet [jsonnet] evaluation ran out of memory"]


def test_jsonnet_can_be_turned_off(tmp_path: Path) -> None:
    b = _build(tmp_path, _app(), jsonnet=False)
    assert b.manifests == [] and b.problems == [] and b.files == 0
