"""``full_sync``: a node restarted empty next to peers holding ``sync_records`` records,
against a fresh Redis replica's full resync of a sorted set of as many members.

Set-up (once, not timed as the target): a 3-node cluster loaded through the batch API
(``sync_load_batch`` records per request, round robin over the nodes, 3 in flight) until
every node holds every record; a Redis master loaded with variadic ZADDs of as many members.
Redis is tuned: ``repl-diskless-sync yes``, ``repl-diskless-sync-delay 0`` (the replica
keeps the default ``repl-diskless-load disabled``).

Each round (A B A B): node-2 is killed (SIGKILL) and started again, empty; the time runs from
starting the process until GET /readyz answers 200 *and* it holds every record. Then a new
redis-server is started with ``--replicaof`` the master; the time runs from starting the
process until its link is up and ZCARD holds every member; it is stopped again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .common import BOARD, BUDGET, Figures
from .plan import Plan
from .procs import BenchError, LoadClient, Node, Redis, cluster, wait_for


def _node_round(node: Node, n: int, timeout: float) -> dict[str, float]:
    node.stop(kill=True)
    started = time.perf_counter()
    node.start()
    deadline = time.monotonic() + timeout
    ready_at = None
    while time.monotonic() < deadline:
        try:
            if ready_at is None and node.ready():
                ready_at = time.perf_counter() - started
            if ready_at is not None and node.count(BOARD) >= n:
                done = time.perf_counter() - started
                return {"seconds": done, "ready_seconds": ready_at, "rss_mb": node.rss() / 2**20}
        except OSError:
            pass
        time.sleep(0.01)
    raise BenchError(f"{node.name} restarted empty was not ready holding {n} records within {timeout:.0f}s")


def _redis_round(master: Redis, workdir: Path, name: str, n: int, timeout: float) -> dict[str, float]:
    import redis

    replica = Redis(name, workdir, replica_of=master)
    started = time.perf_counter()
    replica.start()
    try:
        deadline = time.monotonic() + timeout
        client = None
        while time.monotonic() < deadline:
            try:
                if client is None:
                    client = replica.client()
                if client.info("replication").get("master_link_status") == "up" and client.zcard(BOARD) >= n:
                    return {"seconds": time.perf_counter() - started}
            except redis.exceptions.RedisError:
                if client is not None:
                    client.close()
                client = None
            time.sleep(0.01)
        raise BenchError(f"the fresh Redis replica did not hold {n} members within {timeout:.0f}s")
    finally:
        replica.stop()


def run(plan: Plan, workdir: Path, loader: LoadClient, systems: list[str], log: Any = print) -> dict[str, Any]:
    figures = Figures()
    n = plan.sync_records
    nodes: list[Node] = []
    master: Redis | None = None
    info: dict[str, Any] = {}
    try:
        if "node" in systems:
            nodes = cluster(workdir, 3, prefix="sync")
            for node in nodes:
                node.start()
            for node in nodes:
                node.wait_ready()
            base_rss = [node.rss() for node in nodes]
            # what a node costs to start when there is nothing to sync: a lone node, once
            lone = Node("sync-lone", workdir)
            started = time.perf_counter()
            lone.start()
            try:
                lone.wait_ready()
                info["node_lone_start_to_ready_seconds"] = time.perf_counter() - started
            finally:
                lone.stop()
            targets = [{"kind": "node", "url": node.url} for node in nodes]
            loader.call({"cmd": "create", "targets": targets[:1], "board": BOARD})
            wait_for(lambda: all(node.count(BOARD) >= 0 for node in nodes), timeout=20,
                     what="the leaderboard on every node")
            started = time.perf_counter()
            load = loader.call({"cmd": "load", "targets": targets, "board": BOARD, "first": 0, "count": n,
                                "batch": plan.sync_load_batch, "concurrency": 3, "timeout": plan.sync_timeout * 3},
                               timeout=plan.sync_timeout * 3 + 30)
            wait_for(lambda: all(node.count(BOARD) >= n for node in nodes), timeout=plan.sync_timeout,
                     interval=0.1, what=f"every node to hold {n} records")
            everywhere = time.perf_counter() - started
            info["node_load"] = {"acked_records_per_s": load["records_per_s"],
                                 "applied_everywhere_records_per_s": n / everywhere,
                                 "rss_bytes_per_record_in_cluster": [(node.rss() - b) / n
                                                                     for node, b in zip(nodes, base_rss)]}
            log(f"  node cluster loaded with {n:,} records: acked {load['records_per_s']:,.0f}/s, "
                f"on every node after {everywhere:.1f}s ({n / everywhere:,.0f}/s)")
        if "redis" in systems:
            master = Redis("redis-sync-master", workdir).start()
            master.wait_ready()
            target = {"kind": "redis", "port": master.port}
            loader.call({"cmd": "create", "targets": [target], "board": BOARD})
            load = loader.call({"cmd": "load", "targets": [target], "board": BOARD, "first": 0, "count": n,
                                "batch": plan.sync_load_batch, "concurrency": 3, "timeout": plan.sync_timeout,
                                "variadic": True},
                               timeout=plan.sync_timeout + 30)
            info["redis_load"] = {"acked_records_per_s": load["records_per_s"]}
            log(f"  redis master loaded with {n:,} members at {load['records_per_s']:,.0f}/s")
        for round_no in range(plan.rounds):
            if BUDGET.exhausted("full_sync", round_no):
                break
            for system in systems:
                if system == "node":
                    result = _node_round(nodes[2], n, plan.sync_timeout)
                else:
                    assert master is not None
                    result = _redis_round(master, workdir, f"redis-sync-replica{round_no}", n, plan.sync_timeout)
                figures.add_all(system, result)
                log(f"  {system} round {round_no + 1}: {result['seconds']:.2f}s to a ready replica holding {n:,}")
    finally:
        for node in nodes:
            node.stop()
        if master is not None:
            master.stop()
    return {"method": "node: SIGKILL node-2, start it empty, time to /readyz 200 holding every record; Redis: "
                      "start a new replica (repl-diskless-sync yes, delay 0), time to link up holding every member",
            "figures": figures, "records": n, "load": info}
