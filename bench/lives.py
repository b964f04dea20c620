"""What restarts cost a record: bytes per record after every node restarted many times under load.

    python -m bench.lives [--owners 20000] [--restarts 20] [--rate 1500] [--settle 10]

Two runs of one load on a 3-node cluster on 127.0.0.1 without data directories: ``incr`` and
``best`` writes in batches of 100 to ``owners`` UUID owners, through every node at about
``rate`` records per second per node. The first run restarts nothing; the second restarts
each node ``restarts`` times in turn (SIGKILL, then a start without data: a new life that
full-syncs from a peer) while the load goes on. Both runs take the same time. After the load
and ``settle`` more seconds of it, each node is read once every earlier life is retired
everywhere (``retired_lives`` in ``GET /v1/cluster``): its records' packed bytes (what the
rank cache holds per record beyond a fixed overhead) and its resident memory.

Every record is written by all three nodes, so without restarts it holds three slots; every
restart adds a life that writes it. Folding (``records.settle``) brings it back to one slot
per node. ``fold_delay`` is 2 s here (30 s by default) so that the run is short.
Results: printed, and written to ``bench/results/lives.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

from leaderboard_client import ApiError, LeaderboardClient

from .common import owner_id
from .procs import Node, Workdir, cluster, stop_all, wait_for

RESULTS = Path(__file__).parent / "results" / "lives.json"
BOARDS = (("counts", "incr"), ("bests", "best"))
BATCH = 100


class Loader(threading.Thread):
    """Batches of increments and best scores through one node, at a steady rate, until stopped."""

    def __init__(self, node: Node, owners: int, rate: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.node, self.owners, self.rate = node, owners, rate
        self.rng = random.Random(seed)
        self.stopped = threading.Event()
        self.written = 0
        self.refused = 0

    def run(self) -> None:
        interval = 2 * BATCH / self.rate  # two batches (one per board) per tick
        client = LeaderboardClient(self.node.url, timeout=10)
        next_tick = time.monotonic()
        try:
            while not self.stopped.is_set():
                owners = [owner_id(self.rng.randrange(self.owners)) for _ in range(BATCH)]
                for board, _ in BOARDS:
                    records = [{"owner_id": owner, "score": 1 if board == "counts" else self.rng.randrange(10**6)}
                               for owner in owners]
                    try:
                        client.write_batch(board, records)
                        self.written += len(records)
                    except (ApiError, OSError):  # the node is restarting
                        self.refused += 1
                        client.close()
                next_tick += interval
                time.sleep(max(0.0, next_tick - time.monotonic()))
                if time.monotonic() - next_tick > 5:  # fell behind (a restart): do not burst
                    next_tick = time.monotonic()
        finally:
            client.close()


def _info(node: Node) -> dict[str, Any]:
    with LeaderboardClient(node.url, timeout=10) as client:
        return client.cluster()


def _all_retired(nodes: list[Node]) -> bool:
    epochs = {}
    infos = []
    for node in nodes:
        info = _info(node)["node"]
        epochs[info["name"]] = info["epoch"]
        infos.append(info)
    return all(info["retired_lives"].get(name, 0) >= epoch
               for info in infos for name, epoch in epochs.items() if _had_earlier_lives(info, name, epoch))


def _had_earlier_lives(info: dict[str, Any], name: str, epoch: int) -> bool:
    return any(position["node"] == name and position["epoch"] < epoch for position in info["version_vector"].values())


def run(workdir: Path, *, owners: int, rate: float, restarts: int, settle: float, seconds: float | None) -> dict[str, Any]:
    nodes = cluster(workdir, 3, prefix=f"lives-{restarts}")
    for node in nodes:
        node.settings["cluster"]["leaderboard_sync"] = {"fold_delay": 2.0}
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_ready()
    with LeaderboardClient(nodes[0].url) as client:
        for board, operator in BOARDS:
            client.create_leaderboard(board, operator=operator)
    wait_for(lambda: all(n.count(b) >= 0 for n in nodes for b, _ in BOARDS), timeout=30, what="boards everywhere")
    loaders = [Loader(node, owners, rate, seed) for seed, node in enumerate(nodes)]
    started = time.monotonic()
    for loader in loaders:
        loader.start()
    try:
        time.sleep(3.0)
        for round_ in range(restarts):
            for node in nodes:
                node.stop(kill=True)
                node.start()
                node.wait_ready(timeout=120)
                time.sleep(0.5)
        if seconds is not None:
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        time.sleep(settle)
    finally:
        for loader in loaders:
            loader.stopped.set()
        for loader in loaders:
            loader.join(timeout=30)
    loaded = time.monotonic() - started
    wait_for(lambda: _all_retired(nodes), timeout=120, interval=0.5, what="every earlier life retired")
    time.sleep(3.0)  # the sweeps that follow a retirement
    out: dict[str, Any] = {"restarts_per_node": restarts, "load_seconds": round(loaded, 1),
                           "records_written": sum(l.written for l in loaders), "nodes": []}
    for node in nodes:
        info = _info(node)["node"]
        records = info["records"]
        out["nodes"].append({
            "name": node.name, "records": records,
            "packed_bytes_per_record": round(info["record_bytes"] / records, 1),
            "rss_bytes_per_record": round(node.rss() / records, 1),
            "retired_lives": len(info["retired_lives"]),
        })
    for node in nodes:
        node.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owners", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1_500.0, help="records per second through each node")
    parser.add_argument("--restarts", type=int, default=20, help="restarts of each node in the second run")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load after the last restart")
    args = parser.parse_args()
    workdir = Workdir()
    try:
        restarted = run(workdir.path, owners=args.owners, rate=args.rate, restarts=args.restarts,
                        settle=args.settle, seconds=None)
        steady = run(workdir.path, owners=args.owners, rate=args.rate, restarts=0, settle=0.0,
                     seconds=restarted["load_seconds"])
        result = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "owners": args.owners,
                  "rate_per_node": args.rate, "without_restarts": steady, "with_restarts": restarted}
        for key in ("packed_bytes_per_record", "rss_bytes_per_record"):
            before = sum(n[key] for n in steady["nodes"]) / 3
            after = sum(n[key] for n in restarted["nodes"]) / 3
            result[key] = {"without_restarts": round(before, 1), "with_restarts": round(after, 1),
                           "ratio": round(after / before, 3)}
        print(json.dumps(result, indent=2))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        workdir.remove()
    finally:
        stop_all()


if __name__ == "__main__":
    main()
