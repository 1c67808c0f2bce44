"""The live gate through the stock git client: what the cluster itself refuses refuses the push
(an admission policy, a quota, an immutable field, a custom resource of a cluster-only CRD),
every accepted push carries the plan against live state (`-o dry-run` too, storing nothing),
the prune guard holds large or protected prunes until an allowed role says `-o allow-prune`,
and an API server that is down refuses (required), warns (best-effort) or is not asked (off).
No object is ever written by the live check (resourceVersions, the audit log)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bed import deploy, procs, samples
from tests.bed.controlplane import ControlPlane
from tests.bed.gitcli import Git
from tests.bed.server import Server

pytestmark = pytest.mark.cluster

ALLOW_ALL = 'package main\n\nimport rego.v1\n\ndeny contains "never" if { input.kind == "Never" }\n'


@pytest.fixture
def live_server(attach: Callable[..., Server], tmp_path: Path) -> Callable[..., Server]:
    policies = samples.policy_dir(tmp_path / "policies", ALLOW_ALL)
    return lambda *args, cp=None: attach(f"--policies={policies}", *args, cp=cp)


def _ns(dynamic: Any, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    dynamic.resources.get(api_version="v1", kind="Namespace").create(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _versions(dynamic: Any, ns: str) -> dict[str, str]:
    out = {}
    for kind, api in (("ConfigMap", "v1"), ("Deployment", "apps/v1"), ("Service", "v1")):
        for item in dynamic.resources.get(api_version=api, kind=kind).get(namespace=ns).items:
            out[f"{kind}/{item.metadata.name}"] = item.metadata.resourceVersion
    return out


def _writes(cp: ControlPlane, since: float) -> list[str]:
    """Real (not dry-run) writes by pushgate's reconciler since `since`, leases aside."""
    out = []
    for ev in cp.audit_events("pushgate-reconciler", since):
        uri = ev.get("requestURI", "")
        if ev.get("verb") in ("get", "list", "watch") or "dryRun=All" in uri or "/leases" in uri:
            continue
        out.append(f"{ev.get('verb')} {uri}")
    return out


def _push(git: Git, server: Server, work: Path, *opts: str, user: str = "admin") -> Any:
    args = [x for o in opts for x in ("-o", o)]
    return git.run("push", *args, server.url(user), "main", cwd=work, check=False, timeout=180)


def test_the_cluster_refuses_what_it_would_refuse(git: Git, live_server: Callable[..., Server],
                                                  control_plane: ControlPlane, dynamic: Any,
                                                  tmp_path: Path) -> None:
    ns = _ns(dynamic, "live")
    # The cluster's own rules, which no static check knows about.
    vap = f"max-replicas-{ns}"
    admission = "admissionregistration.k8s.io/v1"
    dynamic.resources.get(api_version=admission, kind="ValidatingAdmissionPolicy").create(
        body={"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
              "metadata": {"name": vap},
              "spec": {"failurePolicy": "Fail",
                       "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                               "operations": ["CREATE", "UPDATE"],
                                                               "resources": ["deployments"]}]},
                       "validations": [{"expression": "object.spec.replicas <= 3",
                                        "message": "at most 3 replicas in this cluster"}]}})
    dynamic.resources.get(api_version="admissionregistration.k8s.io/v1",
                          kind="ValidatingAdmissionPolicyBinding").create(
        body={"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
              "metadata": {"name": vap},
              "spec": {"policyName": vap, "validationActions": ["Deny"],
                       "matchResources": {"namespaceSelector": {"matchLabels": {
                           "kubernetes.io/metadata.name": ns}}}}})
    dynamic.resources.get(api_version="v1", kind="ResourceQuota").create(namespace=ns, body={
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "few", "namespace": ns},
        "spec": {"hard": {"count/services": "0"}}})
    procs.wait_until(lambda: (dynamic.resources.get(api_version="v1", kind="ResourceQuota")
                              .get(name="few", namespace=ns).status or {}).get("used"), 60,
                     "the quota to be counted")
    server = live_server()
    work = git.init(tmp_path / "w")
    git.write(work, {"web.yaml": samples.deployment(namespace=ns, replicas=2),
                     "cm.yaml": samples.configmap(namespace=ns)})
    head = git.commit_all(work, "start")
    res = _push(git, server, work, "wait=90")
    assert res.returncode == 0, res.stderr
    assert "plan: 2 to create, 0 to update, 0 to prune, 0 unchanged" in res.stderr, res.stderr
    deploy.wait_status(server, deploy.verdict_for(head), 90, "the first commit applied")
    time.sleep(1)
    before, since = _versions(dynamic, ns), time.time()
    refs_before = server.refs()

    # Too many replicas (the VAP) and a Service beyond the quota: both refused at once, each
    # with the API server's own words.
    web = samples.deployment(namespace=ns, replicas=5)
    other = samples.deployment(name="api", namespace=ns)
    other = other.replace("      labels:\n        app.kubernetes.io/name: api\n",
                          "      labels:\n        app.kubernetes.io/name: api\n        tier: x\n")
    other = other.replace("    matchLabels:\n      app.kubernetes.io/name: api\n",
                          "    matchLabels:\n      app.kubernetes.io/name: api\n      tier: x\n")
    git.write(work, {"web.yaml": web, "svc.yaml": samples.service(namespace=ns)})
    git.commit_all(work, "too much")
    res = _push(git, server, work)
    assert res.returncode != 0, res.stderr
    err = res.stderr
    assert f"web.yaml:1 Deployment/{ns}/web [live]" in err, err
    assert "at most 3 replicas in this cluster" in err, err
    assert "exceeded quota: few" in err, err
    assert "the cluster refuses" in err
    assert server.refs() == refs_before

    git.run("reset", "-q", "--hard", head, cwd=work)
    git.write(work, {"api.yaml": samples.deployment(name="api", namespace=ns)})
    api_head = git.commit_all(work, "api")
    assert _push(git, server, work, "wait=90").returncode == 0
    deploy.wait_status(server, deploy.verdict_for(api_head), 90, "api applied")
    before, since = _versions(dynamic, ns), time.time()
    git.write(work, {"api.yaml": other})
    git.commit_all(work, "new selector")
    res = _push(git, server, work)
    assert res.returncode != 0 and f"Deployment/{ns}/api [live]" in res.stderr, res.stderr
    assert "field is immutable" in res.stderr, res.stderr

    assert _versions(dynamic, ns) == before
    assert _writes(control_plane, since) == []


CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.NAME.example.com}
spec:
  group: NAME.example.com
  scope: Namespaced
  names: {kind: Gadget, plural: gadgets, singular: gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties: {size: {type: integer, maximum: 10}}
"""


def test_custom_resources_of_a_cluster_only_crd_and_new_namespaces(
        git: Git, live_server: Callable[..., Server], dynamic: Any, tmp_path: Path) -> None:
    group = f"g{secrets.token_hex(3)}"
    crd = CRD.replace("NAME", group)
    import yaml

    crds = dynamic.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.create(body=yaml.safe_load(crd))

    def established() -> bool:
        conds = crds.get(name=f"gadgets.{group}.example.com").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    procs.wait_until(established, 60, "the CRD to be established")
    ns = _ns(dynamic, "crs")
    # The CRD is only in the cluster: the static gate has no schema (a warning), the cluster has.
    server = live_server("--missing-schema=warning")
    work = git.init(tmp_path / "w")

    def gadget(size: int) -> str:
        return (f"apiVersion: {group}.example.com/v1\nkind: Gadget\nmetadata: {{name: g, namespace: {ns}}}\n"
                f"spec: {{size: {size}}}\n")

    git.write(work, {"g.yaml": gadget(50)})
    git.commit_all(work, "too big for the cluster's CRD")
    res = _push(git, server, work)
    assert res.returncode != 0 and f"g.yaml:1 Gadget/{ns}/g [live]" in res.stderr, res.stderr
    assert "should be less than or equal to 10" in res.stderr, res.stderr
    git.write(work, {"g.yaml": gadget(5)})
    git.commit_all(work, "fits")
    res = _push(git, server, work)
    assert res.returncode == 0, res.stderr
    assert f"create    Gadget/{ns}/g" in res.stderr

    # A Namespace and its Deployment in one push: the Namespace is dry-run, its members cannot
    # be, and the report says so.
    fresh = f"fresh-{secrets.token_hex(3)}"
    git.write(work, {"fresh/ns.yaml": samples.namespace(fresh),
                     "fresh/web.yaml": samples.deployment(namespace=fresh)})
    git.commit_all(work, "a new namespace")
    res = _push(git, server, work, "dry-run")
    assert "checked statically only: " in res.stderr, res.stderr
    assert f"Deployment/{fresh}/web (its namespace arrives in this push)" in res.stderr, res.stderr
    assert f"create    Namespace/{fresh}" in res.stderr
    assert "dry run: the gate accepts this push; nothing was stored" in res.stderr


def test_plan_and_prune_guard(git: Git, live_server: Callable[..., Server], dynamic: Any,
                              tmp_path: Path) -> None:
    ns = _ns(dynamic, "plan")
    server = live_server()
    work = git.init(tmp_path / "w")
    cms = {f"cm{i}.yaml": samples.configmap(name=f"cm{i}", namespace=ns) for i in range(12)}
    git.write(work, {"web.yaml": samples.deployment(namespace=ns, replicas=2), **cms,
                     "gone.yaml": samples.configmap(name="gone", namespace=ns)})
    head = git.commit_all(work, "start")
    assert _push(git, server, work, "wait=90").returncode == 0
    deploy.wait_status(server, deploy.verdict_for(head), 90, "applied")

    # One create, one update with its changed field, one prune, the rest unchanged; -o dry-run
    # shows the same plan and stores nothing.
    git.write(work, {"web.yaml": samples.deployment(namespace=ns, replicas=3),
                     "new.yaml": samples.configmap(name="new", namespace=ns)})
    git.run("rm", "-q", "gone.yaml", cwd=work)
    git.commit_all(work, "change")
    refs = server.refs()
    dry = _push(git, server, work, "dry-run")
    assert server.refs() == refs
    for res in (dry, _push(git, server, work)):
        err = res.stderr
        assert f"create    ConfigMap/{ns}/new" in err, err
        assert f"update    Deployment/{ns}/web  spec.replicas: 2 -> 3" in err, err
        assert f"prune     ConfigMap/{ns}/gone" in err, err
        assert "plan: 1 to create, 1 to update, 1 to prune, 12 unchanged" in err, err
    doc = deploy.status(server)
    assert doc["plan"]["counts"] == {"create": 1, "update": 1, "prune": 1, "unchanged": 12}
    assert doc["plan"]["accepted"] is True
    page = deploy.page(server)
    assert "1 to create, 1 to update, 1 to prune, 12 unchanged" in page
    assert f"Deployment/{ns}/web" in page and "spec.replicas: 2 -&gt; 3" in page
    pushes = deploy.pushes(server)
    assert pushes[0]["plan"]["counts"]["prune"] == 1 and pushes[1]["refusal"] == "dry-run"

    # Deleting 12 objects: more than the default limit of 10. A writer may not; an admin must say so.
    deploy.wait_status(server, lambda d: d.get("lastAppliedRevision") == git.rev_parse(work, "HEAD"),
                       90, "the change applied")
    for f in cms:
        git.run("rm", "-q", f, cwd=work)
    git.commit_all(work, "drop the config maps")
    for user, opts in (("writer", ("allow-prune",)), ("admin", ())):
        res = _push(git, server, work, *opts, user=user)
        assert res.returncode != 0, res.stderr
        assert "prune guard: it deletes 12 objects, more than the limit of 10" in res.stderr, res.stderr
        assert "-o allow-prune" in res.stderr
    res = _push(git, server, work, "allow-prune")
    assert res.returncode == 0 and "prune guard: confirmed by admin with -o allow-prune" in res.stderr


@pytest.mark.parametrize("mode", ["required", "best-effort", "off"])
def test_api_server_down(mode: str, git: Git, live_server: Callable[..., Server],
                         fresh_control_plane: Callable[..., ControlPlane], tmp_path: Path) -> None:
    cp = fresh_control_plane()
    server = live_server(f"--live-check={mode}", "--gate-timeout=20", cp=cp)
    work = git.init(tmp_path / "w")
    git.write(work, {"cm.yaml": samples.configmap(namespace="default")})
    git.commit_all(work, "while the API server is down")
    cp.stop_apiserver()
    res = _push(git, server, work)
    if mode == "required":
        assert res.returncode != 0 and "live check unavailable, push refused" in res.stderr, res.stderr
        assert server.refs() == {}
    elif mode == "best-effort":
        assert res.returncode == 0 and "warning: live check skipped (best-effort)" in res.stderr, res.stderr
    else:
        assert res.returncode == 0 and "live check" not in res.stderr, res.stderr


def test_a_gated_branch_the_reconciler_does_not_apply_is_named_static_only(
        git: Git, live_server: Callable[..., Server], tmp_path: Path) -> None:
    server = live_server("--gated-ref=refs/heads/main", "--gated-ref=refs/heads/staging")
    work = git.init(tmp_path / "w")
    git.write(work, {"cm.yaml": samples.configmap(namespace="default")})
    git.commit_all(work, "staging")
    res = git.run("push", server.url(), "HEAD:refs/heads/staging", cwd=work, check=False)
    assert res.returncode == 0, res.stderr
    assert "staging is not the branch the reconciler applies: checked statically only" in res.stderr
    assert "plan:" not in res.stderr
