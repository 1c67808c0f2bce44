"""Reconcile: push -> applied, a full sync against `kubectl apply --server-side`, drift reverted.

One private control plane (etcd + kube-apiserver, no controller manager: ConfigMaps need none),
started here and stopped at the end, serves three measurements:

1. push -> 50 objects applied. `pushgate serve --kubeconfig` (the reconciler attached, its ApplySet
   parent in a namespace of its own) holds a repository of a Namespace and 50 ConfigMaps. Each
   timed commit changes the data of all 50 ConfigMaps; the time is from `git push` returning
   (accepted) to the verdict for that revision appearing in the data dir's status/main.json
   (polled every 20 ms). The total from the start of `git push` is shown too. Target: p50 <= 0.5 s.
2. full sync of N ConfigMaps (+ their Namespace) into a fresh namespace: pushgate (a fresh server,
   reconciler already connected and leading after a warm-up push of a commit with no manifests;
   timed from the push of the N objects returning to the verdict) against `kubectl apply
   --server-side -f DIR` of the same files rewritten into another fresh namespace (the whole
   process, discovery cache warm), with and without `--validate=false`. Sides alternate. Target
   (issue 13): median ratio pushgate / `kubectl --validate=false` <= 1.0.
3. out-of-band edit -> corrected: on the server of (1), a merge-patch of a managed ConfigMap's data
   through the kubernetes client, timed from the patch returning until a GET (every 10 ms) shows
   the committed value again. Target: p50 <= 2 s.

Where the reconciler's time goes comes from the API server's audit log (the bed logs every write
with its user agent): when, after the push returned, the reconciler's inventory writes, dry-run
applies and real applies started and ended, and what was left after the last write (health reads,
git notes, the status file) until the verdict showed.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import io
import json
import os
import pstats
import resource
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common

NAME = "reconcile"
PUSH_OBJECTS = 50
TARGET_PUSH_P50 = 0.5  # ROADMAP and issue 13: push accepted -> 50 objects applied
TARGET_RATIO = 1.0
TARGET_DRIFT_P50 = 2.0
STATUS_POLL = 0.02
DRIFT_POLL = 0.01
def kubectl() -> str:
    """The pinned kubectl of the API server's own version (scripts/tools.sh), never the host's."""
    from tests.bed import tools

    return tools.path("kubectl")
RECONCILER_AGENT = "pushgate-reconciler"
PHASES = ("inventory write", "phase 1: Namespaces, CRDs (dry-run + apply)", "dry-run apply", "apply")


# -- manifests -------------------------------------------------------------------------------------
def namespace_yaml(ns: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"


def configmap_yaml(name: str, ns: str, value: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
            f"  labels:\n    app.kubernetes.io/name: bench\n"
            f"data:\n  value: \"{value}\"\n  index: \"{name}\"\n")


def manifests(ns: str, count: int, value: str) -> dict[str, str]:
    """`00-namespace.yaml` then `cm-NNNN.yaml`, flat, so `kubectl apply -f DIR` (lexical order,
    not recursive) creates the Namespace first."""
    files = {"00-namespace.yaml": namespace_yaml(ns)}
    for i in range(count):
        files[f"cm-{i:04d}.yaml"] = configmap_yaml(f"cm-{i:04d}", ns, value)
    return files


def write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (directory / rel).write_text(text)


# -- pushgate side ---------------------------------------------------------------------------------
class Attached:
    """`pushgate serve --kubeconfig` on the bench's control plane, with its own repo to push from."""

    def __init__(self, work: Path, kubeconfig: Path, git: Any) -> None:
        from tests.bed.server import make_server

        self.inventory_ns = f"pg-inv-{secrets.token_hex(3)}"
        self.server = make_server(work / "server", "--gate-timeout=600", f"--kubeconfig={kubeconfig}",
                                  env={"PUSHGATE_INVENTORY_NAMESPACE": self.inventory_ns})
        self.status_file = self.server.data_dir / "status" / "main.json"
        self.git = git
        self.repo = git.init(work / "repo")
        self.url = self.server.url("writer")
        wait_for(lambda: self.status_file.exists(), 60, "the reconciler to announce itself",
                 self.server.log)
        self._mtime = 0
        self._doc: dict[str, Any] = {}

    def commit(self, files: dict[str, str], message: str) -> str:
        write(self.repo, files)
        return str(self.git.commit_all(self.repo, message))

    def push(self) -> tuple[float, float]:
        """(seconds `git push` took, wall-clock time it returned); raises if refused."""
        t0 = time.perf_counter()
        self.git.run("push", "-q", self.url, "HEAD:refs/heads/main", cwd=self.repo, timeout=1800)
        return time.perf_counter() - t0, time.time()

    def gate_seconds(self) -> float:
        lines = (self.server.data_dir / "pushes.jsonl").read_text().splitlines()
        entry = json.loads(lines[-1])
        if not entry.get("accepted"):
            raise RuntimeError(f"push refused: {entry.get('reason')}")
        return float(entry["seconds"])

    def status(self) -> dict[str, Any]:
        try:
            mtime = self.status_file.stat().st_mtime_ns
            if mtime != self._mtime:
                self._doc = json.loads(self.status_file.read_text())
                self._mtime = mtime
        except (OSError, ValueError):
            pass  # replaced under us: read it on the next poll
        return self._doc

    def wait_verdict(self, revision: str, timeout: float = 900) -> dict[str, Any]:
        """The history entry of `revision` once it has a verdict (polled every 20 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for h in self.status().get("history", []):
                if h.get("revision") == revision and h.get("result") != "Progressing":
                    if h.get("result") != "Ready":
                        raise RuntimeError(f"{revision[:12]}: {h.get('result')}: {h.get('reason')}")
                    return dict(h)
            time.sleep(STATUS_POLL)
        raise TimeoutError(f"no verdict for {revision[:12]} after {timeout:.0f} s\n"
                           f"{self.server.log()[-3000:]}")

    def push_and_wait(self, revision: str, meter: CpuMeter | None = None) -> dict[str, Any]:
        """Push the commit `revision`; seconds of the push, to the verdict, and wall times (and the
        CPU seconds the reconciler, API server and etcd used from the push's return to the verdict)."""
        pid = reconciler_pid(self.server.data_dir) if meter else 0
        t0 = time.perf_counter()
        push_s, returned = self.push()
        t1 = time.perf_counter()
        before = meter.snapshot(cpu_seconds(pid)) if meter else {}
        self.wait_verdict(revision)
        t2 = time.perf_counter()
        out: dict[str, Any] = {"push": push_s, "applied": t2 - t1, "total": t2 - t0,
                               "gate": self.gate_seconds(), "returned_wall": returned,
                               "verdict_wall": returned + (t2 - t1)}
        if meter:
            out["cpu"] = meter.delta(before, meter.snapshot(cpu_seconds(pid)))
        return out

    def stop(self) -> None:
        self.server.stop()


def wait_for(pred: Any, timeout: float, what: str, extra: Any = None) -> None:
    from tests.bed import procs

    procs.wait_until(pred, timeout, what, on_timeout=extra)


# -- CPU seconds of the processes involved ---------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def reconciler_pid(data_dir: Path) -> int:
    """The `pushgate reconcile` process `pushgate serve --kubeconfig` started for `data_dir`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"reconcile" in argv and f"--data-dir={data_dir}".encode() in argv:
            return int(proc.name)
    raise RuntimeError(f"no reconciler process for {data_dir}")


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """CPU seconds used by the API server, etcd and one client process between start() and stop()."""

    def __init__(self, cp: Any) -> None:
        self.pids = {"kube-apiserver": cp.apiserver.pid, "etcd": cp.etcd.pid}

    def snapshot(self, client: float) -> dict[str, float]:
        return {"client": client, **{k: cpu_seconds(p) for k, p in self.pids.items()}}

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: b[k] - a[k] for k in a}


# -- the API server's audit log: where the reconciler's time went ----------------------------------
def _ts(raw: str) -> float:
    return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()


def writes(cp: Any, agent: str, start: float, end: float) -> list[dict[str, Any]]:
    """Write requests by `agent` received in [start, end] (wall clock), Lease renewals left out."""
    return [e for e in cp.audit_events(agent, start - 0.001)
            if _ts(e["requestReceivedTimestamp"]) <= end and "/leases/" not in e["requestURI"]]


def reconciler_phases(cp: Any, inventory_ns: str, start: float, end: float) -> dict[str, dict[str, float]]:
    """Per kind of write: requests, first start and last end (seconds after `start`)."""
    kinds: dict[str, list[dict[str, Any]]] = {k: [] for k in PHASES}
    for e in writes(cp, RECONCILER_AGENT, start, end):
        ref = e.get("objectRef") or {}
        if inventory_ns in (ref.get("namespace"), ref.get("name")):
            kinds["inventory write"].append(e)
        elif ref.get("resource") in ("namespaces", "customresourcedefinitions"):
            kinds["phase 1: Namespaces, CRDs (dry-run + apply)"].append(e)
        elif "dryRun=All" in e["requestURI"]:
            kinds["dry-run apply"].append(e)
        else:
            kinds["apply"].append(e)
    out = {}
    for kind, evs in kinds.items():
        if evs:
            out[kind] = {"requests": float(len(evs)),
                         "first": min(_ts(e["requestReceivedTimestamp"]) for e in evs) - start,
                         "last": max(_ts(e["stageTimestamp"]) for e in evs) - start}
    return out


def kubectl_phases(cp: Any, start: float, end: float) -> dict[str, float]:
    evs = writes(cp, "kubectl", start, end)
    if not evs:
        return {}
    return {"requests": float(len(evs)),
            "first": min(_ts(e["requestReceivedTimestamp"]) for e in evs) - start,
            "last": max(_ts(e["stageTimestamp"]) for e in evs) - start}


def phase_rows(phases: list[dict[str, dict[str, float]]], applied: list[float]) -> list[list[object]]:
    """Medians over runs of each phase's start, end and span, and the tail to the verdict."""
    rows: list[list[object]] = []
    last_write = []
    for kind in PHASES:
        got = [p[kind] for p in phases if kind in p]
        if not got:
            continue
        rows.append([kind, int(common.median([g["requests"] for g in got])),
                     common.median([g["first"] for g in got]), common.median([g["last"] for g in got]),
                     common.median([g["last"] - g["first"] for g in got])])
    for p in phases:
        last_write.append(max((v["last"] for v in p.values()), default=float("nan")))
    if last_write:
        tails = [a - w for a, w in zip(applied, last_write, strict=True)]
        rows.append(["after the last write, to the verdict seen", "", common.median(last_write),
                     common.median(applied), common.median(tails)])
    return rows


# -- the three measurements ------------------------------------------------------------------------
def measure_push(cp: Any, work: Path, git: Any, repeats: int) -> tuple[Attached, str, dict[str, Any]]:
    app = Attached(work / "push", cp.kubeconfig, git)
    ns = f"bench-push-{secrets.token_hex(3)}"
    first = app.push_and_wait(app.commit(manifests(ns, PUSH_OBJECTS, "v0"), "initial"))
    print(f"  push 0 (initial, {PUSH_OBJECTS} ConfigMaps created): applied {first['applied']:.3f} s "
          f"after the push returned", flush=True)
    runs: list[dict[str, float]] = []
    phases = []
    for r in range(1, repeats + 1):
        rev = app.commit(manifests(ns, PUSH_OBJECTS, f"v{r}"), f"change {r}")
        t = app.push_and_wait(rev)
        runs.append(t)
        phases.append(reconciler_phases(cp, app.inventory_ns, t["returned_wall"], t["verdict_wall"]))
        print(f"  push {r}: git push {t['push']:.3f} s (gate {t['gate']:.3f} s), applied "
              f"{t['applied']:.3f} s after it returned, total {t['total']:.3f} s", flush=True)
    return app, ns, {"first": first, "runs": runs, "phases": phases, "value": f"v{repeats}"}


def measure_drift(cp: Any, app: Attached, ns: str, value: str, repeats: int) -> list[float]:
    from kubernetes.dynamic import DynamicClient

    cms = DynamicClient(cp.api_client()).resources.get(api_version="v1", kind="ConfigMap")
    out = []
    for r in range(repeats):
        name = f"cm-{r % PUSH_OBJECTS:04d}"
        cms.patch(name=name, namespace=ns, body={"data": {"value": f"edited-{r}"}},
                  content_type="application/merge-patch+json")
        t0 = time.perf_counter()
        deadline = t0 + 60
        while cms.get(name=name, namespace=ns).data["value"] != value:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"ConfigMap {ns}/{name} not corrected after 60 s\n"
                                   f"{app.server.log()[-3000:]}")
            time.sleep(DRIFT_POLL)
        took = time.perf_counter() - t0
        out.append(took)
        print(f"  edit {r + 1}: {ns}/{name} corrected after {took:.3f} s", flush=True)
        time.sleep(0.2)
    return out


