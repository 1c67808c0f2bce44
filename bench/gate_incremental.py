"""Incremental gate: a real `pushgate serve` holding N manifests takes R pushes of 10 changed files.

The repository (the same generated corpus as bench.gate_full) is pushed once, then each timed
push changes 10 files (new image tags, config revisions; all still valid) and must be accepted.
The time is the server's own: the `seconds` the server logs for each push in the data dir's
pushes.jsonl, from the start of the receive (pack read) to the verdict, refs written. The git
client's wall time is shown next to it. Targets: the first push of the whole repository <= 5 s
server time; then p50 <= 150 ms and max <= 500 ms over the timed pushes.

Between the two, the benchmark waits until every server worker has logged `gate warm` for the
pushed head (each gunicorn worker has its own caches; a worker that did not take the first push
checks it in the background, see gitserver/warmup.py) and reports how long that took: a push
that reached a worker still warming would wait for it, which is the outlier the max target is
about.

`--profile` then shows where a push's server time goes: pushgate's WSGI app, created in-process
over the same data dir and served by wsgiref on another port, takes one warm-up push (its caches
start cold, like a fresh gunicorn worker) and one profiled push of 10 changed files.

The server runs as the test bed starts it (gunicorn, 2 workers, embedded policy engine), with
`--gate-timeout=600` so that the initial push of the whole repository is not refused for time.
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import pstats
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import make_server as make_wsgi_server

from bench import common, corpus

NAME = "gate_incremental"
TARGET_P50 = 0.150
TARGET_MAX = 0.500
TARGET_FIRST = 5.0
CHANGED = 10
WORKERS = 2  # tests.bed.server starts gunicorn with two workers
WARM = re.compile(r"gate warm: (\S+) at ([0-9a-f]{40}) \(worker (\d+)")


def wait_warm(server: Any, head: str, timeout: float = 600.0, workers: int = WORKERS) -> float:
    """Seconds until every worker has logged that its gate holds `head` (see gitserver/warmup)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        pids = {m.group(3) for m in WARM.finditer(server.log()) if m.group(2) == head}
        if len(pids) >= workers:
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise RuntimeError(f"the server's workers did not all warm up to {head} within {timeout:.0f}s")


def last_push(data_dir: Path) -> dict[str, Any]:
    lines = (data_dir / "pushes.jsonl").read_text().splitlines()
    return dict(json.loads(lines[-1]))


