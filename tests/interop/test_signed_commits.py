"""Signed commits through the stock git client: with `--require-signed`, every new commit a push
brings to a matching ref (not only the tip, and both sides of a merge) must carry a good SSH or
OpenPGP signature by a key allowed for the pusher, else the whole push is refused naming each
bad commit and why, and nothing is stored; other refs take unsigned commits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dulwich.repo import Repo

from gitserver import signing
from tests.bed import procs, samples, signers
from tests.bed.gitcli import Git
from tests.bed.server import PUSHGATE, Server
from tests.bed.signers import GnuPG, SshKey


@dataclass
class Keys:
    writer_ssh: SshKey
    admin_ssh: SshKey
    stranger_ssh: SshKey
    gnupg: GnuPG
    writer_pgp: str
    admin_pgp: str
    stranger_pgp: str
    allowed_signers: Path
    openpgp_keys: Path


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Keys]:
    d = tmp_path / "keys"
    ssh = {name: signers.ssh_key(d, name) for name in ("writer", "admin", "stranger")}
    gnupg = GnuPG()
    try:
        pgp = {name: gnupg.key(name) for name in ("writer", "admin", "stranger")}
        armored = d / "openpgp.asc"
        armored.write_text(gnupg.export(pgp["writer"], pgp["admin"]))  # the stranger's is unknown
        yield Keys(ssh["writer"], ssh["admin"], ssh["stranger"], gnupg, pgp["writer"], pgp["admin"],
                   pgp["stranger"],
                   signers.allowed_signers(d / "allowed_signers",
                                           {"writer": ssh["writer"], "admin": ssh["admin"]}),
                   armored)
    finally:
        gnupg.close()


# The signature check comes before the gate; a policy of its own keeps this test about signatures.
POLICY = """package main

import rego.v1

