"""Signed commits: every new commit a push brings to a ref under `gate.requireSigned` must carry
a valid signature by a key allowed for the pusher.

Built once per worker by `app` (`load()`: key files and binaries checked at start, a bad one is
an operator error naming the flag) and called by `receive` on the quarantine's store before the
gate. Verification is git's own, with the stock tools: `ssh-keygen -Y verify` against the
allowed-signers file (its principals are pushgate user names) for SSH signatures, and `gpgv`
against a keyring made from the armored public keys for OpenPGP ones, where a key counts for a
pusher only if the users file binds its fingerprint to them (`openpgpKeys`). Each push works in a
private temporary directory (its own GnuPG home, a snapshot of the key files); nothing reads the
server's ~/.gnupg or ~/.ssh. Bounded: at most MAX_COMMITS commits, VERIFY_TIMEOUT per verifier
run, and the caller's deadline for the whole check.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gitserver.errors import ConfigError
from pushgate.config import GateSettings
from pushgate.core import commitsigs

log = logging.getLogger(__name__)

MAX_COMMITS = 10_000  # new commits checked per push; more is refused
VERIFY_TIMEOUT = 10.0  # seconds per ssh-keygen / gpgv run
WORKERS = 4  # verifier processes at a time
_MAX_KEY_FILE = 4 * 1024 * 1024
SSH_FLAG = "gate.allowedSigners / --allowed-signers"
OPENPGP_FLAG = "gate.openpgpKeys / --openpgp-keys"


class Unavailable(Exception):
    """The check could not decide (a verifier missing, too slow, a key file gone): fail closed."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Signer:
    """Who pushes, as the verifiers need it."""

    name: str
    openpgp_keys: Collection[str]  # fingerprints bound to the pusher in the users file


class _KeyFile:
    """One key file, read and checked again whenever it changes on disk."""

    def __init__(self, path: str, flag: str, parse: Callable[[str, str], bytes]) -> None:
        self.path, self.flag, self._parse = path, flag, parse
        self._stamp: tuple[int, int, float] | None = None
        self._data = b""
        self._lock = threading.Lock()

    def read(self) -> bytes:
        """The file's checked content; ValueError (naming the flag) when it is unusable."""
        where = f"{self.flag} {self.path}"
        with self._lock:
            try:
                st = os.stat(self.path)
                stamp = (st.st_ino, st.st_size, st.st_mtime)
                if stamp != self._stamp:
                    if st.st_size > _MAX_KEY_FILE:
                        raise ValueError(f"{where}: larger than {_MAX_KEY_FILE} bytes")
                    with open(self.path, "rb") as f:
                        raw = f.read(_MAX_KEY_FILE + 1)
                    self._data = self._parse(raw.decode("utf-8"), where)
                    self._stamp = stamp
            except OSError as e:
                raise ValueError(f"{where}: cannot read: {e.strerror}") from e
            except UnicodeDecodeError:
                raise ValueError(f"{where}: not UTF-8 text") from None
            return self._data


def _parse_allowed_signers(text: str, where: str) -> bytes:
    if not commitsigs.allowed_signers(text, where):
        raise ValueError(f"{where}: names no signer")
    return text.encode()


def _parse_openpgp_keys(text: str, where: str) -> bytes:
    keyring = commitsigs.dearmor(text, where)
    commitsigs.key_fingerprints(keyring, where)
    return keyring


