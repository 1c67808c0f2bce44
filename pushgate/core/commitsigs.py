"""Signed commits, the pure part: what a commit's signature covers, the key files, and what the
stock verifiers (`ssh-keygen -Y`, `gpgv`) say, turned into one reason per commit.

Called by `gitserver.signing` (which runs the verifiers on a push's new commits) and
`gitserver.auth` (the fingerprints bound to users). No I/O: bytes and text in, values out.
The payload is cut exactly as git cuts it (`parse_buffer_signed_by_header` in git's commit.c):
every `gpgsig*` header goes, the repository format's own one is the signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
from collections.abc import Collection
from dataclasses import dataclass

from pushgate.core.violations import sanitize

SSH = "ssh"
OPENPGP = "openpgp"
X509 = "x509"

UNSIGNED = "unsigned"
BAD = "bad signature"


@dataclass(frozen=True)
class Signed:
    """A commit split for verification."""

    payload: bytes  # the commit without its signature headers: what the signer signed
    signature: bytes  # b"" when the commit carries no signature for this repository's format
    subject: str  # the message's first line, for the report

    @property
    def kind(self) -> str:
        if not self.signature:
            return ""
        if self.signature.startswith(b"-----BEGIN SSH SIGNATURE-----"):
            return SSH
        if self.signature.startswith((b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN PGP MESSAGE-----")):
            return OPENPGP
        if self.signature.startswith(b"-----BEGIN SIGNED MESSAGE-----"):
            return X509
        return "unknown"


def signature_header(object_format: str) -> bytes:
    """The header that carries the signature in a repository of this object format."""
    return b"gpgsig-sha256" if object_format == "sha256" else b"gpgsig"


def split(raw: bytes, header: bytes = b"gpgsig") -> Signed:
    """The raw commit object `raw` as payload and signature, as git splits it."""
    payload: list[bytes] = []
    signature: list[bytes] = []
    in_signature = other = False
    pos = 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        nxt = len(raw) if nl < 0 else nl + 1
        line = raw[pos:nxt]
        sig: bytes | None = None
        if in_signature and line.startswith(b" "):
            sig = line[1:]
        elif line.startswith(header + b" "):
            sig = line[len(header) + 1:]
            other = False
        elif line.startswith(b"gpgsig"):
            other = True  # another format's signature: not ours, and not signed either
        elif other and not line.startswith(b" "):
            other = False
        if sig is not None:
            signature.append(sig)
            in_signature = True
            pos = nxt
            continue
        if line.startswith(b"\n"):
            line, nxt = raw[pos:], len(raw)  # the message: everything after the blank line
        if not other:
            payload.append(line)
        in_signature = False
        pos = nxt
    return Signed(b"".join(payload), b"".join(signature), subject(raw))


def subject(raw: bytes) -> str:
    _, sep, message = raw.partition(b"\n\n")
    first = next((x for x in message.splitlines() if x.strip()), b"") if sep else b""
    text = sanitize(first.decode("utf-8", "replace")).strip()
    return text if len(text) <= 72 else text[:71] + "…"


@dataclass(frozen=True)
class Problem:
    """One new commit that may not land, and why; `str()` is the line `git push` prints."""

    commit: str  # full hex id
    subject: str
    why: str

    def __str__(self) -> str:
        head = f"{self.commit[:12]} {self.subject}" if self.subject else self.commit[:12]
        return sanitize(f"{head}: {self.why}")


# -- OpenSSH ------------------------------------------------------------------------------------
_SSH_KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+$")
_SSH_FINGERPRINT = re.compile(r"\bSHA256:[A-Za-z0-9+/]{43}\b")


@dataclass(frozen=True)
class AllowedSigner:
    principals: tuple[str, ...]  # pushgate user names (or patterns, as ssh-keygen matches them)
    key_type: str
    options: str


def allowed_signers(text: str, where: str) -> list[AllowedSigner]:
    """The entries of an OpenSSH allowed_signers file (`principals [options] keytype key`);
    ValueError naming `where` and the line for anything ssh-keygen would not read."""
    out: list[AllowedSigner] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = shlex.split(line, comments=False, posix=True)
        except ValueError as e:
            raise ValueError(f"{where}:{n}: {e}") from None
        if len(tokens) < 3:
            raise ValueError(f"{where}:{n}: expected 'principals [options] keytype key'")
        options = ""
        rest = tokens[1:]
        if not _SSH_KEY_TYPE.match(rest[0]):
            options, rest = rest[0], rest[1:]
        if len(rest) < 2 or not _SSH_KEY_TYPE.match(rest[0]):
            raise ValueError(f"{where}:{n}: no key type (ssh-ed25519, ecdsa-sha2-..., ssh-rsa, ...)")
        key_type, key = rest[0], rest[1]
        try:
            blob = base64.b64decode(key, validate=True)
        except binascii.Error:
            raise ValueError(f"{where}:{n}: the {key_type} key is not base64") from None
        if blob[4:4 + int.from_bytes(blob[:4], "big")] != key_type.encode():
            raise ValueError(f"{where}:{n}: the key is not a {key_type} key")
        principals = tuple(p for p in tokens[0].split(",") if p)
        if not principals:
            raise ValueError(f"{where}:{n}: no principal (a pushgate user name)")
        out.append(AllowedSigner(principals, key_type, options))
    return out


def ssh_fingerprint(output: str) -> str:
    """The key fingerprint ssh-keygen names ("Good "git" signature ... key SHA256:...")."""
    m = _SSH_FINGERPRINT.search(output)
    return m.group(0) if m else "(unknown)"


# -- OpenPGP ------------------------------------------------------------------------------------
_ARMOR = re.compile(r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----",
                    re.S)
_FPR = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$")
_PUBLIC_KEY, _PUBLIC_SUBKEY, _SECRET_KEY, _SECRET_SUBKEY = 6, 14, 5, 7


def fingerprint(value: str) -> str:
    """An OpenPGP fingerprint as gpg prints it in status lines (upper-case hex, no spaces)."""
    fpr = re.sub(r"\s+", "", value).upper()
    if fpr.startswith("0X"):
        fpr = fpr[2:]
    if not _FPR.match(fpr):
        raise ValueError(f"{value!r} is not an OpenPGP fingerprint (40 or 64 hex digits)")
    return fpr


def dearmor(text: str, where: str) -> bytes:
    """The binary keyring (what `gpg --dearmor` writes) of every armored public key block."""
    blocks = _ARMOR.findall(text)
    if not blocks:
        raise ValueError(f"{where}: no '-----BEGIN PGP PUBLIC KEY BLOCK-----' (export the keys "
                         f"with 'gpg --armor --export FINGERPRINT...')")
    out = b""
    for i, block in enumerate(blocks, 1):
        head, sep, body = block.replace("\r\n", "\n").partition("\n\n")
        lines = (body if sep else head).split()
        crc = next((x for x in lines if x.startswith("=")), None)
        data = "".join(x for x in lines if not x.startswith("="))
        try:
            raw = base64.b64decode(data, validate=True)
            if crc is not None and base64.b64decode(crc[1:], validate=True) != _crc24(raw):
                raise ValueError("checksum mismatch")
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"{where}: key block {i} is damaged ({e})") from None
        out += raw
    return out


def _crc24(data: bytes) -> bytes:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return (crc & 0xFFFFFF).to_bytes(3, "big")


def key_fingerprints(keyring: bytes, where: str) -> list[str]:
    """The fingerprints of the primary keys and subkeys in a binary keyring; ValueError for a
    keyring that holds a secret key, no key, or packets that do not parse."""
    found: list[str] = []
    primaries = 0
    pos = 0
    while pos < len(keyring):
        tag, body, pos = _packet(keyring, pos, where)
        if tag in (_SECRET_KEY, _SECRET_SUBKEY):
            raise ValueError(f"{where}: holds a secret key; give public keys only "
                             f"('gpg --armor --export', not --export-secret-keys)")
        if tag in (_PUBLIC_KEY, _PUBLIC_SUBKEY) and body:
            primaries += tag == _PUBLIC_KEY
            if body[0] == 4:
                found.append(hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body,
                                          usedforsecurity=False).hexdigest().upper())
            elif body[0] in (5, 6):
                prefix = b"\x9a" if body[0] == 5 else b"\x9b"
                found.append(hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body)
                             .hexdigest().upper())
    if not primaries:
        raise ValueError(f"{where}: holds no OpenPGP public key")
    return found


def _packet(data: bytes, pos: int, where: str) -> tuple[int, bytes, int]:
    first = data[pos]
    if not first & 0x80:
        raise ValueError(f"{where}: not OpenPGP data at byte {pos}")
    if first & 0x40:  # new format
        tag, pos = first & 0x3F, pos + 1
        o1 = data[pos] if pos < len(data) else 0
        if o1 < 192:
            length, pos = o1, pos + 1
        elif o1 < 224:
            length, pos = ((o1 - 192) << 8) + data[pos + 1] + 192, pos + 2
        elif o1 == 255:
            length, pos = int.from_bytes(data[pos + 1:pos + 5], "big"), pos + 5
        else:
            raise ValueError(f"{where}: partial-length packet in a keyring at byte {pos}")
    else:
        tag, kind, pos = (first >> 2) & 0x0F, first & 0x03, pos + 1
        if kind == 3:
            length = len(data) - pos
        else:
            size = (1, 2, 4)[kind]
            length, pos = int.from_bytes(data[pos:pos + size], "big"), pos + size
    if pos + length > len(data):
        raise ValueError(f"{where}: truncated OpenPGP packet")
    return tag, data[pos:pos + length], pos + length


def openpgp_verdict(status: str, allowed: Collection[str], pusher: str) -> str | None:
    """What `gpgv --status-fd` said, judged for `pusher` whose keys are `allowed` (fingerprints):
    None for a good signature by one of them, else the reason. Exactly one good, valid, current
    signature counts; anything else (several signatures, expired or revoked keys) does not."""
    lines = [x[9:].split(" ") for x in status.splitlines() if x.startswith("[GNUPG:] ")]
    by: dict[str, list[list[str]]] = {}
    for fields in lines:
        by.setdefault(fields[0], []).append(fields)
    if len(by.get("NEWSIG", [])) > 1:
        return f"{BAD} (more than one signature)"
    if "ERRSIG" in by:
        err = by["ERRSIG"][0]
        key = err[7] if len(err) > 7 and err[7] != "-" else (err[1] if len(err) > 1 else "?")
        if len(err) > 6 and err[6] == "9":
            return f"signed by unknown key {key}"
        return f"{BAD} (gpgv cannot check it: error {err[6] if len(err) > 6 else '?'})"
    for word, why in (("BADSIG", BAD), ("EXPKEYSIG", f"{BAD} (the key has expired)"),
                      ("REVKEYSIG", f"{BAD} (the key is revoked)"),
                      ("EXPSIG", f"{BAD} (the signature has expired)")):
        if word in by:
            return why
    good, valid = by.get("GOODSIG", []), by.get("VALIDSIG", [])
    if len(good) != 1 or len(valid) != 1 or len(valid[0]) < 2:
        return BAD
    signing = valid[0][1]
    primary = valid[0][10] if len(valid[0]) > 10 else signing
    if signing in allowed or primary in allowed:
        return None
    return f"signature by {primary} is not allowed for {pusher}"
