"""The `pushgate` command: serve, validate, user add.

Operator errors (a bad flag or variable, a missing users file, bad policies) print one line
naming what to fix and exit 2 before anything starts; nothing prints a traceback at a user.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

EXIT_CONFIG = 2


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"PUSHGATE_{name}", default)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pushgate", description="A policy-gated Git server for Kubernetes.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gated git server")
    s.add_argument("--data-dir", default=_env("DATA_DIR"), help="where the bare repositories live")
    s.add_argument("--listen", default=_env("LISTEN", "127.0.0.1:8080"), help="HOST:PORT")
    s.add_argument("--users", default=_env("USERS"), help="users file (see 'pushgate user add')")
    s.add_argument("--policies", default=_env("POLICIES"), help="Rego policy directory")
    s.add_argument("--opa-url", default=_env("OPA_URL"), help="use this OPA server instead of the "
                                                              "embedded engine")
    s.add_argument("--kubernetes-version", default=_env("KUBERNETES_VERSION", "1.37"))
    s.add_argument("--gated-ref", action="append", default=None,
                   help="ref checked by the gate (repeatable; default refs/heads/main)")
    s.add_argument("--protected-ref", action="append", default=None,
                   help="ref with no force-push or deletion (repeatable; default refs/heads/main)")
    s.add_argument("--include", action="append", default=None,
                   help="manifest file pattern (repeatable; default *.yaml, *.yml, *.json)")
    s.add_argument("--exclude", action="append", default=None,
                   help="path pattern to leave out of the gate (repeatable), e.g. 'docs/*'")
    s.add_argument("--missing-schema", default=_env("MISSING_SCHEMA", "error"),
                   choices=None, help="error or warning for kinds with no schema")
    s.add_argument("--max-pack-bytes", default=_env("MAX_PACK_BYTES", str(100 * 1024 * 1024)))
    s.add_argument("--gate-timeout", default=_env("GATE_TIMEOUT", "30"))
    s.add_argument("--body-timeout", default=_env("BODY_TIMEOUT", "60"),
                   help="seconds a request body may take, plus 1 s per 16 KiB received (slow clients)")
    s.add_argument("--workers", default=_env("WORKERS", "2"))
    s.add_argument("--threads", default=_env("THREADS", "4"))
    s.add_argument("--kustomize", default=_env("KUSTOMIZE"),
                   help="kustomize binary (default: the pinned one)")
    s.add_argument("--anonymous-role", default=_env("ANONYMOUS_ROLE"), help="read, to allow anonymous clones")

    s.add_argument("--kubeconfig", default=_env("KUBECONFIG_FILE"),
                   help="attach a cluster: run the reconciler next to the server")
    s.add_argument("--in-cluster", action="store_true", help="attach the cluster this pod runs in")

    r = sub.add_parser("reconcile", help="run the reconciler over a data dir")
    r.add_argument("--data-dir", default=_env("DATA_DIR"))
    r.add_argument("--kubeconfig", default=_env("KUBECONFIG_FILE"),
                   help="kubeconfig file (default: the in-cluster ServiceAccount)")
    r.add_argument("--branch", default=_env("BRANCH", "main"))
    r.add_argument("--inventory-namespace", default=_env("INVENTORY_NAMESPACE", "pushgate-system"))
    r.add_argument("--prune-protected", action="store_true",
                   help="also prune Namespaces, PVCs and CRDs removed from Git")
    r.add_argument("--health-timeout", default=_env("HEALTH_TIMEOUT", "300"))
    r.add_argument("--kustomize", default=_env("KUSTOMIZE"))
    r.add_argument("--no-leader-elect", action="store_true",
                   help="do not take a Lease (only when a single reconciler runs)")
    r.add_argument("--lease-duration", default=_env("LEASE_DURATION", "15"))
    r.add_argument("--renew-deadline", default=_env("RENEW_DEADLINE", "10"))
    r.add_argument("--retry-period", default=_env("RETRY_PERIOD", "2"))
    r.add_argument("--probe-listen", default=_env("PROBE_LISTEN"),
                   help="HOST:PORT for the reconciler's /healthz and /readyz")
    r.add_argument("--drift", default=_env("DRIFT", "correct"), choices=("correct", "detect", "off"),
                   help="correct out-of-band changes (default), only report them, or ignore them")
    r.add_argument("--no-force-conflicts", action="store_true",
                   help="do not take over fields another manager owns")

    st = sub.add_parser("status", help="show the deploy status")
    st.add_argument("--data-dir", default=_env("DATA_DIR"))
    st.add_argument("--branch", default="main")
    st.add_argument("--json", action="store_true")

    v = sub.add_parser("validate", help="run the gate over a working tree (pre-commit, CI)")
    v.add_argument("directory")
    v.add_argument("--policies", default=_env("POLICIES"))
    v.add_argument("--opa-url", default=_env("OPA_URL"))
    v.add_argument("--kubernetes-version", default=_env("KUBERNETES_VERSION", "1.37"))
    v.add_argument("--missing-schema", default=_env("MISSING_SCHEMA", "error"))
    v.add_argument("--kustomize", default=_env("KUSTOMIZE"))

    u = sub.add_parser("user", help="manage users")
    usub = u.add_subparsers(dest="user_command", required=True)
    ua = usub.add_parser("add", help="add a user (or give one a new token); prints the token once")
    ua.add_argument("name")
    ua.add_argument("--users", default=_env("USERS"), required=_env("USERS") is None)
    ua.add_argument("--role", required=True, choices=("read", "write", "admin"))
    return p


class _ConfigExit(Exception):
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


def _serve(args: argparse.Namespace) -> int:
    from gitserver import app, repos, settings, wsgi

    s = settings.Settings(
        data_dir=args.data_dir or "", listen=args.listen, users_file=args.users or "",
        policies_dir=args.policies or settings.default_policies_dir(), opa_url=args.opa_url,
        kubernetes_version=args.kubernetes_version,
        gated_refs=tuple(args.gated_ref or ("refs/heads/main",)),
        protected_refs=tuple(args.protected_ref or ("refs/heads/main",)),
        missing_schema=args.missing_schema,
        include=tuple(args.include or _split(_env("INCLUDE")) or ("*.yaml", "*.yml", "*.json")),
        exclude=tuple(args.exclude or _split(_env("EXCLUDE"))),
        max_pack_bytes=_int("--max-pack-bytes", args.max_pack_bytes),
        gate_timeout=_float("--gate-timeout", args.gate_timeout),
        body_timeout=_float("--body-timeout", args.body_timeout),
        workers=_int("--workers", args.workers), threads=_int("--threads", args.threads),
        kustomize=args.kustomize or settings.default_kustomize(),
        anonymous_role=args.anonymous_role,
    )
    settings.validate(s)
    from gitserver import auth
    from pushgate import observe

    # Every operator error surfaces here, before anything is created or started.
    auth.load_users(s.users_file)
    if args.kubeconfig:
        if not os.path.isfile(args.kubeconfig):
            raise _ConfigExit(f"--kubeconfig {args.kubeconfig} does not exist")
        _check_kubeconfig(args.kubeconfig)
    _check_port(s.listen)
    observe.reset(s.data_dir)
    # Build once in the master (repository recovery included) before any worker forks.
    app.create_app(s).close()
    host, port = s.host_port
    reconciler = None
    if args.kubeconfig or args.in_cluster:
        # The reconciler runs as its own process (as in the deploy shape), never a thread in
        # gunicorn's forking master.
        import subprocess

        argv = [sys.executable, "-m", "pushgate.cli", "reconcile", f"--data-dir={s.data_dir}"]
        if args.kubeconfig:
            argv.append(f"--kubeconfig={args.kubeconfig}")
        if s.kustomize:
            argv.append(f"--kustomize={s.kustomize}")
        reconciler = subprocess.Popen(argv)
    print(f"pushgate: serving {s.data_dir} on http://{host}:{port}/{repos.DEFAULT_REPO}",
          file=sys.stderr, flush=True)
    try:
        wsgi.serve(s, lambda: app.create_app(s))
    finally:
        if reconciler is not None:
            reconciler.terminate()
            try:
                reconciler.wait(10)
            except subprocess.TimeoutExpired:
                reconciler.kill()
    return 0


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
    health_timeout = _float("--health-timeout", args.health_timeout)
    force = not args.no_force_conflicts

    def connect() -> Cluster:
        return Cluster.from_kubeconfig(args.kubeconfig, force_conflicts=force)

    loop = Reconciler(args.data_dir, connect, branch=args.branch,
                      inventory_namespace=args.inventory_namespace,
                      health_timeout=health_timeout, kustomize=args.kustomize or default_kustomize(),
                      prune_protected=args.prune_protected, drift_mode=args.drift,
                      leader_elect=not args.no_leader_elect,
                      lease=(_float("--lease-duration", args.lease_duration),
                             _float("--renew-deadline", args.renew_deadline),
                             _float("--retry-period", args.retry_period)))
    from pushgate import observe

    observe.setup(args.data_dir, "reconciler")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.probe_listen:
        from reconciler import probes

        probes.serve(args.probe_listen, loop)
    print(f"pushgate: reconciling {args.data_dir} branch {args.branch}", file=sys.stderr, flush=True)
    loop.run(stop)
    return 0


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
    path = os.path.join(args.data_dir, "status", f"{args.branch}.json")
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        print(f"pushgate: no deploy status yet for branch {args.branch} (is a reconciler attached?)")
        return 1
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    for c in doc.get("conditions", []):
        print(f"{c['type']:<12} {c['status']:<6} {c['reason']}: {c['message']}")
    print(f"last attempted: {doc.get('lastAttemptedRevision', '-')}")
    print(f"last applied:   {doc.get('lastAppliedRevision', '-')}")
    cl = doc.get("cluster") or {}
    if cl and not cl.get("reachable", True):
        print(f"cluster: UNREACHABLE since {time.strftime('%H:%M:%S', time.localtime(cl['since']))}: "
              f"{cl.get('message', '')}")
    for o in doc.get("objects", []):
        print(f"  {o['ref']:<50} {o['action']:<12} {o.get('health', ''):<10} {o.get('message', '')}")
    for h in doc.get("history", [])[:10]:
        print(f"  {h['revision'][:12]} {h['result']:<12} {h.get('message', '')[:60]}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    import time

    from gitserver.settings import default_kustomize, default_policies_dir
    from pushgate.core import violations as pv
    from pushgate.gate import gate as gatemod
    from pushgate.gate import policies
    from pushgate.gate.embedded import EmbeddedEngine
    from pushgate.gate.opaserver import OpaServerEngine
    from pushgate.gate.sources import DirTree

    if not os.path.isdir(args.directory):
        raise _ConfigExit(f"{args.directory} is not a directory")
    try:
        policy_set = policies.load(args.policies or default_policies_dir())
    except policies.PolicyError as e:
        raise _ConfigExit(f"--policies: {e}") from e
    engine: policies.PolicyEngine = (OpaServerEngine(args.opa_url, policy_set) if args.opa_url
                                     else EmbeddedEngine(policy_set))
    config = gatemod.GateConfig(kubernetes_version=args.kubernetes_version,
                                missing_schema=args.missing_schema)
    try:
        g = gatemod.Gate(config, engine=engine, kustomize_bin=args.kustomize or default_kustomize())
    except ValueError as e:
        raise _ConfigExit(f"--kubernetes-version: {e}") from e
    try:
        _b, found = g.check(DirTree(args.directory), {"pusher": os.environ.get("USER", ""),
                                                       "ref": "", "changed_paths": []},
                            time.monotonic() + config.timeout)
    except (policies.EngineUnavailable, gatemod.GateTimeout) as e:
        print(f"pushgate: gate could not decide: {e}", file=sys.stderr)
        return 1
    finally:
        g.close()
    for line in pv.report(found):
        print(line)
    return 1 if any(v.is_error for v in found) else 0


def _user_add(args: argparse.Namespace) -> int:
    from gitserver import auth

    token = auth.add_user(args.users, args.name, args.role)
    print(token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pushgate import observe

    if args.command in ("serve", "reconcile"):
        observe.configure_logging(_env("LOG_FORMAT", "json") or "json")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from gitserver.errors import ConfigError

    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "reconcile":
            return _reconcile(args)
        if args.command == "status":
            return _status(args)
        return _user_add(args)
    except (ConfigError, _ConfigExit) as e:
        print(f"pushgate: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