def sync_pushgate(cp: Any, work: Path, git: Any, size: int) -> dict[str, Any]:
    """A fresh attached server (its reconciler leading after a warm-up push), then the N objects."""
    app = Attached(work, cp.kubeconfig, git)
    try:
        warm = app.commit({"README.md": "bench\n"}, "no manifests yet")
        app.push_and_wait(warm)  # the reconciler connects and takes its Lease here, untimed
        ns = f"bench-pg-{secrets.token_hex(3)}"
        t = app.push_and_wait(app.commit(manifests(ns, size, "v1"), f"{size} ConfigMaps"), CpuMeter(cp))
        t["phases"] = reconciler_phases(cp, app.inventory_ns, t["returned_wall"], t["verdict_wall"])
        return t
    finally:
        app.stop()


def kubectl_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C"}


def sync_kubectl(cp: Any, work: Path, env: dict[str, str], size: int, *extra: str) -> dict[str, Any]:
    ns = f"bench-kc-{secrets.token_hex(3)}"
    write(work, manifests(ns, size, "v1"))
    meter = CpuMeter(cp)
    before = meter.snapshot(children_cpu())
    start = time.time()
    argv = [kubectl(), f"--kubeconfig={cp.kubeconfig}", "apply", "--server-side", *extra, "-f", str(work)]
    t = common.run_timed(argv, env=env)
    cpu = meter.delta(before, meter.snapshot(children_cpu()))
    if t.returncode != 0:
        raise RuntimeError(f"kubectl apply failed ({t.returncode}): {t.stderr[-2000:]}")
    applied = sum(1 for line in t.stdout.splitlines() if "serverside-applied" in line)
    if applied != size + 1:
        raise RuntimeError(f"kubectl applied {applied} objects, not {size + 1}:\n{t.stdout[-2000:]}")
    return {"seconds": t.seconds, "phases": kubectl_phases(cp, start, start + t.seconds), "cpu": cpu}


