"""A cache that forgets what the last few builds did not use.

Used by the gate's and the builder's per-worker caches (parsed files, canonical JSON, schema
and policy results, tree listings). Those were bounded only by entry counts sized for the
biggest repository (50,000 to 2,000,000), so every push that changed files added entries that
nothing would read again: a worker grew by ~0.3 MB a push, without end (bench/RESULTS.md, rss).

Entries live in generations; `rotate()` is called once per build, and every `every` builds
starts a new generation and drops the oldest of `keep`. A hit in an older generation moves the
entry to the newest, so whatever the recent builds read stays, whatever they did not goes.
A build of a tree not built for a while finds its entries gone and computes them again:
slower, never wrong. Safe for the threads of one worker as a dict is (each step one dict
operation under the GIL; a race at worst computes an entry twice).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")

_MISSING = object()
KEEP = 2  # generations
EVERY = 8  # builds per generation: a push's gate, the other worker's warm-up, other branches...


class GenCache(Generic[K, V]):
    def __init__(self, keep: int = KEEP, every: int = EVERY) -> None:
        if keep < 1 or every < 1:
            raise ValueError("keep at least one generation of at least one build")
        self.keep, self.every = keep, every
        self._gens: list[dict[K, V]] = [{}]  # newest first
        self._builds = 0

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        gens = self._gens
        newest = gens[0]
        if key in newest:
            return newest[key]
        for gen in gens[1:]:
            value = gen.pop(key, _MISSING)  # one step: another thread may move it meanwhile
            if value is not _MISSING:
                newest[key] = value  # type: ignore[assignment]
                return value
        return newest.get(key, default)  # moved there by another thread, or absent

    def __getitem__(self, key: K) -> V:
        marker = object()
        value = self.get(key, marker)
        if value is marker:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __setitem__(self, key: K, value: V) -> None:
        gens = self._gens
        for gen in gens[1:]:
            gen.pop(key, None)
        gens[0][key] = value

    def __contains__(self, key: object) -> bool:
        return any(key in gen for gen in self._gens)

    def __len__(self) -> int:
        return sum(len(gen) for gen in self._gens)

    def __iter__(self) -> Iterator[K]:
        for gen in self._gens:
            yield from gen

    def clear(self) -> None:
        self._gens = [{}]

    def rotate(self) -> None:
        """A build starts. Every `every` builds a new generation begins and the oldest of `keep`
        is dropped: an entry stays while one of the last `every * (keep - 1)` builds (and at
        most `every * keep`) used it. Moving the hits of a new generation costs a dict step per
        entry, once per `every` builds, not on every push."""
        self._builds += 1
        if self._builds % self.every:
            return
        self._gens.insert(0, {})
        del self._gens[self.keep:]
