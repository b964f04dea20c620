"""``bulk_import``: load a board of ``import_records`` records into a 3-node cluster, until every
node holds them, against a Redis master with two replicas.

Node: the records (UUID owners, 63-bit scores; the bench board's ``set`` operator) are made into
JSON-lines bodies of ``import_chunk`` records beforehand, then sent to one node's bulk import
API (``POST .../records/import``, 2 in flight) by the project's ``AsyncLeaderboardClient`` from
the bench process; the time runs from the first request until every node's ``rank_count``
holds every record (polled every 50 ms). Redis: variadic ZADDs of ``import_chunk`` members (2
in flight) to the master, until both replicas' ZCARD holds every member. Each round, each
system in turn, on fresh servers.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson

from leaderboard_client import AsyncLeaderboardClient

from .common import BOARD, BUDGET, Figures, owner_id
from .plan import Plan
from .procs import BenchError, Node, Redis, cluster, wait_for


def _bodies(n: int, chunk: int, seed: int) -> tuple[list[bytes], list[list[tuple[str, int]]]]:
    rng = random.Random(seed)
    records = [(owner_id(i, f"imp{seed}"), rng.getrandbits(62)) for i in range(n)]
    parts = [records[i:i + chunk] for i in range(0, n, chunk)]
    bodies = [b"\n".join(orjson.dumps({"owner_id": o, "score": s}) for o, s in part) for part in parts]
    return bodies, parts


async def _node_import(nodes: list[Node], bodies: list[bytes], n: int, timeout: float) -> float:
    async with AsyncLeaderboardClient(nodes[0].url, connections=2, timeout=120) as client:
        await client.create_leaderboard(BOARD, operator="set")
    started = time.perf_counter()
    async with AsyncLeaderboardClient(nodes[0].url, connections=2, timeout=120) as client:
        gate = asyncio.Semaphore(2)

        async def send(body: bytes) -> None:
            async with gate:
                answer = await client.import_records(BOARD, body)
                if answer["refused"]:
                    raise BenchError(f"the import refused records, e.g. {answer['refused'][:1]}")

        await asyncio.gather(*(send(body) for body in bodies))
    counters = [AsyncLeaderboardClient(node.url, connections=1) for node in nodes]
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = []
            for counter in counters:
                try:
                    counts.append((await counter.records(BOARD, limit=1))["rank_count"])
                except Exception:
                    counts.append(-1)
            if all(count >= n for count in counts):
                return time.perf_counter() - started
            await asyncio.sleep(0.05)
    finally:
        for counter in counters:
            await counter.close()
    raise BenchError(f"the import did not reach every node within {timeout:.0f}s")


async def _redis_import(servers: list[Redis], parts: list[list[tuple[str, int]]], n: int, timeout: float) -> float:
    import redis.asyncio as aioredis

    master = aioredis.Redis(host="127.0.0.1", port=servers[0].port)
    replicas = [aioredis.Redis(host="127.0.0.1", port=s.port) for s in servers[1:]]
    started = time.perf_counter()
    try:
        gate = asyncio.Semaphore(2)

        async def send(part: list[tuple[str, int]]) -> None:
            async with gate:
                await master.zadd(BOARD, {o: s for o, s in part})

        await asyncio.gather(*(send(part) for part in parts))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all([await r.zcard(BOARD) >= n for r in replicas]):
                return time.perf_counter() - started
            await asyncio.sleep(0.05)
    finally:
        await master.aclose()
        for replica in replicas:
            await replica.aclose()
    raise BenchError(f"the Redis replicas did not hold every member within {timeout:.0f}s")


def _redis_servers(workdir: Path, round_no: int) -> list[Redis]:
    master = Redis(f"redis-import{round_no}-master", workdir).start()
    master.wait_ready()
    servers = [master] + [Redis(f"redis-import{round_no}-replica{i}", workdir, replica_of=master).start()
                          for i in (1, 2)]
    for server in servers[1:]:
        server.wait_ready()
    wait_for(lambda: all(s.client().info("replication").get("master_link_status") == "up" for s in servers[1:]),
             timeout=20, what="the Redis replicas to link")
    return servers


def run(plan: Plan, workdir: Path, loader: Any, systems: list[str], log: Any = print) -> dict[str, Any]:
    figures = Figures()
    n, chunk = plan.import_records, plan.import_chunk
    bodies, parts = _bodies(n, chunk, seed=1)
    for round_no in range(plan.rounds):
        if BUDGET.exhausted("bulk_import", round_no):
            break
        for system in systems:
            servers: list[Any] = []
            try:
                if system == "node":
                    servers = cluster(workdir, 3, prefix=f"import{round_no}")
                    for node in servers:
                        node.start()
                    for node in servers:
                        node.wait_ready()
                    seconds = asyncio.run(_node_import(servers, bodies, n, plan.sync_timeout))
                else:
                    servers = _redis_servers(workdir, round_no)
                    seconds = asyncio.run(_redis_import(servers, parts, n, plan.sync_timeout))
                figures.add(system, "seconds", seconds)
                figures.add(system, "records_per_s_everywhere", n / seconds)
                log(f"  {system} round {round_no + 1}: {n:,} records on every node of 3 after {seconds:.2f}s "
                    f"({n / seconds:,.0f}/s)")
            finally:
                for server in servers:
                    server.stop()
    return {"method": "node: JSON-lines bodies of import_chunk records to one node's bulk import API, 2 in flight, "
                      "until every node's rank_count holds them; Redis: variadic ZADDs to the master, 2 in flight, "
                      "until both replicas' ZCARD holds them",
            "figures": figures, "records": n, "chunk": chunk}