SIDES = ("pushgate", "kubectl", "kubectl --validate=false")


def measure_sync(cp: Any, work: Path, git: Any, size: int, repeats: int) -> dict[str, list[dict[str, Any]]]:
    env = kubectl_env(work / "kube-home")
    sync_kubectl(cp, work / "kubectl-warmup", env, 1)  # discovery cache, as a user's would be
    out: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for r in range(repeats):
        for k in range(len(SIDES)):
            side = SIDES[(r + k) % len(SIDES)]  # rotate which side goes first
            if side == "pushgate":
                t = sync_pushgate(cp, work / f"pushgate-{r}", git, size)
                t["seconds"] = t["applied"]
                print(f"  sync {r + 1} pushgate: git push {t['push']:.2f} s (gate {t['gate']:.2f} s), "
                      f"applied {t['applied']:.3f} s after it returned", flush=True)
            else:
                extra = side.split()[1:]
                t = sync_kubectl(cp, work / f"kubectl-{r}-{len(extra)}", env, size, *extra)
                print(f"  sync {r + 1} {side}: {t['seconds']:.3f} s", flush=True)
            out[side].append(t)
    return out


# -- profile: one full sync by the reconciler in-process -------------------------------------------
def profile_sync(cp: Any, work: Path, git: Any, size: int) -> tuple[float, str]:
    """One reconcile pass of N new ConfigMaps by reconciler.loop.Reconciler in this process (drift
    watches and leader election off), under cProfile in every thread; returns (seconds, text)."""
    import threading

    from gitserver.settings import default_kustomize
    from reconciler.cluster import Cluster
    from reconciler.loop import Reconciler
    from tests.bed.server import make_server

    server = make_server(work / "server", "--gate-timeout=600")  # no cluster attached
    try:
        repo = git.init(work / "repo")
        write(repo, manifests(f"bench-prof-{secrets.token_hex(3)}", size, "v1"))
        head = git.commit_all(repo, f"{size} ConfigMaps")
        git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=repo, timeout=1800)
    finally:
        server.stop()

    def connect() -> Cluster:
        return Cluster.from_kubeconfig(str(cp.kubeconfig))

    rec = Reconciler(str(server.data_dir), connect, inventory_namespace=f"pg-prof-{secrets.token_hex(3)}",
                     kustomize=default_kustomize(), drift_mode="off", leader_elect=False)
    rec.cluster = connect()  # discovery, untimed
    profiles: list[cProfile.Profile] = []

    def per_thread(*_: Any) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()

    main_prof = cProfile.Profile()
    threading.setprofile(per_thread)
    t0 = time.perf_counter()
    main_prof.enable()
    try:
        rec.step()
    finally:
        main_prof.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    verdict = (rec.doc.get("history") or [{}])[0]
    if verdict.get("revision") != head or verdict.get("result") != "Ready":
        raise RuntimeError(f"profiled pass did not end Ready: {verdict}")
    out = io.StringIO()
    stats = pstats.Stats(main_prof, stream=out)
    for prof in profiles:
        stats.add(prof)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(20)
    text = common.profile_lines(out.getvalue(), keep_builtins=True)
    return seconds, text


