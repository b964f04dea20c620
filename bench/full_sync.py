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

Then, on the same loaded systems, replication lag on a big board with every write through one
node (``big_rates``, records/s, new owners in batches of rate/100, 100 a second): the
acknowledged batch's last record is polled on the two other nodes (Redis: on two replicas of the
master, attached for these phases), as the replication workload does. Each round, each system in
turn, every rate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .common import BOARD, BUDGET, Figures
from .plan import Plan
from .procs import BenchError, LoadClient, Node, Redis, cluster, wait_for


def _node_round(node: Node, n: int, timeout: float, *, lone_rss: int) -> dict[str, float]:
    node.stop(kill=True)
    started = time.perf_counter()
    node.start()
    deadline = time.monotonic() + timeout
    ready_at = done = None
    while time.monotonic() < deadline:
        try:
            if ready_at is None and node.ready():
                ready_at = time.perf_counter() - started
            if ready_at is not None and done is None and node.count(BOARD) >= n:
                done = time.perf_counter() - started
            if done is not None and node.state_digest():  # every bucket's digest is settled
                settled = time.perf_counter() - started
                rss = node.rss()
                return {"seconds": done, "ready_seconds": ready_at, "digest_settled_after_ready_seconds":
                        settled - ready_at, "rss_mb": rss / 2**20, "synced_bytes_per_record": (rss - lone_rss) / n}
        except OSError:
            pass
        time.sleep(0.01)
    raise BenchError(f"{node.name} restarted empty was not ready holding {n} records, its digest settled, "
                     f"within {timeout:.0f}s")


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


def _lag_phase(loader: LoadClient, prober: LoadClient, workdir: Path, *, writer: dict[str, Any],
               observers: list[dict[str, Any]], rate: int, seconds: float, label: str, first: int,
               converge_timeout: float) -> dict[str, Any]:
    socket_path = str(workdir / f"big-{label}.sock")
    prober.call({"cmd": "probe_open", "observers": observers, "others_of": [[1, 2]], "board": BOARD,
                 "probe_socket": socket_path, "poll": 0.001, "probe_every": 0.02, "monitor": 0.1,
                 "max_seconds": seconds + converge_timeout + 30})
    batch = max(10, rate // 100)
    wrote = loader.call({"cmd": "write_phase", "writers": [writer], "board": BOARD, "rate": rate,
                         "duration": seconds, "batch": batch, "writers_concurrency": 3, "space": f"big-{label}",
                         "first": first, "probe_socket": socket_path, "max_batches": int(seconds * rate / batch) + 2,
                         "seed": first}, timeout=seconds + 120)
    probed = prober.call({"cmd": "probe_close", "written": wrote["written"], "t0": wrote["t0"],
                          "converge_timeout": converge_timeout}, timeout=converge_timeout + 60)
    if wrote["errors"]:
        raise BenchError(f"{label}: write errors, e.g. {wrote['errors'][:2]}")
    return {**wrote, **probed}


def run(plan: Plan, workdir: Path, loader: LoadClient, systems: list[str], log: Any = print) -> dict[str, Any]:
    prober = LoadClient(workdir, name="big-prober")
    try:
        return _run(plan, workdir, loader, prober, systems, log)
    finally:
        prober.close()


def _run(plan: Plan, workdir: Path, loader: LoadClient, prober: LoadClient, systems: list[str],
         log: Any) -> dict[str, Any]:
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
                lone_rss = lone.rss()
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
                    result = _node_round(nodes[2], n, plan.sync_timeout, lone_rss=lone_rss)
                else:
                    assert master is not None
                    result = _redis_round(master, workdir, f"redis-sync-replica{round_no}", n, plan.sync_timeout)
                figures.add_all(system, result)
                log(f"  {system} round {round_no + 1}: {result['seconds']:.2f}s to a ready replica holding {n:,}")
        replicas: list[Redis] = []
        if "redis" in systems and master is not None and plan.big_rates:
            replicas = [Redis(f"redis-big-replica{i}", workdir, replica_of=master).start() for i in (1, 2)]
            for replica in replicas:
                replica.wait_ready()
            wait_for(lambda: all(r.client().info("replication").get("master_link_status") == "up"
                                 and r.client().zcard(BOARD) >= n for r in replicas),
                     timeout=plan.sync_timeout, what="two Redis replicas holding the big board")
        if nodes:
            wait_for(lambda: all(node.count(BOARD) >= n for node in nodes), timeout=plan.sync_timeout,
                     interval=0.1, what="every node holding the big board again")
        first = 0
        try:
            for round_no in range(plan.rounds):
                if BUDGET.exhausted("big_board_lag", round_no):
                    break
                for system in systems:
                    if system == "node":
                        observers = [{"kind": "node", "url": node.url} for node in nodes]
                    else:
                        assert master is not None
                        observers = [{"kind": "redis", "port": r.port} for r in [master] + replicas]
                    for rate in plan.big_rates:
                        label = f"big{rate}"
                        result = _lag_phase(loader, prober, workdir, writer=observers[0], observers=observers,
                                            rate=rate, seconds=plan.big_seconds, label=f"{system}{round_no}-{label}",
                                            first=first, converge_timeout=plan.repl_converge_timeout)
                        first = result["next_index"]
                        for key in ("lag_p50_ms", "lag_p99_ms", "ack_rate", "applied_rate", "probes"):
                            if result.get(key) is not None:
                                figures.add(system, f"{label}.{key}", result[key])
                        log(f"  {system} round {round_no + 1} {label} (one writer, big board): acked "
                            f"{result['ack_rate']:,.0f}/s, lag p50 {result['lag_p50_ms']:.1f} ms "
                            f"p99 {result['lag_p99_ms']:.1f} ms ({result['probes']} probes)")
        finally:
            for replica in replicas:
                replica.stop()
    finally:
        for node in nodes:
            node.stop()
        if master is not None:
            master.stop()
    return {"method": "node: SIGKILL node-2, start it empty, time to /readyz 200 holding every record; Redis: "
                      "start a new replica (repl-diskless-sync yes, delay 0), time to link up holding every member",
            "figures": figures, "records": n, "load": info}
