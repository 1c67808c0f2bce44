"""Opted-in containers are found from the workload's annotations, and only their image scalar is
replaced in place: comments, quoting, flow style, other documents and other containers stay
byte for byte."""

from __future__ import annotations

import pytest

from pushgate.automation import workloads

FILE = b"""# the shop's web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # keep me
  namespace: shop
  annotations:
    pushgate.io/image-policy.web: "semver:>=1.0 <2.0"
    pushgate.io/image-policy.init: "numerical:asc"
    pushgate.io/image-filter.init: '^build-(?P<n>[0-9]+)$'
    pushgate.io/image-extract.init: "$n"
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers:
        - {name: init, image: "reg.example:5000/shop/init:build-7"}   # flow style
      containers:
        - name: web
          # the app
          image: 'reg.example:5000/shop/web:1.0.0'  # quoted
        - name: sidecar
          image: reg.example:5000/shop/web:1.0.0
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: report
  annotations:
    pushgate.io/image-policy.report: alphabetical:asc
    pushgate.io/image-lock: "true"
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: report
              image:
                nginx:1.27
"""


def test_only_annotated_containers_are_found() -> None:
    found = {(t.ref, t.container): t for t in workloads.find("apps/web.yaml", FILE)}
    assert set(found) == {("Deployment/shop/web", "init"), ("Deployment/shop/web", "web"),
                          ("CronJob/report", "report")}
    web = found[("Deployment/shop/web", "web")]
    assert (web.image, web.line, web.locked, web.problem) == \
        ("reg.example:5000/shop/web:1.0.0", 22, False, "")
    assert web.field == "spec.template.spec.containers.0.image"
    init = found[("Deployment/shop/web", "init")]
    assert init.policy is not None and init.policy.extract == "$n"
    assert found[("CronJob/report", "report")].locked


def test_the_image_scalars_are_replaced_and_nothing_else() -> None:
    found = {t.container: t for t in workloads.find("apps/web.yaml", FILE)}
    out = workloads.rewrite("apps/web.yaml", FILE, [
        (found["web"], "reg.example:5000/shop/web:1.2.0"),
        (found["init"], "reg.example:5000/shop/init:build-12"),
        (found["report"], "nginx:1.28"),
    ])
    want = (FILE.replace(b"'reg.example:5000/shop/web:1.0.0'  # quoted",
                         b"'reg.example:5000/shop/web:1.2.0'  # quoted")
            .replace(b'"reg.example:5000/shop/init:build-7"', b'"reg.example:5000/shop/init:build-12"')
            .replace(b"                nginx:1.27", b"                nginx:1.28"))
    assert out == want
    assert out.count(b"shop/web:1.0.0") == 1  # the sidecar (not opted in) keeps its image


def test_same_image_as_the_container_name_on_a_flow_line() -> None:
    text = b"""apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {pushgate.io/image-policy.nginx: "semver:*"}
spec:
  containers: [{name: nginx, image: nginx}]
"""
    (t,) = workloads.find("p.yaml", text)
    out = workloads.rewrite("p.yaml", text, [(t, "nginx:1.28")])
    assert out.endswith(b"[{name: nginx, image: nginx:1.28}]\n")


def test_crlf_and_json_files() -> None:
    text = b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {\r\n' \
           b'  "pushgate.io/image-policy.c": "semver:*"}},\r\n' \
           b' "spec": {"containers": [{"name": "c",\r\n "image": "nginx:1.0"}]}}\r\n'
    (t,) = workloads.find("p.json", text)
    out = workloads.rewrite("p.json", text, [(t, "nginx:2.0")])
    assert out == text.replace(b"nginx:1.0", b"nginx:2.0")


def test_an_image_from_an_alias_is_not_rewritten() -> None:
    text = b"""x-image: &img nginx:1.0
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {pushgate.io/image-policy.c: "semver:*"}
spec:
  containers:
    - name: c
      image: *img
"""
    (t,) = workloads.find("p.yaml", text)
    with pytest.raises(workloads.RewriteError, match="not found on its line"):
        workloads.rewrite("p.yaml", text, [(t, "nginx:2.0")])


@pytest.mark.parametrize(("annotations", "image", "problem"), [
    ('{pushgate.io/image-policy.c: "semver:"}', "nginx:1", "expected semver:<range>"),
    ('{pushgate.io/image-policy.c: "semver:*"}', "nginx@sha256:" + "a" * 64, "pinned by digest"),
    ('{pushgate.io/image-policy.c: "semver:*"}', "Not An Image", "not an image reference"),
    ('{pushgate.io/image-policy.d: "semver:*"}', "nginx:1", "has no container 'd'"),
])
def test_problems_are_reported_per_container(annotations: str, image: str, problem: str) -> None:
    text = (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {annotations}\n"
            f"spec:\n  containers: [{{name: c, image: '{image}'}}]\n").encode()
    (t,) = workloads.find("p.yaml", text)
    assert problem in t.problem and t.policy is None


def test_unannotated_and_other_kinds_are_ignored() -> None:
    text = b"""apiVersion: v1
kind: ConfigMap
metadata: {name: c, annotations: {pushgate.io/image-policy.c: "semver:*"}}
data: {image: nginx}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec: {template: {spec: {containers: [{name: c, image: nginx}]}}}
"""
    assert workloads.find("x.yaml", text) == []
