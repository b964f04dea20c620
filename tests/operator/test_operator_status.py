"""
The operator publishes what the members report: fake members answer ``/v1/cluster`` over real
HTTP on 127.0.0.1, one port each, and the emulated pods carry that IP and port.
"""

from __future__ import annotations

from typing import Any

from leaderboard_operator import resources

from .conftest import Cluster, FakeMembers, RunningOperator, eventually


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
