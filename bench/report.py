"""Results: ``latest.json`` (every round of every figure), ``latest.md`` (targets and tables)
and ``latest.png`` (replication lag and throughput over time)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .common import Figures, rounded

# ------------------------------------------------------------------------------ targets


def _m(results: dict[str, Any], workload: str, system: str, metric: str) -> float | None:
    entry = results.get(workload)
    if not entry or "figures" not in entry:
        return None
    value = entry["figures"].median(system, metric)
    return None if value is None or math.isnan(value) else value


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(name: str, unit: str, node: float | None, redis: float | None, goal: str, check: Any,
            on: str = "ratio") -> None:
        ratio = _ratio(node, redis)
        subject = ratio if on == "ratio" else node
        rows.append({
            "target": name, "unit": unit, "node": rounded(node) if node is not None else None,
            "redis": rounded(redis) if redis is not None else None,
            "ratio": rounded(ratio) if ratio is not None else None, "goal": goal,
            "pass": None if subject is None else bool(check(subject)),
        })

    api = "client_api"
    for op, name, factor in (("write", "single write", 4), ("lookup", "owner lookup", 2),
                             ("around", "around-owner (10)", 2), ("top", "top-100 page", 2)):
        for c in (1, 50):
            row(f"server CPU per {name}, {c} client{'s' if c > 1 else ''} (us)", "us",
                _m(results, api, "node", f"{op}.c{c}.server_cpu_us_per_op"),
                _m(results, api, "redis", f"{op}.c{c}.server_cpu_us_per_op"),
                f"<= {factor}x Redis", lambda r, f=factor: r <= f)
    for op, name, goal in (("write", "single write", 0.6), ("lookup", "owner lookup", 1.0),
                           ("around", "around-owner (10)", 1.0), ("top", "top-100 page", 1.0)):
        for c in (1, 50):
            row(f"{name}, {c} client{'s' if c > 1 else ''} (ops/s)", "ops/s",
                _m(results, api, "node", f"{op}.c{c}.ops_per_s"), _m(results, api, "redis", f"{op}.c{c}.ops_per_s"),
                f">= {goal}x Redis", lambda r, g=goal: r >= g)
    redis_bytes = _m(results, "memory", "redis", "bytes_per_record")
    row("memory per record, a node loaded through the API (bytes)", "B",
        _m(results, "memory", "node", "bytes_per_record"), redis_bytes, "<= 1.2x Redis", lambda r: r <= 1.2)
    row("memory per record, a node that full-synced (bytes)", "B",
        _m(results, "full_sync", "node", "synced_bytes_per_record"), redis_bytes, "<= 1.2x Redis", lambda r: r <= 1.2)
    for rate, goal in ((5000, 10), (10000, 25)):
        row(f"lag p99 at {rate // 1000}k records/s, 1M board, one writer (ms)", "ms",
            _m(results, "full_sync", "node", f"big{rate}.lag_p99_ms"),
            _m(results, "full_sync", "redis", f"big{rate}.lag_p99_ms"), f"<= {goal} ms", lambda v, g=goal: v <= g,
            on="node")
    row("lag p99 at 5k records/s, writes round robin (ms)", "ms",
        _m(results, "replication", "node", "rate5000.lag_p99_ms"),
        _m(results, "replication", "redis", "rate5000.lag_p99_ms"), "<= 25 ms", lambda v: v <= 25, on="node")
    node_sat = _m(results, "replication", "node", "saturation.applied_rate")
    redis_sat = _m(results, "replication", "redis", "saturation.applied_rate")
    row("replicated throughput, 3 nodes (records/s on every node)", "rec/s", node_sat, redis_sat,
        ">= 15,000 records/s", lambda v: v >= 15_000, on="node")
    row("full sync of a restarted node, 1M records (seconds)", "s", _m(results, "full_sync", "node", "seconds"),
        _m(results, "full_sync", "redis", "seconds"), "<= 1.0x Redis tuned", lambda r: r <= 1.0)
    row("digest settled after ready (seconds)", "s",
        _m(results, "full_sync", "node", "digest_settled_after_ready_seconds"), None, "<= 1 s",
        lambda v: v <= 1.0, on="node")
    row("bulk import until every node of 3 holds it (records/s)", "rec/s",
        _m(results, "bulk_import", "node", "records_per_s_everywhere"),
        _m(results, "bulk_import", "redis", "records_per_s_everywhere"), ">= 200,000 records/s",
        lambda v: v >= 200_000, on="node")
    sizes = results.get("rank_cache", {}).get("sizes") or [10_000, 1_000_000]
    row(f"rank-cache per-op cost growth {_short(sizes[0])}->{_short(sizes[-1])} (worst op)", "x",
        _m(results, "rank_cache", "node", "growth.worst"), _m(results, "rank_cache", "redis", "growth.worst"),
        "<= 2x", lambda v: v <= 2.0, on="node")
    return rows


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


# ------------------------------------------------------------------------------- JSON


def to_json(results: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    workloads: dict[str, Any] = {}
    for name, entry in results.items():
        out: dict[str, Any] = {}
        for key, value in entry.items():
            if isinstance(value, Figures):
                out.update(value.to_json())
            elif key == "timeline":
                out["timeline"] = _round_timeline(value)
            else:
                out[key] = value
        workloads[name] = out
    return {**meta, "workloads": workloads, "targets": targets(results)}


def _round_timeline(timeline: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system, phases in timeline.items():
        out[system] = [{**p, "series": [[round(v, 3) for v in row] for row in p["series"]],
                        "lags": [[round(t, 3), round(lag, 3)] for t, lag in p["lags"]]} for p in phases]
    return out


# --------------------------------------------------------------------------- Markdown


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def markdown(data: dict[str, Any]) -> str:
    machine = data["machine"]
    lines = [
        f"# Benchmark results ({data['mode']} mode, {data['rounds']} rounds, medians)",
        "",
        f"{data['started']}; {machine['nproc']} cores, Python {machine['python']}, Redis {machine['redis'] or '-'}, "
        f"redis-py {machine.get('redis_py') or '-'} (hiredis {machine.get('hiredis') or 'no'}), "
        f"aiohttp {machine.get('aiohttp')}, client process loop {machine.get('client_loop') or '-'}; load average at start {machine.get('loadavg')}. "
        "Clients share the cores with the servers"
        + (f"; load comes from a {machine['client_process']} client process: {machine['client_library']}, "
           "N concurrent asyncio tasks with one connection each." if machine.get("client_process") else "."),
        "",
        "## Targets",
        "",
        "| target | node | Redis | node/Redis | goal | result |",
        "|---|---|---|---|---|---|",
    ]
    for t in data["targets"]:
        result = "not run" if t["pass"] is None else ("pass" if t["pass"] else "**miss**")
        ratio = f"{t['ratio']:.2f}x" if t["ratio"] is not None else "-"
        lines.append(f"| {t['target']} | {_fmt(t['node'])} | {_fmt(t['redis'])} | {ratio} | {t['goal']} | {result} |")
    for name, entry in data["workloads"].items():
        lines += ["", f"## {name}", ""]
        if "error" in entry:
            lines += [f"**failed**: `{entry['error']}`", ""]
        if "method" in entry:
            lines += [f"Method: {entry['method']}.", ""]
        node, redis = entry.get("node", {}), entry.get("redis", {})
        metrics = list(dict.fromkeys(list(node) + list(redis)))
        if metrics:
            lines += ["| figure | node | Redis | node/Redis | node rounds |", "|---|---|---|---|---|"]
            for metric in metrics:
                a = node.get(metric, {}).get("median")
                b = redis.get(metric, {}).get("median")
                ratio = f"{a / b:.2f}x" if a is not None and b else "-"
                rounds = ", ".join(_fmt(v) for v in node.get(metric, {}).get("rounds", []))
                lines.append(f"| {metric} | {_fmt(a)} | {_fmt(b)} | {ratio} | {rounds} |")
        for key in ("load", "notes"):
            if key in entry:
                lines += ["", f"{key}: `{json.dumps(entry[key])}`"]
    if data.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in data["warnings"]]
    lines += ["", "How each figure is made: see `bench/README.md`.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ chart


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = data["workloads"].get("replication", {}).get("timeline") or {}
    fig, (lag_ax, rate_ax) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    colors = {"node": ("tab:blue", ["#1f77b4", "#6baed6", "#08306b"]),
              "redis": ("tab:red", ["#d62728", "#fb6a4a", "#67000d"])}
    if not timeline:
        lag_ax.text(0.5, 0.5, "replication was not run", ha="center", va="center", transform=lag_ax.transAxes)
    # phases of both systems side by side: phase k starts at the same x for both
    count = max((len(phases) for phases in timeline.values()), default=0)
    offsets, x = [], 0.0
    for k in range(count):
        offsets.append(x)
        ends = [max(p[k]["series"][-1][0] if p[k]["series"] else 0.0, p[k].get("write_seconds", 0.0))
                for p in timeline.values() if k < len(p)]
        x += max(ends, default=0.0) + 1.0
    for k in range(count):
        label = next(p[k]["label"] for p in timeline.values() if k < len(p))
        for ax in (lag_ax, rate_ax):
            ax.axvline(offsets[k], color="grey", linewidth=0.6, linestyle=":")
        lag_ax.annotate(label, (offsets[k], 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                        va="bottom", ha="left")
    for system, phases in timeline.items():
        main, shades = colors.get(system, ("black", ["black"] * 3))
        lag_t: list[float] = []
        lag_v: list[float] = []
        rate_lines: list[tuple[list[float], list[float]]] | None = None
        for k, phase in enumerate(phases):
            offset = offsets[k]
            lag_t += [offset + t for t, _ in phase["lags"]]
            lag_v += [lag for _, lag in phase["lags"]]
            series = phase["series"]
            observers = len(series[0]) - 1 if series else 0
            if rate_lines is None:
                rate_lines = [([], []) for _ in range(observers)]
            for i in range(observers):
                xs, ys = _rates([row[0] for row in series], [row[i + 1] for row in series])
                rate_lines[i][0].extend([offset + v for v in xs] + [math.nan])
                rate_lines[i][1].extend(ys + [math.nan])
        lag_ax.scatter(lag_t, lag_v, s=6, color=main, alpha=0.6, label=f"{system}: lag of sampled writes")
        for i, (xs, ys) in enumerate(rate_lines or []):
            what = f"node {i}" if system == "node" else ("master" if i == 0 else f"replica {i}")
            rate_ax.plot(xs, ys, color=shades[i % len(shades)], linewidth=1.2,
                         label=f"{system}: records/s applied on {what}")
    lag_ax.set_yscale("log")
    lag_ax.set_ylabel("replication lag (ms, log)")
    if timeline:
        lag_ax.legend(loc="upper left", fontsize=8)
        rate_ax.legend(loc="upper left", fontsize=7, ncol=2)
    lag_ax.grid(True, which="both", alpha=0.3)
    rate_ax.set_ylabel("records/s applied (0.5 s windows)")
    rate_ax.set_xlabel("seconds since the phase began (phases of the last round back to back, aligned for both systems)")
    rate_ax.grid(True, alpha=0.3)
    fig.suptitle(f"Replication: 3 nodes vs Redis master + 2 replicas ({data['mode']} mode, last round)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rates(ts: list[float], counts: list[float], window: float = 0.5) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    j = 0
    for i in range(1, len(ts)):
        while ts[i] - ts[j] > window and j < i - 1:
            j += 1
        if ts[i] > ts[j]:
            xs.append(ts[i])
            ys.append((counts[i] - counts[j]) / (ts[i] - ts[j]))
    return xs, ys


def write(data: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "latest.json", out_dir / "latest.md", out_dir / "latest.png"]
    paths[0].write_text(json.dumps(data, indent=1) + "\n")
    paths[1].write_text(markdown(data))
    try:
        chart(data, paths[2])
    except ImportError as exc:  # matplotlib missing: no stale chart beside fresh results
        paths[2].unlink(missing_ok=True)
        data.setdefault("warnings", []).append(f"no chart: {exc}")
        paths[0].write_text(json.dumps(data, indent=1) + "\n")
    return paths
