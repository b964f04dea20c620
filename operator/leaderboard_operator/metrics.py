"""
Prometheus metrics of the operator itself (not of the leaderboard nodes, which export their own).

The metrics live in their own :class:`prometheus_client.CollectorRegistry` per
:class:`OperatorMetrics` instance instead of the process-global default registry, so that
several operators can be embedded in one process (as the tests do) without "duplicated
timeseries" errors. :mod:`.cli` serves :meth:`OperatorMetrics.render` on ``/metrics``.

==============================================  ==============================================
``leaderboard_operator_reconciles_total``       reconciliations, by trigger and outcome
``leaderboard_operator_errors_total``           failures, by stage (reconcile, monitor, delete)
``leaderboard_operator_child_changes_total``    children created or patched, by kind and action
``leaderboard_operator_members_polled_total``   member polls, by outcome (ok, unreachable)
``leaderboard_operator_cluster_phase``          1 for each cluster's current phase, 0 otherwise
``leaderboard_operator_cluster_ready_replicas`` ready members per cluster
==============================================  ==============================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from leaderboard_operator.status import PHASES

CONTENT_TYPE = CONTENT_TYPE_LATEST


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.reconciles = Counter(
            "leaderboard_operator_reconciles", "Reconciliations of clusters' children.",
            ["trigger", "outcome"], registry=self.registry)
        self.errors = Counter(
            "leaderboard_operator_errors", "Failures of the operator's handlers.",
            ["stage"], registry=self.registry)
        self.child_changes = Counter(
            "leaderboard_operator_child_changes", "Children created or patched.",
            ["kind", "action"], registry=self.registry)
        self.members_polled = Counter(
            "leaderboard_operator_members_polled", "Polls of members' /v1/cluster endpoint.",
            ["outcome"], registry=self.registry)
        self.phase = Gauge(
            "leaderboard_operator_cluster_phase", "1 for the cluster's current phase, 0 for the others.",
            ["namespace", "cluster", "phase"], registry=self.registry)
        self.ready_replicas = Gauge(
            "leaderboard_operator_cluster_ready_replicas", "Ready members of the cluster.",
            ["namespace", "cluster"], registry=self.registry)

    def observe_phase(self, *, namespace: str, cluster: str, phase: str, ready: int) -> None:
        for candidate in PHASES:
            self.phase.labels(namespace, cluster, candidate).set(1 if candidate == phase else 0)
        self.ready_replicas.labels(namespace, cluster).set(ready)

    def forget(self, *, namespace: str, cluster: str) -> None:
        """Drop a deleted cluster's series."""
        for candidate in PHASES:
            try:
                self.phase.remove(namespace, cluster, candidate)
            except KeyError:
                pass
        try:
            self.ready_replicas.remove(namespace, cluster)
        except KeyError:
            pass

    def render(self) -> bytes:
        return generate_latest(self.registry)
