"""
The Kubernetes operator of leaderboard-cluster.

It watches ``LeaderboardCluster`` resources (group ``leaderboard-cluster.dev``) and keeps
their children in line with the spec: a StatefulSet of leaderboard nodes, the Services that
reach them, their configuration, RBAC and peer token, and a PodDisruptionBudget. It also polls
every member's ``/v1/cluster`` endpoint and publishes what it sees in the resource's status.

The package is layered; each layer only uses the ones above it:

* :mod:`.settings`  -- the operator's own settings (a frozen dataclass, no I/O).
* :mod:`.resources` -- the Kubernetes resources the operator touches (pure values).
* :mod:`.rendering` -- pure functions: a cluster's spec -> the manifests of its children.
* :mod:`.status`    -- pure functions: observed pods and member reports -> status & phase.
* :mod:`.kube`      -- a deliberately small async Kubernetes API client (aiohttp).
* :mod:`.children`  -- idempotent create/patch/delete of the rendered children.
* :mod:`.members`   -- listing the cluster's pods and polling the members over HTTP.
* :mod:`.metrics`   -- Prometheus metrics of the operator itself.
* :mod:`.handlers`  -- the kopf handlers that glue it all together, and their registration.
* :mod:`.cli`       -- the ``leaderboard-operator`` command.

Only a small surface is public: :func:`register` to put the handlers into a kopf registry
(for embedding the operator, e.g. in tests) and :class:`OperatorConfig` to configure them.
"""

from leaderboard_operator.handlers import Context, register
from leaderboard_operator.settings import OperatorConfig

__all__ = ["OperatorConfig", "Context", "register"]
