"""Prometheus metrics of one node, in a registry of its own (tests run several nodes in one process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .node import Node


class _StoreCollector(Collector):
    """Gauges read from the store at scrape time, so the hot path pays nothing for them."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        records = GaugeMetricFamily("leaderboard_bucket_records", "Records per leaderboard bucket.",
                                    labels=["leaderboard", "expiry"])
        for leaderboard_id, _incarnation, bucket in self._node.store.buckets():
            records.add_metric([leaderboard_id, str(bucket.expiry)], len(bucket))
        yield records
        leaderboards = GaugeMetricFamily("leaderboard_definitions", "Leaderboards and tournaments held.")
        leaderboards.add_metric([], len(self._node.store.leaderboards))
        yield leaderboards
        ready = GaugeMetricFamily("leaderboard_node_ready", "1 when the node answers /readyz with 200.")
        ready.add_metric([], 1.0 if self._node.ready else 0.0)
        yield ready


class NodeMetrics:
    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("leaderboard_http_requests", "Client API requests.", ["route", "status"], registry=r)
        self.request_seconds = Histogram("leaderboard_http_request_seconds", "Client API request latency.",
                                         ["route"], registry=r,
                                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1))
        self.rank_lookups = Counter("leaderboard_rank_cache_lookups", "Rank cache lookups by outcome "
                                    "(hit: the owner has a ranked record; miss: no record; off: ranks disabled).",
                                    ["outcome"], registry=r)
        self.records_written = Counter("leaderboard_records_written", "Record writes accepted on this node.",
                                       ["outcome"], registry=r)
        r.register(_StoreCollector(node))
