"""Server memory: RSS of the whole `pushgate serve` process tree serving an N-manifest repository.

The tree is the gunicorn master, its workers and each worker's embedded policy engine
(regoworker), found through /proc parent links. The realistic corpus of bench.gate_full is pushed
(N manifests, all checked by the gate), then cloned a few times (so every worker serves one),
then takes `--pushes` pushes of 10 changed files each; VmRSS is read from /proc/<pid>/status
after start, after the push, after the clones and every 50 pushes. The reading after the clones
waits until every worker has logged `gate warm` for the pushed head (the worker that did not
take the push checks it in the background, gitserver/warmup.py): a reading taken while that
check runs catches it half-way, with a policy helper process alive. Also shown: VmHWM (each
process's peak RSS) and PSS from smaps_rollup, which counts pages shared between the forked
processes once. ROADMAP targets: sum of VmRSS <= 200 MB after the 5,000-file push and 4 clones;
no growth over 200 pushes, judged from push 50 on (by then every cache the pushes fill has met
its steady state) with 5 MB allowed for allocator noise.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common, corpus
from bench.gate_incremental import wait_warm

NAME = "rss"
TARGET_MB = 200.0
DEFAULT_WORKERS = 1  # `pushgate serve --workers` and deploy/base/deployment.yaml (a test checks)
CLONES = 4
PUSHES = 200
GROWTH_FROM = 50  # pushes before the growth is judged
GROWTH_MB = 5.0


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _kb(value: str) -> float:
    return float(value.split()[0]) if value else 0.0


def _pss_kb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return _kb(line.split(":", 1)[1])
    except OSError:
        pass
    return float("nan")


def _role(pid: int, root: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    if pid == root:
        return "gunicorn master (pushgate serve)"
    if "regoworker" in cmd:
        return "policy engine (regoworker)"
    if "gitserver.front" in cmd:
        return "buffering front (asyncio)"
    if "pushgate" in cmd:
        return "gunicorn worker"
    return cmd[:60]


def snapshot(root: int) -> list[dict[str, Any]]:
    rows = []
    from tests.bed import procs

    for pid in procs.tree(root):
        try:
            st = _status(pid)
        except OSError:
            continue
        rows.append({"pid": pid, "role": _role(pid, root), "rss_mb": _kb(st.get("VmRSS", "")) / 1024,
                     "hwm_mb": _kb(st.get("VmHWM", "")) / 1024, "pss_mb": _pss_kb(pid) / 1024,
                     "anon_mb": _kb(st.get("RssAnon", "")) / 1024})
    return rows


def _measure(opts: Any, workers: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Snapshots of one server with `workers` workers through the whole run."""
    from tests.bed import procs
    from tests.bed.gitcli import Git
    from tests.bed.server import make_server

    snaps: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        work = Path(opts.workdir or tmp) / f"workers-{workers}"
        work.mkdir(parents=True, exist_ok=True)
        git = Git(work / "git-home")
        repo = git.init(work / "repo")
        files = corpus.generate(opts.size)
        corpus.write(repo, files)
        head = git.commit_all(repo, "initial")
        server = make_server(work / "server", "--gate-timeout=600", f"--workers={workers}")
        try:
            assert server.proc is not None
            root = server.proc.pid
            time.sleep(1)
            snaps["after start"] = snapshot(root)
            t0 = time.perf_counter()
            git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=repo, timeout=1800)
            push_s = time.perf_counter() - t0
            snaps["after push"] = snapshot(root)
            for i in range(opts.repeats):
                dest = work / "clone"
                shutil.rmtree(dest, ignore_errors=True)
                git.run("clone", "-q", "--no-checkout", server.url("reader"), str(dest), timeout=1800)
                if git.rev_parse(dest, "HEAD") != head:
                    raise RuntimeError(f"clone {i} did not get {head}")
            warm_s = wait_warm(server, head, workers=workers)
            snaps[f"after push + {opts.repeats} clones"] = snapshot(root)
            for n in range(1, opts.pushes + 1):
                git.write(repo, corpus.mutate(files, n))
                git.commit_all(repo, f"push {n}")
                git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=repo, timeout=600)
                if n % 50 == 0 or n == opts.pushes:
                    snaps[f"after {n} more pushes"] = snapshot(root)
        finally:
            server.stop()
            procs.REGISTRY.stop_all()
    return snaps, {"push_s": push_s, "warm_s": warm_s, "files": len(files)}