def push(git: Any, repo: Path, url: str, data_dir: Path) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    git.run("push", "-q", url, "HEAD:refs/heads/main", cwd=repo, timeout=1800)
    wall = time.perf_counter() - t0
    entry = last_push(data_dir)
    if not entry.get("accepted"):
        raise RuntimeError(f"push refused: {entry.get('reason')} {entry.get('problems', [])[:5]}")
    return wall, entry


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def profile_push(data_dir: Path, users_file: str, url: str, port: int, git: Any, repo: Path,
                 files: dict[str, str], round_no: int) -> tuple[float, str]:
    """Server seconds of one incremental push to an in-process app, and its cProfile text. `url`
    and `port` are the running server's; run through common.in_child (the app changes
    process-wide state)."""
    from gitserver import app as appmod
    from gitserver.settings import Settings, default_policies_dir
    from pushgate import config as configmod

    cfg = configmod.Config().replace("gate", timeout=600.0)
    pg = appmod.create_app(Settings(data_dir=str(data_dir), config=cfg, users_file=users_file,
                                    policies_dir=default_policies_dir()))
    prof = cProfile.Profile()
    state = {"profiling": False}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        on = state["profiling"] and environ.get("PATH_INFO", "").endswith("/git-receive-pack")
        if on:
            prof.enable()
        try:
            return list(pg(environ, start_response))
        finally:
            if on:
                prof.disable()

    httpd = make_wsgi_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    url = url.replace(f":{port}/", f":{httpd.server_port}/")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    seconds = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # dulwich.web leaves Repos to the GC
        try:
            for k, profiled in enumerate((False, True)):
                changed = corpus.mutate(files, round_no + k, CHANGED)
                corpus.write(repo, changed)
                files.update(changed)
                git.commit_all(repo, f"profiled change {k}")
                state["profiling"] = profiled
                _wall, entry = push(git, repo, url, data_dir)
                seconds = float(entry["seconds"])
        finally:
            httpd.shutdown()
            thread.join()
            httpd.server_close()
            pg.close()
            gc.collect()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(15)
    text = common.profile_lines(out.getvalue())
    return seconds, text


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(NAME, __doc__, 5000, 50)
    args.add_argument("--profile", action="store_true", help="also profile one push in-process")
    opts = args.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    from tests.bed import procs
    from tests.bed.gitcli import Git
    from tests.bed.server import make_server

    with tempfile.TemporaryDirectory(prefix="bench-gate-incr-") as tmp:
        work = Path(opts.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        git = Git(work / "git-home")
        repo = git.init(work / "repo")
        files = corpus.generate(opts.size)
        corpus.write(repo, files)
        git.commit_all(repo, "initial")
        server = make_server(work / "server", "--gate-timeout=600")
        try:
            url = server.url("writer")
            first_wall, first = push(git, repo, url, server.data_dir)
            print(f"  initial push of {len(files)} manifests: server {first['seconds']:.2f} s, "
                  f"client {first_wall:.2f} s", flush=True)
            warm_s = wait_warm(server, git.rev_parse(repo, "HEAD"))
            print(f"  every worker warm {warm_s:.2f} s after the initial push returned", flush=True)
            server_s: list[float] = []
            client_s: list[float] = []
            phases: dict[str, list[float]] = {}
            for r in range(opts.repeats):
                changed = corpus.mutate(files, r, CHANGED)
                corpus.write(repo, changed)
                files.update(changed)
                git.commit_all(repo, f"change {r}")
                wall, entry = push(git, repo, url, server.data_dir)
                server_s.append(float(entry["seconds"]))
                client_s.append(wall)
                for name, secs in (entry.get("phases") or {}).items():
                    phases.setdefault(name, []).append(float(secs))
                print(f"  push {r + 1}: server {entry['seconds']:.3f} s, client {wall:.3f} s", flush=True)
            profiled = common.in_child(
                profile_push, server.data_dir, str(server.dir / "users.json"), url, server.port, git,
                repo, files, opts.repeats) if opts.profile else None
        finally:
            server.stop()
            procs.REGISTRY.stop_all()

    p50 = common.percentile(server_s, 50)
    worst = max(server_s)
    first_s = float(first["seconds"])
    rows = [
        ["server verdict (pushes.jsonl)", common.median(server_s), p50, common.percentile(server_s, 90),
         min(server_s), worst],
        ["git push, client wall", common.median(client_s), common.percentile(client_s, 50),
         common.percentile(client_s, 90), min(client_s), max(client_s)],
    ]
    text = "\n".join([
        f"{len(files)} manifests in the repository; {opts.repeats} pushes of {CHANGED} changed files "
        f"each, all accepted. Initial push of the whole repository: server {first_s:.2f} s, "
        f"client {first_wall:.2f} s; every server worker warm {warm_s:.2f} s after it returned.",
        "",
        f"**first push server time = {first_s:.2f} s** (target <= {TARGET_FIRST:.0f} s: "
        f"{common.verdict(first_s, TARGET_FIRST)}); its phases: "
        + ", ".join(f"{name} {secs:.2f} s" for name, secs in (first.get("phases") or {}).items()),
        "",
        common.table(["seconds", "median", "p50", "p90", "min", "max"], rows),
        "",
        f"**server p50 = {p50 * 1000:.0f} ms** (target <= {TARGET_P50 * 1000:.0f} ms: "
        f"{common.verdict(p50, TARGET_P50)}); **max = {worst * 1000:.0f} ms** (target <= "
        f"{TARGET_MAX * 1000:.0f} ms: {common.verdict(worst, TARGET_MAX)})",
        "",
        "Server seconds per push, in order: " + ", ".join(f"{s:.3f}" for s in server_s),
        "",
        "Where the server time goes (pushes.jsonl `phases`: pack = reading and indexing the pushed "
        "pack, which includes the client producing it; refs = ref checks and the connectivity walk; "
        "gate = the whole gate; store = verdicts recorded, objects moved in, refs written):",
        "",
        common.table(["phase", "p50 ms", "p90 ms", "max ms"],
                     [[name, common.percentile(xs, 50) * 1000, common.percentile(xs, 90) * 1000,
                       max(xs) * 1000] for name, xs in phases.items()]),
    ])
    if profiled:
        text += "\n".join([
            "", "", f"One more push of {CHANGED} changed files to pushgate's app in-process (wsgiref, warm "
            f"caches, under cProfile): {profiled[0]:.3f} s server time.", "",
            "<details><summary>cProfile of that push (the receive-pack request)</summary>", "", "```",
            profiled[1], "```", "", "</details>"])
    print()
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, "incremental gate, 10 changed files per push", command, text, started_load))
    return {"size": len(files), "profiled_seconds": profiled[0] if profiled else None,
            "initial_seconds": first_s, "warm_seconds": warm_s, "server_seconds": server_s,
            "client_seconds": client_s, "p50": p50, "max": worst}


if __name__ == "__main__":
    main()
