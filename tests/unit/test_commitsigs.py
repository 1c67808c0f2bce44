"""Signed commits, the pure parts: the payload cut as git cuts it, key files, and the verdicts
read from ssh-keygen's and gpgv's output (captured from the real tools, OpenSSH 9.2, GnuPG 2.2)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from pushgate.core import commitsigs
from pushgate.core.commitsigs import Problem

SSH_SIG = (b"-----BEGIN SSH SIGNATURE-----\n"
           b"U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg9GIjCk7f8AOZa7mh/arXmVDhBc\n"
           b"-----END SSH SIGNATURE-----")
HEAD = (b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
        b"parent 9d1596743ac4e97ffd93769b7fade05ca1787547\n"
        b"author A <a@x> 1795954651 +0000\n"
        b"committer A <a@x> 1795954651 +0000\n")
MESSAGE = b"\nadd the thing\n\nbody line\ngpgsig this is message text, not a header\n"

# `gpg --armor --export` of a key with a signing subkey, and what gpg says its fingerprints are.
CAROL = """-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawwYrxYJKwYBBAHaRw8BAQdA2iStG/KUfrCjRh4Y2YIskPkA2HAhZUOQImUi
gBougzW0GkNhcm9sIDxjYXJvbEBleGFtcGxlLnRlc3Q+iJAEExYIADgWIQQaGPFc
vkNREdtWvc+d7HzorUfGvwUCawwYrwIbAwULCQgHAgYVCgkICwIEFgIDAQIeAQIX
gAAKCRCd7HzorUfGv/CQAP94hP8wHQH2ORtkbQOaRUmR5r/IYxal/HBDScE8MO5P
kQD+JZyw9RIRaq6FNT1kWFQ+6XpyAEg9yYbXuJrVQEiI6ge4MwRrDBivFgkrBgEE
AdpHDwEBB0B8uLELQBwvBZpIrhl5M4qjWu8GEEb4Ylv1AGl8XwrTAYjvBBgWCAAg
FiEEGhjxXL5DURHbVr3Pnex86K1Hxr8FAmsMGK8CGwIAgQkQnex86K1Hxr92IAQZ
FggAHRYhBEYoe8gpxe02Gw0ql4t+d+tfES6MBQJrDBivAAoJEIt+d+tfES6M98gA
/j5eXxOOLVURSn/ynOPo5NIWvdIPDzWPSqdrLLwsPsI5AQC3qPtXcb0BRdosVtlX
SWAfQSoo8kGkKt7EtaFHn097BHwAAP9tEG7ByHpWRhCuX7jsfwsrP7Gznal7b4oY
Zlj5Uz3ZkwD9F2d4elHyZi+AbpPef+V76C7LIcYOYccSLG1Szg6xuwc=
=9+zl
-----END PGP PUBLIC KEY BLOCK-----
"""
CAROL_PRIMARY = "1A18F15CBE435111DB56BDCF9DEC7CE8AD47C6BF"
CAROL_SUBKEY = "46287BC829C5ED361B0D2A978B7E77EB5F112E8C"
CAROL_DEARMORED_SHA256 = "1eda34fd001f15f2f512b9a54ce59fff345eafdfe153f1ef90942fe028f53531"  # gpg --dearmor


def test_the_payload_is_the_commit_without_its_signature_headers() -> None:
    raw = HEAD + b"gpgsig " + SSH_SIG.replace(b"\n", b"\n ") + b"\n" + MESSAGE
    signed = commitsigs.split(raw)
    assert signed.payload == HEAD + MESSAGE
    assert signed.signature == SSH_SIG + b"\n"
    assert signed.kind == commitsigs.SSH
    assert signed.subject == "add the thing"


def test_the_other_formats_signature_is_cut_but_not_used() -> None:
    other = b"gpgsig-sha256 -----BEGIN PGP SIGNATURE-----\n x\n -----END PGP SIGNATURE-----\n"
    raw = HEAD + other + b"encoding UTF-8\n" + MESSAGE
    signed = commitsigs.split(raw)
    assert signed.signature == b"" and signed.kind == ""  # unsigned, as git sees it
    assert signed.payload == HEAD + b"encoding UTF-8\n" + MESSAGE
    sha256 = commitsigs.split(raw, commitsigs.signature_header("sha256"))
    assert sha256.kind == commitsigs.OPENPGP
    assert commitsigs.signature_header("sha1") == b"gpgsig"


def test_an_unsigned_commit_is_its_own_payload() -> None:
    signed = commitsigs.split(HEAD + MESSAGE)
    assert signed.payload == HEAD + MESSAGE and signed.signature == b"" and signed.kind == ""
    x509 = commitsigs.split(HEAD + b"gpgsig -----BEGIN SIGNED MESSAGE-----\n x\n" + MESSAGE)
    assert x509.kind == commitsigs.X509


def test_the_report_line() -> None:
    raw = HEAD + b"\n\x1b[31mred\x1b[0m subject " + b"x" * 100 + b"\n"
    p = Problem("0123456789abcdef" * 2 + "01234567", commitsigs.subject(raw), "unsigned")
    assert str(p) == f"0123456789ab red subject {'x' * 59}…: unsigned"
    assert commitsigs.subject(HEAD) == ""
    assert str(Problem("ab" * 20, "", "bad signature")) == "abababababab: bad signature"


def test_allowed_signers_lines() -> None:
    key = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"\x00\x00\x00\x20" + b"k" * 32).decode()
    text = (f"# team keys\n\nalice ssh-ed25519 {key} alice@laptop\n"
            f'bob,robot namespaces="git",valid-after="20240101" ssh-ed25519 {key}\n'
            f"carol cert-authority ssh-ed25519 {key}\n")
    got = commitsigs.allowed_signers(text, "f")
    assert [(s.principals, s.options) for s in got] == [
        (("alice",), ""), (("bob", "robot"), "namespaces=git,valid-after=20240101"),
        (("carol",), "cert-authority")]


@pytest.mark.parametrize(("line", "needle"), [
    ("alice", "f:1: expected 'principals [options] keytype key'"),
    ("alice opts ssh-ed25519", "f:1: no key type"),
    ("alice ssh-ed25519 !!!notbase64", "not base64"),
    ("alice ssh-rsa " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519xx").decode(), "not a ssh-rsa key"),
    ('alice "unterminated ssh-ed25519 AAAA', "f:1: No closing quotation"),
])
def test_bad_allowed_signers_lines_are_named(line: str, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        commitsigs.allowed_signers(line, "f")


def test_dearmor_matches_gpg_and_finds_the_fingerprints() -> None:
    keyring = commitsigs.dearmor("junk before\n" + CAROL + CAROL, "f")
    assert hashlib.sha256(keyring[:len(keyring) // 2]).hexdigest() == CAROL_DEARMORED_SHA256
    assert commitsigs.key_fingerprints(keyring, "f") == [CAROL_PRIMARY, CAROL_SUBKEY] * 2


def _armor(data: bytes) -> str:
    crc = base64.b64encode(commitsigs._crc24(data)).decode()
    return (f"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{base64.b64encode(data).decode()}\n={crc}\n"
            f"-----END PGP PUBLIC KEY BLOCK-----\n")


def test_bad_key_files_are_named() -> None:
    with pytest.raises(ValueError, match="f: no '-----BEGIN PGP PUBLIC KEY BLOCK-----'"):
        commitsigs.dearmor("-----BEGIN PGP PRIVATE KEY BLOCK-----\n...", "f")
    damaged = CAROL.replace("mDMEawwYrxYJ", "mDMEawwYrxYK")
    with pytest.raises(ValueError, match="key block 1 is damaged"):
        commitsigs.dearmor(damaged, "f")
    secret = commitsigs.dearmor(_armor(b"\xc5\x03\x04ab"), "f")  # a secret-key packet
    with pytest.raises(ValueError, match="holds a secret key"):
        commitsigs.key_fingerprints(secret, "f")
    with pytest.raises(ValueError, match="holds no OpenPGP public key"):
        commitsigs.key_fingerprints(commitsigs.dearmor(_armor(b"\xcd\x01a"), "f"), "f")  # a user id
    with pytest.raises(ValueError, match="not OpenPGP data"):
        commitsigs.key_fingerprints(b"\x01\x02", "f")
    with pytest.raises(ValueError, match="truncated"):
        commitsigs.key_fingerprints(b"\xc6\x10abc", "f")


def test_fingerprints_are_normalised() -> None:
    assert commitsigs.fingerprint("1a18 f15c be43 5111 db56  bdcf 9dec 7ce8 ad47 c6bf") == CAROL_PRIMARY
    assert commitsigs.fingerprint("0x" + CAROL_PRIMARY.lower()) == CAROL_PRIMARY
    with pytest.raises(ValueError, match="not an OpenPGP fingerprint"):
        commitsigs.fingerprint("AD47C6BF")  # a short key id is not a binding


FPR = "B3599DD8673243A04D0746CF2FF6E7EBB109295E"
GOOD = f"""[GNUPG:] NEWSIG alice@example.test
[GNUPG:] KEY_CONSIDERED {FPR} 0
[GNUPG:] SIG_ID lcPPu36kEJTxrWIO2fiqF0GytBo 2026-11-29 1795954651
[GNUPG:] GOODSIG 2FF6E7EBB109295E Alice <alice@example.test>
[GNUPG:] VALIDSIG {FPR} 2026-11-29 1795954651 0 4 0 22 8 00 {FPR}
"""
BADSIG = """[GNUPG:] NEWSIG alice@example.test
[GNUPG:] BADSIG 2FF6E7EBB109295E Alice <alice@example.test>
"""
NO_KEY = f"""[GNUPG:] NEWSIG alice@example.test
[GNUPG:] ERRSIG 2FF6E7EBB109295E 22 8 00 1795954651 9 {FPR}
[GNUPG:] NO_PUBKEY 2FF6E7EBB109295E
"""


@pytest.mark.parametrize(("status", "allowed", "verdict"), [
    (GOOD, {FPR}, None),
    (GOOD.replace(f"00 {FPR}\n", f"00 {CAROL_PRIMARY}\n"), {CAROL_PRIMARY}, None),  # by a subkey
    (GOOD, {CAROL_PRIMARY}, f"signature by {FPR} is not allowed for bob"),
    (BADSIG, {FPR}, "bad signature"),
    (NO_KEY, {FPR}, f"signed by unknown key {FPR}"),
    (NO_KEY.replace(f" 9 {FPR}", " 9 -"), set(), "signed by unknown key 2FF6E7EBB109295E"),
    (NO_KEY.replace(" 9 ", " 4 "), set(), "bad signature (gpgv cannot check it: error 4)"),
    (GOOD + GOOD, {FPR}, "bad signature (more than one signature)"),
    (GOOD.replace("GOODSIG", "EXPKEYSIG"), {FPR}, "bad signature (the key has expired)"),
    (GOOD.replace("GOODSIG", "REVKEYSIG"), {FPR}, "bad signature (the key is revoked)"),
    ("[GNUPG:] NODATA 1\n", {FPR}, "bad signature"),
    ("", {FPR}, "bad signature"),
])
def test_gpgv_status_verdicts(status: str, allowed: set[str], verdict: str | None) -> None:
    assert commitsigs.openpgp_verdict(status, allowed, "bob") == verdict


def test_ssh_keygen_names_the_key() -> None:
    out = 'Good "git" signature with ED25519 key SHA256:H3945wvfdJTo1b1a2PzvS0w5p8mD20NqFtjmVQ08oRo\n'
    assert commitsigs.ssh_fingerprint(out) == "SHA256:H3945wvfdJTo1b1a2PzvS0w5p8mD20NqFtjmVQ08oRo"
    assert commitsigs.ssh_fingerprint("nothing") == "(unknown)"
