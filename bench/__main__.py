"""``python -m bench [--quick] [--only WORKLOAD ...] [--rounds N]``: every workload for the
node and for Redis in turn (A B A B, medians of the rounds), then ``bench/results/latest.json``,
``latest.md`` and ``latest.png``. Every process started here is stopped at the end, also on
Ctrl-C or a failure. See ``bench/README.md``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import bulk_import, client_api, full_sync, rank_cache, replication, report
from .common import BUDGET
from .plan import plan_for
from .procs import LoadClient, Redis, Workdir, redis_available, redis_version, stop_all

WORKLOADS = ("rank_cache", "client_api", "replication", "full_sync", "memory", "bulk_import")
RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(message, flush=True)


def _machine() -> dict[str, Any]:
    try:
        loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        loadavg = None
    try:
        import redis

        redis_py = redis.__version__
    except ImportError:
        redis_py = None
    import aiohttp

    try:
        import hiredis

        hiredis_version = hiredis.__version__
    except ImportError:
        hiredis_version = None
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "redis": redis_version(),
            "redis_py": redis_py, "hiredis": hiredis_version, "aiohttp": aiohttp.__version__, "platform": platform.platform(),
            "loadavg": loadavg}


def _redis_ok(warnings: list[str]) -> bool:
    if not redis_available():
        warnings.append("redis-server is not installed (apt-get install redis-server; ./run bench does it): "
                        "only the node was measured")
        return False
    try:
        import redis  # noqa: F401
    except ImportError:
        warnings.append("the redis Python package is missing (pip install redis): only the node was measured")
        return False
    return True


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def self_check(data: dict[str, Any], paths: list[Path]) -> list[str]:
    """Problems with what was written: files present, figures finite and positive."""
    problems = [f"{p} was not written" for p in paths if not p.exists() or p.stat().st_size == 0]
    loaded = json.loads(paths[0].read_text())
    for name, entry in loaded["workloads"].items():
        if "error" in entry:
            problems.append(f"{name} failed: {entry['error']}")
            continue
        for system in data["systems"]:
            figures = entry.get(system)
            if not figures:
                problems.append(f"{name}: no figures for {system}")
                continue
            for metric, value in figures.items():
                median = value.get("median")
                if median is None or not math.isfinite(median) or median < 0:
                    problems.append(f"{name}.{system}.{metric}: median {median!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and short phases (under 2 minutes)")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, metavar="WORKLOAD",
                        help=f"run only these workloads ({', '.join(WORKLOADS)})")
    parser.add_argument("--rounds", type=int, help="rounds per workload and system (default 3; medians)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of latest.json/.md/.png")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    plan = plan_for(args.quick, args.rounds)
    chosen = [w for w in WORKLOADS if not args.only or w in args.only]
    signal.signal(signal.SIGTERM, _on_sigterm)
    warnings: list[str] = []
    if plan.rounds < 3:
        warnings.append(f"{plan.rounds} round(s): medians of fewer than 3 rounds are not comparable")
    systems = ["node", "redis"] if _redis_ok(warnings) else ["node"]
    for warning in warnings:
        log(f"warning: {warning}")
    started = time.monotonic()
    BUDGET.reset(plan.budget_seconds)
    meta: dict[str, Any] = {
        "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "mode": plan.name, "rounds": plan.rounds, "workloads_run": chosen, "systems": systems,
        "machine": _machine(), "plan": vars(plan),
        "warnings": warnings,
    }
    results: dict[str, Any] = {}
    workdir = Workdir()
    loader: LoadClient | None = None
    failed = interrupted = False
    log(f"bench: {plan.name} mode, {plan.rounds} rounds, workloads {', '.join(chosen)}; logs in {workdir.path}")
    try:
        if any(w != "rank_cache" for w in chosen):
            loader = LoadClient(workdir.path)
            meta["machine"].update({"client_loop": loader.info.get("loop"), "client_process": "separate",
                                    "client_library": "AsyncLeaderboardClient (node), redis.asyncio (Redis)"})
        steps: list[tuple[tuple[str, ...], Any]] = []
        if "rank_cache" in chosen:
            def rank_step() -> dict[str, Any]:
                server = Redis("redis-rank-cache", workdir.path).start() if "redis" in systems else None
                try:
                    if server is not None:
                        server.wait_ready()
                    return {"rank_cache": rank_cache.run(
                        sizes=list(plan.rank_sizes), samples=plan.rank_samples, pages=plan.rank_pages,
                        rounds=plan.rounds, redis_port=server.port if server else None, log=log)}
                finally:
                    if server is not None:
                        server.stop()
            steps.append((("rank_cache",), rank_step))
        if "client_api" in chosen or "memory" in chosen:
            names = tuple(w for w in ("client_api", "memory") if w in chosen)
            steps.append((names, lambda: client_api.run(plan, workdir.path, loader, systems, api="client_api" in chosen,
                                                        memory="memory" in chosen, log=log)))
        if "replication" in chosen:
            steps.append((("replication",), lambda: {"replication": replication.run(plan, workdir.path, loader,
                                                                                    systems, log=log)}))
        if "full_sync" in chosen:
            steps.append((("full_sync",), lambda: {"full_sync": full_sync.run(plan, workdir.path, loader, systems,
                                                                              log=log)}))
        if "bulk_import" in chosen:
            steps.append((("bulk_import",), lambda: {"bulk_import": bulk_import.run(plan, workdir.path, loader,
                                                                                    systems, log=log)}))
        for names, step in steps:
            began = time.monotonic()
            log(f"== {' + '.join(names)}")
            try:
                results.update(step())
            except Exception as exc:
                failed = True
                traceback.print_exc()
                for name in names:
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            for name in names:
                results.setdefault(name, {})["seconds"] = round(time.monotonic() - began, 1)
            log(f"   {' + '.join(names)} took {time.monotonic() - began:.0f}s")
    except KeyboardInterrupt:
        interrupted = True
        warnings.append("interrupted: partial results")
        log("interrupted: stopping every process started")
    finally:
        if loader is not None:
            loader.close()
        stop_all()
    meta["seconds"] = round(time.monotonic() - started, 1)
    warnings.extend(BUDGET.warnings)
    data = report.to_json(results, meta)
    paths = report.write(data, args.out)
    log("")
    log(report.markdown(data).split("## Targets", 1)[1].split("\n## ", 1)[0].strip())
    log("")
    log(f"wrote {', '.join(str(p) for p in paths)} in {meta['seconds']:.0f}s")
    problems = self_check(data, paths)
    if interrupted:
        problems.insert(0, "interrupted: partial results")
    if problems:
        log("self-check: " + "; ".join(problems))
        log(f"server and client logs kept in {workdir.path}")
        return 130 if interrupted else 1
    workdir.remove()
    log("self-check: ok")
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
