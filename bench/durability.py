"""Durability costs: write throughput under each fsync policy, and how long a node holding
1,000,000 records takes to recover from its own disk (log only, and snapshot plus log).

    python -m bench.durability [--records 1000000] [--seconds 5]

One node on 127.0.0.1 with a data directory in a temporary folder; load comes from the
bench's separate client process (AsyncLeaderboardClient). Results are printed as JSON lines and written to
``bench/results/durability.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from leaderboard_client import LeaderboardClient

from .procs import LoadClient, Node, Workdir, stop_all

BOARD = "bench"
RESULTS = Path(__file__).parent / "results" / "durability.json"


def _node(workdir: Path, name: str, fsync: str, **durability: Any) -> Node:
    return Node(name, workdir, settings={
        "node": {"data_dir": str(workdir / f"{name}-data")},
        "durability": {"fsync": fsync, **durability},
        "cluster": {"leaderboard_sync": {"enabled": False}},
    })


def _target(node: Node) -> dict[str, Any]:
    return {"kind": "node", "url": node.url}


def throughput(workdir: Path, loader: LoadClient, fsync: str, seconds: float) -> dict[str, Any]:
    node = _node(workdir, f"fsync-{fsync}", fsync).start()
    try:
        node.wait_ready()
        loader.call({"cmd": "create", "targets": [_target(node)], "board": BOARD})
        out: dict[str, Any] = {"fsync": fsync}
        for op, concurrency in (("write", 8), ("batch", 4)):
            result = loader.call({"cmd": "ops", "target": _target(node), "board": BOARD, "op": op, "batch": 100,
                                  "concurrency": concurrency, "duration": seconds, "max_ops": 1_000_000,
                                  "population": 100_000}, timeout=seconds + 120)
            out[op] = {"records_per_s": round(result["records_per_s"]), "p50_ms": round(result["p50_ms"], 2),
                       "p99_ms": round(result["p99_ms"], 2), "concurrency": concurrency, "errors": result["errors"]}
        with LeaderboardClient(node.url) as client:
            out["fsyncs"] = client.cluster()["node"]["durability"]["fsyncs"]
        return out
    finally:
        node.stop()


def _restart_seconds(node: Node) -> tuple[float, dict[str, Any]]:
    node.stop(kill=True)
    started = time.monotonic()
    node.start()
    node.wait_ready(timeout=900)
    seconds = time.monotonic() - started
    with LeaderboardClient(node.url) as client:
        info = client.cluster()["node"]
    return seconds, info


def recovery(workdir: Path, loader: LoadClient, records: int) -> dict[str, Any]:
    node = _node(workdir, "recovery", "everysec", snapshot_interval=3600).start()
    try:
        node.wait_ready()
        loader.call({"cmd": "create", "targets": [_target(node)], "board": BOARD})
        load = loader.call({"cmd": "load", "targets": [_target(node)], "board": BOARD, "first": 0, "count": records,
                            "batch": 10_000, "concurrency": 2, "timeout": 900}, timeout=960)
        log_seconds, info = _restart_seconds(node)
        assert info["records"] == records, info
        # Now with a snapshot: restart with a short interval, wait for one, and kill again.
        node.stop(kill=True)
        node.settings["durability"]["snapshot_interval"] = 1.0
        node.start()
        node.wait_ready(timeout=900)
        deadline = time.monotonic() + 900
        with LeaderboardClient(node.url) as client:
            while client.cluster()["node"]["durability"]["snapshots_written"] < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("no snapshot was written")
                time.sleep(0.5)
            snapshot = client.cluster()["node"]["durability"]["last_snapshot"]
        node.settings["durability"]["snapshot_interval"] = 3600
        snapshot_seconds, info = _restart_seconds(node)
        assert info["records"] == records, info
        return {
            "records": records,
            "load_records_per_s": round(load["records_per_s"]),
            "recovery_from_log_seconds": round(log_seconds, 2),
            "snapshot_write_seconds": snapshot["seconds"], "snapshot_bytes": snapshot["bytes"],
            "recovery_from_snapshot_seconds": round(snapshot_seconds, 2),
            "recovery": info["durability"]["recovery"],
        }
    finally:
        node.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args(argv)
    workdir = Workdir()
    loader = LoadClient(workdir.path)
    results: dict[str, Any] = {"throughput": [], "recovery": None}
    try:
        for fsync in ("no", "everysec", "always"):
            row = throughput(workdir.path, loader, fsync, args.seconds)
            results["throughput"].append(row)
            print(json.dumps(row), flush=True)
        if not args.skip_recovery:
            results["recovery"] = recovery(workdir.path, loader, args.records)
            print(json.dumps(results["recovery"]), flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        loader.close()
        stop_all()
        workdir.remove()


if __name__ == "__main__":
    main()
