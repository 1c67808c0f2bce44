"""A real OCI registry (distribution's `cmd/registry`, pinned, built by scripts/tools.sh) on a
loopback port, with filesystem storage; optionally behind htpasswd (bcrypt) Basic auth, or behind
distribution's token auth with a small token server on loopback (RS256 JWTs signed with `openssl`,
the certificate in the `x5c` header and the registry's root bundle). Images are pushed with the
distribution HTTP API itself: a config blob and a layer blob uploaded (POST + PUT), then an OCI
image manifest PUT per tag."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.bed import procs, tools

_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():  # crypt is deprecated (PEP 594), and the only bcrypt at hand
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)  # noqa: S324 - bcrypt, what htpasswd wants
        return crypt.crypt(password, salt)


class TokenServer:
    """distribution's token flow: `GET /token?service=...&scope=repository:x:pull` answers a JWT
    granting that scope (to the users' Basic credentials, or to anyone when there are none)."""

    SERVICE, ISSUER = "pushgate-test-registry", "pushgate-test-issuer"

    def __init__(self, directory: Path, users: dict[str, str]) -> None:
        self.key, self.cert = directory / "token.key", directory / "token.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(self.key), "-out", str(self.cert), "-days", "1", "-subj",
                        "/CN=pushgate-test-token"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.users = users
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                outer.requests.append(self.path)
                if outer.users and self.headers.get("Authorization", "") not in outer.basics():
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                scope = query.get("scope", [""])[0]
                _kind, repo, actions = [*scope.split(":"), "", "", ""][:3]
                body = json.dumps({"token": outer.token(repo, actions.split(",")),
                                   "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def basics(self) -> set[str]:
        return {"Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in self.users.items()}

    def token(self, repo: str, actions: list[str]) -> str:
        def b64(doc: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.ISSUER, "sub": "test", "aud": self.SERVICE, "iat": now, "nbf": now - 10,
                  "exp": now + 300, "jti": hashlib.sha256(f"{now}{repo}".encode()).hexdigest(),
                  "access": [{"type": "repository", "name": repo, "actions": actions}]}
        signing_input = f"{b64(header)}.{b64(claims)}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class OciRegistry:
    dir: Path
    port: int
    users: dict[str, str]
    bearer: bool = False
    proc: procs.Proc | None = None
    tokens: TokenServer | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> OciRegistry:
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = ["version: 0.1", "log: {level: warn}",
                 f"storage: {{filesystem: {{rootdirectory: {self.dir / 'storage'}}}, "
                 f"delete: {{enabled: true}}}}",
                 f"http: {{addr: '{self.host}', secret: test-secret}}"]
        if self.bearer:
            self.tokens = TokenServer(self.dir, self.users)
            lines.append(f"auth: {{token: {{realm: '{self.tokens.realm}', service: {TokenServer.SERVICE}, "
                         f"issuer: {TokenServer.ISSUER}, rootcertbundle: {self.tokens.cert}}}}}")
        elif self.users:
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{_bcrypt(p)}\n" for u, p in self.users.items()))
            lines.append(f"auth: {{htpasswd: {{realm: pushgate-test, path: {htpasswd}}}}}")
        config = self.dir / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        self.proc = procs.REGISTRY.start("registry", [tools.path("registry"), "serve", str(config)],
                                         self.dir / "registry.log")
        proc = self.proc
        procs.wait_until(lambda: proc.alive() and self._up(), 30, "the OCI registry", on_timeout=proc.tail)
        return self

    def _up(self) -> bool:
        try:
            urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2).close()
        except urllib.error.HTTPError as e:
            return e.code == 401
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        if self.tokens is not None:
            self.tokens.stop()

    # -- pushing images through the API -----------------------------------------------------------
    def _call(self, method: str, url: str, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
        if not url.startswith("http"):
            url = f"http://{self.host}{url}"
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if self.tokens is not None:
            repo = urllib.parse.urlsplit(url).path.split("/")[2:4]
            req.add_header("Authorization", "Bearer " + self.tokens.token("/".join(repo), ["pull", "push"]))
        elif self.users:
            user, password = next(iter(self.users.items()))
            req.add_header("Authorization",
                           "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers)

    def _blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _s, headers = self._call("POST", f"/v2/{repo}/blobs/uploads/", b"")
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        status, _h = self._call("PUT", f"{location}{sep}digest={digest}", data,
                                {"Content-Type": "application/octet-stream"})
        assert status == 201, status
        return digest

    def push(self, repo: str, *tags: str) -> None:
        """An image (a distinct one per tag) pushed under each tag."""
        for tag in tags:
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "config": {"Labels": {"tag": tag}},
                                 "rootfs": {"type": "layers", "diff_ids": []}}).encode()
            layer = f"layer of {repo}:{tag}".encode()
            manifest = {"schemaVersion": 2, "mediaType": _OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": self._blob(repo, config), "size": len(config)},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                    "digest": self._blob(repo, layer), "size": len(layer)}]}
            status, _h = self._call("PUT", f"/v2/{repo}/manifests/{tag}", json.dumps(manifest).encode(),
                                    {"Content-Type": _OCI_MANIFEST})
            assert status == 201, status


def start_registry(workdir: Path, users: dict[str, str] | None = None, *,
                   bearer: bool = False) -> OciRegistry:
    return OciRegistry(workdir, procs.free_port(), dict(users or {}), bearer).start()
