"""The `pushgate` command: serve, reconcile, status, validate, render, user add.

The composition root: it reads the configuration (file, then flags), wires the git server, the
reconciler and the gate, and persists the configuration where every side reads it.

Operator errors (a bad flag or variable, a missing users file, bad policies) print one line
naming what to fix and exit 2 before anything starts; nothing prints a traceback at a user.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from pushgate import config as configmod
from pushgate import datadir

EXIT_CONFIG = 2


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"PUSHGATE_{name}", default)


def _build_flags(p: argparse.ArgumentParser) -> None:
    """Flags that override the configuration file's `build` and `gate` sections."""
    p.add_argument("--config", default=_env("CONFIG"),
                   help="configuration file (pushgate.yaml); flags override it")
    p.add_argument("--include", action="append", default=None,
                   help="manifest file pattern (repeatable; default *.yaml, *.yml, *.json)")
    p.add_argument("--exclude", action="append", default=None,
                   help="path pattern to leave out of the build (repeatable), e.g. 'docs/*'")
    p.add_argument("--kubernetes-version", default=_env("KUBERNETES_VERSION"),
                   help="Kubernetes MAJOR.MINOR whose schemas objects are checked against (default 1.37)")
    p.add_argument("--default-namespace", default=_env("DEFAULT_NAMESPACE"),
                   help="namespace for namespaced objects that name none (default: default)")
    p.add_argument("--missing-schema", default=_env("MISSING_SCHEMA"),
                   help="error or warning for kinds with no schema")
    p.add_argument("--policy-namespace", action="append", default=None,
                   help="Rego package whose rules count (repeatable; default: every package; "
                        "'main' matches conftest's default)")


