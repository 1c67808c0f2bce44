"""`packstream.spanned`: whether leaving pack entries out would change an OFS_DELTA's distance
to its base, decided by sorted sweeps; the same answer as asking every offset about every delta."""

from __future__ import annotations

import random

from gitserver import packstream


def _brute(offsets: list[int], deltas: list[tuple[int, int | None]]) -> bool:
    return any(b is not None and b < off < d for off in offsets for d, b in deltas)


def test_sweep_equals_every_offset_against_every_delta() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        size = rng.randint(1, 60)
        deltas: list[tuple[int, int | None]] = []
        for _ in range(rng.randint(0, 8)):
            d = rng.randint(1, size)
            deltas.append((d, rng.randint(0, d - 1)))
        offsets = rng.sample(range(size + 1), rng.randint(0, min(6, size + 1)))
        assert packstream.spanned(offsets, deltas) == _brute(offsets, deltas), (offsets, deltas)


def test_edges_are_not_inside() -> None:
    assert not packstream.spanned([10, 20], [(20, 10)])  # the base and the delta themselves
    assert packstream.spanned([15], [(20, 10)])
    assert not packstream.spanned([25, 5], [(20, 10), (40, 30)])
    assert packstream.spanned([35], [(20, 10), (40, 30)])
    assert not packstream.spanned([], [(20, 10)])
