"""Bad input through the real git CLI: every push below is refused with a clear `remote:` report
naming the file (and line), and nothing is stored: refs and object files stay as they were, no
quarantine is left behind, and the repository stays fsck-clean.

Each test first pushes a valid base commit so `main` exists, snapshots the server, then pushes
the bad commit on top of it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bed import samples
from tests.bed.gitcli import Git
from tests.bed.server import Server

SUMMARY = re.compile(r"^pushgate: (\d+) errors?, (\d+) warnings?(?:, \d+ exceptions?)?; "
                     r"checked \d+ files?, \d+ objects?$")


# -- helpers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    refs: dict[str, str]
    objects: set[str]


def _seed(git: Git, server: Server, tmp_path: Path) -> Path:
    """A work tree whose `main` (valid manifests) is pushed and accepted."""
    work = git.init(tmp_path / "work")
    git.write(work, {"apps/ns.yaml": samples.namespace(), "apps/web.yaml": samples.deployment(),
                     "apps/svc.yaml": samples.service()})
    git.commit_all(work, "valid base")
    git.run("push", "-q", server.url(), "main", cwd=work)
    return work


def _snapshot(server: Server) -> Snapshot:
    return Snapshot(server.refs(), server.object_files())


def _assert_nothing_stored(server: Server, before: Snapshot) -> None:
    assert server.refs() == before.refs
    assert server.object_files() == before.objects, "a refused push left objects behind"
    assert server.quarantines() == []
    fsck = server.fsck()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def _push(git: Git, server: Server, work: Path, *refspecs: str, user: str = "admin",
          flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return git.run("push", *flags, server.url(user), *(refspecs or ("main",)), cwd=work, check=False)


def _assert_rejected(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode != 0, res.stderr
    assert "[remote rejected]" in res.stderr, res.stderr
    assert "(pushgate:" in res.stderr, res.stderr


def _remote_lines(stderr: str) -> list[str]:
    return [line[len("remote: "):].rstrip() for line in stderr.splitlines()
            if line.startswith("remote: ")]


def _problems(stderr: str) -> list[str]:
    """The report's problem lines (not pushgate's own progress and summary lines)."""
    return [line for line in _remote_lines(stderr) if not line.startswith("pushgate: ")]


def _error_count(stderr: str) -> int:
    found = [m for line in _remote_lines(stderr) if (m := SUMMARY.match(line))]
    assert len(found) == 1, stderr
    return int(found[0].group(1))


def _refused_push(git: Git, server: Server, work: Path, change: Callable[[Git, Path], None],
                  message: str = "bad change") -> subprocess.CompletedProcess[str]:
    """Commit `change` on top of the base, push it, and check that it was refused and that the
    server kept nothing of it."""
    before = _snapshot(server)
    change(git, work)
    git.commit_all(work, message)
    res = _push(git, server, work)
    _assert_rejected(res)
    _assert_nothing_stored(server, before)
    return res


def _files(files: dict[str, str | bytes]) -> Callable[[Git, Path], None]:
    return lambda git, work: git.write(work, files)


# -- bad manifests, one problem each ------------------------------------------------------------
BAD_INDENT = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
 namespace: shop
data: {}
"""

DUPLICATE_KEY = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  mode: fast
  other: "1"
  mode: slow
"""

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))

WIDGET = """apiVersion: example.com/v1
kind: Widget
metadata:
  name: gizmo
  namespace: shop
spec:
  size: 3
