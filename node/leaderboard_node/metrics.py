"""Prometheus metrics of one node, in a registry of its own (tests run several nodes in one process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .node import Node


def _by_outcome(name: str, documentation: str, counts: dict[str, int]) -> CounterMetricFamily:
    """A counter labelled ``outcome`` from the store's plain counts."""
    family = CounterMetricFamily(name, documentation, labels=["outcome"])
    for outcome, count in counts.items():
        family.add_metric([outcome], count)
    return family


class _StoreCollector(Collector):
    """Gauges read from the store at scrape time, so the hot path pays nothing for them."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        records = GaugeMetricFamily("leaderboard_bucket_records", "Records per leaderboard bucket.",
                                    labels=["leaderboard", "expiry"])
        packed = GaugeMetricFamily("leaderboard_bucket_record_bytes",
                                   "Bytes of a bucket's records as the rank cache packs them (each also costs "
                                   "about 100 bytes of fixed overhead).", labels=["leaderboard", "expiry"])
        for leaderboard_id, _incarnation, bucket in self._node.store.buckets():
            records.add_metric([leaderboard_id, str(bucket.expiry)], len(bucket))
            packed.add_metric([leaderboard_id, str(bucket.expiry)], bucket.packed_bytes)
        yield records
        yield packed
        leaderboards = GaugeMetricFamily("leaderboard_definitions", "Leaderboards and tournaments held.")
        leaderboards.add_metric([], len(self._node.store.leaderboards))
        yield leaderboards
        yield _by_outcome("leaderboard_rank_cache_lookups",
                          "Owner lookups by outcome (hit: a ranked record; miss: no record; "
                          "off: ranks disabled for the leaderboard).", self._node.store.rank_lookups)
        yield _by_outcome("leaderboard_records_written",
                          "Record writes taken on this node by outcome (changed; unchanged: nothing "
                          "to change; refused: a rule broken).", self._node.store.record_writes)
        ready = GaugeMetricFamily("leaderboard_node_ready", "1 when the node answers /readyz with 200.")
        ready.add_metric([], 1.0 if self._node.ready else 0.0)
        yield ready


class _ReplicationCollector(Collector):
    def __init__(self, server: object) -> None:
        self._server = server

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        replicator = getattr(self._server, "replicator", None)
        lag_entries = GaugeMetricFamily("leaderboard_replication_lag_entries",
                                        "Entries of this node's log a peer has not applied yet.", labels=["peer"])
        lag_seconds = GaugeMetricFamily("leaderboard_replication_lag_seconds",
                                        "Age of the oldest entry a peer has not applied yet.", labels=["peer"])
        if replicator is not None:
            for sender, _task in list(replicator.senders.values()):
                label = sender.peer.name or sender.peer.address
                lag_entries.add_metric([label], sender.lag_entries())
                lag_seconds.add_metric([label], sender.lag_seconds())
        yield lag_entries
        yield lag_seconds
        offsets = GaugeMetricFamily("leaderboard_peer_clock_offset_seconds",
                                    "How far a peer's wall clock is ahead of this node's (status exchange estimate).",
                                    labels=["peer"])
        skewed = GaugeMetricFamily("leaderboard_clock_skewed",
                                   "1 while this node's clock is off from most of its peers' by more than "
                                   "cluster.max_clock_offset (the node is then not ready).")
        ignored = CounterMetricFamily("leaderboard_clock_timestamps_ignored",
                                      "Peer timestamps too far ahead of this node's clock to move it.")
        retired = GaugeMetricFamily("leaderboard_retired_lives_horizon",
                                    "Per node name, the epoch (ms) below which its lives are retired and folded.",
                                    labels=["of_node"])
        if replicator is not None:
            for member in list(replicator.members.values()):
                offset = member.clock.offset_ms
                if not member.is_self and offset is not None:
                    offsets.add_metric([member.name or member.peer.address], offset / 1000)
            skewed.add_metric([], 0.0 if replicator.node.clock_skewed_since is None else 1.0)
            ignored.add_metric([], replicator.store.clock.ignored)
            for name, horizon in replicator.store.horizons.items():
                retired.add_metric([name], horizon)
        yield offsets
        yield skewed
        yield ignored
        yield retired


class _EventCollector(Collector):
    """Events held, writes that came after their period's event, and delivery lag, at scrape time."""

    def __init__(self, server: object) -> None:
        self._server = server

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        service = getattr(self._server, "events", None)
        node = getattr(self._server, "node", None)
        held = GaugeMetricFamily("leaderboard_events_held", "Reset and end events this node holds (copies included).")
        late = CounterMetricFamily("leaderboard_event_late_writes",
                                   "Record changes applied to a period whose event was produced already (they are "
                                   "not in its standings).")
        lag = GaugeMetricFamily("leaderboard_event_delivery_lag_seconds",
                                "Per webhook this node delivers to: seconds since the period end of the event it is "
                                "waiting to deliver (0: none).", labels=["webhook"])
        if node is not None:
            held.add_metric([], len(node.store.events))
            late.add_metric([], node.store.late_writes)
        if service is not None:
            for label, seconds in list(service.lag.items()):
                lag.add_metric([label], seconds)
        yield held
        yield late
        yield lag


