"""
The ``leaderboard-operator`` command, as a real process against the emulated API.

It watches all namespaces: with ``--namespace``, kopf lists ``/api/v1/namespaces``, a path that
kmock 0.8 fails to parse (500 "not enough values to unpack"); the embedded tests avoid it by
disabling kopf's scanning.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence

import aiohttp
import pytest

from leaderboard_operator import resources

from ..harness import free_ports
from .conftest import ApiServer, Cluster, eventually


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
        return response.status, await response.text()


@contextlib.asynccontextmanager
async def operator_process(k8s: ApiServer, *args: str, prefix: Sequence[str] = (),
                           env: Mapping[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """The operator's command against the emulated API; it must exit 0 on SIGTERM at the end."""
    process = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "leaderboard_operator.cli", "--server", str(k8s.url), "--all-namespaces",
        "--log-format", "plain", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    output = ""
    try:
        yield process
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


async def test_the_command_runs_the_operator_with_liveness_and_metrics(cluster: Cluster, k8s: ApiServer) -> None:
    liveness, metrics = free_ports("127.0.0.1", 2)
    async with operator_process(k8s, "--liveness-port", str(liveness), "--metrics-port", str(metrics)):
        await cluster.apply_cluster("lb")
        await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), timeout=20,
                         what="the operator process to create StatefulSet lb")

        status, _ = await get(f"http://127.0.0.1:{liveness}/healthz")
        assert status == 200
        status, text = await get(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200
        assert 'leaderboard_operator_reconciles_total{outcome="success",trigger="create"} 1.0' in text


ARBITRARY_UID = 54321  # no passwd entry, as under OpenShift's restricted SCC


def _as_arbitrary_uid() -> list[str]:
    """A command prefix that runs as a UID without a passwd entry (a user namespace), or skip."""
    prefix = ["unshare", "--user", f"--map-user={ARBITRARY_UID}", f"--map-group={ARBITRARY_UID}"]
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run([*prefix, "id", "-u"], capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != str(ARBITRARY_UID):
        pytest.skip(f"user namespaces are not available here: {probe.stderr.strip()}")
    return prefix


async def test_the_command_runs_under_a_uid_without_a_passwd_entry(cluster: Cluster, k8s: ApiServer) -> None:
    prefix = _as_arbitrary_uid()
    env = {key: value for key, value in os.environ.items() if key not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    async with operator_process(k8s, "--liveness-port", "0", "--metrics-port", "0", prefix=prefix,
                                env={**env, "POD_NAME": "leaderboard-operator-7d4b9-x2x7q"}):
        await cluster.apply_cluster("lb")
        await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), timeout=20,
                         what="the operator process, under an arbitrary UID, to create StatefulSet lb")
