"""The WSGI application: auth -> git smart HTTP (dulwich, our receive handler) -> Flask.

Called by `wsgi` (gunicorn workers) and by tests. `create_app(settings)` builds everything once
per worker process: the repository, the gate with its policy engine, the Flask API.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from dulwich.errors import GitProtocolError, NotGitRepository
from dulwich.refs import check_ref_format
from dulwich.server import Backend
from dulwich.web import GunzipFilter, HTTPGitApplication, LimitedInputFilter
from flask import Flask, jsonify, request

from gitserver import (
    activepolicy,
    auth,
    bodydeadline,
    live,
    notices,
    page,
    policyrepo,
    receive,
    repos,
    signing,
    warmup,
)
from gitserver.errors import BadRepoName, ConfigError
from gitserver.receive import GatedReceivePackHandler, GateResult, GateUnavailable, Pusher, PushOutcome
from gitserver.repos import RefUpdate
from gitserver.settings import Settings
from gitserver.upload import BufferedUploadPackHandler
from pushgate import datadir, locks, observe
from pushgate.automation import status as imagestatus
from pushgate.build.sources import GitTree
from pushgate.core import pruneguard
from pushgate.gate import enforcement, policies, policysource
from pushgate.gate import gate as gatemod
from pushgate.gate.embedded import EmbeddedEngine
from pushgate.gate.opaserver import OpaServerEngine
from pushgate.notify import dispatcher, outbox

log = logging.getLogger(__name__)
PUSH_LOG = datadir.PUSH_LOG


class RefGateAdapter:
    """The shared gate, seen by the receive handler as a `RefGate`."""

    def __init__(self, gate: gatemod.Gate, gated_refs: Sequence[str], data_dir: str,
                 source: policysource.Source) -> None:
        self.gate = gate
        self.gated_refs = {r.encode() for r in gated_refs}
        self.data_dir = data_dir
        self.source = source  # the policy set, its enforcement overrides and where it came from
        self.policy_version = source.version
        self.warmer: warmup.GateWarmer | None = None  # told what each push checked

    def gated(self, ref: bytes) -> bool:
        return ref in self.gated_refs

    def check(self, store: Any, update: RefUpdate, pusher: Pusher, changed: Sequence[str],
              deadline: float) -> GateResult:
        push = {"pusher": pusher.name, "role": pusher.role, "ref": update.ref.decode(),
                "changed_paths": list(changed), "groups": list(pusher.groups),
                "scopes": [s.to_json() for s in pusher.scopes] or None}
        try:
            build, found = self.gate.check(GitTree(store, update.new), push, deadline)
        except gatemod.GateTimeout as e:
            raise GateUnavailable(str(e), receive.Refusal.TIMEOUT) from e
        except policies.EngineUnavailable as e:
            raise GateUnavailable(str(e), receive.Refusal.ENGINE) from e
        if self.warmer is not None:
            self.warmer.checked(update.ref.decode(), update.new.decode())
        found = enforcement.apply_findings(found, self.source.overrides)
        verdict: datadir.Verdict = {
            "commit": update.new.decode(), "ref": update.ref.decode(), "pusher": pusher.name,
            "time": time.time(), "digest": build.digest(), "objects": len(build.manifests),
            "config": self.gate.config.build.digest(), "policies": self.policy_version,
            "policySource": self.source.label}
        return GateResult(list(found), build.files, len(build.manifests), verdict,
                          [str(e) for e in found.exceptions], list(build.manifests))

    def record(self, verdict: datadir.Verdict) -> None:
        datadir.write_verdict(self.data_dir, verdict)


class _Context:
    """One receive's `ReceiveContext`."""

    def __init__(self, app: PushgateApp, pusher: Pusher) -> None:
        self.pusher = pusher
        self.protected: Sequence[bytes] = [r.encode() for r in app.settings.protected_refs]
        self._gate: receive.RefGate | None = None
        self.max_pack_bytes = app.settings.max_pack_bytes
        self.gate_timeout = app.settings.gate_timeout
        self.live: receive.LiveGate | None = app.live_gate
        self.signing: signing.Verifier | None = app.signing
        self._app = app

    @property
    def gate(self) -> receive.RefGate:
        """The gate of the active policy set, looked up once per receive (when it is needed)."""
        if self._gate is None:
            self._gate = self._app.policies.current().ref_gate
        return self._gate

    def on_done(self, outcome: PushOutcome) -> None:
        self._app.record(outcome)

    def deploy_progress(self, ref: bytes, revision: str, timeout: float) -> Iterator[str]:
        return deploy_progress(self._app.settings.data_dir, ref.decode(), revision, timeout)


