"""``client_api`` and ``memory``: one node process against one redis-server.

Each round, for each system in turn (A B A B): a fresh server, ``api_records`` new owners
loaded (node: the batch API, POST .../records/batch of ``api_load_batch`` records; Redis:
one variadic ZADD of as many members; 2 in flight), the memory it grew by (node: RSS from
/proc/PID/statm; Redis: INFO used_memory), then every client operation at each concurrency
from the client process, with the server process's CPU time per operation (/proc/PID/stat)
and the client process's:

Each system is driven through its own Python client, asyncio, answers parsed: the node
through the project's ``AsyncLeaderboardClient``, Redis through redis-py's asyncio client
(hiredis parser). ``around_aiohttp`` repeats ``around`` on the node through aiohttp, a
general-purpose HTTP client, for reference (not a target).

| op | node (AsyncLeaderboardClient) | Redis (redis-py asyncio) |
|---|---|---|
| write | POST /records, an existing owner's new score | ZADD |
| batch | POST /records/batch of ``api_batch`` records | pipeline of ``api_batch`` ZADD |
| lookup | GET /records/{owner} (score and rank) | pipeline ZSCORE + ZREVRANK |
| around | GET /records/around/{owner}?limit=10 | ZREVRANK, then ZREVRANGE WITHSCORES |
| top | GET /records?limit=100 | ZREVRANGE 0 99 WITHSCORES |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import BOARD, BUDGET, Figures
from .plan import Plan
from .procs import LoadClient, Node, Redis, cpu_seconds

OPS = ("write", "batch", "lookup", "around", "top")
REFERENCE_OPS = {"around_aiohttp": ("around", "aiohttp")}  # node only: (op, client)


def _redis_used_memory(server: Redis) -> tuple[int, int]:
    with server.client() as client:
        info = client.info("memory")
    return int(info["used_memory"]), int(info["used_memory_rss"])


def run(plan: Plan, workdir: Path, loader: LoadClient, systems: list[str], *, api: bool, memory: bool,
        log: Any = print) -> dict[str, Any]:
    api_figures, memory_figures = Figures(), Figures()
    n = plan.api_records
    for round_no in range(plan.rounds):
        if BUDGET.exhausted("client_api/memory", round_no):
            break
        for system in systems:
            server: Node | Redis
            if system == "node":
                server = Node(f"single-{round_no}", workdir).start()
                server.wait_ready()
                target = {"kind": "node", "url": server.url}
            else:
                server = Redis(f"redis-single-{round_no}", workdir).start()
                server.wait_ready()
                target = {"kind": "redis", "port": server.port}
            try:
                loader.call({"cmd": "create", "targets": [target], "board": BOARD})
                before = server.rss() if isinstance(server, Node) else _redis_used_memory(server)
                load = loader.call({"cmd": "load", "targets": [target], "board": BOARD, "first": 0, "count": n,
                                    "batch": plan.api_load_batch, "concurrency": 2, "seed": round_no, "variadic": True,
                                    "timeout": plan.sync_timeout * 2}, timeout=plan.sync_timeout * 2 + 30)
                counts = loader.call({"cmd": "counts", "targets": [target], "board": BOARD})["counts"]
                if counts[0] != n:
                    raise RuntimeError(f"{system} holds {counts[0]} records after loading {n}")
                if isinstance(server, Node):
                    grown = server.rss() - before
                    memory_figures.add(system, "bytes_per_record", grown / n)
                    memory_figures.add(system, "rss_mb", server.rss() / 2**20)
                else:
                    used, rss = _redis_used_memory(server)
                    memory_figures.add(system, "bytes_per_record", (used - before[0]) / n)
                    memory_figures.add(system, "rss_bytes_per_record", (rss - before[1]) / n)
                    memory_figures.add(system, "rss_mb", rss / 2**20)
                memory_figures.add(system, "load_records_per_s", load["records_per_s"])
                api_figures.add(system, "load.records_per_s", load["records_per_s"])
                log(f"  {system} round {round_no + 1}: loaded {n:,} records at {load['records_per_s']:,.0f}/s")
                if not api:
                    continue
                passes = [(op, op, target) for op in OPS]
                if system == "node":
                    passes += [(name, op, {**target, "client": client})
                               for name, (op, client) in REFERENCE_OPS.items()]
                for name, op, spec in passes:
                    for concurrency in plan.api_concurrency:
                        assert server.process is not None
                        cpu = cpu_seconds(server.process.pid)
                        result = loader.call({
                            "cmd": "ops", "target": spec, "board": BOARD, "op": op, "concurrency": concurrency,
                            "population": n, "duration": plan.api_op_seconds, "max_ops": plan.api_op_max,
                            "batch": plan.api_batch, "seed": round_no * 100 + concurrency,
                        })
                        if result["errors"]:
                            raise RuntimeError(f"{system} {name} c{concurrency}: {result['errors']} errors, "
                                               f"e.g. {result['error_samples']}")
                        prefix = f"{name}.c{concurrency}."
                        ops = max(1, result["ops"])
                        api_figures.add(system, prefix + "server_cpu_us_per_op",
                                        (cpu_seconds(server.process.pid) - cpu) / ops * 1e6)
                        api_figures.add(system, prefix + "client_cpu_us_per_op", result["client_cpu_us_per_op"])
                        api_figures.add(system, prefix + "ops_per_s", result["ops_per_s"])
                        if op in ("write", "batch"):
                            api_figures.add(system, prefix + "records_per_s", result["records_per_s"])
                        api_figures.add(system, prefix + "p50_ms", result["p50_ms"])
                        api_figures.add(system, prefix + "p99_ms", result["p99_ms"])
                log(f"  {system} round {round_no + 1}: around c50 "
                    f"{api_figures.values(system, 'around.c50.ops_per_s')[-1]:,.0f}/s")
            finally:
                server.stop()
    out: dict[str, Any] = {}
    if api:
        out["client_api"] = {"method": "separate client process, asyncio (uvloop): the project's "
                                       "AsyncLeaderboardClient for the node (around_aiohttp: aiohttp), "
                                       "redis.asyncio for Redis; N concurrent tasks with one connection each",
                             "figures": api_figures, "records": n, "batch": plan.api_batch,
                             "load_batch": plan.api_load_batch, "concurrency": list(plan.api_concurrency),
                             "seconds_per_op": plan.api_op_seconds}
    if memory:
        out["memory"] = {"method": "node: RSS growth of the node process (/proc/PID/statm), empty -> loaded; "
                                   "Redis: INFO used_memory growth", "figures": memory_figures, "records": n,
                         "load_batch": plan.api_load_batch}
    return out
