"""The in-process rank cache: insert, score update, rank lookup, top-100 and around-owner,
and how their cost grows from 10k to 1M records (no HTTP, no replication).

    python -m bench.rank_cache --records 1000000
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
import uuid

from leaderboard_node.domain.clock import HybridLogicalClock
from leaderboard_node.domain.leaderboards import Leaderboard
from leaderboard_node.domain.records import Operator
from leaderboard_node.domain.store import LeaderboardStore

from .memory import rss_bytes

NOW = 1_700_000_000


def _owners(count: int, rng: random.Random) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def measure(records: int, *, samples: int = 20_000, seed: int = 1) -> dict[str, float]:
    rng = random.Random(seed)
    owners = _owners(records, rng)
    scores = [rng.getrandbits(63) for _ in range(records)]
    base = rss_bytes()
    store = LeaderboardStore(node="bench", clock=HybridLogicalClock())
    store.create_leaderboard(Leaderboard(id="bench", operator=Operator.SET))
    started = time.perf_counter()
    for owner, score in zip(owners, scores):
        store.write_record("bench", owner, score=score, now=NOW)
    insert_seconds = time.perf_counter() - started
    grown = rss_bytes() - base
    sample = rng.sample(owners, min(samples, records))

    started = time.perf_counter()
    for owner in sample:
        store.write_record("bench", owner, score=rng.getrandbits(63), now=NOW)
    update_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for owner in sample:
        store.get_record("bench", owner, now=NOW)
    lookup_seconds = time.perf_counter() - started

    pages = min(2000, len(sample))
    started = time.perf_counter()
    for _ in range(pages):
        store.list_records("bench", limit=100, now=NOW)
    top_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for owner in sample[:pages]:
        store.around_owner("bench", owner, limit=10, now=NOW)
    around_seconds = time.perf_counter() - started
    return {
        "records": records,
        "insert_per_s": _rate(records, insert_seconds),
        "update_per_s": _rate(len(sample), update_seconds),
        "rank_lookup_per_s": _rate(len(sample), lookup_seconds),
        "top100_per_s": _rate(pages, top_seconds),
        "around10_per_s": _rate(pages, around_seconds),
        "bytes_per_record": round(grown / records, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args(argv)
    for count in args.records:
        print(json.dumps(measure(count)), flush=True)


if __name__ == "__main__":
    main()
