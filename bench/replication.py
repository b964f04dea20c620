"""``replication``: a 3-node cluster against a Redis master with 2 replicas.

Each round, for each system in turn: fresh servers, then one phase per rate of
``repl_rates`` (records/s; 0 is saturation). A phase writes new owners through the batch
API, round robin over the three nodes (Redis: every write to the master, pipelines of one
ZADD per record), for ``repl_seconds``; then waits until every node holds every record.
Fixed rates send ``repl_batches_per_s`` batches a second (1k/s: batches of 10; 10k/s: 100);
saturation sends batches of ``repl_saturation_batch``, ``repl_writers`` in flight.

* lag (measured by a second client process, the prober, told of every acknowledgement over
  a UNIX datagram socket with its time on the shared monotonic clock): the acknowledged
  batch's last record is polled on every *other* node (GET .../records/{owner}; Redis:
  ZSCORE on both replicas) every millisecond until each serves the new score; lag =
  acknowledgement at the origin -> the answer that completed it. At most one probe runs at
  a time, at most one starts every 20 ms.
* replicated throughput: records written in the phase / seconds from the phase's start until
  every node's count (``rank_count`` of GET .../records?limit=1; Redis: ZCARD) holds them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .common import BOARD, BUDGET, Figures
from .plan import Plan
from .procs import BenchError, LoadClient, Node, Redis, cluster, wait_for


def phase_label(rate: int) -> str:
    return f"rate{rate}" if rate else "saturation"


def _start_nodes(workdir: Path, round_no: int) -> list[Node]:
    nodes = cluster(workdir, 3, prefix=f"repl{round_no}")
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_ready()
    return nodes


def _start_redis(workdir: Path, round_no: int) -> list[Redis]:
    master = Redis(f"redis-repl{round_no}-master", workdir).start()
    master.wait_ready()
    servers = [master] + [Redis(f"redis-repl{round_no}-replica{i}", workdir, replica_of=master).start()
                          for i in (1, 2)]
    for server in servers[1:]:
        server.wait_ready()

    def linked() -> bool:
        for server in servers[1:]:
            with server.client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        return True

    wait_for(linked, timeout=20, what="the Redis replicas to link to their master")
    return servers


def run(plan: Plan, workdir: Path, loader: LoadClient, systems: list[str], log: Any = print) -> dict[str, Any]:
    prober = LoadClient(workdir, name="prober")
    try:
        return _run(plan, workdir, loader, prober, systems, log)
    finally:
        prober.close()


def _run(plan: Plan, workdir: Path, loader: LoadClient, prober: LoadClient, systems: list[str],
         log: Any) -> dict[str, Any]:
    figures = Figures()
    timeline: dict[str, list[dict[str, Any]]] = {}
    first = 0
    for round_no in range(plan.rounds):
        if BUDGET.exhausted("replication", round_no):
            break
        for system in systems:
            servers: list[Any] = []
            try:
                if system == "node":
                    servers = _start_nodes(workdir, round_no)
                    targets = [{"kind": "node", "url": n.url} for n in servers]
                    writers, observers = targets, targets
                    others_of = [[j for j in range(3) if j != i] for i in range(3)]
                    loader.call({"cmd": "create", "targets": targets[:1], "board": BOARD})
                    # the definition reaches the other nodes before writes are sent to them
                    wait_for(lambda: all(c >= 0 for c in loader.call(
                        {"cmd": "counts", "targets": targets, "board": BOARD})["counts"]),
                        timeout=20, what="the leaderboard on every node")
                else:
                    servers = _start_redis(workdir, round_no)
                    targets = [{"kind": "redis", "port": s.port} for s in servers]
                    writers, observers = targets[:1], targets
                    others_of = [[1, 2]]
                    loader.call({"cmd": "create", "targets": targets[:1], "board": BOARD})
                phases = []
                # a short warm-up phase (not recorded): connections, first requests, allocations
                for rate in (-1,) + tuple(plan.repl_rates):
                    warmup = rate < 0
                    if warmup:
                        rate, batch, seconds, label = 1_000, 10, 0.3, "warmup"
                    else:
                        batch = max(10, rate // plan.repl_batches_per_s) if rate else plan.repl_saturation_batch
                        seconds, label = plan.repl_seconds, phase_label(rate)
                    socket_path = str(workdir / f"probe-{round_no}-{system}-{label}.sock")
                    prober.call({"cmd": "probe_open", "observers": observers, "others_of": others_of,
                                 "board": BOARD, "probe_socket": socket_path, "poll": 0.001, "probe_every": 0.02,
                                 "monitor": 0.1, "max_seconds": seconds + plan.repl_converge_timeout + 30})
                    wrote = loader.call({
                        "cmd": "write_phase", "writers": writers, "board": BOARD, "rate": rate,
                        "duration": seconds, "batch": batch, "writers_concurrency": plan.repl_writers,
                        "space": f"r{round_no}", "first": first, "probe_socket": socket_path,
                        "max_batches": int(seconds * rate / batch) + 2 if rate else 1_000_000, "seed": round_no,
                    }, timeout=seconds + 120)
                    probed = prober.call({"cmd": "probe_close", "written": wrote["written"], "t0": wrote["t0"],
                                          "converge_timeout": plan.repl_converge_timeout},
                                         timeout=plan.repl_converge_timeout + 60)
                    result = {**wrote, **probed}
                    first = result["next_index"]
                    if result["errors"]:
                        raise BenchError(f"{system} {label}: write errors, e.g. {result['errors'][:2]}")
                    if warmup:
                        continue
                    for key in ("lag_p50_ms", "lag_p99_ms", "ack_rate", "applied_rate", "probes",
                                "probe_timeouts", "written"):
                        if result.get(key) is not None:
                            figures.add(system, f"{label}.{key}", result[key])
                    figures.add(system, f"{label}.converged", 1.0 if result["converged"] else 0.0)
                    log(f"  {system} round {round_no + 1} {label} (batches of {batch}): acked "
                        f"{result['ack_rate']:,.0f}/s, applied everywhere {result['applied_rate'] or 0:,.0f}/s, "
                        f"lag p50 {result['lag_p50_ms']:.1f} ms p99 {result['lag_p99_ms']:.1f} ms "
                        f"({result['probes']} probes, {result['probe_timeouts']} timeouts)"
                        f"{'' if result['converged'] else ', NOT CONVERGED'}")
                    phases.append({"label": label, "rate": rate, "batch": batch, "series": result["series"],
                                   "lags": result["lags"], "write_seconds": result["write_seconds"]})
                timeline[system] = phases  # the last round's, for the chart
            finally:
                for server in servers:
                    server.stop()
            time.sleep(0.2)
    return {"method": "writer: separate client process, AsyncLeaderboardClient batch API round robin over 3 nodes / redis.asyncio "
                      "pipelines of ZADD to the master; prober: a second client process polling the other nodes "
                      "(GET record / ZSCORE on replicas)",
            "figures": figures, "timeline": timeline, "batches_per_s": plan.repl_batches_per_s,
            "saturation_batch": plan.repl_saturation_batch, "writers": plan.repl_writers,
            "seconds_per_phase": plan.repl_seconds}
