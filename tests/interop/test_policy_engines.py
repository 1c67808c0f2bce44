"""The policy engines behind the real git CLI: the OPA engine reports what the embedded one does,
every way the engine can fail refuses the push (fail closed) and stores nothing while the
server stays up, and policies see who pushes what.

Failure modes covered: OPA unreachable; the embedded worker crashing (a policy that segfaults
regopy 1.5.2 for one object only); a policy slower than `--gate-timeout`; a policy that would
crash regopy at compile time (`with input as`), refused when the server starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bed import procs, samples
from tests.bed.gitcli import Git
from tests.bed.opa import OpaServer
from tests.bed.server import PUSHGATE, Server

ROOT = Path(__file__).resolve().parents[2]
ServerFactory = Callable[..., Server]

# A commit that breaks a rule of every policy package (and one clean object).
BAD_FILES: dict[str, str | bytes] = {
    "apps/ns.yaml": samples.namespace(),
    "apps/web.yaml": samples.deployment(image="nginx:latest"),
    "apps/db.yaml": """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: shop
spec:
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      hostNetwork: true
      containers:
        - name: postgres
          image: postgres
          securityContext: {privileged: true}
          volumeMounts: [{name: data, mountPath: /var/lib/postgresql}]
      volumes:
        - name: data
          hostPath: {path: /srv/db}
""",
    "apps/secret.yaml": """\
apiVersion: v1
kind: Secret
metadata:
  name: db-password
  namespace: shop
data:
  password: aHVudGVyMg==
""",
    "apps/settings.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  level: debug
""",
}
# The same files, fixed (the Secret became a ConfigMap of non-secret settings).
GOOD_FILES: dict[str, str | bytes] = {
    "apps/ns.yaml": samples.namespace(),
    "apps/web.yaml": samples.deployment(),
    "apps/db.yaml": samples.deployment(name="db", image="postgres:17.2"),
    "apps/secret.yaml": samples.configmap(name="db-settings"),
    "apps/settings.yaml": samples.configmap(),
}


def labelled_configmap(name: str, label: str) -> str:
    """A clean ConfigMap carrying `<label>: "yes"`: the trigger of the test policies below."""
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: shop
  labels:
    {label}: "yes"
data:
  value: "1"
"""


# -- helpers ------------------------------------------------------------------------------------
def remote_lines(res: subprocess.CompletedProcess[str]) -> list[str]:
    return [line[len("remote: "):].rstrip() for line in res.stderr.splitlines()
            if line.startswith("remote: ")]


def push(git: Git, server: Server, work: Path, user: str = "admin",
         ref: str = "main") -> subprocess.CompletedProcess[str]:
    return git.run("push", server.url(user), f"HEAD:refs/heads/{ref}", cwd=work, check=False)


def assert_refused(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode != 0, res.stderr
    assert "[remote rejected]" in res.stderr, res.stderr


def assert_accepted(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode == 0, res.stderr
    assert "pushgate: 0 errors" in res.stderr, res.stderr


def assert_nothing_stored(server: Server, refs: dict[str, str], objects: set[str]) -> None:
    assert server.refs() == refs
    assert server.object_files() == objects, "a refused push left objects behind"
    assert server.quarantines() == []


def assert_server_serves(git: Git, server: Server, tmp_path: Path, branch: str, head: str) -> None:
    """The server is alive and healthy, and a fresh clone sees exactly `head` on `branch`."""
    assert server.proc is not None and server.proc.alive()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
        assert r.status == 200
    clone = tmp_path / f"clone-{time.monotonic_ns()}"
    git.run("clone", "-q", "--no-checkout", server.url("reader"), str(clone))
    assert git.rev_parse(clone, f"origin/{branch}") == head


def policies_plus(tmp_path: Path, name: str, module: str) -> Path:
    """A copy of pushgate's policies/ with one more module."""
    d = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", d)
    (d / name).write_text(module)
    return d