"""


def _big_manifest(git: Git, work: Path) -> None:
    # Incompressible values, so the pack really carries ~20 MB (a chunked request body).
    size, chunk = 20 * 1024 * 1024, 76 * 1024
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: big", "  namespace: shop",
             "data:"]
    for i in range(size // chunk + 1):
        lines.append(f"  k{i}: {base64.b64encode(os.urandom(chunk * 3 // 4)).decode()}")
    git.write(work, {"apps/big.yaml": "\n".join(lines) + "\n"})


def _symlink_outside(git: Git, work: Path) -> None:
    os.symlink("/etc/passwd", work / "x.yaml")


def _submodule(git: Git, work: Path) -> None:
    other = git.init(work.parent / "other")
    git.write(other, {"README": "another repository\n"})
    git.commit_all(other, "other")
    git.run("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(other), "sub", cwd=work)


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param(_files({"apps/cm.yaml": BAD_INDENT}),
                 r"apps/cm\.yaml:5 \[yaml\] line 5, column 2: did not find expected key",
                 id="malformed-yaml"),
    pytest.param(_big_manifest,
                 r"apps/big\.yaml \[yaml\.limits\] file is \d{8} bytes, over the limit of 4194304",
                 id="20mb-manifest"),
    pytest.param(_files({"apps/dup.yaml": DUPLICATE_KEY}),
                 r'apps/dup\.yaml:9 \[yaml\.duplicate-key\] duplicate key "mode" \(first at line 7\)',
                 id="duplicate-key"),
    pytest.param(_files({"apps/bin.yaml": b"apiVersion: v1\nkind: \xff\xfeConfigMap\n"}),
                 r"apps/bin\.yaml:2 \[encoding\] not valid UTF-8 at byte 21 \(line 2\)",
                 id="not-utf8"),
    pytest.param(_symlink_outside, r"x\.yaml \[tree\.symlink\] symlinks are not allowed",
                 id="symlink-outside"),
    pytest.param(_submodule, r"sub \[tree\.submodule\] submodules are not allowed", id="submodule"),
    pytest.param(_files({"apps/widget.yaml": WIDGET}),
                 r"apps/widget\.yaml:1 Widget/shop/gizmo \[schema\] no schema for example\.com/v1 "
                 r"Widget .*no CRD in this push", id="kind-without-schema"),
])
def test_bad_file_is_refused_with_its_location(git: Git, server: Server, tmp_path: Path,
                                               change: Callable[[Git, Path], None],
                                               expected: str) -> None:
    work = _seed(git, server, tmp_path)
    res = _refused_push(git, server, work, change)
    problems = _problems(res.stderr)
    assert len(problems) == 1, res.stderr
    assert re.match(expected, problems[0]), problems[0]
    assert _error_count(res.stderr) == 1
    assert "(pushgate: 1 problem found, see above)" in res.stderr


def test_billion_laughs_is_refused_fast(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    start = time.monotonic()
    res = _refused_push(git, server, work, _files({"apps/lol.yaml": BILLION_LAUGHS}))
    assert time.monotonic() - start < 10
    [problem] = _problems(res.stderr)
    assert re.match(r"apps/lol\.yaml:\d+ \[yaml\.limits\] aliases expand to more than 1000 nodes",
                    problem), problem


def test_schema_error_and_policy_violation_are_both_reported(git: Git, server: Server,
                                                             tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    bad = samples.deployment(image="nginx:latest").replace("replicas: 2", "replicas: two")
    res = _refused_push(git, server, work, _files({"apps/web.yaml": bad}))
    problems = _problems(res.stderr)
    assert len(problems) == 2, res.stderr
    assert any(p.startswith("apps/web.yaml:9 Deployment/shop/web [schema:spec.replicas]")
               for p in problems), problems
    assert any(p.startswith("apps/web.yaml:20 Deployment/shop/web [pushgate.k8s.images/deny]")
               and '"nginx:latest"' in p for p in problems), problems
    assert _error_count(res.stderr) == 2
    assert "(pushgate: 2 problems found, see above)" in res.stderr


def test_one_bad_file_among_500_is_the_only_one_reported(git: Git, server: Server,
                                                          tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    files: dict[str, str | bytes] = {f"many/cm{i:03}.yaml": samples.configmap(name=f"cm{i:03}")
                                     for i in range(500)}
    files["many/cm250.yaml"] = samples.configmap(name="cm250").replace("data:", "data: [")
    res = _refused_push(git, server, work, _files(files))
    problems = _problems(res.stderr)
    assert len(problems) == 1, res.stderr
    assert problems[0].startswith("many/cm250.yaml:"), problems[0]
    assert _error_count(res.stderr) == 1


# -- ref rules and access ------------------------------------------------------------------------
def test_force_push_of_main_is_refused(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    before = _snapshot(server)
    git.write(work, {"apps/cm.yaml": samples.configmap()})
    git.run("add", "-A", cwd=work)
    git.run("commit", "-q", "--amend", "-m", "rewritten history", cwd=work)
    res = _push(git, server, work, flags=("--force",))
    _assert_rejected(res)
    assert "non-fast-forward update of protected branch main is not allowed" in res.stderr
    _assert_nothing_stored(server, before)


def test_deleting_main_is_refused(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    before = _snapshot(server)
    res = _push(git, server, work, ":main")
    _assert_rejected(res)
    assert "deleting protected branch main is not allowed" in res.stderr
    _assert_nothing_stored(server, before)


@pytest.mark.parametrize("ref", ["refs/deployed/main", "refs/notes/pushgate"])
def test_pushgate_own_refs_cannot_be_pushed(git: Git, server: Server, tmp_path: Path,
                                            ref: str) -> None:
    work = _seed(git, server, tmp_path)
    before = _snapshot(server)
    git.write(work, {"apps/cm.yaml": samples.configmap()})
    git.commit_all(work, "valid, but for pushgate's own ref")
    res = _push(git, server, work, f"HEAD:{ref}")
    _assert_rejected(res)
    assert "are written by pushgate only" in res.stderr
    _assert_nothing_stored(server, before)


def test_reader_cannot_push(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    before = _snapshot(server)
    git.write(work, {"apps/cm.yaml": samples.configmap()})
    git.commit_all(work, "valid change by a reader")
    res = _push(git, server, work, user="reader")
    assert res.returncode != 0
    assert "403" in res.stderr, res.stderr
    assert "user reader has role read; this needs role write" in res.stderr
    _assert_nothing_stored(server, before)


def test_wrong_token_is_refused(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    before = _snapshot(server)
    git.write(work, {"apps/cm.yaml": samples.configmap()})
    git.commit_all(work, "valid change, wrong token")
    url = server.url("admin").replace(server.tokens["admin"], "not-the-token")
    res = git.run("push", url, "main", cwd=work, check=False)
    assert res.returncode != 0
    assert "Authentication failed" in res.stderr, res.stderr
    _assert_nothing_stored(server, before)


def test_atomic_push_with_one_bad_ref_stores_nothing(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    before = _snapshot(server)
    git.run("checkout", "-q", "-b", "feature", cwd=work)
    git.write(work, {"apps/cm.yaml": samples.configmap()})
    git.commit_all(work, "a fine feature")
    git.run("checkout", "-q", "main", cwd=work)
    git.write(work, {"apps/bad.yaml": BAD_INDENT})
    git.commit_all(work, "bad main")
    res = _push(git, server, work, "main", "feature", flags=("--atomic",))
    _assert_rejected(res)
    assert re.search(r"\[remote rejected\] main -> main \(pushgate:", res.stderr), res.stderr
    assert re.search(r"\[remote rejected\] feature -> feature \(pushgate:", res.stderr), res.stderr
    assert "refs/heads/feature" not in server.refs()
    _assert_nothing_stored(server, before)


# -- what the report may print -------------------------------------------------------------------
def test_report_never_contains_secret_data(git: Git, server: Server, tmp_path: Path) -> None:
    secret = """apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
