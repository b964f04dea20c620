"""The bench's client process: it drives load against the nodes (the project's asyncio
client) and against Redis (redis-py's asyncio client, hiredis parser) from one asyncio event
loop (uvloop when installed, for both): each system through its own Python client, with the
same code style and the same concurrency.

It is started by the bench driver (``bench.procs.LoadClient``) and reads one JSON command
per line from stdin, answering one JSON line on stdout. Every loop is bounded in time and
count. Not meant to be run by hand.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import traceback
from typing import Any

import aiohttp

from leaderboard_client import ApiError, AsyncLeaderboardClient

from .common import owner_id, percentile

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

MAX_SCORE_BITS = 63  # random non-negative 63-bit scores stay within int64
LAG_TIMEOUT = 10.0  # a probe gives up after this many seconds (counted as a timeout)


def _redis_client(port: int, connections: int) -> Any:
    import redis.asyncio as aioredis

    # never more tasks than connections, so a plain pool never runs out (and is faster than
    # the blocking one)
    pool = aioredis.ConnectionPool(host="127.0.0.1", port=port, max_connections=max(1, connections))
    return aioredis.Redis(connection_pool=pool)


class Target:
    """One node (``url``) or one redis-server (``port``).

    A node is driven through the project's asyncio client (``AsyncLeaderboardClient``), as
    Redis is through its own (redis-py); ``"client": "aiohttp"`` in a node's spec makes its
    reads (``around``) go through aiohttp instead, to show what a general-purpose HTTP client
    costs on top.
    """

    def __init__(self, spec: dict[str, Any], board: str, connections: int) -> None:
        self.kind = spec["kind"]
        self.board = board
        self.session: aiohttp.ClientSession | None = None
        if self.kind == "node":
            self.url = spec["url"].rstrip("/")
            self.client = AsyncLeaderboardClient(self.url, connections=max(1, connections), timeout=60)
            if spec.get("client") == "aiohttp":
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=max(1, connections)),
                    timeout=aiohttp.ClientTimeout(total=60),
                )
                self.base = f"{self.url}/v1/leaderboards/{board}"
        else:
            self.port = int(spec["port"])
            self.redis = _redis_client(self.port, connections)

    async def close(self) -> None:
        if self.kind == "node":
            await self.client.close()
            if self.session is not None:
                await self.session.close()
        else:
            await self.redis.aclose()

    # ----------------------------------------------------------------- operations

    async def write_batch(self, records: list[tuple[str, int]], *, variadic: bool = False) -> None:
        """Node: one POST of the batch API; Redis: one pipeline of one ZADD per record, or with
        ``variadic`` one ZADD of every record (used to load data, not to measure writes)."""
        if self.kind == "node":
            body = await self.client.write_batch(self.board, [{"owner_id": o, "score": s} for o, s in records])
            bad = [r for r in body["records"] if "error" in r]
            if bad:
                raise RuntimeError(f"batch write refused {len(bad)} records: {bad[0]}")
        elif variadic:
            await self.redis.zadd(self.board, dict(records))
        else:
            pipe = self.redis.pipeline(transaction=False)
            for owner, score in records:
                pipe.zadd(self.board, {owner: score})
            await pipe.execute()

    async def write_one(self, owner: str, score: int) -> None:
        if self.kind == "node":
            await self.client.write_record(self.board, owner, score)
        else:
            await self.redis.zadd(self.board, {owner: score})

    async def lookup(self, owner: str) -> None:
        """Node: GET one record with its rank; Redis: ZSCORE + ZREVRANK in one pipeline."""
        if self.kind == "node":
            await self.client.record(self.board, owner)
        else:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zscore(self.board, owner)
            pipe.zrevrank(self.board, owner)
            await pipe.execute()

    async def around(self, owner: str, limit: int = 10) -> None:
        """Node: GET around-owner; Redis: ZREVRANK, then ZREVRANGE WITHSCORES (two round trips)."""
        if self.kind == "node":
            if self.session is not None:
                async with self.session.get(f"{self.base}/records/around/{owner}?limit={limit}") as response:
                    raw = await response.read()
                    status, body = response.status, json.loads(raw)
            else:
                status, body = 200, await self.client.around(self.board, owner, limit=limit)
            if status != 200 or len(body["records"]) != limit:
                raise RuntimeError(f"around answered {status}")
        else:
            rank = await self.redis.zrevrank(self.board, owner)
            start = max(0, rank - (limit - 1) // 2)
            await self.redis.zrevrange(self.board, start, start + limit - 1, withscores=True)

    async def top(self, limit: int = 100) -> None:
        if self.kind == "node":
            await self.client.records(self.board, limit=limit)
        else:
            await self.redis.zrevrange(self.board, 0, limit - 1, withscores=True)

    async def score_of(self, owner: str) -> int | float | None:
        if self.kind == "node":
            try:
                return (await self.client.record(self.board, owner))["score"]
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
        return await self.redis.zscore(self.board, owner)

    async def count(self) -> int:
        if self.kind == "node":
            try:
                return int((await self.client.records(self.board, limit=1))["rank_count"])
            except ApiError as exc:
                if exc.status == 404:
                    return -1
                raise
        return int(await self.redis.zcard(self.board))

    async def create_board(self) -> None:
        if self.kind == "node":
            await self.client.create_leaderboard(self.board, sort_order="desc", operator="set")
        else:
            await self.redis.delete(self.board)


def _targets(specs: list[dict[str, Any]], board: str, connections: int) -> list[Target]:
    return [Target(spec, board, connections) for spec in specs]


async def _close(targets: list[Target]) -> None:
    for target in targets:
        await target.close()


def _records(rng: random.Random, first: int, count: int, space: str) -> list[tuple[str, int]]:
    return [(owner_id(i, space), rng.getrandbits(MAX_SCORE_BITS)) for i in range(first, first + count)]


# ---------------------------------------------------------------------------- commands


async def cmd_create(cmd: dict[str, Any]) -> dict[str, Any]:
    targets = _targets(cmd["targets"], cmd["board"], 1)
    try:
        for target in targets:
            await target.create_board()
    finally:
        await _close(targets)
    return {}


async def cmd_load(cmd: dict[str, Any]) -> dict[str, Any]:
    """Write ``count`` new owners (indices first..first+count) in batches, round robin over the
    targets, ``concurrency`` batches in flight."""
    targets = _targets(cmd["targets"], cmd["board"], cmd["concurrency"])
    rng = random.Random(cmd.get("seed", 1))
    first, count, batch = cmd["first"], cmd["count"], cmd["batch"]
    space = cmd.get("space", "o")
    deadline = time.monotonic() + cmd.get("timeout", 600)
    starts = iter(range(first, first + count, batch))
    written = 0

    async def worker(index: int) -> None:
        nonlocal written
        target = targets[index % len(targets)]
        for start in starts:
            if time.monotonic() > deadline:
                raise RuntimeError("load timed out")
            chunk = _records(rng, start, min(batch, first + count - start), space)
            await target.write_batch(chunk, variadic=cmd.get("variadic", False))
            written += len(chunk)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(i) for i in range(cmd["concurrency"])))
    finally:
        await _close(targets)
    seconds = time.perf_counter() - started
    return {"written": written, "seconds": seconds, "records_per_s": written / seconds}


async def cmd_ops(cmd: dict[str, Any]) -> dict[str, Any]:
    """Run one operation with ``concurrency`` clients (one connection each) for ``duration``
    seconds or ``max_ops`` operations, whichever comes first; latency per operation."""
    concurrency = cmd["concurrency"]
    target = _targets([cmd["target"]], cmd["board"], concurrency)[0]
    op, population = cmd["op"], cmd["population"]
    batch = cmd.get("batch", 100)
    rng = random.Random(cmd.get("seed", 2))
    latencies: list[float] = []
    errors: list[str] = []
    done = 0
    stop_at = time.monotonic() + cmd["duration"]
    max_ops = cmd["max_ops"]

    async def one() -> int:
        if op == "write":
            await target.write_one(owner_id(rng.randrange(population)), rng.getrandbits(MAX_SCORE_BITS))
            return 1
        if op == "batch":
            records = [(owner_id(rng.randrange(population)), rng.getrandbits(MAX_SCORE_BITS)) for _ in range(batch)]
            await target.write_batch(records)
            return batch
        if op == "lookup":
            await target.lookup(owner_id(rng.randrange(population)))
            return 1
        if op == "around":
            await target.around(owner_id(rng.randrange(population)), 10)
            return 1
        if op == "top":
            await target.top(100)
            return 1
        raise ValueError(f"unknown op {op}")

    records = 0

    async def client() -> None:
        nonlocal done, records
        while time.monotonic() < stop_at and done < max_ops:
            done += 1
            began = time.perf_counter()
            try:
                written = await one()
            except Exception as exc:  # counted, and the first few are reported
                if len(errors) < 5:
                    errors.append(repr(exc)[:200])
                continue
            latencies.append(time.perf_counter() - began)
            records += written

    started = time.perf_counter()
    cpu = time.process_time()
    try:
        await asyncio.gather(*(client() for _ in range(concurrency)))
    finally:
        await target.close()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {
        "ops": len(latencies), "seconds": seconds, "ops_per_s": len(latencies) / seconds,
        "client_cpu_us_per_op": cpu / max(1, len(latencies)) * 1e6,
        "records_per_s": records / seconds,
        "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
        "errors": done - len(latencies), "error_samples": errors,
    }


async def cmd_write_phase(cmd: dict[str, Any]) -> dict[str, Any]:
    """Write new owners through the writers (round robin) at ``rate`` records/s (0: as fast as
    ``writers_concurrency`` clients go) for ``duration`` seconds, in batches of ``batch``.
    Each acknowledgement is reported to the prober process (a datagram on ``probe_socket``:
    writer index, last owner and score of the batch, and the time of the acknowledgement on
    the machine's monotonic clock, which both processes share)."""
    import socket

    rate, duration, batch = cmd["rate"], cmd["duration"], cmd["batch"]
    concurrency = cmd["writers_concurrency"]
    writers = _targets(cmd["writers"], cmd["board"], concurrency)
    rng = random.Random(cmd.get("seed", 3))
    space, next_index = cmd["space"], cmd["first"]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    written = 0
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def send(k: int, records: list[tuple[str, int]]) -> None:
        nonlocal written
        writer = k % len(writers)
        try:
            await writers[writer].write_batch(records)
        except Exception as exc:
            if len(errors) < 5:
                errors.append(repr(exc)[:200])
            return
        finally:
            sem.release()
        acked = time.perf_counter()
        written += len(records)
        owner, score = records[-1]
        try:
            sock.sendto(json.dumps([writer, owner, score, acked]).encode(), cmd["probe_socket"])
        except (BlockingIOError, OSError):
            pass  # a lost sample, not a lost write

    tasks: list[asyncio.Task[Any]] = []
    t0 = time.perf_counter()
    end = t0 + duration
    k = 0
    try:
        while True:
            now = time.perf_counter()
            if now >= end or k >= cmd["max_batches"]:
                break
            if rate > 0:
                due = t0 + k * batch / rate
                if due >= end:
                    break
                if due > now:
                    await asyncio.sleep(due - now)
            await sem.acquire()
            if time.perf_counter() >= end:
                sem.release()
                break
            records = _records(rng, next_index, batch, space)
            next_index += batch
            tasks.append(asyncio.create_task(send(k, records)))
            k += 1
        await asyncio.gather(*tasks)
    finally:
        sock.close()
        await _close(writers)
    write_seconds = time.perf_counter() - t0
    return {"t0": t0, "rate": rate, "batch": batch, "written": written, "write_seconds": write_seconds,
            "ack_rate": written / write_seconds if write_seconds > 0 else 0.0, "next_index": next_index,
            "errors": errors}


class Prober:
    """Lag probes and counts of one replication phase, in a process of their own so that the
    writer's work does not delay them.

    Lag: for a reported acknowledgement (at most one probe in flight, at most one starting
    every ``probe_every`` seconds), the batch's last record is polled on every other observer
    every ``poll`` seconds until each serves the new score; the lag is the time from the
    acknowledgement to the answer that completed the set (polls back off to every tenth of
    the time waited, at most 5 ms, so a lagging node is not flooded). Counts of every observer are
    sampled every ``monitor`` seconds."""

    def __init__(self, cmd: dict[str, Any]) -> None:
        import socket

        self.cmd = cmd
        self.observers = _targets(cmd["observers"], cmd["board"], 4)
        self.counters = _targets(cmd["observers"], cmd["board"], 1)
        self.others_of: list[list[int]] = cmd["others_of"]
        self.poll, self.probe_every = cmd.get("poll", 0.001), cmd.get("probe_every", 0.02)
        self.lags: list[tuple[float, float]] = []  # (monotonic time of the ack, lag ms)
        self.timeouts = 0
        self.probing = False
        self.last_probe = -1.0
        self.series: list[list[float]] = []  # [monotonic time, count of each observer beyond base]
        self.expected: int | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(cmd["probe_socket"])
        self.sock.setblocking(False)
        self.tasks: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        self.base = [await c.count() for c in self.counters]
        for observer in self.observers:  # connections open before the first probe
            await observer.score_of("warm-up")
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self._on_datagram)
        self.monitor_task = asyncio.create_task(self._monitor())

    def _on_datagram(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, OSError):
                return
            writer, owner, score, acked = json.loads(data)
            if not self.probing and acked - self.last_probe >= self.probe_every:
                self.probing, self.last_probe = True, acked
                task = asyncio.create_task(self._probe(writer, owner, score, acked))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _probe(self, writer: int, owner: str, score: int, acked: float) -> None:
        try:
            waiting = list(self.others_of[writer])
            expect = float(score) if self.observers[0].kind == "redis" else score
            while waiting:
                found = await asyncio.gather(*(self.observers[i].score_of(owner) for i in waiting))
                now = time.perf_counter()
                waiting = [i for i, value in zip(waiting, found) if value != expect]
                if not waiting:
                    self.lags.append((acked, (now - acked) * 1000))
                    return
                if now - acked > LAG_TIMEOUT:
                    self.timeouts += 1
                    return
                # every ``poll`` seconds at first, then every tenth of the time waited (at most
                # 5 ms): resolution stays within 10% while a slow node is not flooded by polls
                await asyncio.sleep(min(0.005, max(self.poll, (now - acked) / 10)))
        finally:
            self.probing = False

    async def _monitor(self) -> None:
        deadline = time.monotonic() + self.cmd["max_seconds"]
        while time.monotonic() < deadline:
            counts = await asyncio.gather(*(c.count() for c in self.counters))
            grown = [c - b for c, b in zip(counts, self.base)]
            self.series.append([time.perf_counter()] + grown)
            if self.expected is not None and all(g >= self.expected for g in grown):
                return
            await asyncio.sleep(self.cmd["monitor"])

    async def close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Wait (at most ``converge_timeout``) until every observer holds ``written`` more
        records, then report; times are relative to the phase's start ``t0``."""
        self.expected = cmd["written"]
        t0 = cmd["t0"]
        try:
            await asyncio.wait_for(asyncio.shield(self.monitor_task), timeout=cmd["converge_timeout"])
        except asyncio.TimeoutError:
            pass
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=LAG_TIMEOUT + 1)
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        self.monitor_task.cancel()
        for task in list(self.tasks):
            task.cancel()
        await _close(self.observers + self.counters)
        final = self.series[-1] if self.series else [0.0]
        written = cmd["written"]
        converged = bool(self.series) and all(c >= written for c in final[1:])
        applied_at = final[0] - t0 if converged else None
        lag_values = [lag for _, lag in self.lags]
        return {
            "converged": converged, "applied_seconds": applied_at,
            "applied_rate": written / applied_at if applied_at else None,
            "lag_p50_ms": percentile(lag_values, 50), "lag_p99_ms": percentile(lag_values, 99),
            "lag_max_ms": max(lag_values) if lag_values else None,
            "probes": len(lag_values), "probe_timeouts": self.timeouts,
            "lags": [(t - t0, lag) for t, lag in self.lags],
            "series": [[row[0] - t0] + row[1:] for row in self.series],
        }


