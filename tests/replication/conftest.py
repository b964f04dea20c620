from __future__ import annotations

import pytest

from ..harness import Cluster
from ..netfaults import Network


@pytest.fixture
def network():
    net = Network()
    yield net
    net.close()


@pytest.fixture
def cluster_factory(tmp_path):
    clusters: list[Cluster] = []

    def make(size: int = 3, **kwargs) -> Cluster:
        cluster = Cluster.create(tmp_path, size, **kwargs)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()
    for cluster in clusters:
        cluster.assert_logs_clean()