data:
  password: c3VwZXJzZWNyZXQ=
  port: 5432
stringData:
  user: supersecret
"""
    work = _seed(git, server, tmp_path)
    res = _refused_push(git, server, work, _files({
        "apps/secret.yaml": secret, "apps/web.yaml": samples.deployment(image="nginx:latest")}))
    problems = _problems(res.stderr)
    # The Secret itself is reported (plain-text data, a non-string value), as is the Deployment.
    assert any(p.startswith("apps/secret.yaml:6 Secret/shop/db [pushgate.k8s.secrets/deny]")
               for p in problems), problems
    assert any(p.startswith("apps/secret.yaml:8 Secret/shop/db [schema:data.port]") for p in problems)
    assert any(p.startswith("apps/web.yaml:20 Deployment/shop/web") for p in problems), problems
    for leak in ("c3VwZXJzZWNyZXQ=", "supersecret"):
        assert leak not in res.stderr
        assert leak not in (server.data_dir / "pushes.jsonl").read_text()


def test_report_has_no_terminal_escapes(git: Git, server: Server, tmp_path: Path) -> None:
    esc = "\x1b[31m"
    # A container name quoted into a policy message (YAML "\e" is ESC) ...
    web = (samples.deployment(image="nginx:latest")
           .replace("        - name: web", '        - name: "web\\e[31m"'))
    # ... an unknown field whose name carries an escape (schema message) ...
    cm = samples.configmap().replace("data:", '"colou\\e[31mr": red\ndata:')
    # ... and an object name with an escape, in JSON.
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"x{esc}", "namespace": "shop"},
           "data": {"value": esc}, f"bogus{esc}": 1}
    work = _seed(git, server, tmp_path)
    res = _refused_push(git, server, work, _files({
        "apps/web.yaml": web, "apps/cm.yaml": cm, "apps/cm.json": json.dumps(obj)}))
    problems = _problems(res.stderr)
    # (the embedded engine declines to judge a string with a control character: that object is
    # refused as a problem of its own, its escape stripped like every other)
    assert {p.split(" ", 1)[0].split(":")[0] for p in problems} == {
        "apps/web.yaml", "apps/cm.yaml", "apps/cm.json"}, res.stderr
    assert "\x1b" not in res.stderr
    log = [json.loads(line) for line in (server.data_dir / "pushes.jsonl").read_text().splitlines()]
    assert log[-1]["accepted"] is False
    assert not any("\x1b" in p for p in log[-1]["problems"])


# -- and the server is still fine ----------------------------------------------------------------
def test_good_push_after_a_refused_one_is_accepted(git: Git, server: Server, tmp_path: Path) -> None:
    work = _seed(git, server, tmp_path)
    base = git.rev_parse(work, "HEAD")
    _refused_push(git, server, work, _files({"apps/cm.yaml": BAD_INDENT}))

    git.run("reset", "-q", "--hard", base, cwd=work)
    git.write(work, {"apps/cm.yaml": samples.configmap()})
    good = git.commit_all(work, "fixed")
    res = _push(git, server, work)
    assert res.returncode == 0, res.stderr
    assert "pushgate: 0 errors, 0 warnings" in res.stderr
    assert server.refs()["refs/heads/main"] == good
    assert server.quarantines() == []
    fsck = server.fsck()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_large_valid_push_is_accepted(git: Git, server: Server, tmp_path: Path) -> None:
    """A pack over git's http.postBuffer (1 MiB) is sent chunked: the refusals above for big
    input must come from the gate, not from the transport."""
    work = _seed(git, server, tmp_path)
    blob = base64.b64encode(os.urandom(96 * 1024)).decode()
    git.write(work, {f"config/cm{i:02}.yaml": samples.configmap(name=f"cm{i:02}", value=blob)
                     for i in range(40)})
    good = git.commit_all(work, "about 5 MB of valid ConfigMaps")
    res = _push(git, server, work)
    assert res.returncode == 0, res.stderr
    assert "pushgate: 0 errors, 0 warnings" in res.stderr
    assert server.refs()["refs/heads/main"] == good
    assert server.fsck().returncode == 0
