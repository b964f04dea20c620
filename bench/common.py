"""Small helpers shared by the bench driver and its client process: owner ids, statistics,
and the per-round figure collector."""

from __future__ import annotations

import hashlib
import math
import statistics
import time
import uuid
from collections import defaultdict
from typing import Any

BOARD = "bench"  # the node leaderboard id and the Redis key of every workload

# Owner ids are derived from an index, so the driver and the client process agree on them
# without sending lists around: a 36-character UUID (version 4 layout) per index.


def owner_id(index: int, space: str = "o") -> str:
    digest = hashlib.blake2b(f"{space}:{index}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    clean = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(clean) if clean else math.nan


def rounded(value: float, digits: int = 3) -> float | None:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return None
    if abs(value) >= 100:
        return round(value, 1)
    return round(value, digits)


class Budget:
    """The run's time limit: workloads stop adding rounds (after the first) once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.reset(seconds)

    def reset(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.warnings: list[str] = []

    def spent(self) -> float:
        return time.monotonic() - self.started

    def exhausted(self, where: str, done_rounds: int) -> bool:
        if done_rounds >= 1 and self.spent() > self.seconds:
            self.warnings.append(f"{where}: time budget of {self.seconds:.0f}s spent after {done_rounds} round(s); "
                                 "later rounds skipped")
            return True
        return False


BUDGET = Budget(float("inf"))


class Figures:
    """Figures of one workload: ``add(system, metric, value)`` once per round; medians later."""

    def __init__(self) -> None:
        self._values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, system: str, metric: str, value: float) -> None:
        self._values[system][metric].append(float(value))

    def add_all(self, system: str, values: dict[str, float], prefix: str = "") -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.add(system, f"{prefix}{key}", float(value))

    def values(self, system: str, metric: str) -> list[float]:
        return list(self._values.get(system, {}).get(metric, []))

    def median(self, system: str, metric: str) -> float:
        return median(self._values.get(system, {}).get(metric, []))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for system, metrics in self._values.items():
            out[system] = {
                metric: {"median": rounded(median(values)), "rounds": [rounded(v) for v in values]}
                for metric, values in metrics.items()
            }
        return out