# -- a. the OPA engine reports exactly what the embedded engine reports -------------------------
@pytest.mark.opa
def test_opa_engine_reports_like_the_embedded_engine(git: Git, server_factory: ServerFactory,
                                                     opa_server: OpaServer, tmp_path: Path) -> None:
    embedded = server_factory()
    opa = server_factory(f"--opa-url={opa_server.url}")
    work = git.init(tmp_path / "work")
    git.write(work, BAD_FILES)
    git.commit_all(work, "breaks every policy")

    refused = {}
    for server in (embedded, opa):
        before = server.refs(), server.object_files()
        res = push(git, server, work)
        assert_refused(res)
        assert_nothing_stored(server, *before)
        refused[server.port] = remote_lines(res)
    lines = refused[embedded.port]
    assert refused[opa.port] == lines
    for rule, needle in [("images", 'apps/web.yaml:20 Deployment/shop/web [pushgate.k8s.images/deny] '
                                    'container "web" uses image "nginx:latest"'),
                         ("images", 'container "postgres" uses untagged image "postgres"'),
                         ("resources", 'container "postgres" does not set resources.requests.cpu'),
                         ("security", 'container "postgres" is privileged'),
                         ("security", 'volume "data" mounts a hostPath'),
                         ("security", "pod spec sets hostNetwork: true"),
                         ("secrets", 'Secret "db-password" holds plain-text values in data'),
                         ("labels", 'StatefulSet "db" has no app.kubernetes.io/name label')]:
        assert any(f"[pushgate.k8s.{rule}/deny]" in line and needle in line for line in lines), \
            (needle, lines)
    # (the ConfigMap without a namespace is built into the default namespace, so the namespaces
    # policy has nothing to deny)
    assert any(line.startswith("pushgate: 8 errors, 0 warnings; checked ") for line in lines), lines
    assert "aHVudGVyMg==" not in "\n".join(lines)

    git.write(work, GOOD_FILES)
    head = git.commit_all(work, "fixed")
    accepted = {}
    for server in (embedded, opa):
        res = push(git, server, work)
        assert_accepted(res)
        assert server.refs()["refs/heads/main"] == head
        accepted[server.port] = remote_lines(res)
    assert accepted[opa.port] == accepted[embedded.port]


# -- b. OPA unreachable: fail closed ------------------------------------------------------------
def test_unreachable_opa_refuses_and_the_server_stays_up(git: Git, server_factory: ServerFactory,
                                                         tmp_path: Path) -> None:
    closed = procs.free_port()  # nothing listens there
    server = server_factory(f"--opa-url=http://127.0.0.1:{closed}")
    work = git.init(tmp_path / "work")
    git.write(work, GOOD_FILES)
    head = git.commit_all(work, "all good")
    before = server.refs(), server.object_files()

    for _ in range(2):  # and again: no state is left that would let the second one through
        res = push(git, server, work)
        assert_refused(res)
        assert f"pushgate: gate unavailable, push refused: OPA at http://127.0.0.1:{closed} failed" \
            in remote_lines(res)[-1], res.stderr
        assert_nothing_stored(server, *before)

    # ungated refs still work, so the server is up and serving pushes and clones
    res = push(git, server, work, ref="scratch")
    assert res.returncode == 0, res.stderr
    assert server.refs() == {"refs/heads/scratch": head}
    assert_server_serves(git, server, tmp_path, "scratch", head)


# -- c. a policy that crashes the embedded engine -----------------------------------------------
# `with input as` aborts regopy 1.5.2 while it compiles the policies (whatever the object), so
# the loader refuses it (test_with_input_policy_is_refused_at_start_up). This policy crashes the
# worker only for objects labelled crash: "yes": regopy segfaults comparing a 100,000-deep array.
CRASH_POLICY = """\
package pushgate.k8s.crash

deny contains {"msg": "unreachable: the engine crashes first", "field": "metadata.labels"} if {
\tinput.metadata.labels.crash == "yes"
\topening := concat("", ["[" | some _ in numbers.range(1, 100000)])
\tclosing := concat("", ["]" | some _ in numbers.range(1, 100000)])
\tdoc := json.unmarshal(concat("", [opening, closing]))
\tdoc != []
}
"""


def test_crashing_policy_refuses_only_that_push(git: Git, server_factory: ServerFactory,
                                                tmp_path: Path) -> None:
    server = server_factory(f"--policies={policies_plus(tmp_path, 'crash.rego', CRASH_POLICY)}")
    work = git.init(tmp_path / "work")
    git.write(work, GOOD_FILES)
    base = git.commit_all(work, "base")
    assert_accepted(push(git, server, work))

    git.write(work, {"apps/crash.yaml": labelled_configmap("boom", "crash")})
    git.commit_all(work, "crash the engine")
    before = server.refs(), server.object_files()
    for _ in range(3):  # every gunicorn worker's engine crashes on it, and respawns
        res = push(git, server, work)
        assert_refused(res)
        assert "pushgate: gate unavailable, push refused: embedded policy engine crashed (killed by " \
               "signal 11)" in remote_lines(res), res.stderr
        assert_nothing_stored(server, *before)
    assert_server_serves(git, server, tmp_path, "main", base)

    git.write(work, {"apps/crash.yaml": labelled_configmap("boom", "harmless")})
    head = git.commit_all(work, "same object, no crash label")
    assert_accepted(push(git, server, work))
    assert server.refs()["refs/heads/main"] == head


WITH_INPUT_POLICY = """\
package pushgate.k8s.greeting

greeting := sprintf("hello %s", [input.metadata.name])

deny contains {"msg": msg} if {
\tinput.metadata.labels.crash == "yes"
\tmsg := greeting with input as {"metadata": {"name": "x"}}
}
"""