def _judged(workers: int, value: float, target: float) -> str:
    """The targets are the server's as shipped: `pushgate serve` and deploy/ run DEFAULT_WORKERS.
    Another layout is measured for what each further worker costs (README, "Workers and
    memory"), and said to be over the figure when it is, not judged as the server."""
    if workers == DEFAULT_WORKERS:
        return f"target <= {target:.0f} MB: {common.verdict(value, target)}"
    over = "over" if value > target else "within"
    return (f"{over} the {target:.0f} MB figure; not the default layout, which the target "
            f"judges: `pushgate serve` and deploy/ run {DEFAULT_WORKERS}")


def _report(opts: Any, workers: int, snaps: dict[str, list[dict[str, Any]]],
            info: dict[str, Any]) -> tuple[str, float, str]:
    final_name = f"after push + {opts.repeats} clones"
    final = snaps[final_name]
    total = sum(r["rss_mb"] for r in final)
    growth_line = ""
    later = [k for k in snaps if k.startswith("after ") and k.endswith(" more pushes")]
    if later:
        base_key = f"after {GROWTH_FROM} more pushes"
        if base_key not in snaps:
            base_key = final_name
        def total_of(key: str, field: str) -> float:
            return sum(r[field] for r in snaps[key])
        growth = total_of(later[-1], "rss_mb") - total_of(base_key, "rss_mb")
        anon = total_of(later[-1], "anon_mb") - total_of(base_key, "anon_mb")
        growth_line = (f"**growth {base_key.removeprefix('after ')} -> {later[-1].removeprefix('after ')}: "
                       f"{growth:+.1f} MB** ({_judged(workers, growth, GROWTH_MB)}); of it "
                       f"anonymous memory {anon:+.1f} MB, "
                       f"the rest file-backed pages (libraries, and the pack files a request in "
                       f"flight has open)")
    summary = [[name, len(rows), sum(r["rss_mb"] for r in rows), sum(r["anon_mb"] for r in rows),
                sum(r["pss_mb"] for r in rows), sum(r["hwm_mb"] for r in rows)]
               for name, rows in snaps.items()]
    header = ["pid", "process", "VmRSS MB", "RssAnon MB", "PSS MB", "VmHWM MB"]

    def rows_of(key: str) -> list[list[Any]]:
        return [[r["pid"], r["role"], r["rss_mb"], r["anon_mb"], r["pss_mb"], r["hwm_mb"]]
                for r in snaps[key]]
    plural = "s" if workers > 1 else ""
    text = "\n".join([
        f"### {workers} worker{plural}",
        "",
        f"{info['files']} manifests (the bench.gate_full corpus) pushed once ({info['push_s']:.1f} s, "
        f"through the gate), then {opts.repeats} clones (every worker's gate warm "
        f"{info['warm_s']:.1f} s after the clones), then {opts.pushes} pushes of 10 changed files. "
        f"Server: `pushgate serve --workers={workers}` as the test bed starts it otherwise (the "
        f"buffering front, gunicorn with {workers} worker{plural}, each with its embedded policy engine).",
        "",
        common.table(["when", "processes", "sum VmRSS MB", "sum RssAnon MB", "sum PSS MB",
                      "sum VmHWM (peaks) MB"], summary),
        "",
        f"Per process, {final_name}:",
        "",
        common.table(header, rows_of(final_name)),
        *([] if not later else ["", f"Per process, {later[-1]}:", "",
                                common.table(header, rows_of(later[-1]))]),
        "",
        f"**{workers} worker{plural}: sum VmRSS = {total:.0f} MB** ({_judged(workers, total, TARGET_MB)}); "
        f"sum PSS = {sum(r['pss_mb'] for r in final):.0f} MB",
        "",
        growth_line,
    ])
    return text, total, growth_line


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = common.parser(NAME, __doc__, 5000, CLONES)
    parser.add_argument("--pushes", type=int, default=PUSHES, help=f"10-file pushes after the clones "
                        f"(default {PUSHES})")
    parser.add_argument("--workers", default="1,2", help="server worker counts, one run each (default "
                        "1,2: `pushgate serve`'s default and the test bed's)")
    opts = parser.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    parts, out = [], {}
    for workers in (int(x) for x in opts.workers.split(",")):
        snaps, info = _measure(opts, workers)
        text, total, growth = _report(opts, workers, snaps, info)
        print()
        print(text)
        parts.append(text)
        out[workers] = {"size": info["files"], "rss_mb": total, "snapshots": snaps, "growth": growth}
    common.write_section(opts.results, NAME, common.section(
        NAME, "server RSS serving a pushed and cloned repository", command, "\n\n".join(parts),
        started_load))
    return out


if __name__ == "__main__":
    main()
