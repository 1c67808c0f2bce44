"""Hostile clients: paths that try to leave the data dir, ref names git refuses sent by hand, a
pack over the size limit, a slow-loris upload, password guessing, and a hunt for leaked secrets.

The server answers each with a refusal (never a 500 or a traceback in its log), keeps serving
everyone else, stores nothing, and never writes a token or a Secret's value anywhere.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.rawgit import (
    RECEIVE_REQUEST,
    ZERO,
    auth,
    empty_pack,
    pkt,
    pkt_lines,
    report_status,
    request,
)
from tests.bed.server import Server
from tests.faults.figures import Figures


def assert_log_clean(server: Server) -> None:
    log = server.log()
    for needle in ("Traceback", "Error handling request", "Exception in", "Internal Server Error"):
        assert needle not in log, f"{needle!r} in the server log:\n{log[-3000:]}"


def _seed(git: Git, server: Server, tmp_path: Path) -> tuple[Path, str]:
    work = git.init(tmp_path / "work")
    git.write(work, {"apps/ns.yaml": samples.namespace(), "apps/cm.yaml": samples.configmap()})
    head = git.commit_all(work, "seed")
    git.run("push", "-q", server.url(), "main", cwd=work)
    return work, head


# -- paths ------------------------------------------------------------------------------------------
def test_paths_outside_the_data_dir_are_never_served(git: Git, server: Server, tmp_path: Path,
                                                     figures: Figures) -> None:
    _seed(git, server, tmp_path)
    # A real repository right next to the data dir, and the users file: what an escape would reach.
    outside = server.dir / "outside.git"
    subprocess.run(["git", "init", "-q", "--bare", str(outside)], check=True)
    abs_outside = str(outside).lstrip("/")
    users = (server.dir / "users.json").read_text()
    secrets_on_disk = [json.loads(users)["users"][0]["token_sha256"], "root:x:0:0"]
    service = "info/refs?service=git-upload-pack"
    paths = [
        f"/../outside.git/{service}", f"/%2e%2e/outside.git/{service}", f"/%2E%2E%2Foutside.git/{service}",
        f"/..%2foutside.git/{service}", f"/cluster.git/../outside.git/{service}",
        f"//{abs_outside}/{service}", f"/{urllib.parse.quote('/' + abs_outside, safe='')}/{service}",
        f"/{abs_outside}/{service}", f"/etc/{service}", f"/etc%2fpasswd/{service}",
        "/etc/passwd", "/../../../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2f..%2fetc%2fpasswd", "/cluster.git/../../users.json",
        "/cluster.git/%2e%2e/%2e%2e/users.json", "/cluster.git/objects/../../../users.json",
        "/cluster.git/objects/info/..%2f..%2f..%2f..%2fusers.json", "/cluster.git/HEAD/../../../users.json",
        "/cluster.git%00/info/refs", "/.git/info/refs", "/..git/info/refs",
        f"/outside.git/{service}", "/../users.json", "/%2e%2e/users.json", "/cluster.git/../users.json",
    ]
    statuses: dict[str, int] = {}
    for path in paths:
        status, body, _ = request(server, "GET", path)
        statuses[path] = status
        assert status in (400, 403, 404), f"GET {path} -> {status}: {body[:300]!r}"
        for leak in secrets_on_disk:
            assert leak.encode() not in body, f"GET {path} served {leak!r}"
    for path in ("/../outside.git/git-upload-pack", "/%2e%2e/outside.git/git-receive-pack",
                 f"//{abs_outside}/git-upload-pack"):
        status, body, _ = request(server, "POST", path, body=pkt(b"want " + ZERO.encode() + b"\n"),
                                  headers={"Content-Type": "application/x-git-upload-pack-request"})
        statuses[path] = status
        assert status in (400, 403, 404), f"POST {path} -> {status}: {body[:300]!r}"

    # And through the git client, which normalises some of these itself.
    base = f"http://admin:{server.tokens['admin']}@127.0.0.1:{server.port}"
    clones = [f"{base}/../outside.git", f"{base}/%2e%2e/outside.git", f"{base}/{abs_outside}",
              f"{base}/%2f{urllib.parse.quote(abs_outside, safe='')}", f"{base}/..%2foutside.git"]
    for i, url in enumerate(clones):
        res = git.run("clone", url, str(tmp_path / f"clone-{i}"), check=False)
        assert res.returncode != 0, f"cloned {url}"
        assert re.search(r"not found|404|400|403", res.stderr), res.stderr
    # The sane request next to them still works.
    status, body, _ = request(server, "GET", f"/cluster.git/{service}")
    assert status == 200 and b"refs/heads/main" in body
    assert_log_clean(server)
    figures.record("hostile paths", f"{len(statuses)} raw requests (.., %2e%2e, %2f, absolute, NUL) and "
                   f"{len(clones)} git clones aimed outside the data dir: all refused "
                   f"({sorted(set(statuses.values()))}), nothing outside served, no 500")


# -- ref names git refuses ------------------------------------------------------------------------------
BAD_REFS = [
    b"refs/heads/bad..name", b"refs/heads/ends.lock", b"refs/heads/a.lock/b", b"refs/heads/tilde~1",
    b"refs/heads/caret^2", b"refs/heads/colon:x", b"refs/heads/q?mark", b"refs/heads/star*",
    b"refs/heads/open[", b"refs/heads/trailing/", b"refs/heads/back\\slash", b"refs/heads/at@{1}",
    b"refs/heads/.hidden", b"refs/heads/sub/.dot", b"refs/heads/ctrl\x01char", b"refs/heads/del\x7f",
    b"refs/heads//double", b"refs/heads/x.", b"refs/heads/../../../config", b"HEAD", b"main",
]


def _advertised(server: Server) -> dict[bytes, bytes]:
    status, body, _ = request(server, "GET", "/cluster.git/info/refs?service=git-receive-pack")
    assert status == 200, body
    refs = {}
    for line in pkt_lines(body)[2:]:
        if line:
            sha, _, ref = line.split(b"\0")[0].rstrip(b"\n").partition(b" ")
            refs[ref] = sha
    return refs


def test_ref_names_git_refuses_are_reported_ng(git: Git, server: Server, tmp_path: Path,
                                               figures: Figures) -> None:
    _, head = _seed(git, server, tmp_path)
    assert _advertised(server)[b"refs/heads/main"] == head.encode()
    before = server.refs(), server.object_files()

    commands = [ZERO.encode() + b" " + head.encode() + b" " + ref for ref in BAD_REFS]
    commands[0] += b"\0report-status side-band-64k atomic"
    body = b"".join(pkt(c + b"\n") for c in commands) + b"0000" + empty_pack()
    status, resp, _ = request(server, "POST", "/cluster.git/git-receive-pack", body=body,
                              headers={"Content-Type": RECEIVE_REQUEST})
    assert status == 200, resp
    report = report_status(resp)
    assert report[0] == b"unpack ok", report
    results = {line.split(b" ", 2)[1]: line for line in report[1:]}
    for ref in BAD_REFS:
        assert results.get(ref, b"").startswith(b"ng "), f"{ref!r}: {results.get(ref)!r}"
        assert b"pushgate: invalid ref name" in results[ref], results[ref]
    assert (server.refs(), server.object_files()) == before
    assert server.quarantines() == []

    # A command line that is not `<old> <new> <ref>` is a protocol error, not a server error.
    broken = pkt(ZERO.encode() + b" " + head.encode() + b" refs/heads/with space\0report-status\n")
    status, resp, _ = request(server, "POST", "/cluster.git/git-receive-pack",
                              body=broken + b"0000" + empty_pack(), headers={"Content-Type": RECEIVE_REQUEST})
    assert status < 500, (status, resp)
    assert server.refs() == before[0]
    assert_log_clean(server)
    figures.record("ref names git refuses", f"{len(BAD_REFS)} bad ref names in one hand-built "
                   f"receive-pack request: all reported ng (invalid ref name), nothing stored")


# -- a pack over the limit --------------------------------------------------------------------------------
def _worker_peak_kb(server: Server) -> int:
    assert server.proc is not None
    total = 0
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        total = max(total, int(m.group(1)) if m else 0)
    return total


def test_pack_over_the_limit_is_refused(git: Git, server_factory: Callable[..., Server], tmp_path: Path,
                                        figures: Figures) -> None:
    limit = 1_000_000
    server = server_factory(f"--max-pack-bytes={limit}")
    work, head = _seed(git, server, tmp_path)
    before = server.refs(), server.object_files()
    peak_before = _worker_peak_kb(server)
    blob = base64.b64encode(os.urandom(3_800_000)).decode()  # ~5 MB that no compression shrinks
    git.write(work, {"apps/big.yaml": samples.configmap(name="big", value=blob)})
    git.commit_all(work, "about 5 MB")
    started = time.monotonic()
    res = git.run("push", server.url(), "main", cwd=work, check=False)
    took = time.monotonic() - started
    assert res.returncode != 0, res.stderr
    assert f"pack larger than the limit of {limit} bytes" in res.stderr, res.stderr
    peak_after = _worker_peak_kb(server)
    assert (server.refs(), server.object_files()) == before
    assert server.quarantines() == []

    # Told up front (Content-Length), the server refuses before reading any of the body.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/cluster.git/git-receive-pack")
        for key, value in (("Authorization", auth(server)), ("Content-Type", RECEIVE_REQUEST),
                           ("Content-Length", str(5 * limit))):
            conn.putheader(key, value)
        conn.endheaders()
        resp = conn.getresponse()
        status, text = resp.status, resp.read()
    finally:
        conn.close()
    assert status == 413 and f"the limit of {limit}".encode() in text, (status, text)

    # Still healthy: a small push goes through.
    git.run("reset", "-q", "--hard", head, cwd=work)
    git.write(work, {"apps/small.yaml": samples.configmap(name="small")})
    small = git.commit_all(work, "small")
    ok = git.run("push", server.url(), "main", cwd=work, check=False)
    assert ok.returncode == 0, ok.stderr
    assert server.refs()["refs/heads/main"] == small
    assert server.fsck().returncode == 0
    assert_log_clean(server)
    grew_mb = max(0, peak_after - peak_before) / 1024
    assert grew_mb < 5, f"a worker's peak RSS grew by {grew_mb:.1f} MB for a pack it refused"
    figures.record("pack over --max-pack-bytes",
                   f"~5 MB pack vs a {limit} byte limit: refused in {took:.1f} s with the limit in the "
                   f"message, worker peak RSS +{grew_mb:.1f} MB; a 5 MB Content-Length body: 413 unread; "
                   f"next push accepted")


# -- slow loris -------------------------------------------------------------------------------------------
BODY_TIMEOUT = 3.0
LORISES = 12  # more than the server has request threads (2 workers x 4 threads)


def _loris(server: Server, closed_after: list[float], bound: float) -> None:
    """Headers for a 1 MB body, a pkt-line promising 4 KB, then one byte every half second."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=bound)
    start = time.monotonic()
    try:
        sock.sendall((f"POST /cluster.git/git-receive-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: {auth(server)}\r\nContent-Type: {RECEIVE_REQUEST}\r\n"
                      f"Content-Length: 1048576\r\n\r\n0fff").encode())
        sock.setblocking(False)
        while time.monotonic() - start < bound:
            try:
                if sock.recv(65536) == b"":
                    closed_after.append(time.monotonic() - start)
                    return
            except BlockingIOError:
                pass
            except OSError:
                closed_after.append(time.monotonic() - start)
                return
            try:
                sock.send(b"a")
            except OSError:
                closed_after.append(time.monotonic() - start)
                return
            time.sleep(0.5)
    finally:
        sock.close()


