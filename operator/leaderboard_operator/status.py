"""
Status: what the operator observed -> the cluster's status, phase and conditions. Pure.

The phase is the first of these that holds:

============  ================================================================================
Pending       no member is ready yet (a new cluster, or all pods down)
Scaling       the number of live pods differs from ``spec.replicas`` (or pods are terminating)
Resyncing     a member is catching up (reports state ``starting``/``syncing``, or not synced, or
              its node is ready but its pod has not passed the readiness probe yet), or a pod on
              its first start has not answered yet (for up to ``STARTUP_GRACE``: a new pod of a
              scale-up, or a replacement, is starting, not failing)
Degraded      fewer ready members than wanted, or a pod's node does not answer (it crashed, restarted,
              or has been starting for longer than ``STARTUP_GRACE``)
Ready         all wanted members are ready and synced
============  ================================================================================

The conditions follow the Kubernetes conventions (``type``, ``status`` ``True``/``False``,
``reason``, ``message``, ``lastTransitionTime`` that only moves when ``status`` flips):

* ``Ready``       -- all ``spec.replicas`` members are ready;
* ``Synced``      -- all of them are ready and report ``synced``;
* ``Progressing`` -- the phase is Pending, Scaling or Resyncing (it should resolve by itself);
* ``Degraded``    -- the phase is Degraded (it may need a human).

A member's ``lagEntries`` is the largest lag its peers report for it: how far behind the
others it is. It is absent when no peer reports on it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from leaderboard_operator.members import MemberReport, PodInfo

PENDING, SCALING, RESYNCING, DEGRADED, READY = "Pending", "Scaling", "Resyncing", "Degraded", "Ready"
PHASES = (PENDING, SCALING, RESYNCING, DEGRADED, READY)
CATCHING_UP_STATES = frozenset({"starting", "syncing"})
STARTUP_GRACE = datetime.timedelta(minutes=10)  # as a Deployment's progressDeadlineSeconds


def starting(pod: PodInfo, *, now: datetime.datetime) -> bool:
    """The pod is on its first start, nothing has failed, and it is not late: not answering yet
    is expected. (A node that answered once and then hung without a restart also looks like this
    until the liveness probe restarts it, which makes it Degraded.)"""
    return (pod.fresh and not pod.ready and not pod.terminating
            and (pod.started_at is None or now - pod.started_at < STARTUP_GRACE))


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def member_status(pod: PodInfo, report: MemberReport | None, *, lag_entries: int | None,
                  now: datetime.datetime) -> dict[str, Any]:
    """One entry of ``status.members``."""
    node = report.node if report is not None else {}
    if pod.terminating:
        state = "terminating"
    elif report is not None and report.reachable:
        state = str(node.get("state") or "unknown")
    elif pod.ip:
        state = "starting" if starting(pod, now=now) else "unreachable"
    else:
        state = "pending"
    reachable = report is not None and report.reachable
    # A terminating pod may still pass its probe, but it is leaving: counting it would publish
    # more ready members than replicas (readyReplicas 3 of 2 while scaling down).
    ready = pod.ready and not pod.terminating and (not reachable or node.get("ready") is True)
    member: dict[str, Any] = {
        "pod": pod.name,
        "ip": pod.ip or "",
        "ready": ready,
        "synced": reachable and ready and node.get("synced") is True,
        "state": state,
        "restarts": pod.restarts,
    }
    if lag_entries is not None:
        member["lagEntries"] = lag_entries
    if reachable and isinstance(node.get("version_vector"), Mapping):
        member["versionVector"] = dict(node["version_vector"])
    return member


def peer_lags(reports: Mapping[str, MemberReport]) -> dict[str, int]:
    """For each member, the largest ``lag_entries`` that its peers report for it."""
    lags: dict[str, int] = {}
    for reporter, report in reports.items():
        for peer in report.peers:
            name, lag = peer.get("name"), peer.get("lag_entries")
            if name == reporter or not isinstance(name, str) or not isinstance(lag, int) or isinstance(lag, bool):
                continue
            lags[name] = max(lags.get(name, 0), lag)
    return lags


def compute_phase(
    *, desired: int, pods: Sequence[PodInfo], members: Sequence[Mapping[str, Any]], now: datetime.datetime,
) -> tuple[str, str, str]:
    """The phase, with a reason and a human message (see the module docstring)."""
    live = [pod for pod in pods if not pod.terminating]
    ready = [m for m in members if m["ready"]]
    if not ready:
        return PENDING, "NoReplicasReady", f"0/{desired} replicas ready"
    if len(live) != desired or len(live) != len(pods):
        terminating = len(pods) - len(live)
        extra = f", {terminating} terminating" if terminating else ""
        return SCALING, "Scaling", f"{len(live)} pods for {desired} replicas{extra}"
    catching_up = [m["pod"] for pod, m in zip(pods, members) if m["state"] in CATCHING_UP_STATES
                   or (m["ready"] and not m["synced"] and m["state"] not in ("unreachable", "pending"))
                   or (not m["ready"] and m["state"] == "ready")  # synced; its readiness probe is due
                   or (m["state"] == "pending" and starting(pod, now=now))]  # being scheduled or created
    if catching_up:
        return RESYNCING, "Resyncing", f"resyncing: {', '.join(catching_up)}"
    unreachable = [m["pod"] for m in members if m["state"] == "unreachable"]
    if unreachable:
        return DEGRADED, "MembersUnreachable", f"not answering: {', '.join(unreachable)}"
    if len(ready) < desired:
        return DEGRADED, "ReplicasUnavailable", f"{len(ready)}/{desired} replicas ready"
    return READY, "AllReplicasReady", f"{desired}/{desired} replicas ready and synced"


def condition(
    type_: str, value: bool, reason: str, message: str, *,
    previous: Sequence[Mapping[str, Any]], now: datetime.datetime,
) -> dict[str, Any]:
    status = "True" if value else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else None
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since or timestamp(now)}


def compute_status(
    *,
    desired: int,
    pods: Sequence[PodInfo],
    reports: Mapping[str, MemberReport],
    selector: str,
    previous: Mapping[str, Any] | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The observed part of the status: everything except ``observedGeneration``/``lastError``."""
    lags = peer_lags(reports)
    members = [member_status(pod, reports.get(pod.name), lag_entries=lags.get(pod.name), now=now) for pod in pods]
    phase, reason, message = compute_phase(desired=desired, pods=pods, members=members, now=now)
    ready = sum(1 for m in members if m["ready"])
    synced = sum(1 for m in members if m["synced"])
    old_conditions = list((previous or {}).get("conditions") or [])
    conditions = [
        condition("Ready", ready >= desired,
                  "AllReplicasReady" if ready >= desired else "ReplicasNotReady",
                  f"{ready}/{desired} replicas ready", previous=old_conditions, now=now),
        condition("Synced", synced >= desired,
                  "AllReplicasSynced" if synced >= desired else "ReplicasNotSynced",
                  f"{synced}/{desired} replicas synced", previous=old_conditions, now=now),
        condition("Progressing", phase in (PENDING, SCALING, RESYNCING),
                  reason if phase in (PENDING, SCALING, RESYNCING) else "Stable",
                  message, previous=old_conditions, now=now),
        condition("Degraded", phase == DEGRADED, reason if phase == DEGRADED else "AsExpected",
                  message, previous=old_conditions, now=now),
    ]
    return {
        "phase": phase,
        "replicas": sum(1 for pod in pods if not pod.terminating),
        "readyReplicas": ready,
        "syncedReplicas": synced,
        "selector": selector,
        "members": members,
        "conditions": conditions,
    }


def changed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status fields that differ: a minimal merge patch of the status."""
    old = old or {}
    return {key: value for key, value in new.items() if _plain(old.get(key)) != value}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
