"""
The ``leaderboard-operator`` command, as a real process against the emulated API.

It watches all namespaces: with ``--namespace``, kopf lists ``/api/v1/namespaces``, a path that
kmock 0.8 fails to parse (500 "not enough values to unpack"); the embedded tests avoid it by
disabling kopf's scanning.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp

from leaderboard_operator import resources

from .conftest import ApiServer, Cluster, eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
        return response.status, await response.text()


async def test_the_command_runs_the_operator_with_liveness_and_metrics(cluster: Cluster, k8s: ApiServer) -> None:
    liveness, metrics = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "leaderboard_operator.cli", "--server", str(k8s.url), "--all-namespaces",
        "--liveness-port", str(liveness), "--metrics-port", str(metrics), "--log-format", "plain",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await cluster.apply_cluster("lb")
        await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), timeout=20,
                         what="the operator process to create StatefulSet lb")

        status, _ = await get(f"http://127.0.0.1:{liveness}/healthz")
        assert status == 200
        status, text = await get(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200
        assert 'leaderboard_operator_reconciles_total{outcome="success",trigger="create"} 1.0' in text
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), timeout=15)
        except asyncio.TimeoutError:
            process.kill()
            raise
        output = (await process.stdout.read()).decode() if process.stdout else ""
    assert code == 0, output
