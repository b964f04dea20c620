"""
Observing a cluster's members: its pods (from the API) and each node's own report (over HTTP).

Each node answers ``GET /v1/cluster`` on its client port with its own state and its view of
its peers::

    {"node": {"name": "lb-0", "epoch": 123, "state": "ready", "ready": true, "synced": true,
              "version_vector": {"lb-0": {"epoch": 123, "seq": 42}}, "records": 1000,
              "clock": {"max_offset_ms": 500, "offset_ms": 3.5, "skewed": false, "since": null}},
     "members": [{"name": "lb-1", "address": "10.0.0.2:7351", "state": "ready",
                  "reachable": true, "lag_entries": 0, "lag_seconds": 0.0, "clock_offset_ms": -1.5}]}

``node.clock`` is absent from older nodes (:attr:`MemberReport.clock` is then None: unknown). A
member the node cannot reach has ``state: "unreachable"`` and ``unreachable_since`` (unix
seconds); older nodes say ``reachable: false`` instead.

:func:`poll_members` asks all the pods concurrently, each with a short timeout, and never
raises: a member that does not answer (or answers garbage) is reported as unreachable, which
is itself an observation (the status shows it, and the cluster is not Ready).

With client API keys (``spec.auth``), ``/v1/cluster`` needs a key, which the operator does not
hold (it never reads Secrets). A node that refuses it (401, 403) is asked its open ``/readyz``
instead: its state and readiness, from which ``synced`` is taken as ``ready`` and the clock as
skewed only if the node says so (``reason: clock_skew``; a ready node is not skewed); lag,
version vector and clock offset are then unknown (:attr:`MemberReport.limited`).

Pods without an IP (not scheduled yet) or being deleted are not asked. The pods' readiness and
restart counts come from the pod objects (:func:`pod_info`), not from the nodes.

What keeps a pod from running is read from the pod (:class:`PodProblem`): the scheduler's
``PodScheduled=False`` with reason ``Unschedulable`` and its message (``0/3 nodes are available:
3 Insufficient cpu``), or a container waiting for a reason that does not resolve by itself
(:data:`PROBLEM_REASONS`: image pull and crash-loop back-offs, bad configuration).

The port asked is the pod's own container port named ``http`` (7350 as rendered), unless the
operator's ``member_port`` setting overrides it; this also lets tests run several members on
127.0.0.1, one port each, described by fake pods.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from leaderboard_operator import rendering, resources
from leaderboard_operator.kube import Kube


# Waiting reasons of a container that need a human (the kubelet's own names).
PROBLEM_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
    "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
STARTING_REASONS = ("ContainerCreating", "PodInitializing")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PodProblem:
    """Why a pod cannot run: the scheduler's or the kubelet's reason and message."""

    reason: str
    message: str = ""

    def describe(self) -> str:
        return f"{self.reason}: {self.message}" if self.message else self.reason


@dataclasses.dataclass(frozen=True, kw_only=True)
class PodInfo:
    """What the operator needs to know of one pod (pure data, see :func:`pod_info`)."""

    name: str
    ip: str | None
    ready: bool
    restarts: int
    terminating: bool
    phase: str | None = None
    port: int | None = None  # the container port named "http"
    # On its first start and nothing has failed yet (no restart, no container terminated or
    # waiting for a reason other than being created): not answering is expected for a while.
    fresh: bool = False
    started_at: datetime.datetime | None = None  # status.startTime, else metadata.creationTimestamp
    ready_since: datetime.datetime | None = None  # the Ready condition's lastTransitionTime, when ready
    problem: PodProblem | None = None
    # Not ready although its containers are: the node lifecycle controller marked it (its node
    # stopped heartbeating); the kubelet would have said ContainersReady=False too.
    node_lost: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClockReport:
    """A node's ``clock``: how far its wall clock is from its reachable peers' majority."""

    max_offset_ms: float | None
    offset_ms: float | None  # positive: ahead; None: not measured yet
    skewed: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class MemberReport:
    """One member's answer to ``GET /v1/cluster``, or why there is none."""

    pod: str
    data: Mapping[str, Any] | None = None
    error: str | None = None
    limited: bool = False  # from /readyz: the node refused /v1/cluster without a key

    @property
    def reachable(self) -> bool:
        return self.data is not None

    @property
    def node(self) -> Mapping[str, Any]:
        node = (self.data or {}).get("node")
        return node if isinstance(node, Mapping) else {}

    @property
    def clock(self) -> ClockReport | None:
        """The node's clock report; None from nodes that do not report one (older versions)."""
        clock = self.node.get("clock")
        if not isinstance(clock, Mapping) or not isinstance(clock.get("skewed"), bool):
            return None
        return ClockReport(max_offset_ms=_float(clock.get("max_offset_ms")), offset_ms=_float(clock.get("offset_ms")),
                           skewed=clock["skewed"])

    @property
    def peers(self) -> Sequence[Mapping[str, Any]]:
        peers = (self.data or {}).get("members")
        return [peer for peer in peers if isinstance(peer, Mapping)] if isinstance(peers, list) else []


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    """Extract the pod's name, IP, readiness and restart count (pure)."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or [])
    ports = [port.get("containerPort") for container in (pod.get("spec") or {}).get("containers") or []
             for port in container.get("ports") or [] if port.get("name") == "http"]
    containers = status.get("containerStatuses") or []
    ready_condition = next((c for c in conditions if c.get("type") == "Ready"), {})
    containers_ready = any(c.get("type") == "ContainersReady" and c.get("status") == "True" for c in conditions)
    failed = any("terminated" in (cs.get("state") or {}) or "terminated" in (cs.get("lastState") or {})
                 or ((cs.get("state") or {}).get("waiting") or {}).get("reason") not in (None, *STARTING_REASONS)
                 for cs in containers)
    return PodInfo(
        name=str(metadata.get("name")),
        ip=status.get("podIP") or None,
        ready=ready,
        restarts=restarts,
        terminating=bool(metadata.get("deletionTimestamp")),
        phase=status.get("phase"),
        port=int(ports[0]) if ports and ports[0] else None,
        fresh=restarts == 0 and not failed,
        started_at=_time(status.get("startTime") or metadata.get("creationTimestamp")),
        ready_since=_time(ready_condition.get("lastTransitionTime")) if ready else None,
        problem=pod_problem(status),
        node_lost=not ready and containers_ready,
    )


def pod_problem(status: Mapping[str, Any]) -> PodProblem | None:
    """What keeps the pod from running, if anything needs a human (see the module docstring)."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return PodProblem(reason="Unschedulable", message=str(cond.get("message") or ""))
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PROBLEM_REASONS:
            return PodProblem(reason=str(waiting["reason"]), message=str(waiting.get("message") or ""))
    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime.datetime | None:
    """A Kubernetes timestamp (RFC 3339), or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)  # reads the "Z" of Kubernetes times (Python 3.11+)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


async def list_pods(kube: Kube, *, namespace: str, cluster: str) -> list[PodInfo]:
    """The cluster's pods, sorted by name (so by ordinal for up to 10 pods, then lexically)."""
    pods = await kube.list(resources.PODS, namespace=namespace, labels=rendering.selector_labels(cluster))
    return sorted((pod_info(pod) for pod in pods), key=lambda p: (len(p.name), p.name))