# -- report ----------------------------------------------------------------------------------------
def stats_row(label: str, xs: Sequence[float]) -> list[object]:
    return [label, len(xs), common.percentile(xs, 50), common.percentile(xs, 90), min(xs), max(xs)]


def kubectl_version() -> str:
    t = common.run_timed([kubectl(), "version", "--client", "-o", "json"], timeout=30)
    try:
        return str(json.loads(t.stdout)["clientVersion"]["gitVersion"])
    except (ValueError, KeyError):
        return "?"


def report(opts: Any, version: str, push: dict[str, Any], drift: list[float],
           sync: dict[str, list[dict[str, Any]]],
           profiled: tuple[float, str] | None) -> tuple[str, dict[str, Any]]:
    applied = [r["applied"] for r in push["runs"]]
    push_p50 = common.percentile(applied, 50)
    drift_p50 = common.percentile(drift, 50)
    secs = {side: [t["seconds"] for t in runs] for side, runs in sync.items()}
    med = {side: common.median(xs) for side, xs in secs.items()}
    ratio = med["pushgate"] / med["kubectl"]
    ratio_novalidate = med["pushgate"] / med["kubectl --validate=false"]
    pg = sync["pushgate"]

    push_rows = [
        stats_row("push returned -> verdict (applied)", applied),
        stats_row("push start -> verdict", [r["total"] for r in push["runs"]]),
        stats_row("git push (client wall)", [r["push"] for r in push["runs"]]),
        stats_row("gate (server, pushes.jsonl)", [r["gate"] for r in push["runs"]]),
    ]
    labels = {"pushgate": "pushgate: push returned -> verdict",
              "kubectl": "kubectl apply --server-side -f DIR",
              "kubectl --validate=false": "kubectl apply --server-side --validate=false -f DIR"}
    sync_rows: list[list[object]] = []
    for side in SIDES:
        cpu = [t["cpu"] for t in sync[side]]
        sync_rows.append([labels[side], len(secs[side]), med[side], min(secs[side]), max(secs[side]),
                          med[side] / med["kubectl"], common.median([c["client"] for c in cpu]),
                          common.median([c["kube-apiserver"] for c in cpu]),
                          common.median([c["etcd"] for c in cpu])])
    pushes = [t["push"] for t in pg]
    phase_header = ["writes (audit log), median s after the push returned", "requests", "first starts",
                    "last ends", "span"]
    kc_rows = []
    for side in SIDES[1:]:
        ph = [t["phases"] for t in sync[side] if t["phases"]]
        if ph:
            kc_rows.append([f"{side}: its writes (s after its start)",
                            int(common.median([p["requests"] for p in ph])),
                            common.median([p["first"] for p in ph]), common.median([p["last"] for p in ph]),
                            common.median([p["last"] - p["first"] for p in ph])])
    lines = [
        f"One private control plane (etcd + kube-apiserver {version}, audit log on, no controller "
        f"manager); `pushgate serve --kubeconfig` (gunicorn, 2 workers; the reconciler its own process, "
        f"Lease held, apply parallelism 8); kubectl {kubectl_version()}.",
        "",
        f"### 1. push -> {PUSH_OBJECTS} objects applied",
        "",
        f"A Namespace + {PUSH_OBJECTS} ConfigMaps; {len(applied)} pushes, each changing all {PUSH_OBJECTS} "
        f"ConfigMaps' data, all Ready. Verdict seen by polling status/main.json every "
        f"{STATUS_POLL * 1000:.0f} ms. (The initial push, creating them, was applied "
        f"{push['first']['applied']:.3f} s after it returned.)",
        "",
        common.table(["seconds", "runs", "p50", "p90", "min", "max"], push_rows),
        "",
        f"**push -> {PUSH_OBJECTS} applied p50 = {push_p50:.3f} s** (target <= {TARGET_PUSH_P50:.1f} s: "
        f"{common.verdict(push_p50, TARGET_PUSH_P50)})",
        "",
        common.table(phase_header, phase_rows(push["phases"], applied)),
        "",
        f"### 2. full sync of {opts.size} ConfigMaps, pushgate vs kubectl apply --server-side",
        "",
        f"Each side: a Namespace + {opts.size} ConfigMaps (one file each) into a fresh namespace, "
        f"{opts.repeats} runs each, the order of the sides rotating. pushgate: a fresh server whose "
        f"reconciler already leads (warm-up push of a commit without manifests), timed from `git push` "
        f"returning to the verdict; its `git push` (the gate) took a median {common.median(pushes):.2f} s "
        f"more. kubectl: the whole process, discovery cache warm; `--validate=false` (no client-side "
        f"OpenAPI work, no server-side field validation) is the target's side. CPU seconds: medians, "
        f"from the push's return to the verdict (pushgate: the reconciler process) or over the kubectl "
        f"process.",
        "",
        common.table(["seconds", "runs", "median", "min", "max", "x kubectl", "CPU client", "CPU apiserver",
                      "CPU etcd"], sync_rows),
        "",
        f"**ratio pushgate / kubectl --validate=false = {ratio_novalidate:.2f}** (target <= "
        f"{TARGET_RATIO:.1f}: {common.verdict(ratio_novalidate, TARGET_RATIO)}); against plain "
        f"`kubectl apply --server-side`: {ratio:.2f}",
        "",
        common.table(phase_header, phase_rows([t["phases"] for t in pg], [t["applied"] for t in pg])
                     + kc_rows),
        "",
        "### 3. out-of-band edit -> corrected",
        "",
        f"{len(drift)} merge-patches of a managed ConfigMap's data (kubernetes client), each timed from "
        f"the patch returning until a GET (every {DRIFT_POLL * 1000:.0f} ms) shows the committed value.",
        "",
        common.table(["seconds", "runs", "p50", "p90", "min", "max"],
                     [stats_row("edit -> corrected", drift)]),
        "",
        f"**edit -> corrected p50 = {drift_p50:.3f} s** (target <= {TARGET_DRIFT_P50:.0f} s: "
        f"{common.verdict(drift_p50, TARGET_DRIFT_P50)})",
    ]
    if profiled:
        lines += ["", f"### Profile: one reconcile pass of {opts.size} new ConfigMaps in-process", "",
                  f"reconciler.loop.Reconciler.step() in this process (drift watches and leader election "
                  f"off, cProfile in every thread: the 8 apply threads' times add up): {profiled[0]:.2f} s.",
                  "", "<details><summary>cProfile</summary>", "", "```", profiled[1], "```", "",
                  "</details>"]
    result = {"size": opts.size, "push_applied": applied, "push_p50": push_p50,
              "push_total": [r["total"] for r in push["runs"]], "sync": secs, "ratio": ratio,
              "ratio_novalidate": ratio_novalidate, "drift": drift, "drift_p50": drift_p50,
              "push_phases": push["phases"], "sync_phases": [t["phases"] for t in pg],
              "profiled_seconds": profiled[0] if profiled else None}
    return "\n".join(lines), result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(NAME, __doc__, 1000, 10)
    args.add_argument("--profile", action="store_true",
                      help="also profile one full sync by the reconciler in-process")
    opts = args.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    from tests.bed import procs
    from tests.bed.controlplane import ControlPlane
    from tests.bed.gitcli import Git

    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        work = Path(opts.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        git = Git(work / "git-home")
        cp = ControlPlane(work / "cluster")
        app = None
        try:
            t0 = time.perf_counter()
            cp.start()
            version = json.loads(cp.request("/version")[1]).get("gitVersion", "?")
            print(f"  control plane {version} up in {time.perf_counter() - t0:.1f} s", flush=True)
            app, ns, push = measure_push(cp, work, git, opts.repeats)
            drift = measure_drift(cp, app, ns, push["value"], opts.repeats)
            app.stop()
            app = None
            sync = measure_sync(cp, work / "sync", git, opts.size, opts.repeats)
            profiled = profile_sync(cp, work / "profile", git, opts.size) if opts.profile else None
        finally:
            if app is not None:
                app.stop()
            cp.stop()
            procs.REGISTRY.stop_all()

    text, result = report(opts, version, push, drift, sync, profiled)
    print()
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, "push -> applied, full sync vs kubectl apply --server-side, drift reverted", command, text,
        started_load))
    return result


if __name__ == "__main__":
    main()