def _reconcile_flags(p: argparse.ArgumentParser) -> None:
    """Flags that override the configuration's `reconcile` section."""
    p.add_argument("--branch", default=_env("BRANCH"), help="the branch to apply (default main)")
    p.add_argument("--inventory-namespace", default=_env("INVENTORY_NAMESPACE"),
                   help="namespace of the ApplySet inventory parent (default pushgate-system)")
    p.add_argument("--prune-protected", action="store_const", const=True, default=None,
                   help="also prune Namespaces, PVCs and CRDs removed from Git")
    p.add_argument("--health-timeout", default=_env("HEALTH_TIMEOUT"),
                   help="seconds an applied commit may take to become healthy before it is Failed "
                        "(default 300)")
    p.add_argument("--drift", default=_env("DRIFT"), choices=("correct", "detect", "off"),
                   help="correct out-of-band changes (default), only report them, or ignore them")
    p.add_argument("--no-force-conflicts", action="store_const", const=True, default=None,
                   help="do not take over fields another manager owns")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pushgate", description="A policy-gated Git server for Kubernetes.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gated git server")
    s.add_argument("--data-dir", default=_env("DATA_DIR"), help="where the bare repositories live")
    s.add_argument("--listen", default=_env("LISTEN", "127.0.0.1:8080"), help="HOST:PORT")
    s.add_argument("--users", default=_env("USERS"), help="users file (see 'pushgate user add')")
    s.add_argument("--policies", default=_env("POLICIES"),
                   help="Rego policy directory: the bootstrap source, used until policies.git has "
                        "a commit on main (which then wins)")
    s.add_argument("--opa-url", default=_env("OPA_URL"), help="use this OPA server instead of the "
                                                              "embedded engine")
    _build_flags(s)
    s.add_argument("--gated-ref", action="append", default=None,
                   help="ref checked by the gate (repeatable; default refs/heads/main)")
    s.add_argument("--protected-ref", action="append", default=None,
                   help="ref with no force-push or deletion (repeatable; default refs/heads/main)")
    s.add_argument("--require-signed", action="append", default=None, metavar="REF_GLOB",
                   help="refs whose new commits must each be signed by a key allowed for the pusher "
                        "(repeatable), e.g. 'refs/heads/*'")
    s.add_argument("--allowed-signers", default=_env("ALLOWED_SIGNERS"), metavar="FILE",
                   help="OpenSSH allowed_signers file for SSH-signed commits; principals are "
                        "pushgate user names")
    s.add_argument("--openpgp-keys", default=_env("OPENPGP_KEYS"), metavar="FILE",
                   help="armored OpenPGP public keys for OpenPGP-signed commits; bind them to users "
                        "with openpgpKeys in the users file")
    s.add_argument("--max-pack-bytes", default=_env("MAX_PACK_BYTES", str(100 * 1024 * 1024)),
                   help="largest push accepted, in bytes (default 100 MiB)")
    s.add_argument("--gate-timeout", default=_env("GATE_TIMEOUT"),
                   help="seconds the gate (live check included) may take per push (default 30)")
    s.add_argument("--body-timeout", default=_env("BODY_TIMEOUT", "60"),
                   help="seconds a request body may take, plus 1 s per 16 KiB received (slow clients)")
    s.add_argument("--workers", default=_env("WORKERS", "1"),
                   help="server worker processes (default 1). Each holds its own gate caches and "
                        "policy engine and checks every push (the others warm up in the background): "
                        "about 130 MB more per worker at 5,000 manifests, for more clones served at "
                        "once (bench/RESULTS.md, rss and load)")
    s.add_argument("--threads", default=_env("THREADS", "32"),
                   help="threads per worker (default 32; idle connections hold none)")
    s.add_argument("--head-timeout", default=_env("HEAD_TIMEOUT", "10"),
                   help="seconds a connection has to send its request head (default 10)")
    s.add_argument("--kustomize", default=_env("KUSTOMIZE"),
                   help="kustomize binary (default: the pinned one)")
    s.add_argument("--anonymous-role", default=_env("ANONYMOUS_ROLE"), help="read, to allow anonymous clones")
    s.add_argument("--live-check", default=_env("LIVE_CHECK"),
                   choices=("auto", "required", "best-effort", "off"),
                   help="server-side dry-run and plan of each push against the cluster, through "
                        "the reconciler (default auto: required when a cluster is attached)")
    s.add_argument("--run-dir", default=_env("RUN_DIR"),
                   help="where the reconciler's live-check socket and token are (default DATA/run)")
    s.add_argument("--kubeconfig", default=_env("KUBECONFIG_FILE"),
                   help="attach a cluster: run the reconciler next to the server")
    s.add_argument("--in-cluster", action="store_true", help="attach the cluster this pod runs in")
    _reconcile_flags(s)

    r = sub.add_parser("reconcile", help="run the reconciler over a data dir (reads the "
                                         "configuration the server persisted there)")
    r.add_argument("--data-dir", default=_env("DATA_DIR"), help="the data directory 'pushgate serve' uses")
    r.add_argument("--kubeconfig", default=_env("KUBECONFIG_FILE"),
                   help="kubeconfig file (default: the in-cluster ServiceAccount)")
    _reconcile_flags(r)
    r.add_argument("--kustomize", default=_env("KUSTOMIZE"),
                   help="kustomize binary (default: the pinned one)")
    r.add_argument("--no-leader-elect", action="store_true",
                   help="do not take a Lease (only when a single reconciler runs)")
    r.add_argument("--lease-duration", default=_env("LEASE_DURATION", "15"),
                   help="seconds a leader's Lease lasts (default 15)")
    r.add_argument("--renew-deadline", default=_env("RENEW_DEADLINE", "10"),
                   help="seconds the leader may fail to renew before it stops leading (default 10)")
    r.add_argument("--retry-period", default=_env("RETRY_PERIOD", "2"),
                   help="seconds between attempts to take or renew the Lease (default 2)")
    r.add_argument("--probe-listen", default=_env("PROBE_LISTEN"),
                   help="HOST:PORT for the reconciler's /healthz and /readyz")
    r.add_argument("--run-dir", default=_env("RUN_DIR"),
                   help="where to serve live checks for the git server (default DATA/run)")
    r.add_argument("--no-live-check", action="store_true",
                   help="do not serve live checks (dry-run and plan) to the git server")

    im = sub.add_parser("automate", help="run image automation over a data dir (reads the "
                                         "configuration the server persisted there: images)")
    im.add_argument("--data-dir", default=_env("DATA_DIR"), help="the data directory 'pushgate serve' uses")
    im.add_argument("--kubeconfig", default=_env("KUBECONFIG_FILE"),
                    help="cluster credentials for images.credentialsSecret (default: in-cluster)")
    im.add_argument("--once", action="store_true", help="scan once, print the result and exit")

    st = sub.add_parser("status", help="show the deploy status")
    st.add_argument("--data-dir", default=_env("DATA_DIR"), help="the server's data directory")
    st.add_argument("--branch", default=None, help="default: the reconciled branch")
    st.add_argument("--json", action="store_true", help="print the whole status document as JSON")

    for name, what in (("validate", "run the gate over a working tree (pre-commit, CI)"),
                       ("render", "print the objects pushgate would apply for a tree (YAML stream)")):
        v = sub.add_parser(name, help=what)
        v.add_argument("directory", nargs="?" if name == "render" else None,
                       default="." if name == "render" else None, help="the working tree to read")
        v.add_argument("--data-dir", default=None,
                       help="use the configuration a server persisted in this data directory")
        _build_flags(v)
        v.add_argument("--kustomize", default=_env("KUSTOMIZE"),
                       help="kustomize binary (default: the pinned one)")
        if name == "validate":
            v.add_argument("--policies", default=_env("POLICIES"),
                           help="Rego policy directory (default: pushgate's starter policies)")
            v.add_argument("--opa-url", default=_env("OPA_URL"),
                           help="use this OPA server instead of the embedded engine")
            v.add_argument("--gate-timeout", default=_env("GATE_TIMEOUT"),
                           help="seconds the gate may take (default 30); the gate of a slower "
                                "tree answers that it could not decide")
            v.add_argument("-v", "--verbose", action="store_true",
                           help="also print the policy entry points found")

    u = sub.add_parser("user", help="manage users")
    usub = u.add_subparsers(dest="user_command", required=True)
    ua = usub.add_parser("add", help="add a user (or give one a new token); prints the token once")
    ua.add_argument("name", help="the user's name (the Basic-auth user name)")
    ua.add_argument("--users", default=_env("USERS"), required=_env("USERS") is None,
                    help="the users file (created if missing)")
    ua.add_argument("--role", required=True, choices=("read", "write", "admin"),
                    help="read: clone and fetch; write: push; admin: push, and prune past the guard")
    return p