class Verifier:
    """The signed-commit rule of one server: which refs, which keys, which tools."""

    def __init__(self, patterns: Sequence[str], allowed_signers: str = "", openpgp_keys: str = "",
                 ssh_keygen: str | None = None, gpgv: str | None = None,
                 max_commits: int = MAX_COMMITS, timeout: float = VERIFY_TIMEOUT) -> None:
        self.patterns = tuple(patterns)
        self.ssh = _KeyFile(allowed_signers, SSH_FLAG, _parse_allowed_signers) if allowed_signers else None
        self.openpgp = _KeyFile(openpgp_keys, OPENPGP_FLAG, _parse_openpgp_keys) if openpgp_keys else None
        self.ssh_keygen, self.gpgv = ssh_keygen, gpgv
        self.max_commits, self.timeout = max_commits, timeout

    def applies(self, ref: bytes) -> bool:
        name = ref.decode(errors="replace")
        return any(fnmatchcase(name, p) for p in self.patterns)

    def check(self, store: Any, commits: Sequence[bytes], header: bytes, signer: Signer,
              deadline: float) -> list[commitsigs.Problem]:
        """Every commit of `commits` that lacks a good signature allowed for `signer`, in the
        order given. Raises Unavailable when it cannot decide before `deadline`."""
        try:
            allowed = self.ssh.read() if self.ssh else b""
            keyring = self.openpgp.read() if self.openpgp else b""
        except ValueError as e:
            raise Unavailable(str(e)) from e
        problems: dict[bytes, commitsigs.Problem] = {}
        with tempfile.TemporaryDirectory(prefix="pushgate-signatures-") as tmp:
            ctx = _Run(tmp, allowed, keyring, signer, self, deadline)
            jobs: list[tuple[bytes, commitsigs.Signed]] = []
            for sha in commits:
                signed = commitsigs.split(store.get_raw(sha)[1], header)
                why = ctx.precheck(signed)
                if why:
                    problems[sha] = commitsigs.Problem(sha.decode(), signed.subject, why)
                else:
                    jobs.append((sha, signed))
            subjects = {sha: signed.subject for sha, signed in jobs}
            for sha, why in ctx.run_all(jobs).items():
                problems[sha] = commitsigs.Problem(sha.decode(), subjects[sha], why)
        return [problems[c] for c in commits if c in problems]


