"""A feed of objects handed to a policy engine while they are still being produced.

Made by the gate (`pushgate.gate.stream`: a check's build puts each file's objects in as it
reads them) and by `EmbeddedEngine.evaluate`; taken from by `EmbeddedEngine.evaluate_feed`,
whose workers decide what has arrived while the rest is still being parsed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any


class Feed:
    """Objects handed to an engine while they are still being produced (a build that is still
    reading files): the producer `put`s them and `close`s the feed when it is done or gives up;
    the engine `take`s them in order, from as many threads as it likes."""

    def __init__(self) -> None:
        self._items: list[dict[str, Any]] = []
        self._closed = False
        self._taken = 0  # how far anything was taken
        self._cond = threading.Condition()

    def put(self, objects: Sequence[dict[str, Any]]) -> None:
        if objects:
            with self._cond:
                self._items.extend(objects)
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """Closed, and what was not taken yet is dropped: the producer gave up."""
        with self._cond:
            del self._items[self._taken:]
            self._closed = True
            self._cond.notify_all()

    def wait(self, start: int, most: int, timeout: float) -> None:
        """Until `take(start, most)` has something to give, or `timeout` seconds passed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or len(self._items) - start >= most, timeout)

    def take(self, start: int, most: int) -> tuple[list[dict[str, Any]], bool]:
        """`most` objects from position `start` on, or once the feed is closed the rest of them
        (maybe none); nothing while a whole part is not there yet. And whether that is the last
        of them."""
        with self._cond:
            items = self._items
            if not self._closed and len(items) - start < most:
                return [], False
            out = items[start:start + most]
            self._taken = max(self._taken, start + len(out))
            return out, self._closed and len(items) <= start + most

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def available(self, start: int) -> int:
        """How many objects are there from position `start` on."""
        with self._cond:
            return len(self._items) - start
