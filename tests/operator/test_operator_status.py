"""
The operator publishes what the members report: fake members answer ``/v1/cluster`` over real
HTTP on 127.0.0.1, one port each, and the emulated pods carry that IP and port.
"""

from __future__ import annotations

from typing import Any

import pytest

from leaderboard_operator import resources

from .conftest import NAMESPACE, Cluster, FakeMembers, RunningOperator, eventually, kmock_key


def status_of(cluster: Cluster, name: str = "lb") -> dict[str, Any]:
    return (cluster.get(resources.CLUSTERS, name) or {}).get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def events(cluster: Cluster, reason: str) -> list[dict[str, Any]]:
    found = []
    for name in cluster.names(resources.EVENTS):
        event = cluster.get(resources.EVENTS, name)
        if event and event.get("reason") == reason:
            found.append(event)
    return found


async def start_healthy_cluster(cluster: Cluster, members: FakeMembers) -> None:
    for ordinal in range(3):
        members.answers[ordinal] = members.report(f"lb-{ordinal}", peers={f"lb-{(ordinal + 1) % 3}": 0})
    await cluster.apply_cluster("lb", {"replicas": 3})
    for ordinal in range(3):
        await cluster.add_pod("lb", ordinal, ip="127.0.0.1", port=members.ports[ordinal], restarts=ordinal)


