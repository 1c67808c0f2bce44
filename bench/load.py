"""How many clients one pushgate pod holds: concurrent clones and pushes, p50 / p99 / errors per
concurrency level, next to C git's http-backend behind the same front.

One `pushgate serve` per `--workers` count (default 1 and 2 worker processes, 32 threads each,
behind the buffering front) with an N-file repository. At each level C, C clients run at once,
each doing `repeats` operations: half of them `git clone --no-checkout`, the other half a
one-file push to a branch of its own (through the gate). The same clones are run against C
git's `git http-backend` (bench.cgibridge) behind a second instance of pushgate's front, so both
sides pay the same proxy. Every level also keeps `--slow-heads` connections trickling their
request heads open against every server the whole time (the attack of issue 13). Reported: per
level and side, operations, errors, p50 and p99 seconds; "holds" is the highest level with no
error and a p99 under 10 s.
"""

from __future__ import annotations

import functools
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import common
from bench.clone import small_files

NAME = "load"
LEVELS = (1, 4, 8, 16, 32)


def _trickle(port: int, stop: threading.Event) -> None:
    """A connection that sends its request head a byte a second; when the server cuts it off
    (408 after the head timeout), the next one starts: the pressure stays on all along."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                while not stop.wait(1.0):
                    sock.sendall(b"X")
        except OSError:
            continue


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(NAME, __doc__, 1000, 4)
    args.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels")
    args.add_argument("--slow-heads", type=int, default=200, help="trickling connections kept open")
    args.add_argument("--workers", default="1,2", help="server worker counts, one server each "
                      "(default 1,2: the default and the test bed's)")
    opts = args.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    levels = [int(x) for x in opts.levels.split(",")]
    counts = [int(x) for x in opts.workers.split(",")]
    from tests.bed import procs
    from tests.bed.gitcli import Git
    from tests.bed.server import make_server

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(opts.workdir or tmp)
        git = Git(work / "git-home")
        src = git.init(work / "src")
        git.write(src, dict(small_files(opts.size)))
        git.commit_all(src, "corpus")
        servers = [make_server(work / f"server-{n}", "--gate-timeout=600", f"--workers={n}") for n in counts]
        server = servers[0]
        stop = threading.Event()
        results: dict[str, dict[int, dict[str, Any]]] = {}  # side -> level -> figures, in order
        try:
            for s in servers:
                git.run("push", "-q", s.url("writer"), "HEAD:refs/heads/main", cwd=src, timeout=1800)
            port, front_port = procs.free_port(), procs.free_port()
            bridge = procs.REGISTRY.start(
                "cgibridge", [str(common.ROOT / common.PYTHON), "-m", "bench.cgibridge",
                              f"--port={port}", f"--root={server.data_dir}"],
                work / "cgibridge.log", cwd=common.ROOT)
            procs.REGISTRY.start(
                "front", [str(common.ROOT / common.PYTHON), "-m", "gitserver.front",
                          f"--listen=127.0.0.1:{front_port}", f"--backend=tcp:127.0.0.1:{port}"],
                work / "front.log", cwd=common.ROOT)
            c_url = f"http://127.0.0.1:{front_port}/cluster.git"
            procs.wait_until(lambda: git.run("ls-remote", c_url, check=False).returncode == 0, 30,
                             "C git behind the front", on_timeout=bridge.tail)
            for _ in range(opts.slow_heads):
                for p in (*(s.port for s in servers), front_port):
                    threading.Thread(target=_trickle, args=(p, stop), daemon=True).start()
            counter = iter(range(10**9))

            def clone(url: str, _n: int) -> float:
                dest = work / f"c-{next(counter)}"
                t0 = time.perf_counter()
                try:
                    git.run("clone", "-q", "--no-checkout", url, str(dest), timeout=300)
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
                return time.perf_counter() - t0

            def push(url: str, n: int) -> float:
                repo = git.init(work / f"p-{next(counter)}")
                git.write(repo, {f"b{n}.yaml": small_files(1)["files/d000/cm-00000.yaml"]})
                git.commit_all(repo, "one file")
                t0 = time.perf_counter()
                git.run("push", "-q", url, f"HEAD:refs/heads/load-{n}", cwd=repo, timeout=300)
                shutil.rmtree(repo, ignore_errors=True)
                return time.perf_counter() - t0

            ops: list[tuple[str, Callable[[int], float]]] = []
            for n, s in zip(counts, servers, strict=True):
                label = f"({n} worker{'s' if n > 1 else ''})"
                ops.append((f"pushgate clone {label}", functools.partial(clone, s.url("reader"))))
                ops.append((f"pushgate push {label}", functools.partial(push, s.url("writer"))))
            ops.append(("git http-backend clone", functools.partial(clone, c_url)))
            results.update((side, {}) for side, _ in ops)
            for level in levels:
                for side, op in ops:
                    ok: list[float] = []
                    errors = 0
                    with ThreadPoolExecutor(level) as pool:
                        futures = [pool.submit(op, next(counter)) for _ in range(level * opts.repeats)]
                        for f in futures:
                            try:
                                ok.append(f.result())
                            except Exception as e:
                                errors += 1
                                if errors <= 3:
                                    print(f"  error ({side}): {str(e)[-300:]}", flush=True)
                    results[side][level] = {"ops": len(futures), "errors": errors,
                                            "p50": common.median(ok) if ok else float("nan"),
                                            "p99": common.percentile(ok, 99) if ok else float("nan")}
                    r = results[side][level]
                    print(f"  level {level:>3} {side:<24} {r['ops']} ops, {errors} errors, "
                          f"p50 {r['p50']:.3f} s, p99 {r['p99']:.3f} s", flush=True)
        finally:
            stop.set()
            for s in servers:
                s.stop()
            procs.REGISTRY.stop_all()

    def holds(side: str) -> int:
        good = [lv for lv, r in results[side].items() if r["errors"] == 0 and r["p99"] < 10.0]
        return max(good, default=0)

    rows = [[side, lv, r["ops"], r["errors"], r["p50"], r["p99"]]
            for side in results for lv, r in sorted(results[side].items())]
    text = "\n".join([
        f"{opts.size}-file repository; at each level that many clients at once, {opts.repeats} "
        f"operations each; {opts.slow_heads} connections trickling request heads kept open against "
        f"each side the whole time. Pushes are one-file commits to branches of their own, through "
        f"the gate (pushgate only: C git has no gate).",
        "",
        common.table(["side", "clients", "ops", "errors", "p50 s", "p99 s"], rows),
        "",
        "**holds** (no error, p99 < 10 s): " + ", ".join(f"{side} {holds(side)} clients"
                                                          for side in results)
        + f" (levels tried: {', '.join(map(str, levels))}).",
    ])
    print()
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, "concurrent clones and pushes, pushgate vs git http-backend behind the same front",
        command, text, started_load))
    return {"results": results}


if __name__ == "__main__":
    main()
