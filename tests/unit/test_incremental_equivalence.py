"""A gate that has seen many pushes decides exactly what a fresh gate decides.

Everything a warm gate reuses (tree listings by tree sha, parsed files, canonical JSON for the
digest, schema results, policy rows and outcomes) must never change a verdict. A seeded sequence
of random edits (add, change, rename, delete files; break one; add a duplicate; add, re-scope
and remove a CRD with a custom resource that names no namespace; nested directories; files that
are no manifests; another pusher) is pushed commit by commit, every other commit's changed files
prefetched first (as a server worker does for another worker's push, in the previous commit's
context): after each, the long-lived gate's findings (in order), exceptions, objects and Build
digest equal those of a new gate over a plain walk of the same commit. Policies: the starter
library plus rules that read the push context and an `exception` rule, so both policy groups and
both cache levels are exercised.

Adapter test: an in-memory dulwich object store and the real embedded engine (shared, it holds
no results).
"""

from __future__ import annotations

import random
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dulwich.index import commit_tree
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Blob, Commit

from pushgate.build import build as buildmod
from pushgate.build.sources import MODE_FILE, MODE_TREE, Entry, GitTree
from pushgate.gate import gate as gatemod
from pushgate.gate import policies
from pushgate.gate.embedded import EmbeddedEngine
from tests.bed import samples

ROOT = Path(__file__).resolve().parents[2]
STEPS = 60

PUSH_POLICY = """\
package pushgate.test.push

import data.pushgate

deny_writer_secret contains "writers may not push Secrets" if {
\tpushgate.push.role == "write"
\tinput.kind == "Secret"
}

warn_crowded contains msg if {
\tinput.kind == "Service"
\tcount(pushgate.push.files) > 14
\tmsg := concat("", ["many objects next to ", input.metadata.name])
}

deny_legacy contains "legacy objects are deprecated" if input.metadata.name == "legacy"

exception contains ["legacy"] if input.metadata.namespace == "old"
"""


def crd(scope: str) -> str:
    return f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.example.com}}
