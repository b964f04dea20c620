"""A hybrid logical clock (Kulkarni et al., 2014).

A timestamp is one 64-bit integer: physical milliseconds in the high 48 bits, a logical
counter in the low 16. ``now()`` never goes backwards and never repeats, even when the wall
clock does; ``observe()`` moves the clock past a timestamp seen from a peer, so every local
event after a remote one is stamped later. Ties between nodes are broken by node name
wherever timestamps are compared (never here).
"""

from __future__ import annotations

import time
from collections.abc import Callable

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def physical_ms(timestamp: int) -> int:
    return timestamp >> LOGICAL_BITS


def from_ms(milliseconds: int) -> int:
    return milliseconds << LOGICAL_BITS


class HybridLogicalClock:
    __slots__ = ("_last", "_wall")

    def __init__(self, *, wall: Callable[[], int] = wall_ms) -> None:
        self._wall = wall
        self._last = 0

    @property
    def last(self) -> int:
        return self._last

    def now(self) -> int:
        candidate = self._wall() << LOGICAL_BITS
        self._last = candidate if candidate > self._last else self._last + 1
        return self._last

    def observe(self, timestamp: int) -> None:
        if timestamp > self._last:
            self._last = timestamp
