"""
The operator's own settings.

These are not kopf's settings (:class:`kopf.OperatorSettings`, which tune the framework), but
the knobs of this operator: which image a cluster gets when its spec names none, how often the
children are re-checked for drift, and how the members are reached for their state.

The settings are a frozen dataclass with keyword-only fields: they are fixed when the handlers
are registered (kopf timers take their intervals at registration time), and passing them around
cannot mutate them by accident. :meth:`OperatorConfig.from_env` reads them from environment
variables named ``LEADERBOARD_OPERATOR_<FIELD>`` (upper case), which is how the Helm chart
configures the operator; command-line flags of :mod:`.cli` override the environment.

The member URL is ``{member_scheme}://{pod IP}:{port}{member_path}``, where the port is
``member_port`` if set, else the pod's container port named ``http`` (7350 as rendered). Tests
point it at local processes with fake pods whose IP is ``127.0.0.1`` and whose ``http`` port
is the one the process listens on (or with ``member_port`` for a single process).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "LEADERBOARD_OPERATOR_"
DEFAULT_NODE_IMAGE = "leaderboard-node:0.1.0"


@dataclasses.dataclass(frozen=True, kw_only=True)
class OperatorConfig:
    """Settings of the operator (see the module docstring)."""

    #: The node image used when a cluster's ``spec.image`` is empty.
    default_image: str = DEFAULT_NODE_IMAGE

    #: The API server's URL, bypassing in-cluster/kubeconfig discovery (e.g. ``kubectl proxy``).
    server: str | None = None

    #: Seconds between drift checks of each cluster's children (a kopf timer per cluster).
    reconcile_interval: float = 30.0

    #: Seconds between polls of each cluster's members while it is settled (Ready, its spec observed).
    poll_interval: float = 10.0

    #: Seconds between polls while anything is in progress (a phase other than Ready, a spec not
    #: observed yet) or one of the cluster's pods changed: a kopf timer per cluster ticks this often.
    busy_poll_interval: float = 1.0

    #: How the members' ``/v1/cluster`` endpoint is reached: ``{scheme}://{pod IP}:{port}{path}``;
    #: without ``member_port``, the port is the pod's container port named ``http``.
    member_scheme: str = "http"
    member_port: int | None = None
    member_path: str = "/v1/cluster"

    #: Seconds to wait for one member's answer; a slow member counts as unreachable.
    member_timeout: float = 2.0

    #: Seconds for one request to the Kubernetes API.
    api_timeout: float = 10.0

    #: Seconds before a failed reconciliation is retried (kopf.TemporaryError's delay).
    retry_delay: float = 10.0

    #: The operator's own namespace (the chart sets it from the downward API): where it keeps the
    #: CA of the nodes' identity certificates, in the Secret ``identity_ca_secret``.
    namespace: str = "leaderboard-system"
    identity_ca_secret: str = "leaderboard-operator-identity-ca"

    #: The ClusterRole (installed by the chart) that lets nodes create and read their
    #: CertificateSigningRequests; the operator binds each identity-enabled cluster's ServiceAccount to it.
    node_csr_cluster_role: str = "leaderboard-operator-node-csr"

    #: The longest life of a node certificate the operator issues (a node may ask for less;
    #: nodes renew theirs two thirds of the way through).
    certificate_seconds: float = 86_400.0

    def __post_init__(self) -> None:
        for name in ("reconcile_interval", "poll_interval", "busy_poll_interval", "member_timeout", "api_timeout",
                     "retry_delay", "certificate_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.member_port is not None and not 0 < self.member_port < 65536:
            raise ValueError(f"member_port must be a TCP port, got {self.member_port!r}")
        if self.member_scheme not in ("http", "https"):
            raise ValueError(f"member_scheme must be http or https, got {self.member_scheme!r}")
        if not self.default_image:
            raise ValueError("default_image must not be empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> OperatorConfig:
        """Read ``LEADERBOARD_OPERATOR_*`` variables; keyword overrides (not None) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            hint = str(field.type)  # a string: annotations are postponed
            values[field.name] = int(raw) if hint.startswith("int") else float(raw) if hint == "float" else raw
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)
