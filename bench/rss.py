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


def tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return out


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
    for pid in tree(root):
        try:
            st = _status(pid)
        except OSError:
            continue
        rows.append({"pid": pid, "role": _role(pid, root), "rss_mb": _kb(st.get("VmRSS", "")) / 1024,
                     "hwm_mb": _kb(st.get("VmHWM", "")) / 1024, "pss_mb": _pss_kb(pid) / 1024})
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = common.parser(NAME, __doc__, 5000, CLONES)
    parser.add_argument("--pushes", type=int, default=PUSHES, help=f"10-file pushes after the clones "
                        f"(default {PUSHES})")
    opts = parser.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    from tests.bed import procs
    from tests.bed.gitcli import Git
    from tests.bed.server import make_server

    snaps: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        work = Path(opts.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        git = Git(work / "git-home")
        repo = git.init(work / "repo")
        files = corpus.generate(opts.size)
        corpus.write(repo, files)
        head = git.commit_all(repo, "initial")
        server = make_server(work / "server", "--gate-timeout=600")
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
            warm_s = wait_warm(server, head)
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

    final_name = f"after push + {opts.repeats} clones"
    final = snaps[final_name]
    total = sum(r["rss_mb"] for r in final)
    growth_line = ""
    later = [k for k in snaps if k.startswith("after ") and k.endswith(" more pushes")]
    if later:
        base_key = f"after {GROWTH_FROM} more pushes"
        if base_key not in snaps:
            base_key = final_name
        base_mb = sum(r["rss_mb"] for r in snaps[base_key])
        end_mb = sum(r["rss_mb"] for r in snaps[later[-1]])
        growth = end_mb - base_mb
        growth_line = (f"**growth {base_key.removeprefix('after ')} -> {later[-1].removeprefix('after ')}: "
                       f"{growth:+.1f} MB** (target <= {GROWTH_MB:.0f} MB: "
                       f"{common.verdict(growth, GROWTH_MB)})")
    summary = [[name, len(rows), sum(r["rss_mb"] for r in rows), sum(r["pss_mb"] for r in rows),
                sum(r["hwm_mb"] for r in rows)] for name, rows in snaps.items()]
    per_proc = [[r["pid"], r["role"], r["rss_mb"], r["pss_mb"], r["hwm_mb"]] for r in final]
    text = "\n".join([
        f"{len(files)} manifests (the bench.gate_full corpus) pushed once ({push_s:.1f} s, through the "
        f"gate), then {opts.repeats} clones (every worker's gate warm {warm_s:.1f} s after the "
        f"clones), then {opts.pushes} pushes of 10 changed files. Server: "
        f"`pushgate serve` as the test bed starts it (the buffering front, gunicorn with 2 workers, "
        f"each with its embedded policy engine).",
        "",
        common.table(["when", "processes", "sum VmRSS MB", "sum PSS MB", "sum VmHWM (peaks) MB"], summary),
        "",
        f"Per process, {final_name}:",
        "",
        common.table(["pid", "process", "VmRSS MB", "PSS MB", "VmHWM MB"], per_proc),
        *([] if not later else [
            "", f"Per process, {later[-1]}:", "",
            common.table(["pid", "process", "VmRSS MB", "PSS MB", "VmHWM MB"],
                         [[r["pid"], r["role"], r["rss_mb"], r["pss_mb"], r["hwm_mb"]]
                          for r in snaps[later[-1]]])]),
        "",
        f"**sum VmRSS = {total:.0f} MB** (target <= {TARGET_MB:.0f} MB: {common.verdict(total, TARGET_MB)}); "
        f"sum PSS = {sum(r['pss_mb'] for r in final):.0f} MB",
        "",
        growth_line,
    ])
    print()
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, "server RSS serving a pushed and cloned repository", command, text, started_load))
    return {"size": len(files), "rss_mb": total, "snapshots": snaps, "growth": growth_line}


if __name__ == "__main__":
    main()
