"""Live check: a push's verdict with the live check, and the live check against kubectl's dry-run.

1. `pushgate serve --kubeconfig` (live check required, the reconciler attached) on the test bed's
   control plane holds a Namespace and 10 objects; R pushes each change those 10 objects and must
   be accepted. Time: the server's own seconds per push (pushes.jsonl: from the start of the
   receive to the verdict, static gate + live dry-run + plan included). Target: p50 <= 500 ms.
2. N objects (ConfigMaps of one namespace, applied before): the live check as the git server asks
   for it (`gitserver.live.LiveClient` over the reconciler's socket: a dry-run server-side apply
   of every object, the live copies read, the plan, the inventory) against the pinned kubectl of
   the API server's own version, `kubectl apply --server-side --dry-run=server -f DIR` of the same
   objects (the whole process, discovery cache warm). Sides alternate; medians over repeats.
   Target: ratio pushgate / kubectl <= 1.0.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common

NAME = "live_check"
TARGET_P50 = 0.500
SMALL = 10


def _ns(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def _cm(ns: str, name: str, value: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
            f"data:\n  value: \"{value}\"\n")


def _write(directory: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(text)


def _last_push(data_dir: Path) -> dict[str, Any]:
    return dict(json.loads((data_dir / "pushes.jsonl").read_text().splitlines()[-1]))


def _push(git: Any, repo: Path, url: str, data_dir: Path) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    git.run("push", "-q", url, "HEAD:refs/heads/main", cwd=repo, timeout=1800)
    wall = time.perf_counter() - t0
    entry = _last_push(data_dir)
    if not entry.get("accepted") or not entry.get("plan"):
        raise RuntimeError(f"push refused or not live-checked: {entry.get('reason')} "
                           f"{entry.get('problems', [])[:5]}")
    return wall, entry


def _applied(data_dir: Path, revision: str, timeout: float = 600) -> None:
    from pushgate import datadir

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = datadir.read_status(str(data_dir), "main") or {}
        if doc.get("lastAppliedRevision") == revision:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{revision[:12]} not applied within {timeout:.0f}s")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(NAME, __doc__, size=1000, repeats=5)
    p.add_argument("--pushes", type=int, default=20, help="timed 10-object pushes (default 20)")
    opts = p.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    from gitserver.live import LiveClient
    from tests.bed import procs, tools
    from tests.bed.controlplane import ControlPlane
    from tests.bed.gitcli import Git
    from tests.bed.server import make_server

    kubectl = tools.path("kubectl")
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(opts.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        cp = ControlPlane(work / "cp", controller_manager=False).start()
        server = None
        try:
            server = make_server(work / "server", "--gate-timeout=600", f"--kubeconfig={cp.kubeconfig}",
                                 env={"PUSHGATE_INVENTORY_NAMESPACE": "pushgate-bench"})
            procs.wait_until(lambda: (server.data_dir / "run" / "live.token").exists(), 60,
                             "the reconciler's live socket")
            git = Git(work / "git-home")
            repo = git.init(work / "repo")
            url = server.url("admin")

            # 1. verdict of a 10-object push, live check included
            small = {"small/ns.yaml": _ns("bench-small")}
            small.update({f"small/cm-{i}.yaml": _cm("bench-small", f"cm-{i}", "0") for i in range(SMALL)})
            _write(repo, small)
            head = git.commit_all(repo, "small")
            _push(git, repo, url, server.data_dir)
            _applied(server.data_dir, head)
            server_s: list[float] = []
            for r in range(opts.pushes):
                _write(repo, {f"small/cm-{i}.yaml": _cm("bench-small", f"cm-{i}", str(r + 1))
                              for i in range(SMALL)})
                git.commit_all(repo, f"change {r}")
                _, entry = _push(git, repo, url, server.data_dir)
                counts = entry["plan"]["counts"]
                if counts["update"] != SMALL:
                    raise RuntimeError(f"the plan does not show {SMALL} updates: {counts}")
                server_s.append(float(entry["seconds"]))
                print(f"  push {r + 1}: server {entry['seconds']:.3f} s", flush=True)

            # 2. the live check of N objects against kubectl's server-side dry-run
            big_ns = "bench-big"
            big = {f"big/cm-{i:04d}.yaml": _cm(big_ns, f"cm-{i:04d}", "1") for i in range(opts.size)}
            _write(repo, {"big/00-ns.yaml": _ns(big_ns), **big})
            head = git.commit_all(repo, "big")
            _, first = _push(git, repo, url, server.data_dir)
            _applied(server.data_dir, head)
            import yaml

            objects = [yaml.safe_load((repo / rel).read_text()) for rel in sorted(big)]
            client = LiveClient(str(server.data_dir / "run"))
            env = {"PATH": "/usr/bin:/bin", "HOME": str(work / "kube-home"), "LC_ALL": "C"}
            kubectl_argv = [kubectl, f"--kubeconfig={cp.kubeconfig}", "apply", "--server-side",
                            "--dry-run=server", "-f", str(repo / "big")]
            warm = common.run_timed(kubectl_argv, env=env)  # discovery cache, as a user's would be
            if warm.returncode != 0:
                raise RuntimeError(f"kubectl failed: {warm.stderr[-2000:]}")
            live_s: list[float] = []
            kubectl_s: list[float] = []
            for r in range(opts.repeats):
                t0 = time.perf_counter()
                doc = client.check("main", objects, 600)
                live_s.append(time.perf_counter() - t0)
                refused = [x for x in doc["results"] if x["outcome"] != "ok"]
                if refused or len(doc["results"]) != len(objects):
                    raise RuntimeError(f"live check did not pass every object: {refused[:3]}")
                t = common.run_timed(kubectl_argv, env=env)
                if t.returncode != 0:
                    raise RuntimeError(f"kubectl failed: {t.stderr[-2000:]}")
                kubectl_s.append(t.seconds)
                print(f"  repeat {r + 1}: live check {live_s[-1]:.2f} s, kubectl {t.seconds:.2f} s",
                      flush=True)
        finally:
            if server is not None:
                server.stop()
            cp.stop()
            procs.REGISTRY.stop_all()

    p50 = common.percentile(server_s, 50)
    ratio = common.median(live_s) / common.median(kubectl_s)
    rows = [["10-object push, server verdict", common.median(server_s), p50,
             common.percentile(server_s, 90), min(server_s), max(server_s)],
            [f"live check of {opts.size} objects", common.median(live_s), common.percentile(live_s, 50),
             common.percentile(live_s, 90), min(live_s), max(live_s)],
            [f"kubectl apply --server-side --dry-run=server, {opts.size} objects", common.median(kubectl_s),
             common.percentile(kubectl_s, 50), common.percentile(kubectl_s, 90), min(kubectl_s),
             max(kubectl_s)]]
    text = "\n".join([
        f"Control plane: the test bed's kube-apiserver + etcd (no controllers); pushgate serve with the "
        f"reconciler attached and the live check required; kubectl {os.path.basename(kubectl)} (pinned, "
        f"the API server's version). {opts.pushes} pushes of {SMALL} changed ConfigMaps, each accepted "
        f"with a plan of {SMALL} updates. The {opts.size}-object push that created the big set took "
        f"{first['seconds']:.2f} s of server time (live check and plan of {opts.size} creates included).",
        "",
        common.table(["seconds", "median", "p50", "p90", "min", "max"], rows),
        "",
        f"**10-object push with the live check: server p50 = {p50 * 1000:.0f} ms** (target <= "
        f"{TARGET_P50 * 1000:.0f} ms: {common.verdict(p50, TARGET_P50)})",
        "",
        f"**{opts.size}-object live check / kubectl server-side dry-run = {ratio:.2f}** (median over "
        f"{opts.repeats} alternating repeats; target <= 1.0: {common.verdict(ratio, 1.0)})",
        "",
        "Server seconds per 10-object push, in order: " + ", ".join(f"{s:.3f}" for s in server_s),
    ])
    print()
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, "the live gate: push verdict with the live check, and against kubectl's dry-run",
        command, text, started_load))
    return {"p50": p50, "ratio": ratio, "server_seconds": server_s, "live_seconds": live_s,
            "kubectl_seconds": kubectl_s}


if __name__ == "__main__":
    main()
