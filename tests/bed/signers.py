"""Signing keys for tests, made with the stock tools in temporary directories: SSH keys
(`ssh-keygen`, ed25519) and OpenPGP keys (`gpg --quick-gen-key` in a private GNUPGHOME, no
passphrase), and commits signed by the stock `git` client with either."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.bed.gitcli import Git


@dataclass(frozen=True)
class SshKey:
    private: Path
    public: str  # "ssh-ed25519 AAAA..."
    fingerprint: str  # "SHA256:..."


def ssh_key(directory: Path, name: str) -> SshKey:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
                   check=True, capture_output=True)
    public = " ".join(path.with_suffix(".pub").read_text().split()[:2])
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(path.with_suffix(".pub"))], check=True,
                            capture_output=True, text=True).stdout
    return SshKey(path, public, listed.split()[1])


def allowed_signers(path: Path, entries: dict[str, SshKey]) -> Path:
    path.write_text("".join(f"{name} {key.public}\n" for name, key in entries.items()))
    return path


class GnuPG:
    """A private GnuPG home (short path: gpg-agent's socket lives there); `close()` stops the
    agent that signing starts."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pg-gpg-"))
        self.home.chmod(0o700)

    def _gpg(self, *args: str) -> str:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", *args], check=True,
                              capture_output=True, text=True, timeout=60).stdout

    def key(self, name: str) -> str:
        """A new signing key for `name`; its fingerprint."""
        uid = f"{name} <{name}@example.test>"
        self._gpg("--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", uid,
                  "ed25519", "sign", "never")
        out = self._gpg("--with-colons", "--list-keys", f"={uid}")
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def export(self, *fingerprints: str) -> str:
        return self._gpg("--armor", "--export", *fingerprints)

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False,
                       capture_output=True, timeout=30)
        shutil.rmtree(self.home, ignore_errors=True)


def commit(git: Git, work: Path, message: str, *, ssh: SshKey | None = None,
           openpgp: str | None = None, gnupg: GnuPG | None = None) -> str:
    """An (empty) commit of whatever is staged, signed with `ssh` or the OpenPGP key `openpgp`
    (in `gnupg`), or unsigned; its id."""
    git.run("add", "-A", cwd=work)
    git.run(*sign_flags(ssh, openpgp, gnupg), "commit", "-q", "--allow-empty", "-m", message,
            *(["-S"] if ssh or openpgp else []), cwd=work)
    return git.rev_parse(work, "HEAD")


def sign_flags(ssh: SshKey | None = None, openpgp: str | None = None,
               gnupg: GnuPG | None = None) -> list[str]:
    """`git -c ...` options that make `-S` sign with the given key."""
    if ssh is not None:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={ssh.private}"]
    if openpgp is not None:
        assert gnupg is not None
        return ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={openpgp}",
                "-c", f"gpg.program={gpg_wrapper(gnupg)}"]
    return []


def gpg_wrapper(gnupg: GnuPG) -> Path:
    """A `gpg` that uses the private home (git passes its own arguments; no global GNUPGHOME)."""
    path = gnupg.home / "gpg.sh"
    if not path.exists():
        path.write_text(f'#!/bin/sh\nexec gpg --homedir "{gnupg.home}" "$@"\n')
        path.chmod(0o755)
    return path