def member_url(pod: PodInfo, *, scheme: str, port: int | None, path: str) -> str:
    """``{scheme}://{pod IP}:{port}{path}``; the port is the override, else the pod's, else 7350."""
    assert pod.ip is not None
    host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip  # IPv6
    return f"{scheme}://{host}:{port or pod.port or rendering.CLIENT_PORT}{path}"


REFUSED = frozenset({401, 403})  # the node's client API keys: /v1/cluster needs one
READINESS_PATH = "/readyz"


async def fetch_member(
    session: aiohttp.ClientSession, pod: PodInfo, *, scheme: str, port: int | None, path: str, timeout: float,
) -> MemberReport:
    url = member_url(pod, scheme=scheme, port=port, path=path)
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status in REFUSED:
                return await _fetch_readiness(session, pod, scheme=scheme, port=port, timeout=timeout)
            if response.status != 200:
                return MemberReport(pod=pod.name, error=f"HTTP {response.status} from {url}")
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        return MemberReport(pod=pod.name, error=f"{type(exc).__name__} from {url}: {exc}".rstrip(": "))
    if not isinstance(data, Mapping) or not isinstance(data.get("node"), Mapping):
        return MemberReport(pod=pod.name, error=f"unexpected answer from {url}")
    return MemberReport(pod=pod.name, data=data)


async def _fetch_readiness(
    session: aiohttp.ClientSession, pod: PodInfo, *, scheme: str, port: int | None, timeout: float,
) -> MemberReport:
    """The node's open ``/readyz``, as a limited report (see the module docstring)."""
    url = member_url(pod, scheme=scheme, port=port, path=READINESS_PATH)
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        return MemberReport(pod=pod.name, error=f"{type(exc).__name__} from {url}: {exc}".rstrip(": "))
    if not isinstance(answer, Mapping) or not isinstance(answer.get("ready"), bool):
        return MemberReport(pod=pod.name, error=f"unexpected answer from {url}")
    ready, skewed = answer["ready"], answer.get("reason") == "clock_skew"
    node: dict[str, Any] = {"name": pod.name, "state": answer.get("state"), "ready": ready, "synced": ready}
    if ready or skewed:
        node["clock"] = {"max_offset_ms": None, "offset_ms": None, "skewed": skewed, "since": None}
    return MemberReport(pod=pod.name, data={"node": node, "members": []}, limited=True)


async def poll_members(
    session: aiohttp.ClientSession,
    pods: Sequence[PodInfo],
    *,
    scheme: str = "http",
    port: int | None = None,
    path: str = "/v1/cluster",
    timeout: float = 2.0,
) -> dict[str, MemberReport]:
    """Ask every live pod with an IP for its report, concurrently; keyed by pod name."""
    live = [pod for pod in pods if pod.ip and not pod.terminating]
    reports = await asyncio.gather(*(
        fetch_member(session, pod, scheme=scheme, port=port, path=path, timeout=timeout) for pod in live
    ))
    return {report.pod: report for report in reports}
