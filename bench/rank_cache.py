"""The in-process rank cache: insert, score update, rank lookup, top-100 and around-owner,
and how their cost grows from 10k to 1M records (no HTTP, no replication).

    python -m bench.rank_cache --records 1000000     # the node alone, as before
    python -m bench --only rank_cache [--quick]      # side by side with Redis

The node side drives ``LeaderboardStore`` in this process (the whole write path: operator
rules, slot merge, digest, rank). The Redis side is the same operation mix over one
connection with redis-py pipelines of ``PIPELINE`` commands: ZADD of a new member (insert),
ZADD of an existing member (update), ZREVRANK, ZREVRANGE 0 99 WITHSCORES, and ZREVRANK then
ZREVRANGE rank-4..rank+5 WITHSCORES (around; two pipelined round trips per chunk).
Redis figures are measured at the client (redis-py, hiredis parser when installed, so they
include Python's cost of building and parsing commands) and, as ``*_server_us``, inside the
server (INFO commandstats, reset before each operation): the in-process node figure compares
with the latter.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from typing import Any

from leaderboard_node.domain.clock import HybridLogicalClock
from leaderboard_node.domain.leaderboards import Leaderboard
from leaderboard_node.domain.records import Operator
from leaderboard_node.domain.store import LeaderboardStore

from .common import BOARD, BUDGET, Figures, owner_id
from .memory import rss_bytes

NOW = 1_700_000_000
PIPELINE = 1000  # Redis commands per pipeline
OPS = ("insert", "update", "rank_lookup", "top100", "around10")


def _owners(count: int, rng: random.Random) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def measure(records: int, *, samples: int = 20_000, seed: int = 1) -> dict[str, float]:
    """The node alone at one size (``python -m bench.rank_cache``), with in-process RSS growth."""
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
        store.list_records("bench", limit=100, now=NOW).records  # read out, as Redis's answer is
    top_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for owner in sample[:pages]:
        store.around_owner("bench", owner, limit=10, now=NOW).records
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


# ------------------------------------------------------------------ side by side with Redis


class NodeSide:
    """A ``LeaderboardStore`` in this process, grown step by step."""

    name = "node"

    def __init__(self) -> None:
        self.store = LeaderboardStore(node="bench", clock=HybridLogicalClock())
        self.store.create_leaderboard(Leaderboard(id=BOARD, operator=Operator.SET))
        self.size = 0

    def grow(self, to: int, rng: random.Random) -> None:
        store = self.store
        for index in range(self.size, to):
            store.write_record(BOARD, owner_id(index), score=rng.getrandbits(63), now=NOW)
        self.size = to

    def ops(self, fresh: list[str], existing: list[str], pages: int, rng: random.Random) -> dict[str, float]:
        store = self.store
        scores = [rng.getrandbits(63) for _ in range(len(fresh) + len(existing))]
        out: dict[str, float] = {}
        started = time.perf_counter()
        for owner, score in zip(fresh, scores):
            store.write_record(BOARD, owner, score=score, now=NOW)
        out["insert"] = time.perf_counter() - started
        started = time.perf_counter()
        for owner, score in zip(existing, scores[len(fresh):]):
            store.write_record(BOARD, owner, score=score, now=NOW)
        out["update"] = time.perf_counter() - started
        started = time.perf_counter()
        for owner in existing:
            store.get_record(BOARD, owner, now=NOW)
        out["rank_lookup"] = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(pages):
            store.list_records(BOARD, limit=100, now=NOW).records  # pages are read lazily: read them out
        out["top100"] = time.perf_counter() - started
        started = time.perf_counter()
        for owner in existing[:pages]:
            store.around_owner(BOARD, owner, limit=10, now=NOW).records
        out["around10"] = time.perf_counter() - started
        for owner in fresh:  # back to the measured size (not timed)
            store.delete_record(BOARD, owner, now=NOW)
        return out


class RedisSide:
    """One sorted set over one connection, pipelined."""

    name = "redis"

    def __init__(self, port: int) -> None:
        import redis

        self.redis = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
        self.redis.delete(BOARD)
        self.size = 0

    def close(self) -> None:
        self.redis.close()

    def _pipelined(self, items: list[Any], add: Any) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(items), PIPELINE):
            pipe = self.redis.pipeline(transaction=False)
            for item in items[start:start + PIPELINE]:
                add(pipe, item)
            results.extend(pipe.execute())
        return results

    def grow(self, to: int, rng: random.Random) -> None:  # variadic ZADD: the build is not measured
        for start in range(self.size, to, 10_000):
            stop = min(to, start + 10_000)
            self.redis.zadd(BOARD, {owner_id(i): rng.getrandbits(63) for i in range(start, stop)})
        self.size = to

    def _server_usec(self) -> float:
        """Microseconds the server spent in commands since the last reset (INFO commandstats)."""
        stats = self.redis.info("commandstats")
        return float(sum(v.get("usec", 0) for k, v in stats.items() if k.startswith("cmdstat_z")))

    def ops(self, fresh: list[str], existing: list[str], pages: int, rng: random.Random) -> dict[str, float]:
        key = BOARD
        scores = [rng.getrandbits(63) for _ in range(len(fresh) + len(existing))]
        out: dict[str, float] = {}
        steps: list[tuple[str, Any]] = [
            ("insert", lambda: self._pipelined(list(zip(fresh, scores)), lambda p, i: p.zadd(key, {i[0]: i[1]}))),
            ("update", lambda: self._pipelined(list(zip(existing, scores[len(fresh):])),
                                               lambda p, i: p.zadd(key, {i[0]: i[1]}))),
            ("rank_lookup", lambda: self._pipelined(existing, lambda p, owner: p.zrevrank(key, owner))),
            ("top100", lambda: self._pipelined(list(range(pages)),
                                               lambda p, _: p.zrevrange(key, 0, 99, withscores=True))),
            ("around10", lambda: self._pipelined(
                self._pipelined(existing[:pages], lambda p, owner: p.zrevrank(key, owner)),
                lambda p, rank: p.zrevrange(key, max(0, rank - 4), max(0, rank - 4) + 9, withscores=True))),
        ]
        for name, step in steps:
            self.redis.config_resetstat()
            started = time.perf_counter()
            step()
            out[name] = time.perf_counter() - started
            out[f"server:{name}"] = self._server_usec() / 1e6
        for start in range(0, len(fresh), 10_000):  # back to the measured size (not timed)
            self.redis.zrem(key, *fresh[start:start + 10_000])
        return out


def run(*, sizes: list[int], samples: int, pages: int, rounds: int, redis_port: int | None,
        log: Any = print) -> dict[str, Any]:
    """Both systems grown to each size in turn; at each size ``rounds`` rounds A B A B of the
    operation mix. Per-operation cost growth is cost(largest) / cost(smallest)."""
    figures = Figures()
    sides: list[Any] = [NodeSide()]
    if redis_port is not None:
        sides.append(RedisSide(redis_port))
    rng = random.Random(7)
    fresh_index = 10**9  # owners of inserts, never among the first `size` owners
    try:
        for size in sizes:
            for side in sides:
                started = time.perf_counter()
                side.grow(size, random.Random(size))
                log(f"  rank_cache: {side.name} holds {size:,} records ({time.perf_counter() - started:.1f}s to grow)")
            count = min(samples, size)
            for round_no in range(rounds):
                if BUDGET.exhausted(f"rank_cache at {size:,}", round_no):
                    break
                existing = [owner_id(rng.randrange(size)) for _ in range(count)]
                fresh = [owner_id(fresh_index + i) for i in range(count)]
                fresh_index += count
                for side in sides:
                    seconds = side.ops(fresh, existing, min(pages, count), random.Random(round_no))
                    for op in OPS:
                        n = min(pages, count) if op in ("top100", "around10") else count
                        figures.add(side.name, f"{size}.{op}_per_s", n / seconds[op])
                        figures.add(side.name, f"{size}.{op}_us", seconds[op] / n * 1e6)
                        if f"server:{op}" in seconds:  # Redis: time inside the server only
                            figures.add(side.name, f"{size}.{op}_server_us", seconds[f"server:{op}"] / n * 1e6)
        small, large = sizes[0], sizes[-1]
        for side in sides:  # per round: cost at the largest size over cost at the smallest
            worst = [0.0] * rounds
            for op in OPS:
                costs = zip(figures.values(side.name, f"{large}.{op}_us"), figures.values(side.name, f"{small}.{op}_us"))
                for round_no, (big, little) in enumerate(costs):
                    figures.add(side.name, f"growth.{op}", big / little)
                    worst[round_no] = max(worst[round_no], big / little)
            for value in worst:
                figures.add(side.name, "growth.worst", value)
    finally:
        for side in sides:
            if isinstance(side, RedisSide):
                side.close()
    return {"figures": figures, "sizes": sizes, "samples": samples, "pages": pages, "pipeline": PIPELINE,
            "method": "node: LeaderboardStore in the bench process; Redis: synchronous redis-py, pipelines of "
                      f"{PIPELINE} commands on one connection (client-side figures) and INFO commandstats "
                      "(*_server_us)"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args(argv)
    for count in args.records:
        print(json.dumps(measure(count)), flush=True)


if __name__ == "__main__":
    main()
