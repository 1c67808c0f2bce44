"""Manifests for tests: a valid one of each common kind, and ways to break them."""

from __future__ import annotations

from pathlib import Path


def deployment(name: str = "web", namespace: str = "shop", image: str = "nginx:1.27.3",
               replicas: int = 2) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app.kubernetes.io/name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {name}
    spec:
      containers:
        - name: {name}
          image: {image}
          resources:
            requests: {{cpu: 50m, memory: 64Mi}}
            limits: {{cpu: 200m, memory: 128Mi}}
"""


def configmap(name: str = "settings", namespace: str = "shop", value: str = "1") -> str:
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {namespace}
data:
  value: "{value}"
"""


def namespace(name: str = "shop") -> str:
    return f"""apiVersion: v1
kind: Namespace
metadata:
  name: {name}
"""


def service(name: str = "web", namespace: str = "shop") -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  selector:
    app.kubernetes.io/name: {name}
  ports:
    - port: 80
      targetPort: 8080
"""


def crd(group: str, kind: str = "Widget", *, status: bool = False) -> str:
    """A namespaced CustomResourceDefinition `<plural>.<group>` with an integer `spec.size`;
    `status`: with a status subresource whose content is free (a controller's conditions)."""
    plural, singular = kind.lower() + "s", kind.lower()
    sub = "      subresources:\n        status: {}\n" if status else ""
    st = ("            status:\n              type: object\n"
          "              x-kubernetes-preserve-unknown-fields: true\n") if status else ""
    return f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}, listKind: {kind}List}}
  versions:
    - name: v1
      served: true
      storage: true
{sub}      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer}}
{st}"""


def policy_dir(directory: Path, rego: str) -> Path:
    """A policy directory holding one module, `main.rego`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.rego").write_text(rego)
    return directory


def write_tree(directory: Path, files: dict[str, str]) -> Path:
    """`files` (relative path -> text) under `directory`, parents made as needed."""
    for rel, text in files.items():
        p = directory / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return directory
