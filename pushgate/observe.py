"""Metrics and logs shared by the git server and the reconciler.

Metrics use prometheus_client in multiprocess mode: gunicorn workers and the reconciler (its own
process, maybe its own container on the shared volume) write to `<data-dir>/.metrics`, and the
git server's `/metrics` aggregates them. `setup(data_dir, role)` must run before any metric is
touched. Logs are JSON lines with the request id (and the commit, where there is one).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import shutil
import sys
import time
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_metrics: dict[str, Any] = {}


def metrics_dir(data_dir: str) -> str:
    return os.path.join(data_dir, ".metrics")


def reset(data_dir: str) -> None:
    """At server start, before any worker: stale files of dead processes would count twice."""
    shutil.rmtree(metrics_dir(data_dir), ignore_errors=True)
    os.makedirs(metrics_dir(data_dir), exist_ok=True)


def setup(data_dir: str, role: str) -> None:
    directory = metrics_dir(data_dir)
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import values

    # Two containers of one pod can both be pid 1: name the files by role as well.
    values.ValueClass = values.MultiProcessValue(lambda: f"{role}-{os.getpid()}")  # type: ignore[no-untyped-call]
    _define()


def _define() -> None:
    if _metrics:
        return
    from prometheus_client import Counter, Histogram

    _metrics["pushes"] = Counter("pushgate_pushes_total", "Pushes by result and reason",
                                 ["result", "reason"])
    _metrics["gate_seconds"] = Histogram(
        "pushgate_gate_seconds", "Time from receive to verdict",
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
    _metrics["apply"] = Counter("pushgate_apply_objects_total", "Objects by apply result", ["action"])
    _metrics["drift"] = Counter("pushgate_drift_total", "Drift events", ["corrected"])
    _metrics["reconcile_seconds"] = Histogram(
        "pushgate_reconcile_seconds", "Duration of one reconcile of a commit",
        buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
    _metrics["verdict_refusals"] = Counter(
        "pushgate_reconcile_refusals_total",
        "Commits not applied because the gate's verdict does not cover what was built", ["reason"])
    _metrics["verdicts"] = Counter("pushgate_commit_verdicts_total", "Commit verdicts", ["verdict"])
    _metrics["notifications"] = Counter(
        "pushgate_notifications_total", "Notification attempts by destination and result "
        "(delivered, retried, dead-letter)", ["destination", "result"])
    _metrics["notification_dead_letters"] = Counter(
        "pushgate_notification_dead_letters_total",
        "Notifications given up on (retries or age exhausted, or refused by the receiver)",
        ["destination"])


def metric(name: str) -> Any:
    """A defined metric, or a no-op stand-in when metrics were not set up (library use, tests)."""
    m = _metrics.get(name)
    return m if m is not None else _Noop()


class _Noop:
    def labels(self, *_a: Any, **_k: Any) -> _Noop:
        return self

    def inc(self, *_a: Any) -> None:
        pass

    def observe(self, *_a: Any) -> None:
        pass


def exposition(data_dir: str) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics_dir(data_dir))  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            doc["request_id"] = rid
        for key in ("commit", "pusher", "repo", "ref"):
            value = getattr(record, key, None)
            if value:
                doc[key] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(doc)


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "kubernetes", "dulwich"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