spec:
  group: example.com
  scope: {scope}
  names: {{kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {{type: object, properties: {{size: {{type: integer}}}}}}
"""


def widget(name: str, size: Any) -> str:
    return f"apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {{size: {size}}}\n"


def secret(name: str) -> str:
    return (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop}}\n"
            f"data: {{k: dmFsdWUx}}\n")


class PlainTree:
    """A commit's tree walked as GitTree always did before its listing cache (the reference)."""

    def __init__(self, store: Any, commit: bytes) -> None:
        self.store, self.tree = store, store[commit].tree

    def entries(self) -> Iterator[Entry]:
        stack: list[tuple[str, bytes]] = [("", self.tree)]
        while stack:
            prefix, sha = stack.pop()
            for item in self.store[sha].iteritems():
                path = prefix + item.path.decode("utf-8", "surrogateescape")
                if item.mode == MODE_TREE or stat.S_ISDIR(item.mode):
                    stack.append((path + "/", item.sha))
                else:
                    yield Entry(path, item.mode, item.sha.decode())

    def read(self, entry: Entry) -> bytes:
        data: bytes = self.store[entry.key.encode()].data
        return data


class Repo:
    """Files -> commits in an in-memory object store."""

    def __init__(self) -> None:
        self.store = MemoryObjectStore()
        self.parent: bytes | None = None

    def commit(self, files: dict[str, str]) -> bytes:
        blobs = []
        for path, text in sorted(files.items()):
            blob = Blob.from_string(text.encode())
            self.store.add_object(blob)
            blobs.append((path.encode(), blob.id, MODE_FILE))
        c = Commit()
        c.tree = commit_tree(self.store, blobs)
        c.parents = [self.parent] if self.parent else []
        c.author = c.committer = b"t <t@example.test>"
        c.author_time = c.commit_time = 0
        c.author_timezone = c.commit_timezone = 0
        c.message = b"step"
        self.store.add_object(c)
        self.parent = c.id
        return c.id


class Editor:
    """One random edit at a time, from a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.files: dict[str, str] = {"apps/ns.yaml": samples.namespace(),
                                      "apps/web/deploy.yaml": samples.deployment(),
                                      "apps/web/svc.yaml": samples.service(),
                                      "README.md": "# not a manifest\n"}
        self.n = 0
        self.scope = "Namespaced"

    def _new_path(self) -> str:
        self.n += 1
        return self.rng.choice(["apps", "apps/web", "apps/db", "teams/a/b/c", "x"]) + f"/f{self.n}.yaml"

    def _manifests(self) -> list[str]:
        return sorted(p for p in self.files if p.endswith(".yaml"))

    def edit(self) -> str:
        r = self.rng
        kinds = ["add", "add", "change", "change", "rename", "delete", "break", "duplicate",
                 "crd", "crd-scope", "crd-delete", "widget", "legacy", "secret", "multi",
                 "kustomize", "chart"]
        what = r.choice(kinds)
        paths = self._manifests()
        name = f"o{self.n + 1}"
        if what == "add" or not paths:
            maker = r.choice([lambda: samples.configmap(name, value=str(r.randint(0, 9))),
                              lambda: samples.deployment(name, image=r.choice(["nginx:1.27",
                                                                               "nginx:latest"])),
                              lambda: samples.service(name),
                              lambda: samples.configmap(name, namespace="")])
            self.files[self._new_path()] = maker().replace("  namespace: \n", "")
        elif what == "change":
            p = r.choice(paths)
            self.files[p] = self.files[p].replace("shop", r.choice(["shop", "shop2"]), 1) + (
                f"# edit {self.n}\n" if r.random() < 0.5 else "")
            self.n += 1
        elif what == "rename":
            p = r.choice(paths)
            self.files[self._new_path()] = self.files.pop(p)
        elif what == "delete":
            self.files.pop(r.choice(paths))
        elif what == "break":
            self.files[self._new_path()] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n"
        elif what == "duplicate":
            p = r.choice(paths)
            self.files[self._new_path()] = self.files[p]
        elif what == "crd":
            self.files["crds/widgets.yaml"] = crd(self.scope)
            self.files[self._new_path()] = widget(name, r.choice([1, 2, '"big"']))
        elif what == "crd-scope":
            self.scope = "Cluster" if self.scope == "Namespaced" else "Namespaced"
            if "crds/widgets.yaml" in self.files:
                self.files["crds/widgets.yaml"] = crd(self.scope)
        elif what == "crd-delete":
            self.files.pop("crds/widgets.yaml", None)
        elif what == "widget":
            self.files[self._new_path()] = widget(name, r.randint(1, 5))
        elif what == "legacy":
            self.files[self._new_path()] = samples.configmap("legacy", namespace=r.choice(["old", "shop"]))
        elif what == "secret":
            self.files[self._new_path()] = secret(name)
        elif what == "kustomize":  # what the build's kustomize plan reads, and which files it covers
            path = r.choice(["apps/db", "teams/a/b/c", "x"]) + "/kustomization.yaml"
            if path in self.files and r.random() < 0.4:
                del self.files[path]
            else:
                self.files[path] = r.choice(['resources: ["f1.yaml"]\n', 'resources: ["../../../../out"]\n',
                                             'resources: ["https://example.com/base"]\n', "bases: [1]\n",
                                             "resources: [\n"])
        elif what == "chart":  # what the build's helm plan reads: a dependency not vendored
            path = r.choice(["charts/app", "apps/web"]) + "/Chart.yaml"
            if path in self.files and r.random() < 0.3:
                del self.files[path]
            else:
                dep = r.choice(["db", "cache"])
                self.files[path] = (f"apiVersion: v2\nname: app\nversion: 0.1.{self.n}\ndependencies:\n"
                                    f"  - {{name: {dep}, version: 1.0.0, repository: https://example.com}}\n")
        else:
            self.files[self._new_path()] = samples.configmap(name) + "---\n" + samples.service(name)
        return what


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEngine]:
    d = tmp_path_factory.mktemp("policies")
    shutil.copytree(ROOT / "policies", d, dirs_exist_ok=True)
    (d / "push.rego").write_text(PUSH_POLICY)
    ps = policies.load(str(d))
    assert ps.push_entrypoints and set(ps.entrypoints) - ps.push_entrypoints
    e = EmbeddedEngine(ps)
    yield e
    e.close()


def _verdict(b: buildmod.Build, found: policies.Findings) -> tuple[Any, ...]:
    return ([str(v) for v in found], [str(e) for e in found.exceptions], b.digest(),
            [(m.path, m.line, m.ref) for m in b.manifests], b.files)


@pytest.mark.parametrize("seed", [1, 2, 4, 5])
def test_a_warm_gate_decides_like_a_fresh_one(engine: EmbeddedEngine, seed: int) -> None:
    config = gatemod.GateConfig(timeout=120)
    warm = gatemod.Gate(config, engine=engine, kustomize_bin=None)
    repo, editor = Repo(), Editor(seed)
    done: list[str] = []
    prefetched = 0
    for step in range(STEPS):
        before = dict(editor.files)
        done.append(editor.edit())
        commit = repo.commit(editor.files)
        pusher = editor.rng.choice([("alice", "admin"), ("bob", "write")])
        push = {"pusher": pusher[0], "role": pusher[1], "ref": "refs/heads/main",
                "changed_paths": sorted(editor.files)[:step % 5]}
        if step % 2:  # as a server worker does for another worker's push: decided ahead
            changed = [p for p, text in editor.files.items() if before.get(p) != text]
            prefetched += warm.prefetch(GitTree(repo.store, commit), changed, time.monotonic() + 60)
        b, found = warm.check(GitTree(repo.store, commit), dict(push))
        fresh = gatemod.Gate(config, engine=engine, kustomize_bin=None)
        fb, ffound = fresh.check(PlainTree(repo.store, commit), dict(push))
        assert _verdict(b, found) == _verdict(fb, ffound), (seed, step, done)
        assert b.digest() == buildmod.digest(b.objects)
    # the sequence did what it is meant to: these must have occurred
    assert {"crd", "crd-scope", "duplicate", "break", "rename", "kustomize", "chart"} <= set(done), done
    assert prefetched > 0


def test_a_custom_resource_is_judged_again_when_its_crd_changes_scope(engine: EmbeddedEngine) -> None:
    """The same file makes another object when the tree's CRD changes scope (the default
    namespace is added only to namespaced kinds): no cached result may be reused for it."""
    config = gatemod.GateConfig(timeout=120)
    g = gatemod.Gate(config, engine=engine, kustomize_bin=None)
    repo = Repo()
    files = {"crd.yaml": crd("Namespaced"), "w.yaml": widget("w", 1)}
    push = {"pusher": "alice", "role": "admin", "ref": "refs/heads/main", "changed_paths": []}
    _b, found = g.check(GitTree(repo.store, repo.commit(files)), push)
    assert not [v for v in found if v.path == "w.yaml"], [str(v) for v in found]
    files["crd.yaml"] = crd("Cluster")
    b, found = g.check(GitTree(repo.store, repo.commit(files)), push)
    assert [m.ref for m in b.manifests if m.path == "w.yaml"] == ["Widget/w"]
    assert any(v.path == "w.yaml" and v.rule == "pushgate.k8s.namespaces/deny" for v in found), \
        [str(v) for v in found]