_prober: Prober | None = None


async def cmd_probe_open(cmd: dict[str, Any]) -> dict[str, Any]:
    global _prober
    _prober = Prober(cmd)
    await _prober.open()
    return {}


async def cmd_probe_close(cmd: dict[str, Any]) -> dict[str, Any]:
    global _prober
    prober, _prober = _prober, None
    if prober is None:
        raise RuntimeError("no probe is open")
    return await prober.close(cmd)


async def cmd_counts(cmd: dict[str, Any]) -> dict[str, Any]:
    targets = _targets(cmd["targets"], cmd["board"], 1)
    try:
        return {"counts": [await t.count() for t in targets]}
    finally:
        await _close(targets)


COMMANDS = {"create": cmd_create, "load": cmd_load, "ops": cmd_ops, "write_phase": cmd_write_phase,
            "probe_open": cmd_probe_open, "probe_close": cmd_probe_close, "counts": cmd_counts}


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "hello":
                answer: dict[str, Any] = {"loop": "uvloop" if uvloop is not None else "asyncio",
                                          "aiohttp": aiohttp.__version__}
                try:
                    import redis

                    answer["redis_py"] = redis.__version__
                except ImportError:
                    answer["redis_py"] = None
            else:
                answer = await COMMANDS[cmd["cmd"]](cmd)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            answer = {"error": f"{cmd.get('cmd')}: {exc!r}"[:1000]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> None:
    if uvloop is not None:
        uvloop.run(serve())
    else:  # pragma: no cover
        asyncio.run(serve())


if __name__ == "__main__":
    main()