class _ConfigExit(configmod.ConfigError):
    pass


def _split(value: str | None) -> list[str]:
    return [x.strip() for x in (value or "").split(",") if x.strip()]


def _int(flag: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _ConfigExit(f"{flag} {value!r} is not a whole number") from None


def _float(flag: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise _ConfigExit(f"{flag} {value!r} is not a number") from None


def _path(value: str | None) -> str | None:
    """A file flag made absolute: the persisted configuration must not depend on a cwd."""
    return os.path.abspath(value) if value else None


def _config(args: argparse.Namespace, base: configmod.Config | None = None) -> configmod.Config:
    """The configuration: the file (or `base`), then every flag that was given, each checked
    with an error naming the flag."""
    cfg = base or configmod.Config()
    if getattr(args, "config", None):
        cfg = configmod.load_file(args.config)
    split = _split
    overrides: list[tuple[str, str, str, Any]] = [
        ("--include", "build", "include",
         tuple(args.include or split(_env("INCLUDE"))) or None if hasattr(args, "include") else None),
        ("--exclude", "build", "exclude",
         tuple(args.exclude or split(_env("EXCLUDE"))) or None if hasattr(args, "exclude") else None),
        ("--kubernetes-version", "build", "kubernetes_version", getattr(args, "kubernetes_version", None)),
        ("--default-namespace", "build", "default_namespace", getattr(args, "default_namespace", None)),
        ("--missing-schema", "gate", "missing_schema", getattr(args, "missing_schema", None)),
        ("--policy-namespace", "gate", "policy_namespaces",
         tuple(args.policy_namespace) if getattr(args, "policy_namespace", None) else None),
        ("--gated-ref", "gate", "gated_refs",
         tuple(args.gated_ref) if getattr(args, "gated_ref", None) else None),
        ("--protected-ref", "gate", "protected_refs",
         tuple(args.protected_ref) if getattr(args, "protected_ref", None) else None),
        ("--live-check", "gate", "live_check", getattr(args, "live_check", None)),
        # the keys before the refs that need them: each override is validated as it is applied
        ("--allowed-signers", "gate", "allowed_signers", _path(getattr(args, "allowed_signers", None))),
        ("--openpgp-keys", "gate", "openpgp_keys", _path(getattr(args, "openpgp_keys", None))),
        ("--require-signed", "gate", "require_signed",
         tuple(args.require_signed or split(_env("REQUIRE_SIGNED"))) or None
         if hasattr(args, "require_signed") else None),
        ("--gate-timeout", "gate", "timeout",
         _float("--gate-timeout", args.gate_timeout) if getattr(args, "gate_timeout", None) else None),
        ("--branch", "reconcile", "branch", getattr(args, "branch", None)),
        ("--inventory-namespace", "reconcile", "inventory_namespace",
         getattr(args, "inventory_namespace", None)),
        ("--prune-protected", "reconcile", "prune_protected", getattr(args, "prune_protected", None)),
        ("--health-timeout", "reconcile", "health_timeout",
         _float("--health-timeout", args.health_timeout) if getattr(args, "health_timeout", None)
         else None),
        ("--drift", "reconcile", "drift", getattr(args, "drift", None)),
        ("--no-force-conflicts", "reconcile", "force_conflicts",
         False if getattr(args, "no_force_conflicts", None) else None),
    ]
    for flag, section, name, value in overrides:
        try:
            cfg = cfg.replace(section, **{name: value})
        except configmod.ConfigError as e:
            raise _ConfigExit(f"{flag}: {e}") from e
    return cfg


def _serve(args: argparse.Namespace) -> int:
    # Not gitserver.app: gunicorn's master only forks workers, each builds its own app.
    from gitserver import settings, wsgi

    cfg = _config(args)
    attach = bool(args.kubeconfig or args.in_cluster)
    if attach:
        configmod.check_reconciled_branch_is_gated(cfg)
    live_check = cfg.gate.live_check
    if live_check == "auto":
        live_check = "required" if attach else "off"
    run_dir = args.run_dir or datadir.run_dir(args.data_dir or "")
    s = settings.Settings(
        data_dir=args.data_dir or "", listen=args.listen, users_file=args.users or "",
        policies_dir=args.policies or settings.default_policies_dir(), opa_url=args.opa_url,
        config=cfg, live_check=live_check, run_dir=run_dir,
        max_pack_bytes=_int("--max-pack-bytes", args.max_pack_bytes),
        body_timeout=_float("--body-timeout", args.body_timeout),
        workers=_int("--workers", args.workers), threads=_int("--threads", args.threads),
        head_timeout=_float("--head-timeout", args.head_timeout),
        kustomize=args.kustomize or settings.default_kustomize(),
        anonymous_role=args.anonymous_role,
    )
    settings.validate(s)
    from gitserver import auth
    from pushgate import observe

    # Every operator error surfaces here, before anything is created or started.
    users = auth.load_users(s.users_file)
    _check_automation(cfg, users)
    _check_notifications(cfg)
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        raise _ConfigExit(f"--kubeconfig {args.kubeconfig} does not exist")
    _check_port(s.listen)
    observe.reset(s.data_dir)
    # Build once (repository recovery included) before any worker forks.
    code = _in_child(lambda: _build_once(s, args.kubeconfig))
    if code != 0:
        return code
    # The one configuration the reconciler (and `validate --data-dir`) will build with.
    configmod.persist(s.data_dir, cfg)
    host, port = s.host_port
    reconciler = None
    if attach:
        # The reconciler runs as its own process (as in the deploy shape), never a thread in
        # gunicorn's forking master; it reads the configuration persisted above.
        import subprocess

        argv = [sys.executable, "-m", "pushgate.cli", "reconcile", f"--data-dir={s.data_dir}",
                f"--run-dir={run_dir}"]
        if live_check == "off":
            argv.append("--no-live-check")
        if args.kubeconfig:
            argv.append(f"--kubeconfig={args.kubeconfig}")
        if s.kustomize:
            argv.append(f"--kustomize={s.kustomize}")
        env = {k: v for k, v in os.environ.items() if k not in _RECONCILE_ENV}
        reconciler = subprocess.Popen(argv, env=env)
    # Where pushgate's own commits (image bumps, automatic reverts) are pushed: this server.
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, datadir.SERVER_URL), "w", encoding="utf-8") as f:
        local = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - read, not bound
        f.write(f"http://{local}:{port}\n")
    automation = None
    if cfg.images is not None:  # image automation: its own process, like the reconciler
        import subprocess

        argv = [sys.executable, "-m", "pushgate.cli", "automate", f"--data-dir={s.data_dir}"]
        if args.kubeconfig:
            argv.append(f"--kubeconfig={args.kubeconfig}")
        automation = subprocess.Popen(argv)
    print(f"pushgate: policies by GitOps (admin pushes) at http://{host}:{port}/{datadir.POLICY_REPO}",
          file=sys.stderr, flush=True)
    print(f"pushgate: serving {s.data_dir} on http://{host}:{port}/{datadir.REPO}",
          file=sys.stderr, flush=True)
    # The public port is the buffering front's; gunicorn listens on a private Unix socket.
    import subprocess

    backend = wsgi.backend_socket(run_dir)
    front = subprocess.Popen([sys.executable, "-m", "gitserver.front", f"--listen={s.listen}",
                              f"--backend={backend}", f"--head-timeout={s.head_timeout}",
                              f"--idle-timeout={s.body_timeout}",
                              f"--max-backend={s.workers * s.threads}"])
    try:
        wsgi.serve(s, lambda: _app(s), bind=f"unix:{backend}")
    finally:
        for child in (front, reconciler, automation):
            if child is not None:
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
    return 0


