"""Clone of an N-file repository: pushgate vs C git's `git http-backend`, both over smart HTTP.

The repository (N small YAML files, valid ConfigMaps, 100 per directory, one commit) is pushed
through pushgate; then the *same* bare repository on disk is served by `pushgate serve` (dulwich
under gunicorn) and by `git http-backend` behind bench.cgibridge (a small Python HTTP -> CGI
bridge, one backend process per request; its overhead counts against C git and is measured with
`git ls-remote`). Each repeat runs `git clone --no-checkout` against both, alternating order.
The stock git client speaks protocol v2 to http-backend (default) and falls back to v0 with
pushgate (dulwich has no v2 server); a v0 row for C git is shown too. Targets (issue 13): a
clone within 1.3x C git's median, an incremental fetch of 10 changed files within 1.5x (after
the clones, 10 files change in one push and each side fetches them into a copy of a clone made
before it).

`--profile` adds where pushgate's server time goes: the WSGI app called in-process (no HTTP,
no gunicorn) with the upload-pack request of a fresh clone, once timed, once under cProfile.
"""

from __future__ import annotations

import base64
import cProfile
import gc
import io
import pstats
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import common

NAME = "clone"
TARGET_RATIO = 1.3  # issue 13: a clone within 1.3x C git's http-backend
FETCH_TARGET = 1.5  # an incremental fetch of 10 changed files within 1.5x
FETCH_FILES = 10
PER_DIR = 100


def small_files(n: int) -> dict[str, str]:
    out = {}
    for i in range(n):
        out[f"files/d{i // PER_DIR:03d}/cm-{i:05d}.yaml"] = (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05d}\n  namespace: bench\n"
            f"data:\n  index: \"{i}\"\n  value: v-{i * 7919 % 100003}\n")
    return out


def upload_pack_request(want: str) -> bytes:
    """What a v0 `git clone` POSTs: one want with capabilities, flush, done."""
    def pkt(s: str) -> bytes:
        return b"%04x" % (len(s) + 4) + s.encode()

    caps = "multi_ack_detailed no-done side-band-64k thin-pack ofs-delta agent=git/2.39.5"
    return pkt(f"want {want} {caps}\n") + b"0000" + pkt("done\n")


def serve_in_process(data_dir: str, users_file: str, user: str, token: str, want: str,
                     profile: bool) -> tuple[float, int, str]:
    """Seconds for pushgate's WSGI app to produce a full clone's pack, its size, and a profile.
    Run through common.in_child: creating the app changes process-wide state."""
    from gitserver import app as appmod
    from gitserver.settings import Settings, default_policies_dir

    pg = appmod.create_app(Settings(data_dir=data_dir, users_file=users_file,
                                    policies_dir=default_policies_dir()))
    body = upload_pack_request(want)
    auth = base64.b64encode(f"{user}:{token}".encode()).decode()

    def call() -> int:
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/cluster.git/git-upload-pack", "QUERY_STRING": "",
            "CONTENT_TYPE": "application/x-git-upload-pack-request", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Basic {auth}", "REMOTE_ADDR": "127.0.0.1",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
        }
        status: list[str] = []
        written: list[bytes] = []

        def start_response(s: str, _headers: Any, _exc: Any = None) -> Any:
            status.append(s)
            return written.append  # the WSGI write() callable, which dulwich uses

        size = sum(len(chunk) for chunk in pg(environ, start_response))
        size += sum(len(chunk) for chunk in written)
        if not status or not status[0].startswith("200") or size < 1000:
            raise RuntimeError(f"in-process upload-pack failed: {status} {size} bytes")
        return size

    # dulwich.web opens a Repo per request and never closes it (closed by the garbage collector,
    # with a ResourceWarning): collect them here, quietly, before the caller's warning filters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _timed_calls(call, profile)
        finally:
            pg.close()
            gc.collect()