class _Run:
    """One push's verification: its temporary directory, key snapshots and verifier runs."""

    def __init__(self, tmp: str, allowed: bytes, keyring: bytes, signer: Signer, v: Verifier,
                 deadline: float) -> None:
        self.tmp, self.signer, self.v, self.deadline = tmp, signer, v, deadline
        self.allowed = os.path.join(tmp, "allowed_signers")
        self.keyring = os.path.join(tmp, "keyring.gpg")
        self.home = os.path.join(tmp, "gnupg")
        os.mkdir(self.home, 0o700)
        with open(self.allowed, "wb") as f:
            f.write(allowed)
        with open(self.keyring, "wb") as f:
            f.write(keyring)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": tmp,
                    "GNUPGHOME": self.home}

    def precheck(self, signed: commitsigs.Signed) -> str | None:
        """The reason a commit fails without running a verifier, if any."""
        kind = signed.kind
        if not kind:
            return commitsigs.UNSIGNED
        if kind == commitsigs.SSH and self.v.ssh is None:
            return "SSH signatures are not accepted here (no gate.allowedSigners)"
        if kind == commitsigs.OPENPGP and self.v.openpgp is None:
            return "OpenPGP signatures are not accepted here (no gate.openpgpKeys)"
        if kind not in (commitsigs.SSH, commitsigs.OPENPGP):
            return f"{commitsigs.BAD} (unsupported kind: {kind})"
        return None

    def run_all(self, jobs: Sequence[tuple[bytes, commitsigs.Signed]]) -> dict[bytes, str]:
        out: dict[bytes, str] = {}
        if not jobs:
            return out
        pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(jobs)),
                                  thread_name_prefix="pushgate-verify")
        try:
            futures: dict[Future[str | None], bytes] = {}
            for i, (sha, signed) in enumerate(jobs):
                futures[pool.submit(self.one, i, signed)] = sha
            pending = set(futures)
            while pending:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise Unavailable(f"signature check passed the time limit (gate.timeout) with "
                                      f"{len(pending)} of {len(jobs)} commits left", timed_out=True)
                done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
                for f in done:
                    why = f.result()  # Unavailable propagates
                    if why:
                        out[futures[f]] = why
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out

    def one(self, i: int, signed: commitsigs.Signed) -> str | None:
        sig = os.path.join(self.tmp, f"{i}.sig")
        with open(sig, "wb") as f:
            f.write(signed.signature)
        if signed.kind == commitsigs.SSH:
            return self._ssh(sig, signed.payload)
        return self._openpgp(sig, signed.payload)

    def _ssh(self, sig: str, payload: bytes) -> str | None:
        tool = self.v.ssh_keygen or "ssh-keygen"
        name = self.signer.name
        rc, _out, err = self._run([tool, "-Y", "verify", "-f", self.allowed, "-I", name, "-n", "git",
                                   "-s", sig], payload)
        if rc == 0:
            return None
        rc, out, _ = self._run([tool, "-Y", "check-novalidate", "-n", "git", "-s", sig], payload)
        if rc != 0:
            return commitsigs.BAD
        key = commitsigs.ssh_fingerprint(out)
        # The pusher's own entry, refused by its options (valid-before, namespaces): ssh-keygen
        # says why as "<file>:<line>: <reason>"; for anyone else's key it says nothing.
        prefix = self.allowed + ":"
        for line in err.splitlines():
            if line.startswith(prefix):
                why = line[len(prefix):].partition(": ")[2] or line[len(prefix):]
                return f"signature by {key} is not accepted for {name}: {why[:120]}"
        rc, out, _ = self._run([tool, "-Y", "find-principals", "-f", self.allowed, "-s", sig], b"")
        if rc != 0:
            return f"signed by unknown key {key}"
        return f"signature by {key} is not allowed for {name}"

    def _openpgp(self, sig: str, payload: bytes) -> str | None:
        tool = self.v.gpgv or "gpgv"
        _rc, out, _err = self._run([tool, "--homedir", self.home, "--status-fd", "1",
                                    "--keyring", self.keyring, sig, "-"], payload)
        return commitsigs.openpgp_verdict(out, self.signer.openpgp_keys, self.signer.name)

    def _run(self, argv: list[str], stdin: bytes) -> tuple[int, str, str]:
        timeout = min(self.v.timeout, self.deadline - time.monotonic())
        if timeout <= 0:
            raise Unavailable("signature check passed the time limit (gate.timeout)", timed_out=True)
        try:
            p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, env=self.env,
                               cwd=self.tmp, check=False)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{os.path.basename(argv[0])} took longer than {timeout:.3g} s",
                              timed_out=True) from None
        except OSError as e:
            raise Unavailable(f"cannot run {argv[0]}: {e.strerror}") from e
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


_PACKAGES = {"ssh-keygen": "openssh-client", "gpgv": "gpgv"}


def _binary(name: str, flag: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"{flag} needs {name}, which is not on PATH: install the Debian package "
                          f"{_PACKAGES[name]}")
    return found


def load(gate: GateSettings) -> Verifier | None:
    """The server's signed-commit rule, or None when no ref requires signed commits. Every key
    file given is read and checked, and the tools it needs found, or ConfigError naming it."""
    if gate.require_signed and not (gate.allowed_signers or gate.openpgp_keys):
        raise ConfigError("gate.requireSigned / --require-signed needs keys to check signatures "
                          "against: gate.allowedSigners / --allowed-signers or gate.openpgpKeys / "
                          "--openpgp-keys")
    ssh_keygen = gpgv = None
    if gate.allowed_signers:
        ssh_keygen = _binary("ssh-keygen", SSH_FLAG)
    if gate.openpgp_keys:
        gpgv = _binary("gpgv", OPENPGP_FLAG)
    v = Verifier(gate.require_signed, os.path.abspath(gate.allowed_signers) if gate.allowed_signers else "",
                 os.path.abspath(gate.openpgp_keys) if gate.openpgp_keys else "", ssh_keygen, gpgv)
    for key_file in (v.ssh, v.openpgp):
        if key_file is not None:
            try:
                key_file.read()
            except ValueError as e:
                raise ConfigError(str(e)) from e
    if not gate.require_signed:
        return None
    log.info("signed commits required on %s", ", ".join(gate.require_signed))
    return v