def test_slow_loris_is_cut_off_and_others_are_served(git: Git, server_factory: Callable[..., Server],
                                                     tmp_path: Path, figures: Figures) -> None:
    server = server_factory(env={"PUSHGATE_BODY_TIMEOUT": str(BODY_TIMEOUT)})
    _, head = _seed(git, server, tmp_path)
    bound = BODY_TIMEOUT + 12
    closed_after: list[float] = []
    lorises = [threading.Thread(target=_loris, args=(server, closed_after, bound + 5))
               for _ in range(LORISES)]
    for t in lorises:
        t.start()
    time.sleep(1.0)  # every request thread of the server is now held by a loris
    started = time.monotonic()
    clone = git.run("clone", "-q", server.url("reader"), str(tmp_path / "clone"), check=False, timeout=60)
    clone_seconds = time.monotonic() - started
    for t in lorises:
        t.join()
    assert clone.returncode == 0, clone.stderr
    assert git.rev_parse(tmp_path / "clone", "HEAD") == head
    assert len(closed_after) == LORISES, f"only {len(closed_after)} of {LORISES} slow uploads were cut off"
    assert max(closed_after) < bound, closed_after
    assert clone_seconds < bound, f"the clone waited {clone_seconds:.1f} s behind the slow uploads"
    assert server.quarantines() == []
    assert_log_clean(server)
    figures.record("slow-loris uploads",
                   f"{LORISES} trickling uploads (1 byte / 0.5 s, more than the request threads): cut "
                   f"off after {min(closed_after):.1f}-{max(closed_after):.1f} s "
                   f"(--body-timeout {BODY_TIMEOUT:.0f}); a clone meanwhile took {clone_seconds:.1f} s "
                   f"and succeeded")


