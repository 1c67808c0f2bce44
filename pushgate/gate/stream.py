"""A cold check's policy decisions, made while the build still reads the tree.

Called by `pushgate.gate.gate`: a check that has many objects to decide (a first push,
`pushgate validate`) hands each file's objects to the policy engine as soon as the file is parsed,
so the gate's two slowest phases, parsing in this process and evaluating in the engine's workers,
overlap instead of following each other (bench/RESULTS.md, gate_full and gate_incremental). Only
for rule sets whose answer depends on the object alone (no rule reads the push context).

An object is sent as it will most likely be completed: with the default namespace if a built-in
or unknown kind names none. The build decides in the end (the tree's CRDs decide a custom kind's
scope), and an answer is used only for the very JSON value the build made; anything else is
decided again, as if nothing had been streamed.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pushgate.core import manifests, scopes
from pushgate.gate.feed import Feed

_T = TypeVar("_T")
Rows = list[list[tuple[str, Any]]]


class Stream:
    """`offer` is the build's `on_file`; `row` the engine's answer for an object it made.

    `decided(key, path, obj)` says whether the gate already holds the answer for a file's object
    (it is not sent again); `run(feed)` has the engine decide what the feed brings."""

    def __init__(self, default_namespace: str, decided: Callable[[str, str, dict[str, Any]], bool],
                 run: Callable[[Feed], Rows]) -> None:
        self.feed = Feed()
        self._namespace = default_namespace
        self._decided, self._run = decided, run
        self._sent: dict[str, list[tuple[dict[str, Any], int]]] = {}  # path -> (object, position)
        self._next: dict[str, int] = {}  # path -> where the next `row` of it most likely is
        self._count = 0
        self._result: Callable[[], Rows] | None = None  # the engine's work, once begun

    def offer(self, ms: list[manifests.Manifest], keys: list[str]) -> None:
        """The objects of one file just read (with their keys): those not decided before go to
        the engine."""
        objs = []
        for m, key in zip(ms, keys, strict=True):
            obj = scopes.with_default_namespace(m.obj, self._namespace, {}) or m.obj
            if key and self._decided(key, m.path, obj):
                continue
            objs.append(obj)
            self._sent.setdefault(m.path, []).append((obj, self._count))
            self._count += 1
        if objs and self._result is None:  # a check with nothing new never calls the engine
            feed, run = self.feed, self._run
            self._result = background(lambda: run(feed))
        self.feed.put(objs)

    def row(self, m: manifests.Manifest) -> list[tuple[str, Any]] | None:
        """The engine's answer for `m.obj` if it was sent as it is (waits for the engine, and
        raises what the engine raised)."""
        sent = self._sent.get(m.path)
        if not sent:
            return None
        start = self._next.get(m.path, 0)
        # in file order, as a rule: the next one first
        first = (start,) if start < len(sent) else ()
        for j in itertools.chain(first, range(len(sent))):
            obj, position = sent[j]
            if same(obj, m.obj):
                self._next[m.path] = j + 1
                assert self._result is not None  # begun with the first object sent
                return self._result()[position]
        return None


def same(a: Any, b: Any) -> bool:
    """Whether two parsed values are the same JSON value, types included (Python's `==` takes
    1, 1.0 and True for one another; a policy need not). Fast for a copy that shares its parts."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return bool(a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items()))
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def background(func: Callable[[], _T]) -> Callable[[], _T]:
    """`func` started on a thread now; returns what waits for its result (or its exception)."""
    future: Future[_T] = Future()

    def run() -> None:
        try:
            future.set_result(func())
        except BaseException as e:  # handed to the caller, who raises it
            future.set_exception(e)

    threading.Thread(target=run, name="gate-policies", daemon=True).start()
    return future.result
