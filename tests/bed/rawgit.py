"""Hand-built smart-HTTP requests, for what the stock git client will not send (bad ref names,
stale old values, garbage packs): the raw protocol, exactly as given."""

from __future__ import annotations

import base64
import hashlib
import http.client
import struct

from tests.bed.server import Server

ZERO = "0" * 40
RECEIVE_REQUEST = "application/x-git-receive-pack-request"


def auth(server: Server, user: str = "admin", token: str | None = None) -> str:
    cred = f"{user}:{server.tokens[user] if token is None else token}"
    return "Basic " + base64.b64encode(cred.encode()).decode()


def request(server: Server, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, user: str = "admin",
            token: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One request with the path sent exactly as given (no normalisation of any kind)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in {"Authorization": auth(server, user, token), **(headers or {})}.items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def pkt_lines(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i + 4 <= len(data):
        size = int(data[i:i + 4], 16)
        if size == 0:
            out.append(b"")
            i += 4
            continue
        out.append(data[i + 4:i + size])
        i += size
    return out


def report_status(body: bytes) -> list[bytes]:
    """The report-status lines of a side-band-64k receive-pack response."""
    inner = b"".join(line[1:] for line in pkt_lines(body) if line[:1] == b"\x01")
    return [line.rstrip(b"\n") for line in pkt_lines(inner) if line]


def empty_pack() -> bytes:
    head = b"PACK" + struct.pack(">II", 2, 0)
    return head + hashlib.sha1(head).digest()  # noqa: S324 - the pack format's own checksum



def push(server: Server, commands: list[bytes], pack: bytes | None = None,
         user: str = "admin") -> list[bytes]:
    """One receive-pack request (`old new ref` commands, report-status + side-band-64k) and the
    report-status lines of its answer."""
    lines = [c + (b"\0report-status side-band-64k" if i == 0 else b"") + b"\n"
             for i, c in enumerate(commands)]
    body = b"".join(pkt(x) for x in lines) + b"0000" + (empty_pack() if pack is None else pack)
    status, resp, _ = request(server, "POST", "/cluster.git/git-receive-pack", body=body,
                              headers={"Content-Type": RECEIVE_REQUEST}, user=user)
    assert status == 200, (status, resp[:300])
    return report_status(resp)
