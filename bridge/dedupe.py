"""Duplicate suppression: a bounded window of recently published dedupe keys per partition.

Canvas delivers at least once, so the same event can arrive twice. Within a window of at most
``window_count`` keys and ``window_seconds`` per raw partition, an event whose key was already
published is not published again. The window only learns keys once their batch is committed
(``remember``), so a batch that fails and is retried is never suppressed by its own first try.
Memory is bounded: at most ``window_count`` keys per assigned partition, whatever the traffic.
Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class DedupeWindow:
    """Recently published keys of one raw partition, oldest first."""

    __slots__ = ("_keys", "_max_age", "_max_count")

    def __init__(self, max_count: int, max_age_s: float) -> None:
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._max_count = max_count
        self._max_age = max_age_s

    def __len__(self) -> int:
        return len(self._keys)

    def seen(self, key: str, now: float) -> bool:
        """True when ``key`` was remembered less than ``window_seconds`` ago."""
        t = self._keys.get(key)
        return t is not None and now - t <= self._max_age

    def remember(self, keys: Iterable[str], now: float) -> None:
        d = self._keys
        for key in keys:
            d[key] = now
            d.move_to_end(key)
        while len(d) > self._max_count:
            d.popitem(last=False)
        cutoff = now - self._max_age
        while d:
            oldest = next(iter(d.values()))
            if oldest >= cutoff:
                break
            d.popitem(last=False)


class Deduplicator:
    """One window per raw partition; forgotten when the partition is revoked."""

    def __init__(self, enabled: bool, max_count: int, max_age_s: float) -> None:
        self.enabled = enabled
        self._max_count = max_count
        self._max_age = max_age_s
        self._windows: dict[tuple[str, int], DedupeWindow] = {}

    def window(self, topic: str, partition: int) -> DedupeWindow:
        w = self._windows.get((topic, partition))
        if w is None:
            w = self._windows[(topic, partition)] = DedupeWindow(self._max_count, self._max_age)
        return w

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        for tp in partitions:
            self._windows.pop(tp, None)
