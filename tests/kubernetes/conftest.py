"""
Fixtures of the end-to-end tests: kmock as the API (with :class:`WatchingApiServer`), the operator
embedded in the test loop (the ``operator`` fixture of ``tests/operator``, re-exported here), and
a :class:`Kubelet` that turns the operator's StatefulSet into real node processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from leaderboard_operator import OperatorConfig

from ..harness import free_ports
from ..operator.conftest import NAMESPACE, OPERATOR_NAMESPACE, ApiServer, Cluster, emulated_api, operator  # noqa: F401 - operator: a fixture
from .kubelet import Kubelet, WatchingApiServer


NODE_CPU = "2500m"  # the one node's allocatable CPU: room for five pods that request 500m


@pytest.fixture()
async def k8s() -> AsyncIterator[ApiServer]:
    """As ``tests/operator``'s ``k8s``, with watches that do not lose events (see kubelet.py)."""
    async with emulated_api(WatchingApiServer) as server:
        yield server


@pytest.fixture()
def cluster(k8s: ApiServer) -> Cluster:
    return Cluster(k8s)


@pytest.fixture()
def ports() -> tuple[int, int]:
    """The (client, peer) port pair every pod listens on, each on its own 127.0.0.x: free on
    every address (bound on the wildcard), for all pods to share like 7350."""
    client, peer = free_ports("0.0.0.0", 2)
    return client, peer


@pytest.fixture()
def operator_config(k8s: WatchingApiServer, ports: tuple[int, int]) -> OperatorConfig:
    """The operator of ``tests/operator``, reaching the real members on the test's client port."""
    return OperatorConfig(
        server=str(k8s.url),
        reconcile_interval=1.0,
        poll_interval=0.2,
        member_port=ports[0],
        member_timeout=2.0,  # real nodes under load (a full sync on 2 cores) may answer slowly
        api_timeout=5.0,
        retry_delay=0.2,
        default_image="leaderboard-node:test",
        namespace=OPERATOR_NAMESPACE,
    )


@pytest.fixture()
async def kubelet(cluster: Cluster, ports: tuple[int, int], tmp_path: Path) -> AsyncIterator[Kubelet]:
    """The StatefulSet controller and kubelet; every process is killed at the end, logs are checked."""
    harness = Kubelet(cluster, workdir=tmp_path, client_port=ports[0], peer_port=ports[1], namespace=NAMESPACE,
                      node_cpu=NODE_CPU)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
    errors = harness.log_errors()
    assert not errors, f"nodes logged errors: {errors}"
    harness.raise_errors()