def _timed_calls(call: Any, profile: bool) -> tuple[float, int, str]:
    call()  # warm: repository opened, pack index read
    t0 = time.perf_counter()
    size = call()
    seconds = time.perf_counter() - t0
    text = ""
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        call()
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(20)
        text = common.profile_lines(out.getvalue())
    return seconds, size, text


def alternating(sides: dict[str, tuple[list[str], str]], repeats: int, what: str,
                run: Callable[[str, list[str], str], float]) -> dict[str, list[float]]:
    """`run` on every side, 1 warm-up + `repeats` rounds, the order reversed every other round;
    the timed seconds per side (warm-up left out)."""
    out: dict[str, list[float]] = {s: [] for s in sides}
    for i in range(1 + repeats):
        for side in (list(sides) if i % 2 == 0 else list(reversed(sides))):
            pre, url = sides[side]
            seconds = run(side, pre, url)
            print(f"  run {i}{' (warm-up)' if i == 0 else ''} {side:<32} {what} {seconds:7.3f} s", flush=True)
            if i > 0:
                out[side].append(seconds)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = common.parser(NAME, __doc__, 10000, 7)
    args.add_argument("--profile", action="store_true", help="also profile pushgate's server side")
    opts = args.parse_args(argv)
    command = common.command_line(NAME, argv)
    started_load = common.load_average()
    from tests.bed import procs
    from tests.bed.gitcli import Git
    from tests.bed.server import make_server

    with tempfile.TemporaryDirectory(prefix="bench-clone-") as tmp:
        work = Path(opts.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        git = Git(work / "git-home")
        src = git.init(work / "src")
        git.write(src, dict(small_files(opts.size)))
        head = git.commit_all(src, "10k files")
        server = make_server(work / "server", "--gate-timeout=600")
        try:
            pg_url = server.url("reader")
            t0 = time.perf_counter()
            git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=src, timeout=1800)
            push_s = time.perf_counter() - t0
            print(f"  pushed {opts.size} files through pushgate in {push_s:.2f} s", flush=True)
            port = procs.free_port()
            bridge = procs.REGISTRY.start(
                "cgibridge", [str(common.ROOT / common.PYTHON), "-m", "bench.cgibridge",
                              f"--port={port}", f"--root={server.data_dir}"],
                work / "cgibridge.log", cwd=common.ROOT)
            c_url = f"http://127.0.0.1:{port}/cluster.git"
            procs.wait_until(lambda: git.run("ls-remote", c_url, check=False).returncode == 0, 30,
                             "cgibridge", on_timeout=bridge.tail)
            sides = {
                "pushgate (dulwich, protocol v0)": ([], pg_url),
                "git http-backend (protocol v2)": ([], c_url),
                "git http-backend (protocol v0)": (["-c", "protocol.version=0"], c_url),
            }
            main_side, c_side = "pushgate (dulwich, protocol v0)", "git http-backend (protocol v2)"
            lsr: dict[str, list[float]] = {s: [] for s in sides}

            def clone_once(side: str, pre: list[str], url: str) -> float:
                dest = work / "clone"
                shutil.rmtree(dest, ignore_errors=True)
                t0 = time.perf_counter()
                git.run(*pre, "clone", "-q", "--no-checkout", url, str(dest), timeout=1800)
                seconds = time.perf_counter() - t0
                got = git.rev_parse(dest, "HEAD")
                if got != head:
                    raise RuntimeError(f"{side}: cloned {got}, expected {head}")
                t0 = time.perf_counter()
                git.run(*pre, "ls-remote", url)
                lsr[side].append(time.perf_counter() - t0)
                return seconds

            times = alternating(sides, opts.repeats, "clone", clone_once)
            lsr = {s: v[1:] for s, v in lsr.items()}  # the warm-up's out
            # Incremental fetch: a clone of the current head, then 10 files change in one push.
            base = work / "fetch-base"
            shutil.rmtree(base, ignore_errors=True)
            git.run("clone", "-q", "--no-checkout", pg_url, str(base), timeout=1800)
            changed = {path: text.replace("value: v-", "value: changed-")
                       for path, text in list(small_files(opts.size).items())[:FETCH_FILES]}
            git.write(src, changed)
            new_head = git.commit_all(src, f"{FETCH_FILES} files changed")
            git.run("push", "-q", server.url("writer"), "HEAD:refs/heads/main", cwd=src, timeout=600)

            def fetch_once(side: str, pre: list[str], url: str) -> float:
                dest = work / "fetch"
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(base, dest, symlinks=True)
                t0 = time.perf_counter()
                git.run(*pre, "fetch", "-q", url, "main", cwd=dest, timeout=600)
                seconds = time.perf_counter() - t0
                if git.rev_parse(dest, "FETCH_HEAD") != new_head:
                    raise RuntimeError(f"{side}: fetched the wrong head")
                return seconds

            fetches = alternating(sides, opts.repeats, "fetch", fetch_once)
            pack = sum(p.stat().st_size for p in (server.repo / "objects" / "pack").glob("*.pack"))
            in_proc = common.in_child(serve_in_process, str(server.data_dir), str(server.dir / "users.json"),
                                      "reader", server.tokens["reader"], new_head, opts.profile)
        finally:
            server.stop()
            procs.REGISTRY.stop_all()

    med = {s: common.median(t) for s, t in times.items()}
    ratio = med[main_side] / med[c_side]
    fmed = {s: common.median(t) for s, t in fetches.items()}
    fetch_ratio = fmed[main_side] / fmed[c_side]
    rows = [[s, len(times[s]), med[s], min(times[s]), max(times[s]), med[s] / med[c_side],
             common.median(lsr[s])] for s in sides]
    body = [
        f"{opts.size} small YAML files ({opts.size // PER_DIR + (opts.size % PER_DIR > 0)} directories), "
        f"one commit; repository pack {pack / 1e6:.2f} MB. `git clone --no-checkout`, whole client "
        f"process, {opts.repeats} timed repeats after 1 warm-up, sides alternating. The push that "
        f"created the repository took {push_s:.2f} s (client wall, through the gate).",
        "",
        common.table(["server", "runs", "median s", "min s", "max s", "x C git v2", "ls-remote median s"],
                     rows),
        "",
        f"**clone: ratio pushgate / git http-backend = {ratio:.2f}** (target <= {TARGET_RATIO}: "
        f"{common.verdict(ratio, TARGET_RATIO)})",
        "",
        f"Incremental fetch of {FETCH_FILES} changed files (one push) into a copy of a clone made "
        f"before it, same repeats:",
        "",
        common.table(["server", "runs", "median s", "min s", "max s", "x C git v2"],
                     [[s, len(fetches[s]), fmed[s], min(fetches[s]), max(fetches[s]),
                       fmed[s] / fmed[c_side]] for s in sides]),
        "",
        f"**fetch: ratio pushgate / git http-backend = {fetch_ratio:.2f}** (target <= {FETCH_TARGET}: "
        f"{common.verdict(fetch_ratio, FETCH_TARGET)})",
        "",
        f"The bridge's own overhead is bounded by C git's `git ls-remote` time (one or two requests, "
        f"each a Python thread + a fork/exec of http-backend): {common.median(lsr[c_side]):.3f} s.",
        f"pushgate's WSGI app in-process (no HTTP, no gunicorn), producing the {in_proc[1] / 1e6:.2f} MB "
        f"response of a fresh clone: {in_proc[0]:.3f} s.",
    ]
    if in_proc[2]:
        body += ["", "<details><summary>cProfile of that in-process call</summary>", "", "```",
                 in_proc[2], "```", "", "</details>"]
    text = "\n".join(body)
    print()
    print(text)
    common.write_section(opts.results, NAME, common.section(
        NAME, "git clone --no-checkout, pushgate vs git http-backend", command, text, started_load))
    return {"size": opts.size, "median": med, "ratio": ratio, "fetch_ratio": fetch_ratio,
            "server_in_process_seconds": in_proc[0],
            "ls_remote": {s: common.median(v) for s, v in lsr.items()}}


if __name__ == "__main__":
    main()