class NodeMetrics:
    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("leaderboard_http_requests", "Client API requests.", ["route", "status"], registry=r)
        self.request_seconds = Histogram("leaderboard_http_request_seconds", "Client API request latency.",
                                         ["route"], registry=r,
                                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1))
        self.entries_sent = Counter("leaderboard_replication_entries_sent", "Entries sent to a peer.", ["peer"],
                                    registry=r)
        self.batches_sent = Counter("leaderboard_replication_batches_sent", "Batches sent to a peer.", ["peer"],
                                    registry=r)
        self.entries_coalesced = Counter("leaderboard_replication_entries_coalesced",
                                         "Entries left out of a batch because a later one superseded them.",
                                         ["peer"], registry=r)
        self.bytes_sent = Counter("leaderboard_replication_bytes_sent",
                                  "Peer message bytes before (raw) and after (wire) compression.",
                                  ["peer", "stage"], registry=r)
        self.batches_received = Counter("leaderboard_replication_batches_received",
                                        "Batches received, by outcome (applied, duplicate, gap).",
                                        ["origin", "outcome"], registry=r)
        self.entries_received = Counter("leaderboard_replication_entries_received", "Entries received.",
                                        ["origin"], registry=r)
        self.peer_rejected = Counter("leaderboard_peer_messages_rejected",
                                     "Peer requests refused (unauthorized, malformed, too_large, not_a_member, origin_mismatch).", ["reason"],
                                     registry=r)
        self.full_syncs = Counter("leaderboard_full_syncs", "Full syncs served and taken, by outcome.",
                                  ["role", "outcome"], registry=r)
        self.full_sync_seconds = Histogram("leaderboard_full_sync_seconds", "Duration of full syncs.", ["role"],
                                           registry=r, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
        self.catch_up_entries = Counter("leaderboard_catch_up_entries",
                                        "Entries served to or taken from peers' backlogs.", ["role"], registry=r)
        self.sync_failures = Counter("leaderboard_sync_failures", "Failed sync attempts, retried later.", ["kind"],
                                     registry=r)
        self.events_produced = Counter("leaderboard_events_produced", "Reset and end events this node produced.",
                                       ["kind"], registry=r)
        self.event_deliveries = Counter("leaderboard_event_deliveries",
                                        "Webhook delivery attempts, by outcome (delivered, failed: retried).",
                                        ["webhook", "outcome"], registry=r)
        self.event_delivery_seconds = Histogram("leaderboard_event_delivery_seconds",
                                                "From a period's end until its event was delivered to a webhook.",
                                                ["webhook"], registry=r, buckets=(0.5, 1, 2, 2.5, 3, 5, 10, 30, 60, 300, 3600))
        r.register(_StoreCollector(node))

    def watch_replication(self, server: object) -> None:
        self.registry.register(_ReplicationCollector(server))
        self.registry.register(_EventCollector(server))

    # EventMetrics
    def event_produced(self, kind: str) -> None:
        self.events_produced.labels(kind).inc()

    def event_delivery(self, webhook: str, *, outcome: str, seconds: float | None = None) -> None:
        self.event_deliveries.labels(webhook, outcome).inc()
        if seconds is not None:
            self.event_delivery_seconds.labels(webhook).observe(seconds)

    # ReplicationEvents
    def batch_sent(self, peer: object, batch: object, entries_covered: int) -> None:
        label = getattr(peer, "name", None) or getattr(peer, "address", "?")
        self.entries_sent.labels(label).inc(batch.entries)  # type: ignore[attr-defined]
        self.batches_sent.labels(label).inc()
        self.entries_coalesced.labels(label).inc(entries_covered - batch.entries)  # type: ignore[attr-defined]

    def batch_received(self, batch: object, *, outcome: str) -> None:
        origin = batch.origin.node  # type: ignore[attr-defined]
        self.batches_received.labels(origin, outcome).inc()
        if outcome == "applied":
            self.entries_received.labels(origin).inc(len(batch.entries))  # type: ignore[attr-defined]

    def full_sync(self, *, role: str, seconds: float, records: int, ok: bool) -> None:
        self.full_syncs.labels(role, "ok" if ok else "failed").inc()
        if ok:
            self.full_sync_seconds.labels(role).observe(seconds)

    def catch_up(self, *, role: str, entries: int) -> None:
        self.catch_up_entries.labels(role).inc(entries)

    def sync_failure(self, *, kind: str) -> None:
        self.sync_failures.labels(kind).inc()

    def peer_bytes(self, peer: object, raw: int, wire: int) -> None:
        label = getattr(peer, "name", None) or getattr(peer, "address", "?")
        self.bytes_sent.labels(label, "raw").inc(raw)
        self.bytes_sent.labels(label, "wire").inc(wire)