class _Backend(Backend):
    def __init__(self, app: PushgateApp, user: auth.User) -> None:
        self.app = app
        self.context = _Context(app, Pusher(user.name, user.role, user.groups, user.scopes,
                                            user.openpgp_keys))
        self.policy_context = policyrepo.PolicyContext(
            self.context.pusher, app.policy_gate, app.settings.max_pack_bytes,
            app.settings.gate_timeout, app.record, app.signing)

        self.opened: list[repos.ServedRepo] = []  # closed when the request's answer is done (close())

    def open_repository(self, path: str | bytes) -> Any:
        if isinstance(path, bytes):  # dulwich passes bytes for service requests, str for refs
            path = path.decode("utf-8", "replace")
        try:
            full = repos.repo_path(self.app.settings.data_dir, path)
        except BadRepoName as e:
            raise NotGitRepository(str(e)) from e
        if not os.path.exists(os.path.join(full, "HEAD")):
            raise NotGitRepository(f"no repository named {path.strip('/')!r}")
        repo = repos.ServedRepo(full)
        self.opened.append(repo)
        return repo

    def close(self) -> None:
        """Close what the request opened. dulwich's handlers never close their repository: left
        to the garbage collector, each request's pack files stayed mapped and open until a full
        collection, which a worker holding a warm gate's millions of objects seldom runs (the
        server grew by a few MB over 200 pushes, ~200 descriptors open; bench/RESULTS.md, rss)."""
        opened, self.opened = self.opened, []
        for repo in opened:
            repo.close()


def _upload_factory(backend: _Backend, args: Sequence[Any], proto: Any,
                    stateless_rpc: bool = False, advertise_refs: bool = False) -> Any:
    handler = BufferedUploadPackHandler(backend, args, proto, stateless_rpc=stateless_rpc,
                                        advertise_refs=advertise_refs)
    if stateless_rpc and not advertise_refs:
        repo: Any = handler.repo
        repo.stateless = True
    return handler


def _receive_factory(backend: _Backend, args: Sequence[Any], proto: Any,
                     stateless_rpc: bool = False, advertise_refs: bool = False) -> Any:
    if args and policyrepo.is_policy_repo(args[0]):
        policy = policyrepo.PolicyReceivePackHandler(backend, args, proto, stateless_rpc=stateless_rpc,
                                                     advertise_refs=advertise_refs)
        policy.context = backend.policy_context
        return policy
    handler = GatedReceivePackHandler(backend, args, proto, stateless_rpc=stateless_rpc,
                                      advertise_refs=advertise_refs)
    handler.context = backend.context
    return handler


class PushgateApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        cfg = settings.config
        self.gate_config = gatemod.GateConfig(build=cfg.build, missing_schema=cfg.gate.missing_schema,
                                              timeout=cfg.gate.timeout)
        namespaces = cfg.gate.policy_namespaces or None
        # The active policy set: main of policies.git, or --policies until it has a commit.
        try:
            self.policies = activepolicy.Holder(
                settings.data_dir, settings.policies_dir, namespaces, cfg.gate.gated_refs,
                self._generation, grace=2 * cfg.gate.timeout + 60)
        except policies.PolicyError as e:
            commit = activepolicy.active_commit(settings.data_dir)
            where = f"policies.git commit {commit[:12]} (the active policy set)" if commit else "--policies"
            raise ConfigError(f"{where}: {e}") from e
        self.signing = signing.load(settings.config.gate)  # key files and their tools checked here
        log.info("policies: %s", "; ".join(self.policies.describe()))
        observe.setup(settings.data_dir, "gitserver")
        self.live_gate: receive.LiveGate | None = None
        if settings.live_check in ("required", "best-effort"):
            self.live_gate = live.RefLiveGate(
                live.LiveClient(settings.run_dir or datadir.run_dir(settings.data_dir)),
                cfg.reconcile.branch, settings.live_check,
                pruneguard.Rules(cfg.gate.prune_max_objects, cfg.gate.prune_max_share),
                cfg.gate.prune_roles)
        # Only once everything an operator can get wrong has loaded: nothing half-made.
        self.repo_path = repos.ensure(settings.data_dir)
        repos.ensure(settings.data_dir, datadir.POLICY_REPO)  # the policy set by GitOps
        activepolicy.sweep(settings.data_dir)
        self.policy_gate = policyrepo.PolicyGate(
            settings.data_dir, self.policies, self.gate_config, cfg.gate.gated_refs, namespaces,
            settings.kustomize, settings.opa_url, timeout=max(120.0, 4 * cfg.gate.timeout))
        # This worker's engine started and its caches kept on the gated heads, in the background;
        # a new policy commit is noticed (and its engine warmed) before the next push.
        self.policies.start()
        # Notifications go out from every worker (claims are renames: no double delivery), with
        # or without a cluster; the reconciler runs one too.
        self.dispatcher = (dispatcher.Dispatcher(settings.data_dir).start()
                           if cfg.notifications else None)
        self.flask = _make_flask(self)
        self.authenticator = auth.Authenticator(settings.users_file)
        self.limiter = auth.RateLimiter(os.path.join(settings.data_dir, ".ratelimit"))
        git_chain = LimitedInputFilter(GunzipFilter(self._git),
                                       max_request_size=settings.max_pack_bytes + (1 << 20))
        self.wsgi = auth.AuthMiddleware(self._guard(git_chain), self.authenticator, self.limiter,
                                        settings.anonymous_role)

    def _generation(self, source: policysource.Source) -> activepolicy.Generation:
        """A gate (with its engine and warmer) on one policy set: the policy holder's factory."""
        settings, cfg = self.settings, self.settings.config
        engine: policies.PolicyEngine = (
            OpaServerEngine(settings.opa_url, source.policy_set) if settings.opa_url
            else EmbeddedEngine(source.policy_set))
        try:
            gate = gatemod.Gate(self.gate_config, engine=engine, kustomize_bin=settings.kustomize)
        except ValueError as e:
            raise ConfigError(f"--kubernetes-version: {e}") from e
        ref_gate = RefGateAdapter(gate, cfg.gate.gated_refs, settings.data_dir, source)
        warmer = warmup.GateWarmer(gate, datadir.repo_path(settings.data_dir), cfg.gate.gated_refs)
        ref_gate.warmer = warmer
        return activepolicy.Generation(source, gate, ref_gate, warmer)

    @property
    def policy_set(self) -> policies.PolicySet | None:
        source = self.policies.current().source
        return source.policy_set if source is not None else None

    def _git(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        user = environ.get("pushgate.user") or auth.User("anonymous", "read", "")
        backend = _Backend(self, user)
        app = HTTPGitApplication(backend,
                                 handlers={b"git-receive-pack": _receive_factory,
                                           b"git-upload-pack": _upload_factory},
                                 fallback_app=self.flask)
        try:
            result = app(environ, start_response)
        except BaseException:
            backend.close()
            raise
        return _then_close(result, backend)

    def _guard(self, inner: Any) -> Any:
        limit = self.settings.max_pack_bytes

        def guard(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            length = environ.get("CONTENT_LENGTH") or ""
            if length.isdigit() and int(length) > limit + (1 << 20):
                body = f"pushgate: request of {length} bytes exceeds the limit of {limit}\n".encode()
                start_response("413 Payload Too Large", [("Content-Type", "text/plain"),
                                                         ("Content-Length", str(len(body)))])
                return [body]
            watchdog = bodydeadline.watch(environ, self.settings.body_timeout)
            if environ.get("wsgi.input_terminated"):
                # The WSGI server (gunicorn) has already de-chunked the body; dulwich would
                # de-chunk it again and fail every push bigger than git's http.postBuffer.
                environ.pop("HTTP_TRANSFER_ENCODING", None)
            sent = [False]  # any byte of the answer, written or yielded

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                write = start_response(status, headers, exc_info)

                def noting(data: bytes) -> Any:
                    sent[0] = sent[0] or bool(data)
                    return write(data)
                return noting

            result = _quiet_protocol_errors(inner(environ, start), sent)
            return result if watchdog is None else bodydeadline.guard_response(result, watchdog)

        return guard

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        rid = environ.get("HTTP_X_REQUEST_ID", "")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", rid):
            rid = secrets.token_hex(8)
        observe.request_id.set(rid)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Request-Id", rid)], exc_info)

        return self.wsgi(environ, start)

    def record(self, outcome: PushOutcome) -> None:
        """Append the push to the data dir's push log (the status page and API read it)."""
        refusal = outcome.refusal.value if outcome.refusal is not None else ""
        entry = {
            "time": time.time(), "repo": os.path.basename(outcome.repo.rstrip("/")),
            "pusher": outcome.pusher, "accepted": outcome.accepted,
            "reason": outcome.reason, "refusal": refusal, "seconds": round(outcome.seconds, 3),
            "updates": [{"ref": u.ref.decode(errors="replace"), "old": u.old.decode(),
                         "new": u.new.decode()} for u in outcome.updates],
            "problems": [str(v) for v in outcome.violations][:200],
            "options": outcome.options,
            "plan": _bounded_plan(outcome.plan),
            "phases": outcome.phases,
        }
        observe.metric("pushes").labels("accepted" if outcome.accepted else "refused",
                                        "ok" if outcome.accepted else refusal or "other").inc()
        observe.metric("gate_seconds").observe(outcome.seconds)
        path = datadir.push_log_path(self.settings.data_dir)
        with locks.exclusive(path + ".lock"), open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        if outcome.accepted:
            datadir.touch_wake(self.settings.data_dir)
        else:
            notices.push_refused(self.settings.data_dir, outcome)
        heads = ",".join(u.new.decode()[:12] for u in outcome.updates if not u.is_delete)
        log.info("push %s: %s", "accepted" if outcome.accepted else "refused", outcome.reason or "ok",
                 extra={"pusher": outcome.pusher, "commit": heads,
                        "ref": ",".join(u.ref.decode(errors="replace") for u in outcome.updates)})

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.policies.close()


def _bounded_plan(plan: dict[str, Any], limit: int = 200) -> dict[str, Any]:
    """The plan for the push log: counts, and the lists cut at `limit` entries each."""
    if not plan:
        return {}
    out: dict[str, Any] = {"counts": live.plan_counts(plan), "managed": plan.get("managed", 0)}
    for key in ("create", "update", "unchanged", "prune"):
        out[key] = list(plan.get(key) or [])[:limit]
    return out


def _then_close(result: Iterable[bytes], backend: _Backend) -> Iterator[bytes]:
    """The answer, then the request's repositories closed (also when the client goes away)."""
    try:
        yield from result
    finally:
        try:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        finally:
            backend.close()


def _quiet_protocol_errors(result: Iterable[bytes], sent: list[bool]) -> Iterator[bytes]:
    """The git response, ended with one log line instead of a traceback and a 500 when the client
    breaks the protocol (a malformed command list, a bad pkt-line, a hang-up, a want of an object
    no ref reaches). When nothing was sent yet, the client is told why in an ERR line, as C git
    does (`remote error: upload-pack: not our ref ...`), not left with a hang-up."""
    try:
        for chunk in result:
            sent[0] = sent[0] or bool(chunk)
            yield chunk
    except GitProtocolError as e:
        log.warning("git protocol error from the client: %s", str(e)[:300])
        if not sent[0]:
            yield _err_line(str(e))
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


_INVALID_WANT = re.compile(r"Client wants invalid object b?'?([0-9a-f]{40,64})")


def _err_line(message: str) -> bytes:
    """An ERR pkt-line: printable ASCII only (the message may quote the client's bytes)."""
    want = _INVALID_WANT.search(message)
    text = f"upload-pack: not our ref {want.group(1)}" if want else re.sub(r"[^ -~]", "?", message)[:200]
    line = b"ERR " + text.encode("ascii") + b"\n"
    return b"%04x" % (len(line) + 4) + line


def deploy_progress(data_dir: str, ref: str, revision: str, timeout: float) -> Iterator[str]:
    """Follow the reconciler's status file (its contract with us) for one revision."""
    branch = datadir.branch_of(ref)
    path = datadir.status_path(data_dir, branch)
    grace = time.monotonic() + min(10.0, timeout)
    while not os.path.exists(path) and time.monotonic() < grace:
        time.sleep(0.2)  # a reconciler that is still starting announces itself here
    if not os.path.exists(path):
        yield f"-o wait: no reconciler has reported on {branch}; not waiting"
        return
    yield f"waiting up to {timeout:.0f}s for {revision[:12]} to be applied and healthy"
    started = time.monotonic()
    deadline = started + timeout
    shown: set[tuple[float, str]] = set()
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            time.sleep(0.2)
            continue
        for p in doc.get("progress", []):
            key = (p.get("time", 0.0), p.get("message", ""))
            if p.get("revision") == revision and key not in shown:
                shown.add(key)
                yield str(p.get("message", ""))
        entry = next((h for h in doc.get("history", []) if h.get("revision") == revision), None)
        if entry is not None and entry.get("result") not in (None, "Progressing"):
            for o in doc.get("objects", []):
                health = f" {o['health']}" if o.get("health") else ""
                why = f" ({o.get('reason')}: {o.get('message')})" if o.get("message") else ""
                yield f"  {o.get('ref')} {o.get('action')}{health}{why}"
            yield f"deploy {entry['result']}: {entry.get('reason', '')}"
            return
        if time.monotonic() - started > 3:
            # Nothing moves for this revision: say why if a follower is all that runs here.
            leader = datadir.leader_summary(data_dir, branch)
            if leader and (0.0, leader) not in shown:
                shown.add((0.0, leader))
                yield leader
        cluster = doc.get("cluster") or {}
        if cluster and not cluster.get("reachable", True):
            key = (cluster.get("since", 0.0), "outage")
            if key not in shown:
                shown.add(key)
                yield f"cluster unreachable, the reconciler is retrying: {cluster.get('message', '')}"
        time.sleep(0.3)
    yield f"still in progress after {timeout:.0f}s; follow it with 'pushgate status'"


def recent_pushes(data_dir: str, limit: int = 50) -> list[dict[str, Any]]:
    path = datadir.push_log_path(data_dir)
    try:
        with open(path) as f:
            lines = f.readlines()[-limit:]
    except FileNotFoundError:
        return []
    out = []
    for line in reversed(lines):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _reachable(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - the operator's OPA URL
            return bool(r.status == 200)
    except OSError:
        return False


def _branch_name_ok(branch: str) -> bool:
    ref: Any = f"refs/heads/{branch}".encode()
    return len(branch) <= 200 and bool(check_ref_format(ref))


def _make_flask(app: PushgateApp) -> Flask:
    web = Flask("pushgate")

    @web.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @web.get("/readyz")
    def readyz() -> Any:
        # Repositories and policies only: the git side never waits for the cluster.
        policy_set = app.policy_set
        checks = {"repository": os.path.exists(os.path.join(app.repo_path, "HEAD")),
                  "policies": policy_set is not None and bool(policy_set.engine_entrypoints)}
        if app.settings.opa_url:
            checks["opa"] = _reachable(app.settings.opa_url.rstrip("/") + "/health")
        ok = all(checks.values())
        return jsonify(ready=ok, checks=checks), (200 if ok else 503)

    @web.get("/metrics")
    def metrics() -> Any:
        body, content_type = observe.exposition(app.settings.data_dir)
        return body, 200, {"Content-Type": content_type}

    @web.get("/api/v1/status")
    def deploy_status() -> Any:
        branch = request.args.get("branch", app.settings.config.reconcile.branch)
        if not _branch_name_ok(branch):
            return jsonify(error="bad branch name"), 400
        doc: dict[str, Any] = dict(datadir.read_status(app.settings.data_dir, branch) or
                                   {"branch": branch, "attached": False, "conditions": []})
        doc["plan"] = page.latest_plan(recent_pushes(app.settings.data_dir, 200), branch)
        doc["policies"] = _policy_status(app)
        images = dict(imagestatus.read(app.settings.data_dir))
        if images:
            doc["images"] = images
        if app.settings.config.notifications:  # names and counts only, never a URL
            doc["notifications"] = outbox.counts(
                app.settings.data_dir, [d.name for d in app.settings.config.notifications])
        return jsonify(doc)

    @web.get("/")
    def status_page() -> Any:
        branch = request.args.get("branch", app.settings.config.reconcile.branch)
        if not _branch_name_ok(branch):
            return jsonify(error="bad branch name"), 400
        return page.render(app.settings.data_dir, recent_pushes(app.settings.data_dir, 200), branch,
                           policies=_policy_status(app),
                           images=dict(imagestatus.read(app.settings.data_dir)))

    @web.get("/api/v1/pushes")
    def pushes() -> Any:
        return jsonify(pushes=recent_pushes(app.settings.data_dir))

    return web


def _policy_status(app: PushgateApp) -> dict[str, Any]:
    """The active policy source, for the status API and page."""
    gen = app.policies.current()
    if gen.source is None:
        return {"source": "unavailable", "label": "", "error": gen.error}
    return gen.source.to_json()


def create_app(settings: Settings) -> PushgateApp:
    receive.set_wait_slots(settings.threads)
    return PushgateApp(settings)
