"""A realistic, valid repository of Kubernetes manifests, generated programmatically.

Layout `teams/<namespace>/<app>/<kind>.yaml`, one object per file, one Namespace per team of ten
apps. Each app is a Deployment (or a StatefulSet with its PVC), Service, ConfigMap,
ServiceAccount, HorizontalPodAutoscaler and PodDisruptionBudget, and some of: Ingress,
NetworkPolicy, Role + RoleBinding, CronJob. Every object passes the strict v1.37 schemas and the
default policies, so validators on both sides of a benchmark do the same (complete) work.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

APPS_PER_TEAM = 10


def _labels(app: str, indent: int) -> str:
    pad = " " * indent
    return (f"{pad}app.kubernetes.io/name: {app}\n{pad}app.kubernetes.io/part-of: shop\n"
            f"{pad}app.kubernetes.io/managed-by: pushgate\n")


def _container(app: str, image: str, rng: random.Random, indent: int) -> str:
    p = " " * indent
    env = "".join(f"{p}    - name: FEATURE_{i}\n{p}      value: \"{rng.randint(0, 9)}\"\n"
                  for i in range(rng.randint(1, 4)))
    return f"""{p}- name: {app}
{p}  image: {image}
{p}  imagePullPolicy: IfNotPresent
{p}  args: ["--port=8080", "--log-level=info"]
{p}  ports:
{p}    - name: http
{p}      containerPort: 8080
{p}      protocol: TCP
{p}  env:
{env}{p}  envFrom:
{p}    - configMapRef:
{p}        name: {app}-config
{p}  readinessProbe:
{p}    httpGet: {{path: /healthz, port: http}}
{p}    periodSeconds: 10
{p}  livenessProbe:
{p}    httpGet: {{path: /healthz, port: http}}
{p}    initialDelaySeconds: 5
{p}  resources:
{p}    requests: {{cpu: {rng.choice((50, 100, 250))}m, memory: {rng.choice((64, 128, 256))}Mi}}
{p}    limits: {{cpu: 500m, memory: 512Mi}}
{p}  securityContext:
{p}    runAsNonRoot: true
{p}    allowPrivilegeEscalation: false
{p}    readOnlyRootFilesystem: true
{p}    capabilities: {{drop: ["ALL"]}}
{p}  volumeMounts:
{p}    - name: tmp
{p}      mountPath: /tmp
"""


def _pod_spec(app: str, image: str, rng: random.Random, indent: int) -> str:
    p = " " * indent
    return (f"{p}serviceAccountName: {app}\n{p}securityContext:\n{p}  runAsUser: 10001\n"
            f"{p}  fsGroup: 10001\n{p}containers:\n" + _container(app, image, rng, indent + 2)
            + f"{p}volumes:\n{p}  - name: tmp\n{p}    emptyDir: {{}}\n")


def deployment(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    image = f"registry.example.com/shop/{app}:1.{rng.randint(0, 40)}.{version}"
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}  annotations:
    example.com/owner: team-{ns}
spec:
  replicas: {rng.randint(1, 5)}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: {app}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels:
{_labels(app, 8)}    spec:
{_pod_spec(app, image, rng, 6)}"""