deny contains "no Secrets here" if input.kind == "Secret"
"""


def _signed_server(server_factory: Callable[..., Server], keys: Keys, *args: str) -> Server:
    policies = keys.allowed_signers.parent / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "main.rego").write_text(POLICY)
    server = server_factory("--workers=1", f"--policies={policies}", "--require-signed=refs/heads/main",
                            f"--allowed-signers={keys.allowed_signers}",
                            f"--openpgp-keys={keys.openpgp_keys}", *args)
    users = server.dir / "users.json"
    doc = json.loads(users.read_text())
    bound = {"writer": keys.writer_pgp, "admin": keys.admin_pgp.lower()}  # any case, as given
    for u in doc["users"]:
        if u["name"] in bound:
            u["openpgpKeys"] = [bound[u["name"]]]
    users.write_text(json.dumps(doc))  # reloaded on change
    return server


def _refused(git: Git, server: Server, work: Path, ref: str = "main",
             user: str = "writer") -> str:
    before_refs, before_objects = server.refs(), server.object_files()
    res = git.run("push", server.url(user), f"HEAD:{ref}", cwd=work, check=False)
    assert res.returncode != 0 and "[remote rejected]" in res.stderr, res.stderr
    assert server.refs() == before_refs
    assert server.object_files() == before_objects and server.quarantines() == []
    entry = json.loads((server.data_dir / "pushes.jsonl").read_text().splitlines()[-1])
    assert entry["refusal"] == "signature", entry
    return "".join(line.rstrip() + "\n" for line in res.stderr.splitlines())  # git pads remote lines


def test_every_new_commit_must_be_signed_by_the_pusher(git: Git, keys: Keys,
                                                       server_factory: Callable[..., Server],
                                                       tmp_path: Path) -> None:
    server = _signed_server(server_factory, keys)
    work = git.init(tmp_path / "w")
    g = keys.gnupg

    # all signed, SSH and OpenPGP mixed: accepted
    git.write(work, {"cm.yaml": samples.configmap()})
    signers.commit(git, work, "ssh one", ssh=keys.writer_ssh)
    signers.commit(git, work, "openpgp two", openpgp=keys.writer_pgp, gnupg=g)
    base = signers.commit(git, work, "ssh three", ssh=keys.writer_ssh)
    res = git.run("push", server.url("writer"), "main", cwd=work)
    assert "pushgate: checking signatures of 3 new commits for main" in res.stderr, res.stderr
    assert server.refs()["refs/heads/main"] == base

    # an unsigned commit in the middle of a series: refused, naming that commit only
    signers.commit(git, work, "signed before", ssh=keys.writer_ssh)
    middle = signers.commit(git, work, "unsigned middle")
    signers.commit(git, work, "signed after", openpgp=keys.writer_pgp, gnupg=g)
    err = _refused(git, server, work)
    assert f"remote: pushgate: {middle[:12]} unsigned middle: unsigned\n" in err, err
    assert "signed before:" not in err and "signed after:" not in err
    assert "pushgate: 1 of 3 new commits lacks a good signature allowed for writer" in err
    assert "pushgate: 1 commit without a good signature allowed for writer, see above" in err

    # unknown keys; another user's keys (known, not allowed for this pusher)
    git.run("reset", "-q", "--hard", base, cwd=work)
    c1 = signers.commit(git, work, "stranger ssh", ssh=keys.stranger_ssh)
    c2 = signers.commit(git, work, "stranger pgp", openpgp=keys.stranger_pgp, gnupg=g)
    c3 = signers.commit(git, work, "admin ssh", ssh=keys.admin_ssh)
    c4 = signers.commit(git, work, "admin pgp", openpgp=keys.admin_pgp, gnupg=g)
    err = _refused(git, server, work)
    assert f"{c1[:12]} stranger ssh: signed by unknown key {keys.stranger_ssh.fingerprint}\n" in err, err
    assert f"{c2[:12]} stranger pgp: signed by unknown key {keys.stranger_pgp}\n" in err, err
    assert (f"{c3[:12]} admin ssh: signature by {keys.admin_ssh.fingerprint} is not allowed for "
            f"writer\n") in err, err
    assert f"{c4[:12]} admin pgp: signature by {keys.admin_pgp} is not allowed for writer\n" in err, err
    log = json.loads((server.data_dir / "pushes.jsonl").read_text().splitlines()[-1])
    assert len(log["problems"]) == 4 and log["problems"][0].startswith(f"{c4[:12]} [signature]")

    # a signature that does not match its commit (the message changed after signing)
    git.run("reset", "-q", "--hard", base, cwd=work)
    good = signers.commit(git, work, "honest", ssh=keys.writer_ssh)
    raw = git.run("cat-file", "commit", good, cwd=work).stdout.replace("honest", "forged")
    forged = git.run("hash-object", "-t", "commit", "-w", "--stdin", cwd=work, input=raw).stdout.strip()
    git.run("reset", "-q", "--hard", forged, cwd=work)
    err = _refused(git, server, work)
    assert f"{forged[:12]} forged: bad signature\n" in err, err

    # the admin's own commits, pushed by the admin: accepted
    git.run("reset", "-q", "--hard", base, cwd=work)
    signers.commit(git, work, "admin ssh", ssh=keys.admin_ssh)
    tip = signers.commit(git, work, "admin pgp", openpgp=keys.admin_pgp, gnupg=g)
    git.run("push", server.url("admin"), "HEAD:main", cwd=work)
    assert server.refs()["refs/heads/main"] == tip

    # a ref not under --require-signed takes unsigned commits
    feature = signers.commit(git, work, "unsigned on a feature branch")
    git.run("push", server.url("writer"), "HEAD:refs/heads/feature", cwd=work)
    assert server.refs()["refs/heads/feature"] == feature
    fsck = server.fsck()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_merges_bring_both_sides(git: Git, keys: Keys, server_factory: Callable[..., Server],
                                 tmp_path: Path) -> None:
    server = _signed_server(server_factory, keys, "--require-signed=refs/heads/release/*")
    work = git.init(tmp_path / "w")
    ssh = signers.sign_flags(keys.writer_ssh)
    git.write(work, {"cm.yaml": samples.configmap()})
    base = signers.commit(git, work, "base", ssh=keys.writer_ssh)
    git.run("push", server.url("writer"), "main", "HEAD:refs/heads/release/1", cwd=work)

    def branch(name: str, *commits: tuple[str, bool]) -> None:
        git.run("checkout", "-q", "-b", name, base, cwd=work)
        for message, signed in commits:
            git.write(work, {f"{name}-{message}.txt": message})
            signers.commit(git, work, message, ssh=keys.writer_ssh if signed else None)
        git.run("checkout", "-q", "main", cwd=work)

    # a signed merge of signed branches: accepted, all four commits checked
    branch("a", ("a1", True), ("a2", True))
    branch("b", ("b1", True))
    git.run(*ssh, "merge", "-q", "--no-ff", "-S", "-m", "merge a", "a", cwd=work)
    git.run(*ssh, "merge", "-q", "--no-ff", "-S", "-m", "merge b", "b", cwd=work)
    res = git.run("push", server.url("writer"), "main", cwd=work)
    assert "checking signatures of 5 new commits for main" in res.stderr, res.stderr
    merged = git.rev_parse(work, "HEAD")

    # a signed merge that brings an unsigned commit from its second parent: refused
    branch("c", ("c1", True), ("c2 unsigned", False))
    c2 = git.rev_parse(work, "c")
    git.run(*ssh, "merge", "-q", "--no-ff", "-S", "-m", "merge c", "c", cwd=work)
    err = _refused(git, server, work)
    assert f"{c2[:12]} c2 unsigned: unsigned\n" in err and "lacks a good signature" in err, err
    assert "1 of 3 new commits" in err, err

    # an unsigned merge of signed branches: the merge itself is named
    git.run("reset", "-q", "--hard", merged, cwd=work)
    branch("d", ("d1", True))
    git.run("merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "unsigned merge", "d", cwd=work)
    err = _refused(git, server, work)
    assert f"{git.rev_parse(work, 'HEAD')[:12]} unsigned merge: unsigned\n" in err, err

    # the globs: release/* requires signatures too, and other refs do not
    git.run("reset", "-q", "--hard", base, cwd=work)
    signers.commit(git, work, "unsigned release fix")
    _refused(git, server, work, "refs/heads/release/1")
    git.run("push", server.url("writer"), "HEAD:refs/heads/topic", cwd=work)
    assert server.refs()["refs/heads/main"] == merged
    fsck = server.fsck()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    users = tmp_path / "users.json"
    if not users.exists():
        subprocess.run([PUSHGATE, "user", "add", "--users", str(users), "a", "--role", "admin"],
                       capture_output=True, check=True)
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "main.rego").write_text(POLICY)
    return subprocess.run([PUSHGATE, "serve", f"--data-dir={tmp_path / 'data'}", f"--users={users}",
                           f"--listen=127.0.0.1:{procs.free_port()}", f"--policies={policies}", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})


def _file(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


@pytest.mark.parametrize(("make_args", "needle"), [
    (lambda t: ["--require-signed=refs/heads/main"],
     "gate.requireSigned / --require-signed needs keys to check signatures against"),
    (lambda t: ["--require-signed=main", f"--allowed-signers={t / 'x'}"],
     "--require-signed: configuration: gate.requireSigned 'main' must be a full ref pattern"),
    (lambda t: ["--require-signed=refs/heads/main", f"--allowed-signers={t / 'missing'}"],
     "--allowed-signers " + "{t}/missing: cannot read: No such file or directory"),
    (lambda t: ["--require-signed=refs/heads/main",
                f"--allowed-signers={_file(t, 'as', 'writer ssh-ed25519 AAAA!')}"],
     "--allowed-signers {t}/as:1: the ssh-ed25519 key is not base64"),
    (lambda t: ["--require-signed=refs/heads/main", f"--openpgp-keys={_file(t, 'k.asc', 'no keys')}"],
     "--openpgp-keys {t}/k.asc: no '-----BEGIN PGP PUBLIC KEY BLOCK-----'"),
])
def test_bad_signing_configuration_is_an_operator_error(tmp_path: Path, make_args: object,
                                                        needle: str) -> None:
    assert callable(make_args)
    res = _serve(tmp_path, *make_args(tmp_path))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pushgate: "), res.stderr
    assert needle.format(t=tmp_path) in lines[0], lines[0]
    assert not (tmp_path / "data" / "cluster.git").exists()


def test_a_missing_verifier_names_its_package(tmp_path: Path) -> None:
    key = signers.ssh_key(tmp_path / "keys", "a")
    allowed = signers.allowed_signers(tmp_path / "allowed", {"a": key})
    bare = tmp_path / "bin"
    bare.mkdir()
    res = _serve(tmp_path, "--require-signed=refs/heads/*", f"--allowed-signers={allowed}",
                 env={"PATH": str(bare)})
    assert res.returncode == 2, res.stderr
    assert ("gate.allowedSigners / --allowed-signers needs ssh-keygen, which is not on PATH: "
            "install the Debian package openssh-client") in res.stderr, res.stderr
    res = _serve(tmp_path, "--require-signed=refs/heads/*", f"--openpgp-keys={allowed}",
                 env={"PATH": str(bare)})
    assert "install the Debian package gpgv" in res.stderr, res.stderr


def test_users_file_fingerprints_are_checked(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    subprocess.run([PUSHGATE, "user", "add", "--users", str(users), "a", "--role", "admin"],
                   capture_output=True, check=True)
    doc = json.loads(users.read_text())
    doc["users"][0]["openpgpKeys"] = ["DEADBEEF"]
    users.write_text(json.dumps(doc))
    res = _serve(tmp_path)
    assert res.returncode == 2, res.stderr
    assert "user a: openpgpKeys: 'DEADBEEF' is not an OpenPGP fingerprint" in res.stderr, res.stderr


# -- the verifier on its own: the stock tools on a local repository's commits -------------------
def _signed_commit(git: Git, tmp_path: Path, key: SshKey) -> tuple[Any, bytes]:
    work = git.init(tmp_path / "local")
    sha = signers.commit(git, work, "one", ssh=key)
    return Repo(str(work)).object_store, sha.encode()


def test_the_pushers_own_entry_can_still_refuse(git: Git, tmp_path: Path) -> None:
    key = signers.ssh_key(tmp_path / "keys", "writer")
    store, sha = _signed_commit(git, tmp_path, key)
    allowed = tmp_path / "allowed"
    allowed.write_text(f'writer valid-before="20200101" {key.public}\n')
    v = signing.Verifier(["refs/heads/*"], str(allowed), ssh_keygen="ssh-keygen")
    [problem] = v.check(store, [sha], b"gpgsig", signing.Signer("writer", frozenset()),
                        time.monotonic() + 30)
    assert problem.why.startswith(f"signature by {key.fingerprint} is not accepted for writer: "
                                  f"key has expired"), problem
    allowed.write_text(f'writer namespaces="file" {key.public}\n')
    [problem] = v.check(store, [sha], b"gpgsig", signing.Signer("writer", frozenset()),
                        time.monotonic() + 30)
    assert problem.why == (f"signature by {key.fingerprint} is not accepted for writer: key is not "
                           f'permitted for use in signature namespace "git"'), problem
    allowed.write_text(f"writer {key.public}\n")  # read again when it changes
    assert v.check(store, [sha], b"gpgsig", signing.Signer("writer", frozenset()),
                   time.monotonic() + 30) == []


def test_the_check_is_bounded_and_fails_closed(git: Git, tmp_path: Path) -> None:
    key = signers.ssh_key(tmp_path / "keys", "writer")
    store, sha = _signed_commit(git, tmp_path, key)
    allowed = signers.allowed_signers(tmp_path / "allowed", {"writer": key})
    writer = signing.Signer("writer", frozenset())
    slow = tmp_path / "slow-ssh-keygen"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    v = signing.Verifier(["refs/heads/*"], str(allowed), ssh_keygen=str(slow), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(signing.Unavailable, match=r"slow-ssh-keygen took longer than 0\.5 s") as e:
        v.check(store, [sha], b"gpgsig", writer, time.monotonic() + 30)
    assert e.value.timed_out and time.monotonic() - started < 10
    v = signing.Verifier(["refs/heads/*"], str(allowed), ssh_keygen="ssh-keygen")
    with pytest.raises(signing.Unavailable, match="time limit") as e:
        v.check(store, [sha], b"gpgsig", writer, time.monotonic() - 1)
    assert e.value.timed_out
    allowed.write_text("writer ssh-ed25519\n")  # an operator's bad edit: refuse, naming the flag
    with pytest.raises(signing.Unavailable, match=re.escape(f"--allowed-signers {allowed}:1: ")) as e:
        v.check(store, [sha], b"gpgsig", writer, time.monotonic() + 30)
    assert not e.value.timed_out
    allowed.unlink()
    with pytest.raises(signing.Unavailable, match="cannot read"):
        v.check(store, [sha], b"gpgsig", writer, time.monotonic() + 30)
