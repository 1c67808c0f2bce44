"""The embedded policy engine (default): regopy in supervised worker processes.

Called by the gate through the `PolicyEngine` protocol. One worker per server process, used by
one request at a time (a lock); a crash, a timeout or garbage on the pipe refuses the push with
the reason (fail closed), and the next call starts a fresh worker, so the server stays up. The
worker gets the entry points split by whether they can read the push context (from the policy
set's compiled plan), so only those are rebuilt with each new push.

Speed: rego-cpp decides one object at a time on one core (1-5 ms of CPU per object under the
starter policies, a Deployment costing the most). A big batch (a first push, `pushgate validate`)
is cut into chunks that the primary worker and helpers (up to `workers`, one per core by
default) take as they become free (two queued each, so none waits for this process; one still
compiling does not hold up the others); helpers exit after the batch, so an idle server keeps
one worker. `start()` spawns and compiles without waiting, so the gate can have the worker ready
while it parses; `evaluate_feed` takes objects while the gate is still parsing them (chunks go
out as they fill, helpers start once enough have arrived).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from pushgate.gate import prestart
from pushgate.gate.feed import Feed
from pushgate.gate.policies import EngineTimeout, EngineUnavailable, PolicySet

CHUNK = 48  # objects per request when a batch is shared between workers
DEPTH = 2  # requests queued per worker
PARALLEL_MIN = 256  # smaller batches stay on one worker (a helper costs ~0.2 s to start)
POLL = 0.02  # seconds between looks at a feed that is still being filled


def default_workers() -> int:
    """One per core this process may run on, at most 4 (each is a process of ~30-80 MB)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class _Proc:
    """One worker process and what it owes us: replies are read in the order asked."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.buf = b""
        self.pending: list[Any] = []  # per request sent and not yet answered: a tag

    @property
    def fd(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()


class EmbeddedEngine:
    def __init__(self, policies: PolicySet, workers: int | None = None) -> None:
        self.policies = policies
        self.workers = max(1, workers if workers is not None else default_workers())
        self._lock = threading.Lock()
        self._proc: _Proc | None = None  # the primary worker, kept between calls
        self._helpers: list[_Proc] = []  # started for one big batch (or by start())
        self.restarts = 0

    # -- processes ------------------------------------------------------------------------------
    def _spawn(self) -> _Proc:
        p = _Proc(prestart.take_engine())
        modules = [[m.path, m.source] for m in self.policies.modules]
        pushed = self.policies.engine_push_entrypoints
        self._send(p, {"op": "load", "modules": modules,
                       "static": [ep for ep in self.policies.engine_entrypoints if ep not in pushed],
                       "push": [ep for ep in self.policies.engine_entrypoints if ep in pushed],
                       "single": [r.entrypoint for r in self.policies.gatekeeper_rules],
                       "guards": {ep: [g.empty, sorted(g.kinds)]
                                  for ep, g in self.policies.kind_guards.items()},
                       "reads": {ep: [sorted(r.needed), sorted(r.observed)]
                                 for ep, r in self.policies.input_reads.items()}}, "load")
        return p

    def _send(self, p: _Proc, req: dict[str, Any], tag: Any) -> None:
        assert p.proc.stdin is not None
        try:
            p.proc.stdin.write(json.dumps(req).encode() + b"\n")
            p.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            self._fail()
            raise EngineUnavailable(f"embedded policy engine died ({self._exit(p.proc)})") from e
        p.pending.append(tag)

    def _receive(self, procs: Sequence[_Proc], deadline: float, timeout: float,
                 poll: float | None = None) -> list[tuple[_Proc, Any, Any]]:
        """The replies that are complete once some worker has answered: (worker, tag, reply);
        with `poll`, none when no worker answered within that many seconds."""
        waiting = {p.fd: p for p in procs if p.pending}
        while True:
            done = []
            for p in waiting.values():
                while p.pending and b"\n" in p.buf:
                    line, _, p.buf = p.buf.partition(b"\n")
                    done.append((p, p.pending.pop(0), self._decode(p, line)))
            if done:
                return done
            left = deadline - time.monotonic()
            wait = left if poll is None else min(left, poll)
            ready = select.select(list(waiting), [], [], wait)[0] if left > 0 else []
            if not ready and poll is not None and left > poll:
                return []
            if not ready:
                self._fail()
                raise EngineTimeout(f"policy evaluation exceeded {timeout:.0f}s")
            for fd in ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    p = waiting[fd]
                    self._fail()
                    raise EngineUnavailable(f"embedded policy engine crashed ({self._exit(p.proc)})")
                waiting[fd].buf += chunk

    def _decode(self, p: _Proc, line: bytes) -> Any:
        try:
            reply = json.loads(line)
        except ValueError as e:
            self._fail()
            raise EngineUnavailable("embedded policy engine returned garbage") from e
        if not reply.get("ok"):
            # The worker is fine (it answered), but what else it owes us must not be read as the
            # answer to a later request: start afresh.
            self._fail()
            raise EngineUnavailable(f"policy evaluation failed: {reply.get('error', '?')}")
        return reply

    @staticmethod
    def _exit(proc: subprocess.Popen[bytes]) -> str:
        try:
            code = proc.wait(2)
        except subprocess.TimeoutExpired:
            return "not exiting"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def _fail(self) -> None:
        """Kill every worker: after a failure nothing they still owe can be trusted."""
        if self._proc is not None:
            self.restarts += 1
        for p in [*([self._proc] if self._proc else []), *self._helpers]:
            _reap(p.proc)
        self._proc, self._helpers = None, []

    def _alive(self) -> _Proc | None:
        p = self._proc
        if p is not None and p.proc.poll() is not None:
            self._fail()
            return None
        return p

    def start(self, parallel: bool = False) -> None:
        """Spawn (and have compile) the primary worker now, and with `parallel` the helpers a
        big batch will use, without waiting for them: the next `evaluate` collects them. Does
        nothing while another thread evaluates (its workers are up)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._alive() is None:
                self._proc = self._spawn()
            if parallel:
                while len(self._helpers) < self.workers - 1:
                    self._helpers.append(self._spawn())
        finally:
            self._lock.release()

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, objects: Sequence[dict[str, Any]], push: dict[str, Any], timeout: float,
                 entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]:
        feed = Feed()
        feed.put(list(objects))
        feed.close()
        return self.evaluate_feed(feed, push, timeout, entrypoints)

    def evaluate_feed(self, feed: Feed, push: dict[str, Any], timeout: float,
                      entrypoints: Sequence[str] | None = None) -> list[list[tuple[str, Any]]]:
        """`evaluate` for objects that arrive while this runs (the gate parses a big tree while
        the workers decide what it has read); returns once the feed is closed and drained."""
        with self._lock:
            deadline = time.monotonic() + timeout
            if self._alive() is None:
                self._proc = self._spawn()
            assert self._proc is not None
            # None: conftest's rules (a Gatekeeper template's rule is always asked by name)
            eps = list(entrypoints) if entrypoints is not None else (
                list(self.policies.entrypoints) if self.policies.gatekeeper_rules else None)
            # The push goes only where a policy can read it: it changes with every push.
            ctx = push if self.policies.engine_push_entrypoints & set(
                eps or self.policies.entrypoints) else {}
            try:
                return self._run(feed, ctx, eps, deadline, timeout)
            finally:
                helpers, self._helpers = self._helpers, []
                for h in helpers:
                    _reap(h.proc)

    def _run(self, feed: Feed, ctx: dict[str, Any], eps: list[str] | None, deadline: float,
             timeout: float) -> list[list[tuple[str, Any]]]:
        assert self._proc is not None
        procs = [self._proc, *self._helpers]  # start(parallel=True) may have started helpers
        # A batch known whole that one worker will decide goes in one request; anything else in
        # chunks the workers take as they become free.
        ended = feed.closed
        known = feed.available(0)
        alone = len(procs) == 1 and (self.workers == 1 or known < PARALLEL_MIN)
        size = known if ended and alone else CHUNK
        rows: list[list[tuple[str, Any]]] = []
        names: dict[str, str] = {}
        taken = busy = 0
        last = False  # the feed is closed and everything in it was handed out

        def grow() -> None:
            # helpers for a big batch (a worker costs ~0.2 s to start): the whole of it is
            # known, or enough has arrived already
            known = taken + feed.available(taken)
            if known >= PARALLEL_MIN and self.workers > 1:
                while len(self._helpers) < min(self.workers, known // CHUNK) - 1:
                    self._helpers.append(self._spawn())
                    procs.append(self._helpers[-1])

        def top_up(p: _Proc) -> None:
            # DEPTH requests queued in each worker's pipe (behind its `load` if it is still
            # compiling): it never waits for this process to hand it the next chunk
            nonlocal taken, busy, last
            while not last and sum(1 for tag in p.pending if tag != "load") < DEPTH:
                chunk, last = feed.take(taken, size)
                if not chunk and (not last or taken):
                    return  # a whole chunk is not there yet (or nothing at all is left)
                self._give(p, (taken, chunk), ctx, eps)  # an empty batch still asks once
                rows.extend([] for _ in chunk)
                taken += len(chunk)
                busy += 1

        grow()
        for p in procs:
            top_up(p)
        while busy or not last:
            if not busy:  # every worker waits for the producer
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail()
                    raise EngineTimeout(f"policy evaluation exceeded {timeout:.0f}s")
                feed.wait(taken, size, min(left, POLL))
            else:
                for _p, tag, reply in self._receive(procs, deadline, timeout,
                                                   poll=None if last else POLL):
                    if tag != "load":
                        busy -= 1
                        start, count = tag
                        if len(reply["results"]) != count:  # an object left undecided passes
                            self._fail()
                            raise EngineUnavailable(
                                f"policy evaluation answered {len(reply['results'])} results "
                                f"for {count} objects")
                        for j, row in enumerate(reply["results"]):
                            # one string per entry point, not one per result (they are kept)
                            rows[start + j] = [(names.setdefault(ep, ep), value) for ep, value in row]
            if not last:
                grow()
            for p in procs:
                top_up(p)
        return rows

    def _give(self, p: _Proc, chunk: tuple[int, list[dict[str, Any]]], ctx: dict[str, Any],
              eps: list[str] | None) -> None:
        start, objects = chunk
        self._send(p, {"op": "eval", "push": ctx, "objects": objects, "entrypoints": eps},
                   (start, len(objects)))

    def close(self) -> None:
        with self._lock:
            for p in [*([self._proc] if self._proc else []), *self._helpers]:
                _reap(p.proc)
            self._proc, self._helpers = None, []


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill the worker and close our ends of its pipes (else each restart leaks two fds)."""
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
