"""
Status: what the operator observed -> the cluster's status, phase, conditions and events. Pure.

The phase is the first of these that holds (``kubectl get lbc`` shows it):

============  ================================================================================
Pending       a new cluster: no member has been ready yet, and its pods are starting (on their
              first start, within ``STARTUP_GRACE``) or not created yet
Degraded      no member is ready in a cluster that has been up (a full outage: every pod down,
              or their nodes NotReady); or a pod cannot run: the scheduler cannot place it
              (``PodScheduled=False``, ``Unschedulable``) or its container cannot start or keeps
              crashing (``ImagePullBackOff``, ``CrashLoopBackOff``...)
Scaling       the number of live pods differs from ``spec.replicas``, pods are terminating, or a
              scale was seen and the pods it added are still starting
Resyncing     a member is catching up (reports state ``starting``/``syncing``, or not synced, or
              its node is ready but its pod has not passed the readiness probe yet), or a pod on
              its first start has not answered yet (for up to ``STARTUP_GRACE``: a replacement is
              starting, not failing)
Degraded      a pod's node is not ready (its pod is Ready=False while its containers are ready:
              the node lifecycle controller's mark); a member does not answer (it crashed,
              restarted, or has been starting for longer than ``STARTUP_GRACE``); a member's clock is off (it refuses to be ready); a member
              is up but its peers cannot reach it (for longer than ``PEER_GRACE``); or fewer
              ready members than wanted
Ready         all wanted members are ready and synced
============  ================================================================================

The conditions follow the Kubernetes conventions (``type``, ``status`` ``True``/``False``,
``reason``, ``message``, ``lastTransitionTime`` that only moves when ``status`` flips):

* ``Ready``       -- all ``spec.replicas`` members are ready;
* ``Synced``      -- all of them are ready and report ``synced``;
* ``Progressing`` -- the phase is Pending, Scaling or Resyncing (it should resolve by itself);
* ``Degraded``    -- the phase is Degraded (it may need a human); the reason says why
  (``NoReplicasReady``, ``Unschedulable``, ``ImagePullBackOff``, ``CrashLoopBackOff``,
  ``NodeNotReady``, ``MembersUnreachable``, ``ClockSkew``, ``PeersUnreachable``, ``ReplicasUnavailable``) and the
  message names the pods, with the scheduler's or the kubelet's own message;
* ``ClockSkew``   -- a member's node reports its wall clock beyond the bound from its peers'
  (the node then refuses to be ready). Nodes that do not report their clock (older versions)
  leave it as it was: unknown, not fine.

:func:`notices` turns two consecutive statuses into the events to post: one per transition,
never one per poll (a phase change; a pod's new problem; the clock going off, and back).

A member's ``lagEntries`` is the largest lag its peers report for it: how far behind the
others it is. It is absent when no peer reports on it. Its ``unreachableFrom`` lists the peers
that report they cannot reach it (state ``unreachable``, or ``reachable: false`` from older
nodes).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from leaderboard_operator.members import MemberReport, PodInfo

PENDING, SCALING, RESYNCING, DEGRADED, READY = "Pending", "Scaling", "Resyncing", "Degraded", "Ready"
PHASES = (PENDING, SCALING, RESYNCING, DEGRADED, READY)
PROGRESSING_PHASES = (PENDING, SCALING, RESYNCING)
CATCHING_UP_STATES = frozenset({"starting", "syncing"})
STARTUP_GRACE = datetime.timedelta(minutes=10)  # as a Deployment's progressDeadlineSeconds
PEER_GRACE = datetime.timedelta(seconds=30)  # peers reconnect to a restarted member well within this
CLOCK_SKEW = "ClockSkew"


def starting(pod: PodInfo, *, now: datetime.datetime) -> bool:
    """The pod is on its first start, nothing has failed, and it is not late: not answering yet
    is expected. (A node that answered once and then hung without a restart also looks like this
    until the liveness probe restarts it, which makes it Degraded.)"""
    return (pod.fresh and not pod.ready and not pod.terminating and pod.problem is None
            and (pod.started_at is None or now - pod.started_at < STARTUP_GRACE))


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def member_status(pod: PodInfo, report: MemberReport | None, *, lag_entries: int | None,
                  unreachable_from: Sequence[str], now: datetime.datetime) -> dict[str, Any]:
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
    clock = report.clock if reachable and report is not None else None
    if clock is not None and clock.offset_ms is not None:
        member["clockOffsetMs"] = round(clock.offset_ms, 1)
    if clock is not None and clock.skewed:
        member["clockSkewed"] = True
    if unreachable_from:
        member["unreachableFrom"] = sorted(unreachable_from)
    if pod.problem is not None and not pod.terminating:
        member["problem"] = pod.problem.describe()
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class PeerView:
    """One member reported unreachable by one peer, for ``seconds`` (None: unknown, an older node)."""

    reporter: str
    member: str
    seconds: float | None


def unreachable_peers(reports: Mapping[str, MemberReport], *, live: set[str], now: datetime.datetime) -> list[PeerView]:
    """The members that their (live) peers report they cannot reach: state ``unreachable`` (with
    ``unreachable_since``) or, from older nodes, ``reachable: false`` (with ``last_seen_seconds_ago``)."""
    found = []
    for reporter, report in reports.items():
        if reporter not in live or not report.reachable:
            continue
        for peer in report.peers:
            name = peer.get("name")
            if name == reporter or name not in live:
                continue
            if peer.get("state") == "unreachable":
                since = peer.get("unreachable_since")
                seconds = now.timestamp() - float(since) if _number(since) else None
            elif peer.get("reachable") is False:
                ago = peer.get("last_seen_seconds_ago")
                seconds = float(ago) if _number(ago) else None
            else:
                continue
            found.append(PeerView(reporter=reporter, member=str(name), seconds=seconds))
    return found


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Phase:
    phase: str
    reason: str
    message: str


def compute_phase(
    *, desired: int, pods: Sequence[PodInfo], members: Sequence[Mapping[str, Any]],
    peers: Sequence[PeerView] = (), previous: Mapping[str, Any] | None = None, now: datetime.datetime,
) -> Phase:
    """The phase, with a reason and a human message (see the module docstring)."""
    previous = previous or {}
    was_up = previous.get("phase") not in (None, PENDING)
    live = [pod for pod in pods if not pod.terminating]
    by_pod = {m["pod"]: m for m in members}
    ready = [m for m in members if m["ready"]]
    problems = [pod for pod in live if pod.problem is not None]

    if problems:
        reasons = {pod.problem.reason for pod in problems if pod.problem is not None}
        return Phase(phase=DEGRADED, reason=reasons.pop() if len(reasons) == 1 else "PodsFailing",
                     message="; ".join(f"{pod.name} {pod.problem.describe()}" for pod in problems if pod.problem))
    if not ready:
        if not was_up and all(starting(pod, now=now) for pod in live):
            return Phase(phase=PENDING, reason="NoReplicasReady", message=f"0/{desired} replicas ready")
        return Phase(phase=DEGRADED, reason="NoReplicasReady", message=f"0/{desired} replicas ready")

    terminating = len(pods) - len(live)
    scale_seen = was_up and previous.get("replicas") not in (None, desired)
    still_scaling = previous.get("phase") == SCALING and any(starting(pod, now=now) for pod in live)
    if len(live) != desired or terminating or scale_seen or still_scaling:
        extra = f", {terminating} terminating" if terminating else ""
        new = [pod.name for pod in live if starting(pod, now=now)]
        extra += f", starting: {', '.join(new)}" if new and len(live) == desired else ""
        return Phase(phase=SCALING, reason="Scaling", message=f"{len(live)} pods for {desired} replicas{extra}")

    def catching_up(pod: PodInfo, m: Mapping[str, Any]) -> bool:
        if m.get("clockSkewed") or pod.node_lost:
            return False  # not ready because of its clock, or of its node: not catching up
        return (m["state"] in CATCHING_UP_STATES
                or (m["ready"] and not m["synced"] and m["state"] not in ("unreachable", "pending"))
                or (not m["ready"] and m["state"] == "ready")  # synced; its readiness probe is due
                or (m["state"] == "pending" and starting(pod, now=now)))  # being scheduled or created

    resyncing = [pod.name for pod in live if catching_up(pod, by_pod[pod.name])]
    if resyncing:
        return Phase(phase=RESYNCING, reason="Resyncing", message=f"resyncing: {', '.join(resyncing)}")
    lost = [pod.name for pod in live if pod.node_lost]
    if lost:
        return Phase(phase=DEGRADED, reason="NodeNotReady", message=f"on a node that is not ready: {', '.join(lost)}")
    unreachable = [m["pod"] for m in members if m["state"] == "unreachable"]
    if unreachable:
        return Phase(phase=DEGRADED, reason="MembersUnreachable", message=f"not answering: {', '.join(unreachable)}")
    skewed = [m for m in members if m.get("clockSkewed")]
    if skewed:
        return Phase(phase=DEGRADED, reason=CLOCK_SKEW, message=clock_message(skewed))
    cut_off = _cut_off(live, peers, now=now)
    if cut_off:
        return Phase(phase=DEGRADED, reason="PeersUnreachable", message="; ".join(
            f"{view.reporter} cannot reach {view.member}" + (f" for {view.seconds:.0f} s" if view.seconds else "")
            for view in cut_off))
    if len(ready) < desired:
        return Phase(phase=DEGRADED, reason="ReplicasUnavailable", message=f"{len(ready)}/{desired} replicas ready")
    return Phase(phase=READY, reason="AllReplicasReady", message=f"{desired}/{desired} replicas ready and synced")


def _cut_off(live: Sequence[PodInfo], peers: Sequence[PeerView], *, now: datetime.datetime) -> list[PeerView]:
    """Peer views that last: the member has been ready, and its peer unable to reach it, for
    longer than ``PEER_GRACE`` (a restarted member is reconnected to well within that)."""
    settled = {pod.name for pod in live if pod.ready and pod.ready_since is not None
               and now - pod.ready_since >= PEER_GRACE}
    ready = {pod.name for pod in live if pod.ready}
    return [view for view in peers if view.member in settled and view.reporter in ready
            and (view.seconds is None or view.seconds >= PEER_GRACE.total_seconds())]


def clock_message(skewed: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for m in skewed:
        offset = m.get("clockOffsetMs")
        if isinstance(offset, (int, float)):
            parts.append(f"{m['pod']} is {abs(offset):.0f} ms {'ahead of' if offset > 0 else 'behind'} its peers")
        else:
            parts.append(f"{m['pod']} reports its clock off from its peers'")
    return "clock skew: " + "; ".join(parts)


def condition(
    type_: str, value: bool, reason: str, message: str, *,
    previous: Sequence[Mapping[str, Any]], now: datetime.datetime,
) -> dict[str, Any]:
    status = "True" if value else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else None
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since or timestamp(now)}


def clock_condition(members: Sequence[Mapping[str, Any]], reports: Mapping[str, MemberReport], *,
                    previous: Sequence[Mapping[str, Any]], now: datetime.datetime) -> dict[str, Any] | None:
    """``ClockSkew``: True if a member reports its clock off; False if members report their clocks
    and none is off; as before (or absent) if no member reports its clock (older nodes)."""
    if not any(report.clock is not None for report in reports.values()):
        before = next((c for c in previous if c.get("type") == CLOCK_SKEW), None)
        return dict(before) if before else None
    skewed = [m for m in members if m.get("clockSkewed")]
    if skewed:
        return condition(CLOCK_SKEW, True, "ClockSkewed", clock_message(skewed), previous=previous, now=now)
    return condition(CLOCK_SKEW, False, "ClocksAgree", "every member's clock is within the bound of its peers'",
                     previous=previous, now=now)


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
    live = {pod.name for pod in pods if not pod.terminating}
    peers = unreachable_peers(reports, live=live, now=now)
    members = [member_status(pod, reports.get(pod.name), lag_entries=lags.get(pod.name), now=now,
                             unreachable_from=[view.reporter for view in peers if view.member == pod.name])
               for pod in pods]
    phase = compute_phase(desired=desired, pods=pods, members=members, peers=peers, previous=previous, now=now)
    ready = sum(1 for m in members if m["ready"])
    synced = sum(1 for m in members if m["synced"])
    old_conditions = list((previous or {}).get("conditions") or [])
    progressing = phase.phase in PROGRESSING_PHASES
    conditions = [
        condition("Ready", ready >= desired,
                  "AllReplicasReady" if ready >= desired else "ReplicasNotReady",
                  f"{ready}/{desired} replicas ready", previous=old_conditions, now=now),
        condition("Synced", synced >= desired,
                  "AllReplicasSynced" if synced >= desired else "ReplicasNotSynced",
                  f"{synced}/{desired} replicas synced", previous=old_conditions, now=now),
        condition("Progressing", progressing, phase.reason if progressing else "Stable",
                  phase.message, previous=old_conditions, now=now),
        condition("Degraded", phase.phase == DEGRADED, phase.reason if phase.phase == DEGRADED else "AsExpected",
                  phase.message, previous=old_conditions, now=now),
    ]
    clock = clock_condition(members, reports, previous=old_conditions, now=now)
    if clock is not None:
        conditions.append(clock)
    return {
        "phase": phase.phase,
        "replicas": len(live),
        "readyReplicas": ready,
        "syncedReplicas": synced,
        "selector": selector,
        "members": members,
        "conditions": conditions,
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Notice:
    """An event to post about the cluster."""

    type: str  # Normal or Warning
    reason: str
    message: str


def notices(previous: Mapping[str, Any] | None, observed: Mapping[str, Any]) -> list[Notice]:
    """The events of the change from ``previous`` to ``observed``: one per transition (pure)."""
    previous = previous or {}
    found: list[Notice] = []
    old_phase, new_phase = previous.get("phase"), observed["phase"]
    if old_phase != new_phase and not (old_phase in (None, PENDING) and new_phase == PENDING):
        cause = _condition(observed, "Degraded" if new_phase == DEGRADED else "Progressing")
        message = f"{cause.get('message') or _condition(observed, 'Ready').get('message')} (was {old_phase or 'unknown'})"
        found.append(Notice(type="Warning" if new_phase == DEGRADED else "Normal", reason=new_phase, message=message))
    old_problems = {m["pod"]: m.get("problem") for m in previous.get("members") or []}
    for member in observed.get("members") or []:
        problem = member.get("problem")
        if problem and old_problems.get(member["pod"]) != problem:
            found.append(Notice(type="Warning", reason=problem.split(":", 1)[0],
                                message=f"{member['pod']}: {problem}"))
    old_clock, new_clock = _condition(previous, CLOCK_SKEW), _condition(observed, CLOCK_SKEW)
    if new_clock.get("status") == "True" and old_clock.get("status") != "True":
        found.append(Notice(type="Warning", reason=CLOCK_SKEW, message=str(new_clock.get("message"))))
    elif new_clock.get("status") == "False" and old_clock.get("status") == "True":
        found.append(Notice(type="Normal", reason="ClockSynced", message=str(new_clock.get("message"))))
    return found


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


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