# -- password guessing -----------------------------------------------------------------------------
def test_failed_logins_are_rate_limited(server: Server, figures: Figures) -> None:
    codes = [request(server, "GET", "/cluster.git/info/refs?service=git-upload-pack",
                     token=f"guess-{i}")[0] for i in range(20)]
    assert codes[0] == 401 and codes[-1] == 429, codes
    first = codes.index(429)
    assert set(codes[:first]) == {401} and set(codes[first:]) == {429}, codes
    status, body, headers = request(server, "GET", "/cluster.git/info/refs?service=git-upload-pack")
    assert status == 429 and headers.get("retry-after") == "60", (status, body)
    assert request(server, "GET", "/healthz")[0] == 200  # open endpoints stay open
    assert_log_clean(server)
    figures.record("password guessing", f"20 wrong tokens from one address: {first} x 401, then 429 "
                   f"(Retry-After 60), even for the right token; /healthz still 200")


# -- secrets never written anywhere ---------------------------------------------------------------
SECRET_VALUE = "pg-distinctive-s3cr3t-value-7f3a9"


def test_tokens_and_secret_data_never_leak(git: Git, server: Server, tmp_path: Path,
                                           figures: Figures) -> None:
    captured: list[str] = []

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        res = git.run(*args, cwd=cwd, check=False)
        captured.extend([res.stdout, res.stderr])
        return res

    work = git.init(tmp_path / "work")
    git.write(work, {"apps/ns.yaml": samples.namespace(), "apps/cm.yaml": samples.configmap()})
    git.commit_all(work, "good")
    assert run("push", server.url(), "main", cwd=work).returncode == 0
    secret = f"""apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
type: Opaque
data:
  password: {base64.b64encode(SECRET_VALUE.encode()).decode()}
stringData:
  token: {SECRET_VALUE}
"""
    git.write(work, {"apps/secret.yaml": secret, "apps/web.yaml": samples.deployment(image="nginx:latest")})
    git.commit_all(work, "bad: a Secret in plain text and a latest tag")
    assert run("push", server.url("writer"), "main", cwd=work).returncode != 0
    assert run("push", "-o", "dry-run", server.url(), "main", cwd=work).returncode != 0
    assert run("push", server.url("reader"), "main", cwd=work).returncode != 0
    wrong = server.url("writer").replace(server.tokens["writer"], server.tokens["reader"])
    assert run("push", wrong, "main", cwd=work).returncode != 0
    assert run("push", server.url(), "HEAD:refs/heads/side", cwd=work).returncode == 0  # ungated
    assert run("clone", "-q", server.url("reader"), str(tmp_path / "clone")).returncode == 0
    for path in ("/", "/api/v1/status", "/api/v1/pushes", "/metrics", "/readyz"):
        status, body, _ = request(server, "GET", path, user="reader")
        assert status in (200, 503), (path, status)
        captured.append(body.decode(errors="replace"))

    needles = {f"{user} token": token for user, token in server.tokens.items()}
    needles.update({"Secret value": SECRET_VALUE,
                    "Secret value (base64)": base64.b64encode(SECRET_VALUE.encode()).decode()})
    sources = {"server.log": server.log(), "git output and HTTP bodies": "\n".join(captured)}
    files = 0
    for p in sorted(server.data_dir.rglob("*")):
        if p.is_file():
            files += 1
            sources[str(p.relative_to(server.dir))] = p.read_bytes().decode("latin-1")
    leaks = [f"{what} in {where}" for where, text in sources.items() for what, needle in needles.items()
             if needle in text]
    assert leaks == [], leaks
    assert "pushgate.k8s.secrets" in "\n".join(captured), "the Secret was not even reported"
    figures.record("secrets in output", f"{len(needles)} needles (3 tokens, a Secret value plain and base64) "
                   f"searched in server.log, {files} data-dir files, git output and 5 status/API pages "
                   f"after 7 pushes and a clone: 0 found")
