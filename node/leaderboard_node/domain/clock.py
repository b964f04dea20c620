"""A hybrid logical clock (Kulkarni et al., 2014), bounded.

A timestamp is one 64-bit integer: physical milliseconds in the high 48 bits, a logical
counter in the low 16. ``now()`` never goes backwards and never repeats, even when the wall
clock does; ``observe()`` moves the clock past a timestamp seen from a peer, so every local
event after a remote one is stamped later. Ties between nodes are broken by life id
wherever timestamps are compared (never here).

The bound: a peer's timestamp more than ``max_ahead_ms`` ahead of this node's wall clock does
not move the clock (the data it stamps is still applied). Without it one node with a fast
clock pulls every node's clock, and every timestamp written anywhere, into its future. A
write to a record that holds such a stamp is stamped past it all the same (``records.stamp_after``),
so it still wins over what it has seen; only that record carries the future stamp.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_MS = (2**32 - 1) * 1000  # 2106-02-07, the last moment any time in this product may name
MAX_HLC = (MAX_MS << LOGICAL_BITS) | LOGICAL_MASK


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def physical_ms(timestamp: int) -> int:
    return timestamp >> LOGICAL_BITS


def from_ms(milliseconds: int) -> int:
    return milliseconds << LOGICAL_BITS


class HybridLogicalClock:
    __slots__ = ("_last", "_wall", "max_ahead_ms", "ignored")

    def __init__(self, *, wall: Callable[[], int] = wall_ms, max_ahead_ms: int | None = None) -> None:
        self._wall = wall
        self._last = 0
        self.max_ahead_ms = max_ahead_ms
        self.ignored = 0  # timestamps too far ahead to move the clock (a metric)

    def wall_ms(self) -> int:
        return self._wall()

    @property
    def last(self) -> int:
        return self._last

    def now(self) -> int:
        candidate = self._wall() << LOGICAL_BITS
        self._last = candidate if candidate > self._last else self._last + 1
        return self._last

    def observe(self, timestamp: int) -> None:
        if timestamp > self._last:
            if self.max_ahead_ms is not None and (timestamp >> LOGICAL_BITS) > self._wall() + self.max_ahead_ms:
                self.ignored += 1
                return
            self._last = timestamp
