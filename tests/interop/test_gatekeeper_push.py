"""Gatekeeper templates and constraints in the server's policy directory, through `git push`:
violations named by the constraint, deny refuses, warn and dryrun are reported and never
block, templates reading data.inventory see the pushed tree, and a template pushgate cannot
evaluate stops the server at start with the reason (never a silent pass)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.bed import procs, samples
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server
from tests.interop.test_policy_engines import assert_nothing_stored, assert_refused, push, remote_lines

OWN = Path(__file__).parent / "gatekeeper" / "libs-selectors"

UNIQUE_HOST = """\
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: pguniquehost
spec:
  crd:
    spec:
      names:
        kind: PgUniqueHost
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package pguniquehost
        violation[{"msg": msg}] {
          host := input.review.object.metadata.annotations.host
          other := data.inventory.namespace[ns][_]["ConfigMap"][name]
          other.metadata.annotations.host == host
          not same(ns, name)
          msg := sprintf("host %v is already used by ConfigMap %v/%v", [host, ns, name])
        }
        same(ns, name) {
          ns == input.review.namespace
          name == input.review.name
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: PgUniqueHost
metadata:
  name: one-host-each
spec:
  match:
    kinds: [{apiGroups: [""], kinds: ["ConfigMap"]}]
"""


def configmap(name: str, host: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: shop\n"
            f"  annotations:\n    host: {host}\ndata:\n  k: v\n")


def policy_dir(tmp_path: Path) -> Path:
    """Gatekeeper objects only: a policy directory needs no Rego module of its own."""
    d = tmp_path / "policies"
    shutil.copytree(OWN / "policies", d)
    (d / "unique-host.yaml").write_text(UNIQUE_HOST)
    return d


def test_constraints_judge_a_push(git: Git, server_factory: Callable[..., Server], tmp_path: Path) -> None:
    server = server_factory(f"--policies={policy_dir(tmp_path)}")
    work = git.init(tmp_path / "work")
    git.write(work, {"tree/objects.yaml": (OWN / "tree" / "objects.yaml").read_text(),
                     "cm/a.yaml": configmap("a", "shop.example"),
                     "cm/b.yaml": configmap("b", "shop.example"),
                     "ns.yaml": samples.namespace()})
    git.commit_all(work, "violates deny, warn and dryrun constraints")
    before = server.refs(), server.object_files()
    res = push(git, server, work)
    assert_refused(res)
    assert_nothing_stored(server, *before)
    lines = remote_lines(res)
    text = "\n".join(lines)
    # deny: refuses, named by the constraint, at the object's file and line
    assert any(line.startswith("tree/objects.yaml:") and "Deployment/shop-prod/web-frontend "
               "[PgRequiredAnnotation/prod-owner] Deployment web-frontend needs annotation owner"
               in line for line in lines), text
    assert "annotation owner=payments must start with team-" in text  # the schema's default
    # inventory: the pushed tree's other objects
    assert "[PgUniqueHost/one-host-each] host shop.example is already used by ConfigMap shop/b" in text
    assert "[PgUniqueHost/one-host-each] host shop.example is already used by ConfigMap shop/a" in text
    # warn and dryrun: shown, not counted as errors
    assert any(line.startswith("warning: ") and "[PgRequiredAnnotation/cluster-owner-warn]" in line
               for line in lines), text
    assert any(line.startswith("dryrun: ") and "[PgRequiredAnnotation/named-dryrun]" in line
               for line in lines), text
    assert not any("web-lab" in line and "prod-owner" in line for line in lines)  # labelSelector

    # fixed for deny: accepted, with the warning and dry-run findings still reported
    fixed = (OWN / "tree" / "objects.yaml").read_text().replace(
        "  name: web-frontend\n  namespace: shop-prod\n",
        "  name: web-frontend\n  namespace: shop-prod\n  annotations:\n    owner: team-web\n").replace(
        "    owner: payments", "    owner: team-payments")
    git.write(work, {"tree/objects.yaml": fixed, "cm/b.yaml": configmap("b", "admin.example")})
    git.commit_all(work, "fixed")
    res = push(git, server, work)
    assert res.returncode == 0, res.stderr
    lines = remote_lines(res)
    assert any(line.startswith("pushgate: 0 errors, ") and "dry-run" in line for line in lines), lines
    assert any("[PgRequiredAnnotation/named-dryrun]" in line for line in lines)


def test_unsupported_template_stops_the_server_at_start(tmp_path: Path) -> None:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "t.yaml").write_text("""\
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: pgcel
spec:
  crd:
    spec:
      names:
        kind: PgCel
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: K8sNativeValidation
          source:
            validations:
              - expression: "has(object.metadata.labels)"
                message: "labels required"
""")
    subprocess.run([PUSHGATE, "user", "add", "--users", str(tmp_path / "users.json"), "admin",
                    "--role", "admin"], capture_output=True, check=True)
    res = subprocess.run([PUSHGATE, "serve", f"--data-dir={tmp_path / 'data'}",
                          f"--listen=127.0.0.1:{procs.free_port()}", f"--users={tmp_path / 'users.json'}",
                          f"--policies={d}"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "PgCel has no Rego" in res.stderr and "K8sNativeValidation" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