def statefulset(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    image = f"registry.example.com/shop/{app}:2.{rng.randint(0, 9)}.{version}"
    return f"""apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}spec:
  serviceName: {app}
  replicas: {rng.randint(1, 3)}
  selector:
    matchLabels:
      app.kubernetes.io/name: {app}
  template:
    metadata:
      labels:
{_labels(app, 8)}    spec:
{_pod_spec(app, image, rng, 6)}"""


def pvc(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {app}-data
  namespace: {ns}
  labels:
{_labels(app, 4)}spec:
  accessModes: ["ReadWriteOnce"]
  storageClassName: standard
  resources:
    requests:
      storage: {rng.choice((1, 5, 10, 20))}Gi
"""


def service(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: {app}
  ports:
    - name: http
      port: 80
      targetPort: http
      protocol: TCP
"""


def configmap(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    data = "".join(f"  key_{i}: \"{rng.randint(0, 10**6)}\"\n" for i in range(rng.randint(2, 8)))
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {app}-config
  namespace: {ns}
  labels:
{_labels(app, 4)}data:
  revision: "{version}"
{data}  settings.yaml: |
    server:
      port: 8080
      timeout: {rng.randint(5, 60)}s
"""


def serviceaccount(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: v1
kind: ServiceAccount
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}automountServiceAccountToken: false
"""


def hpa(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {app}
  minReplicas: 2
  maxReplicas: {rng.randint(3, 20)}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {{type: Utilization, averageUtilization: {rng.choice((60, 70, 80))}}}
"""


def pdb(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}spec:
  minAvailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {app}
"""


def ingress(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}spec:
  ingressClassName: nginx
  tls:
    - hosts: ["{app}.{ns}.example.com"]
      secretName: {app}-tls
  rules:
    - host: {app}.{ns}.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: {app}
                port: {{name: http}}
"""


def networkpolicy(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: {app}
  policyTypes: ["Ingress"]
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: ingress-nginx
      ports:
        - port: 8080
          protocol: TCP
"""


def role(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch"]
"""


def rolebinding(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    return f"""apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {app}
  namespace: {ns}
  labels:
{_labels(app, 4)}roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {app}
subjects:
  - kind: ServiceAccount
    name: {app}
    namespace: {ns}
"""


def cronjob(ns: str, app: str, rng: random.Random, version: int = 0) -> str:
    image = f"registry.example.com/shop/{app}-report:3.{rng.randint(0, 9)}.{version}"
    return f"""apiVersion: batch/v1
kind: CronJob
metadata:
  name: {app}-report
  namespace: {ns}
  labels:
{_labels(app, 4)}spec:
  schedule: "{rng.randint(0, 59)} {rng.randint(0, 23)} * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      backoffLimit: 2
      template:
        metadata:
          labels:
{_labels(app, 12)}        spec:
          restartPolicy: OnFailure
{_pod_spec(app, image, rng, 10)}"""


def namespace(ns: str) -> str:
    return f"""apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels:
    team: {ns}
"""


Maker = Callable[[str, str, random.Random, int], str]
# Kinds that a "change" can bump (a new image tag or config revision) and stay valid.
MUTABLE: dict[str, Maker] = {"deployment": deployment, "configmap": configmap,
                             "statefulset": statefulset, "cronjob": cronjob}


def _bundle(i: int) -> list[tuple[str, Maker]]:
    """The files of app number `i`: a fixed core plus extras on a fixed rhythm."""
    out: list[tuple[str, Maker]] = []
    if i % 5 == 4:
        out += [("statefulset", statefulset), ("pvc", pvc)]
    else:
        out.append(("deployment", deployment))
    out += [("service", service), ("configmap", configmap), ("serviceaccount", serviceaccount),
            ("hpa", hpa), ("pdb", pdb)]
    if i % 2 == 0:
        out.append(("ingress", ingress))
    if i % 3 == 0:
        out.append(("networkpolicy", networkpolicy))
    if i % 4 == 1:
        out += [("role", role), ("rolebinding", rolebinding)]
    if i % 6 == 5:
        out.append(("cronjob", cronjob))
    return out


def _objects() -> Iterator[tuple[str, str, str, Maker | None]]:
    """(path, namespace, app, maker) forever, in a stable order; maker None is the Namespace."""
    i = 0
    while True:
        team, slot = divmod(i, APPS_PER_TEAM)
        ns = f"team-{team:04d}"
        if slot == 0:
            yield f"teams/{ns}/namespace.yaml", ns, "", None
        app = f"svc-{i:05d}"
        for name, maker in _bundle(i):
            yield f"teams/{ns}/{app}/{name}.yaml", ns, app, maker
        i += 1


def generate(n: int, seed: int = 1) -> dict[str, str]:
    """`n` manifests (one per file) as {repo-relative path: YAML text}."""
    files: dict[str, str] = {}
    for path, ns, app, maker in _objects():
        if len(files) >= n:
            break
        rng = random.Random(f"{seed}:{path}")
        files[path] = namespace(ns) if maker is None else maker(ns, app, rng, 0)
    return files


def mutate(files: dict[str, str], round_no: int, count: int = 10) -> dict[str, str]:
    """`count` changed files for push number `round_no` (new image tags, config revisions),
    all still valid; distinct rounds change different files where the repo is big enough."""
    candidates = sorted(p for p in files if p.rsplit("/", 1)[-1][:-5] in MUTABLE)
    if not candidates:
        raise ValueError("no mutable files in the corpus")
    step = max(1, len(candidates) // count)
    out: dict[str, str] = {}
    for k in range(count):
        path = candidates[(k * step + round_no * 7) % len(candidates)]
        _teams, ns, app, name = path.split("/")
        rng = random.Random(f"{path}:{round_no}")
        out[path] = MUTABLE[name[:-5]](ns, app, rng, round_no + 1)
    return out


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def kinds(files: dict[str, str]) -> dict[str, int]:
    """How many objects of each kind, for the report."""
    out: dict[str, int] = {}
    for text in files.values():
        for line in text.splitlines():
            if line.startswith("kind: "):
                out[line[6:]] = out.get(line[6:], 0) + 1
                break
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