def _app(s: Any) -> Any:
    from gitserver import app

    return app.create_app(s)


def _build_once(s: Any, kubeconfig: str | None) -> None:
    if kubeconfig:
        _check_kubeconfig(kubeconfig)
    _app(s).close()


def _in_child(work: Any) -> int:
    """`work()` in a forked child; its exit code (a ConfigError printed as `main` prints one).
    What it imports and loads (the app, dulwich, flask, the schemas, the kubernetes client: 25-60
    MB) then never enters gunicorn's master, which only forks the workers (bench/RESULTS.md, rss)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        except (configmod.ConfigError, _ConfigExit) as e:
            print(f"pushgate: {e}", file=sys.stderr)
            code = EXIT_CONFIG
        except BaseException:
            logging.getLogger("pushgate.serve").exception("pushgate serve could not start")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1


def _check_automation(cfg: configmod.Config, users: dict[str, Any]) -> None:
    """The automation user exists, and its token file is readable and holds its token."""
    from gitserver import auth

    a = cfg.automation
    if not a.user:
        return
    if a.user not in users:
        raise _ConfigExit(f"automation.user {a.user!r} is not in the users file (add it with "
                          f"`pushgate user add {a.user} --role write`)")
    try:
        with open(a.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise _ConfigExit(f"automation.tokenFile {a.token_file}: cannot read: {e.strerror}") from e
    if not token or auth.Authenticator.matches(users[a.user], token) is False:
        raise _ConfigExit(f"automation.tokenFile {a.token_file} does not hold {a.user}'s token")


# The reconciler started by `serve` takes these from the persisted configuration only.
_RECONCILE_ENV = {f"PUSHGATE_{n}" for n in ("BRANCH", "INVENTORY_NAMESPACE", "HEALTH_TIMEOUT", "DRIFT")}


def _reconcile(args: argparse.Namespace) -> int:
    import signal
    import threading

    from gitserver.settings import default_kustomize
    from reconciler.cluster import Cluster
    from reconciler.loop import Reconciler

    if not args.data_dir:
        raise _ConfigExit("--data-dir / PUSHGATE_DATA_DIR is required")
    if args.kubeconfig:
        if not os.path.isfile(args.kubeconfig):
            raise _ConfigExit(f"--kubeconfig {args.kubeconfig} does not exist")
        _check_kubeconfig(args.kubeconfig)
    elif not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise _ConfigExit("--kubeconfig is required outside a cluster")
    persisted = configmod.load_persisted(args.data_dir)
    cfg = _config(args, persisted)
    if persisted is not None:
        configmod.check_reconciled_branch_is_gated(cfg)
    rc = cfg.reconcile

    def connect() -> Cluster:
        return Cluster.from_kubeconfig(args.kubeconfig, force_conflicts=rc.force_conflicts)

    loop = Reconciler(args.data_dir, connect, branch=rc.branch,
                      inventory_namespace=rc.inventory_namespace,
                      health_timeout=rc.health_timeout, kustomize=args.kustomize or default_kustomize(),
                      prune_protected=rc.prune_protected, drift_mode=rc.drift,
                      leader_elect=not args.no_leader_elect,
                      lease=(_float("--lease-duration", args.lease_duration),
                             _float("--renew-deadline", args.renew_deadline),
                             _float("--retry-period", args.retry_period)),
                      automation=cfg.automation, run_dir=args.run_dir or None)
    from pushgate import observe

    observe.setup(args.data_dir, "reconciler")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.probe_listen:
        from reconciler import probes

        probes.serve(args.probe_listen, loop)
    server = None
    if not args.no_live_check:
        from reconciler import live, liveserver

        checker = live.LiveChecker(_lazy_cluster(connect), inventory_namespace=rc.inventory_namespace,
                                   prune_protected=rc.prune_protected)
        try:
            server = liveserver.serve(args.run_dir or datadir.run_dir(args.data_dir), checker)
        except (OSError, ValueError) as e:
            raise _ConfigExit(f"--run-dir: cannot serve live checks: {e}") from e
    notifier = None
    if cfg.notifications:  # delivered from here too: a reconciler may run with no git server
        from pushgate.notify import dispatcher

        notifier = dispatcher.Dispatcher(args.data_dir).start()
    print(f"pushgate: reconciling {args.data_dir} branch {rc.branch}", file=sys.stderr, flush=True)
    try:
        loop.run(stop)
    finally:
        if server is not None:
            server.stop()
        if notifier is not None:
            notifier.stop()
    return 0


def _automate(args: argparse.Namespace) -> int:
    import json
    import signal
    import threading

    from pushgate.automation import scanner

    if not args.data_dir:
        raise _ConfigExit("--data-dir / PUSHGATE_DATA_DIR is required")
    cfg = configmod.load_persisted(args.data_dir)
    if cfg is None or cfg.images is None:
        raise _ConfigExit(f"--data-dir {args.data_dir}: no images section in the persisted "
                          f"configuration (give `pushgate serve` a --config with images:)")
    scan = scanner.Scanner(args.data_dir, cfg, kubeconfig=args.kubeconfig)
    if args.once:
        doc = scan.scan()
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0 if doc.get("result") in ("unchanged", "committed") else 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"pushgate: image automation on {args.data_dir} branch {scan.branch}, every "
          f"{cfg.images.interval:g}s", file=sys.stderr, flush=True)
    scan.run(stop)
    return 0


def _check_notifications(cfg: configmod.Config) -> None:
    """The notification secrets readable now (their contents never printed)."""
    from pushgate.notify import errors as notify_errors
    from pushgate.notify import settings as notify_settings

    try:
        notify_settings.check_files(cfg.notifications)
    except notify_errors.SettingsError as e:
        raise _ConfigExit(f"--config: {e}") from e


def _notification_lines(data_dir: str, cfg: configmod.Config | None) -> list[str]:
    """One line per destination: its name and what is spooled for it (never its URL)."""
    from pushgate.notify import outbox

    if cfg is None or not cfg.notifications:
        return []
    found = outbox.counts(data_dir, [d.name for d in cfg.notifications])
    return [f"notify {name:<9} {c['pending'] + c['inflight']} pending, {c['dead']} dead letters"
            for name, c in sorted(found.items())]


def _lazy_cluster(connect: Any) -> Any:
    """A cluster connection of the live checker's own, made on first use and again after a
    failure to connect (the reconcile loop keeps its own)."""
    import threading

    lock = threading.Lock()
    held: list[Any] = []

    def provide() -> Any:
        with lock:
            if not held:
                try:
                    held.append(connect())
                except Exception:
                    return None
            return held[0]

    return provide


def _check_port(listen: str) -> None:
    import socket

    host, _, port = listen.rpartition(":")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as e:
            raise _ConfigExit(f"--listen {listen}: cannot listen there ({e.strerror})") from e


def _check_kubeconfig(path: str) -> None:
    from kubernetes import config

    try:
        config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
    except Exception as e:  # the client raises several types for a bad file
        raise _ConfigExit(f"--kubeconfig {path} is not usable: {str(e).splitlines()[0][:200]}") from e


def _status(args: argparse.Namespace) -> int:
    import json

    if not args.data_dir:
        raise _ConfigExit("--data-dir / PUSHGATE_DATA_DIR is required")
    persisted = configmod.load_persisted(args.data_dir)
    branch = args.branch or (persisted.reconcile.branch if persisted else "main")
    doc: Any = datadir.read_status(args.data_dir, branch)
    notes = _notification_lines(args.data_dir, persisted)
    if persisted is not None and persisted.images is not None:
        from pushgate.automation import status as images_status

        notes += images_status.summary(images_status.read(args.data_dir))
    if doc is None:
        print(f"pushgate: no deploy status yet for branch {branch} (is a reconciler attached?)")
        for line in notes:
            print(line)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    for line in notes:
        print(line)
    for c in doc.get("conditions", []):
        print(f"{c['type']:<12} {c['status']:<6} {c['reason']}: {c['message']}")
    leader = datadir.leader_summary(args.data_dir, branch)
    print(f"leader:         {doc.get('leader') or '-'}" + (f" ({leader})" if leader else ""))
    print(f"last attempted: {doc.get('lastAttemptedRevision', '-')}")
    print(f"last applied:   {doc.get('lastAppliedRevision', '-')}")
    passed_by = (doc.get("verdict") or {}).get("policySource")
    if passed_by:  # the policy commit (or directory) the gate checked the last attempt with
        print(f"policies:       {datadir.policy_source_text(passed_by)}")
    cl = doc.get("cluster") or {}
    if cl and not cl.get("reachable", True):
        print(f"cluster: UNREACHABLE since {time.strftime('%H:%M:%S', time.localtime(cl['since']))}: "
              f"{cl.get('message', '')}")
    for o in doc.get("objects", []):
        print(f"  {o['ref']:<50} {o['action']:<12} {o.get('health', ''):<10} {o.get('message', '')}")
    for h in doc.get("history", [])[:10]:
        print(f"  {h['revision'][:12]} {h['result']:<12} {h.get('message', '')[:60]}")
    return 0


def _tree_config(args: argparse.Namespace) -> configmod.Config:
    base = None
    if args.data_dir:
        base = configmod.load_persisted(args.data_dir)
        if base is None:
            raise _ConfigExit(f"--data-dir {args.data_dir}: no configuration persisted there "
                              f"(has 'pushgate serve' run on it?)")
    return _config(args, base)


def _validate(args: argparse.Namespace) -> int:
    from pushgate.gate import prestart

    # The policies' compiler starts while the rest of the gate is imported (~0.15 s sooner;
    # the console script, pushgate.launch, has started it and the engine's worker already).
    prestart.start()
    from gitserver.settings import default_kustomize, default_policies_dir
    from pushgate.gate import policies, policysource

    if not os.path.isdir(args.directory):
        raise _ConfigExit(f"{args.directory} is not a directory")
    cfg = _tree_config(args)
    policy_dir, commit = args.policies or default_policies_dir(), ""
    if args.data_dir and not args.policies:  # the server's active policy commit, as it judges
        from gitserver import activepolicy

        commit = activepolicy.active_commit(args.data_dir)
        if commit:
            policy_dir = activepolicy.commit_directory(args.data_dir, commit)
    # The policies load (their plan compiled by the worker, usually asked for by
    # pushgate.launch already) while the rest of the gate is imported, and the engine's worker
    # is given them as soon as they are: the thread mostly waits for workers, the imports hold
    # this one (~0.1 s).
    loaded: list[policysource.Source | BaseException] = []
    engines: list[policies.PolicyEngine] = []

    def load() -> None:
        try:
            source = policysource.load(policy_dir, cfg.gate.policy_namespaces or None, commit=commit)
        except BaseException as e:  # handed to the main thread below
            loaded.append(e)
            return
        loaded.append(source)
        if not args.opa_url:
            # Its worker compiles the policies while this process imports the gate and lists
            # the tree. A worker that fails to start now is started again by the check, which
            # reports it.
            from pushgate.gate.embedded import EmbeddedEngine

            engine = EmbeddedEngine(source.policy_set)
            engines.append(engine)
            with contextlib.suppress(Exception):
                engine.start()

    loader = threading.Thread(target=load, name="policy-load", daemon=True)
    loader.start()
    from pushgate.build.sources import DirTree
    from pushgate.core import violations as pv
    from pushgate.gate import enforcement
    from pushgate.gate import gate as gatemod
    from pushgate.gate.opaserver import OpaServerEngine

    loader.join()
    source = loaded[0]
    if isinstance(source, policies.PolicyError):
        raise _ConfigExit(f"{f'policies.git commit {commit[:12]}' if commit else '--policies'}: "
                          f"{source}") from source
    if isinstance(source, BaseException):
        raise source
    policy_set = source.policy_set
    if args.verbose:
        for line in source.describe():
            print(f"pushgate: {line}", file=sys.stderr)
    if args.opa_url:
        engine: policies.PolicyEngine = OpaServerEngine(args.opa_url, policy_set)
    else:
        from pushgate.gate.embedded import EmbeddedEngine

        engine = engines[0] if engines else EmbeddedEngine(policy_set)
    config = gatemod.GateConfig(build=cfg.build, missing_schema=cfg.gate.missing_schema,
                                timeout=cfg.gate.timeout)
    try:
        g = gatemod.Gate(config, engine=engine, kustomize_bin=args.kustomize or default_kustomize())
    except ValueError as e:
        engine.close()
        raise _ConfigExit(f"--kubernetes-version: {e}") from e
    try:
        _b, found = g.check(DirTree(args.directory), {"pusher": os.environ.get("USER", ""),
                                                       "role": "", "ref": "", "changed_paths": []},
                            time.monotonic() + config.timeout, digest=False)
    except (policies.EngineUnavailable, gatemod.GateTimeout) as e:
        print(f"pushgate: gate could not decide: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the same promise as the server: a refusal, never a traceback
        logging.getLogger(__name__).debug("gate failed", exc_info=True)
        print(f"pushgate: gate could not decide: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        g.close()
    found = enforcement.apply_findings(found, source.overrides)
    lines = pv.report(found, files=_b.files, objects=len(_b.manifests), exceptions=len(found.exceptions))
    for line in lines[:-1] + [str(e) for e in found.exceptions]:
        print(line)
    print(lines[-1])
    return 1 if any(v.is_error for v in found) else 0


def _render(args: argparse.Namespace) -> int:
    import yaml

    from gitserver.settings import default_kustomize
    from pushgate.build import build as buildmod
    from pushgate.build.sources import DirTree
    from pushgate.core import violations as pv

    if not os.path.isdir(args.directory):
        raise _ConfigExit(f"{args.directory} is not a directory")
    cfg = _tree_config(args)
    builder = buildmod.Builder(cfg.build, kustomize_bin=args.kustomize or default_kustomize())
    try:
        built = builder.build(DirTree(args.directory))
    except Exception as e:
        print(f"pushgate: build failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    errors = [v for v in built.problems if v.is_error]
    if errors:
        for line in pv.report(built.problems, files=built.files, objects=len(built.manifests)):
            print(line, file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(built.objects, sort_keys=False, explicit_start=True))
    print(f"pushgate: {len(built.manifests)} objects from {built.files} files, digest "
          f"{built.digest()[:16]}", file=sys.stderr)
    return 0


def _user_add(args: argparse.Namespace) -> int:
    from gitserver import auth

    token = auth.add_user(args.users, args.name, args.role)
    print(token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pushgate import observe

    if args.command in ("serve", "reconcile", "automate"):
        observe.configure_logging(_env("LOG_FORMAT", "json") or "json")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "reconcile":
            return _reconcile(args)
        if args.command == "automate":
            return _automate(args)
        if args.command == "status":
            return _status(args)
        if args.command == "render":
            return _render(args)
        return _user_add(args)
    except (configmod.ConfigError, _ConfigExit) as e:
        print(f"pushgate: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