def test_with_input_policy_is_refused_at_start_up(tmp_path: Path) -> None:
    policy_dir = policies_plus(tmp_path, "greeting.rego", WITH_INPUT_POLICY)
    subprocess.run([PUSHGATE, "user", "add", "--users", str(tmp_path / "users.json"), "admin",
                    "--role", "admin"], capture_output=True, check=True)
    res = subprocess.run([PUSHGATE, "serve", f"--data-dir={tmp_path / 'data'}",
                          f"--listen=127.0.0.1:{procs.free_port()}", f"--users={tmp_path / 'users.json'}",
                          f"--policies={policy_dir}"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ), check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip() == ("pushgate: --policies: greeting.rego:7: 'with input as' is not allowed in "
                                  "a policy (it crashes the embedded engine): read input directly; only "
                                  "*_test.rego may use 'with'")


# -- d. a policy slower than the gate's time limit ----------------------------------------------
SLOW_POLICY = """\
package pushgate.k8s.slow

deny contains {"msg": "unreachable: the time limit hits first", "field": "metadata.labels"} if {
\tinput.metadata.labels.slow == "yes"
\tn := count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000); i * j == -1])
\tn == 0
}
"""


def test_slow_policy_hits_the_gate_time_limit(git: Git, server_factory: ServerFactory,
                                              tmp_path: Path) -> None:
    server = server_factory(f"--policies={policies_plus(tmp_path, 'slow.rego', SLOW_POLICY)}",
                            "--gate-timeout=2")
    work = git.init(tmp_path / "work")
    git.write(work, {**GOOD_FILES, "apps/slow.yaml": labelled_configmap("tortoise", "slow")})
    git.commit_all(work, "slow to check")
    before = server.refs(), server.object_files()
    start = time.monotonic()
    res = push(git, server, work)
    took = time.monotonic() - start
    assert_refused(res)
    assert ("pushgate: gate unavailable, push refused: gate time limit of 2s exceeded (policy evaluation)"
            in remote_lines(res)), res.stderr
    assert took < 20, f"the slow policy was not cut off at the time limit ({took:.1f}s)"
    assert_nothing_stored(server, *before)

    for i in range(2):  # whichever gunicorn worker answers, its engine works again
        git.write(work, {"apps/slow.yaml": labelled_configmap("tortoise", f"fast-{i}")})
        head = git.commit_all(work, "quick to check")
        assert_accepted(push(git, server, work))
        assert server.refs()["refs/heads/main"] == head


# -- e. policies see who pushes what ------------------------------------------------------------
OWNERS_POLICY = """\
package pushgate.k8s.owners

deny contains {"msg": msg, "field": "metadata"} if {
\tdata.pushgate.push.pusher == "writer"
\tsome path in data.pushgate.push.changed_paths
\tstartswith(path, "infra/")
\tmsg := concat("", ["only admins may change ", path, " (", data.pushgate.push.role, " role, ",
\t\tdata.pushgate.push.ref, ")"])
}
"""


@pytest.mark.parametrize("engine", ["embedded", pytest.param("opa", marks=pytest.mark.opa)])
def test_policies_see_the_pusher_and_the_changed_paths(engine: str, git: Git, server_factory: ServerFactory,
                                                       tmp_path: Path) -> None:
    policy_dir = tmp_path / "owners"
    policy_dir.mkdir()
    (policy_dir / "owners.rego").write_text(OWNERS_POLICY)
    flags = [f"--policies={policy_dir}"]
    opa: OpaServer | None = None
    if engine == "opa":
        opa = OpaServer(policy_dir, tmp_path / "opa").start()
        flags.append(f"--opa-url={opa.url}")
    try:
        server = server_factory(*flags)
        work = git.init(tmp_path / "work")
        git.write(work, {"apps/web.yaml": samples.deployment(), "infra/ns.yaml": samples.namespace()})
        git.commit_all(work, "base")
        assert_accepted(push(git, server, work, user="admin"))

        git.write(work, {"apps/web.yaml": samples.deployment(replicas=3)})
        apps_only = git.commit_all(work, "scale web")
        assert_accepted(push(git, server, work, user="writer"))  # apps/ is the writer's
        assert server.refs()["refs/heads/main"] == apps_only

        git.write(work, {"infra/ns.yaml": samples.namespace() + "  labels: {team: infra}\n"})
        infra = git.commit_all(work, "label the namespace")
        before = server.refs(), server.object_files()
        res = push(git, server, work, user="writer")
        assert_refused(res)
        msg = "only admins may change infra/ns.yaml (write role, refs/heads/main)"
        problems = [line for line in remote_lines(res) if line.endswith(msg)]
        # one denial per pushed object (the policy looks at the push, not at the object)
        assert sorted(problems) == [
            f"apps/web.yaml:3 Deployment/shop/web [pushgate.k8s.owners/deny] {msg}",
            f"infra/ns.yaml:3 Namespace/shop [pushgate.k8s.owners/deny] {msg}",
        ], res.stderr
        assert_nothing_stored(server, *before)

        assert_accepted(push(git, server, work, user="admin"))
        assert server.refs()["refs/heads/main"] == infra
    finally:
        if opa is not None:
            opa.stop()