async def test_member_reports_show_up_in_the_status(cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    await start_healthy_cluster(cluster, members)
    status = await eventually(lambda: status_of(cluster).get("phase") == "Ready" and status_of(cluster),
                              what="phase Ready")
    assert status["replicas"] == 3
    assert status["readyReplicas"] == 3
    assert status["syncedReplicas"] == 3
    assert status["selector"] == "app.kubernetes.io/name=leaderboard-node,app.kubernetes.io/instance=lb"
    assert [m["pod"] for m in status["members"]] == ["lb-0", "lb-1", "lb-2"]
    assert status["members"][1] == {
        "pod": "lb-1", "ip": "127.0.0.1", "ready": True, "synced": True, "state": "ready", "restarts": 1,
        "lagEntries": 0, "versionVector": {"lb-1": {"epoch": 123, "seq": 42}},
    }
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Synced")["status"] == "True"
    assert condition(status, "Progressing")["status"] == "False"
    assert condition(status, "Degraded")["status"] == "False"
    assert set(members.requests) == {0, 1, 2}
    await eventually(lambda: events(cluster, "Ready"), what="an Event with reason Ready")


async def test_a_member_catching_up_makes_the_cluster_resync(cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    await start_healthy_cluster(cluster, members)
    await eventually(lambda: status_of(cluster).get("phase") == "Ready", what="phase Ready")
    members.answers[2] = members.report("lb-2", state="syncing", ready=False, synced=False)
    members.answers[0] = members.report("lb-0", peers={"lb-1": 0, "lb-2": 17})
    status = await eventually(lambda: status_of(cluster).get("phase") == "Resyncing" and status_of(cluster),
                              what="phase Resyncing")
    assert status["members"][2]["state"] == "syncing"
    assert status["members"][2]["lagEntries"] == 17
    assert status["syncedReplicas"] == 2
    assert condition(status, "Progressing")["status"] == "True"
    assert condition(status, "Synced")["status"] == "False"
    await eventually(lambda: events(cluster, "Resyncing"), what="an Event with reason Resyncing")


async def test_an_unreachable_member_degrades_the_cluster(cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    await start_healthy_cluster(cluster, members)
    await eventually(lambda: status_of(cluster).get("phase") == "Ready", what="phase Ready")
    members.answers[1] = 500
    status = await eventually(lambda: status_of(cluster).get("phase") == "Degraded" and status_of(cluster),
                              what="phase Degraded")
    assert status["members"][1]["state"] == "unreachable"
    assert condition(status, "Degraded") | {"lastTransitionTime": None} == {
        "type": "Degraded", "status": "True", "reason": "MembersUnreachable",
        "message": "not answering: lb-1", "lastTransitionTime": None}
    warnings = await eventually(lambda: events(cluster, "Degraded"), what="an Event with reason Degraded")
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["involvedObject"]["name"] == "lb"
    metrics = operator.context.metrics.render().decode()
    assert 'leaderboard_operator_cluster_phase{cluster="lb",namespace="lb-test",phase="Degraded"} 1.0' in metrics


async def test_a_missing_pod_shows_the_cluster_scaling(cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    members.answers[0] = members.report("lb-0")
    await cluster.apply_cluster("lb", {"replicas": 3})
    await cluster.add_pod("lb", 0, ip="127.0.0.1", port=members.ports[0])
    await cluster.add_pod("lb", 1, ip=None, ready=False)
    status = await eventually(lambda: status_of(cluster).get("phase") == "Scaling" and status_of(cluster),
                              what="phase Scaling")
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 1
    assert status["members"][1]["state"] == "pending"


async def test_a_cluster_without_pods_is_pending(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {"replicas": 2})
    status = await eventually(lambda: status_of(cluster).get("conditions") and status_of(cluster),
                              what="conditions in the status")
    assert status["phase"] == "Pending"
    assert status["members"] == []
    assert condition(status, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready", "status": "False", "reason": "ReplicasNotReady", "message": "0/2 replicas ready",
        "lastTransitionTime": None}


async def set_pod_ready(cluster: Cluster, ordinal: int, ready: bool) -> None:
    """As the node lifecycle controller does when their node stops heartbeating (Ready=False)."""
    await cluster.patch(resources.PODS, f"lb-{ordinal}", {"status": {"conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "reason": None if ready else "NodeNotReady"}]}})


async def test_a_full_outage_is_degraded_with_a_warning(cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    await start_healthy_cluster(cluster, members)
    await eventually(lambda: status_of(cluster).get("phase") == "Ready", what="phase Ready")
    for ordinal in range(3):
        await set_pod_ready(cluster, ordinal, False)
    status = await eventually(lambda: status_of(cluster).get("readyReplicas") == 0 and status_of(cluster),
                              what="no ready member")
    assert status["phase"] == "Degraded"
    assert condition(status, "Degraded")["status"] == "True"
    assert condition(status, "Progressing")["status"] == "False"
    warnings = await eventually(lambda: events(cluster, "Degraded"), what="an Event with reason Degraded")
    assert warnings[0]["type"] == "Warning" and "0/3 replicas ready" in warnings[0]["message"]
    assert not events(cluster, "Pending")


async def test_an_unschedulable_pod_is_degraded_with_the_schedulers_message(
        cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    await start_healthy_cluster(cluster, members)
    await eventually(lambda: status_of(cluster).get("phase") == "Ready", what="phase Ready")
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 4}}, subresource="scale")
    message = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available."
    await cluster.add_pod("lb", 3, ip=None, ready=False, phase="Pending", containerStatuses=[], conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}])
    status = await eventually(lambda: status_of(cluster).get("phase") == "Degraded" and status_of(cluster),
                              what="phase Degraded")
    assert condition(status, "Degraded")["reason"] == "Unschedulable"
    assert message in condition(status, "Degraded")["message"]
    assert status["members"][3]["problem"] == f"Unschedulable: {message}"
    warnings = await eventually(lambda: events(cluster, "Unschedulable"), what="an Event with reason Unschedulable")
    assert warnings[0]["type"] == "Warning" and message in warnings[0]["message"]


async def test_a_scale_is_never_published_as_ready_for_the_new_generation(
        cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    await start_healthy_cluster(cluster, members)
    await eventually(lambda: status_of(cluster).get("phase") == "Ready"
                     and status_of(cluster).get("observedGeneration") == 1, what="phase Ready for generation 1")
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 2}}, subresource="scale")
    status = await eventually(lambda: status_of(cluster).get("observedGeneration") == 2 and status_of(cluster),
                              what="the status of generation 2")
    assert status["phase"] == "Scaling"  # three pods for two replicas: the StatefulSet has not removed one yet
    history = cluster.kmock.objects[kmock_key(resources.CLUSTERS), NAMESPACE, "lb"].history
    published = [dict(v.raw.get("status") or {}) for v in history if v is not None]
    assert not [s for s in published if s.get("observedGeneration") == 2 and s.get("phase") == "Ready"]


async def test_a_clock_skew_is_a_condition_and_one_warning(cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    clock = {"max_offset_ms": 500, "offset_ms": 1.0, "skewed": False, "since": None}
    for ordinal in range(3):
        members.answers[ordinal] = members.report(f"lb-{ordinal}", clock=clock)
    await cluster.apply_cluster("lb", {"replicas": 3})
    for ordinal in range(3):
        await cluster.add_pod("lb", ordinal, ip="127.0.0.1", port=members.ports[ordinal])
    await eventually(lambda: status_of(cluster).get("phase") == "Ready", what="phase Ready")
    assert condition(status_of(cluster), "ClockSkew")["status"] == "False"
    members.answers[1] = members.report("lb-1", ready=False, clock={**clock, "offset_ms": -1200.0, "skewed": True,
                                                                    "since": 1700000000})
    await set_pod_ready(cluster, 1, False)  # its /readyz answers 503 (reason clock_skew)
    status = await eventually(lambda: condition(status_of(cluster), "ClockSkew")["status"] == "True" and status_of(cluster),
                              what="condition ClockSkew True")
    assert condition(status, "ClockSkew")["message"] == "clock skew: lb-1 is 1200 ms behind its peers"
    assert status["members"][1]["clockOffsetMs"] == -1200.0
    await eventually(lambda: status_of(cluster).get("phase") == "Degraded"
                     and condition(status_of(cluster), "Degraded")["reason"] == "ClockSkew", what="Degraded: ClockSkew")
    polls = len(members.requests)
    await eventually(lambda: len(members.requests) > polls + 9, what="three more polls")
    warnings = events(cluster, "ClockSkew")
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings
    assert "lb-1" in warnings[0]["message"] and "1200 ms" in warnings[0]["message"]


@pytest.mark.parametrize("operator_config", [{"poll_interval": 60.0, "busy_poll_interval": 0.2}], indirect=True)
async def test_a_pod_change_reaches_a_settled_clusters_status_at_once(
        cluster: Cluster, members: FakeMembers, operator: RunningOperator) -> None:
    await start_healthy_cluster(cluster, members)
    await eventually(lambda: status_of(cluster).get("phase") == "Ready", what="phase Ready")
    await set_pod_ready(cluster, 2, False)  # not the next poll, a minute away: the pod's own event
    status = await eventually(lambda: status_of(cluster).get("readyReplicas") == 2 and status_of(cluster), timeout=2,
                              what="readyReplicas 2 within two seconds")
    assert status["phase"] != "Ready" and condition(status, "Ready")["status"] == "False"
