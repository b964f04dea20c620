"""Status computation is pure: pods and member reports in, phase and conditions out."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from leaderboard_operator import status
from leaderboard_operator.members import MemberReport, PodInfo, pod_info

NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)


def pod(i: int, *, ready: bool = True, ip: str | None = "ip", terminating: bool = False, restarts: int = 0,
        fresh: bool = False, started_at: datetime.datetime | None = None) -> PodInfo:
    return PodInfo(name=f"lb-{i}", ip=f"10.0.0.{i}" if ip else None, ready=ready, restarts=restarts,
                   terminating=terminating, fresh=fresh, started_at=started_at)


def report(i: int, *, state: str = "ready", ready: bool = True, synced: bool = True,
           lags: dict[str, int] | None = None) -> MemberReport:
    return MemberReport(pod=f"lb-{i}", data={
        "node": {"name": f"lb-{i}", "state": state, "ready": ready, "synced": synced,
                 "version_vector": {f"lb-{i}": {"epoch": 1, "seq": 5}}},
        "members": [{"name": name, "lag_entries": lag} for name, lag in (lags or {}).items()],
    })


def unreachable(i: int) -> MemberReport:
    return MemberReport(pod=f"lb-{i}", error="ConnectionRefused")


def compute(desired: int, pods: list[PodInfo], reports: list[MemberReport],
            previous: dict[str, Any] | None = None, now: datetime.datetime = NOW) -> dict[str, Any]:
    return status.compute_status(desired=desired, pods=pods, reports={r.pod: r for r in reports},
                                 selector="sel", previous=previous, now=now)


def conditions(result: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in result["conditions"]}


def test_all_members_ready_and_synced_is_ready() -> None:
    result = compute(3, [pod(0), pod(1), pod(2)], [report(0), report(1), report(2)])
    assert result["phase"] == "Ready"
    assert (result["replicas"], result["readyReplicas"], result["syncedReplicas"]) == (3, 3, 3)
    assert conditions(result) == {"Ready": "True", "Synced": "True", "Progressing": "False", "Degraded": "False"}


def test_no_pods_is_pending() -> None:
    result = compute(3, [], [])
    assert result["phase"] == "Pending"
    assert conditions(result) == {"Ready": "False", "Synced": "False", "Progressing": "True", "Degraded": "False"}


def test_no_ready_member_in_a_new_cluster_is_pending() -> None:
    new = [pod(0, ready=False, fresh=True, started_at=NOW), pod(1, ready=False, ip=None, fresh=True, started_at=NOW)]
    assert compute(2, new, [])["phase"] == "Pending"


def test_a_full_outage_of_a_cluster_that_was_up_is_degraded_with_a_warning() -> None:
    up = compute(3, [pod(0), pod(1), pod(2)], [report(0), report(1), report(2)])
    # Their node went NotReady: every pod Ready=False, the nodes themselves still answer.
    down = [pod(i, ready=False, fresh=True, started_at=NOW) for i in range(3)]
    result = compute(3, down, [report(0), report(1), report(2)], previous=up, now=LATER)
    assert result["phase"] == "Degraded"
    assert conditions(result) == {"Ready": "False", "Synced": "False", "Progressing": "False", "Degraded": "True"}
    degraded = next(c for c in result["conditions"] if c["type"] == "Degraded")
    assert (degraded["reason"], degraded["message"]) == ("NoReplicasReady", "0/3 replicas ready")
    assert status.notices(up, result) == [status.Notice(type="Warning", reason="Degraded",
                                                        message="0/3 replicas ready (was Ready)")]


def test_fewer_pods_than_replicas_is_scaling() -> None:
    result = compute(5, [pod(0), pod(1), pod(2)], [report(0), report(1), report(2)])
    assert result["phase"] == "Scaling"
    assert conditions(result)["Progressing"] == "True"
    assert conditions(result)["Ready"] == "False"


def test_terminating_pods_are_scaling_down() -> None:
    result = compute(2, [pod(0), pod(1), pod(2, terminating=True)], [report(0), report(1)])
    assert result["phase"] == "Scaling"
    assert result["replicas"] == 2
    assert result["members"][2]["state"] == "terminating"


def test_a_syncing_member_is_resyncing() -> None:
    result = compute(3, [pod(0), pod(1), pod(2, ready=False)],
                     [report(0), report(1), report(2, state="syncing", ready=False, synced=False)])
    assert result["phase"] == "Resyncing"
    assert result["syncedReplicas"] == 2
    assert conditions(result) == {"Ready": "False", "Synced": "False", "Progressing": "True", "Degraded": "False"}


def test_a_ready_but_unsynced_member_is_resyncing() -> None:
    result = compute(2, [pod(0), pod(1)], [report(0), report(1, synced=False)])
    assert result["phase"] == "Resyncing"
    assert conditions(result)["Ready"] == "True"


def test_an_unreachable_member_is_degraded() -> None:
    result = compute(3, [pod(0), pod(1), pod(2)], [report(0), report(1), unreachable(2)])
    assert result["phase"] == "Degraded"
    assert result["members"][2]["state"] == "unreachable"
    assert result["members"][2]["synced"] is False
    degraded = next(c for c in result["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == ("True", "MembersUnreachable", "not answering: lb-2")


def test_a_crashed_member_is_degraded() -> None:
    result = compute(3, [pod(0), pod(1), pod(2, ready=False, restarts=4)], [report(0), report(1), unreachable(2)])
    assert result["phase"] == "Degraded"
    assert result["members"][2]["restarts"] == 4
    assert result["readyReplicas"] == 2


def test_a_new_pod_whose_node_does_not_answer_yet_is_starting_not_degraded() -> None:
    new = pod(2, ready=False, fresh=True, started_at=NOW - datetime.timedelta(seconds=30))
    result = compute(3, [pod(0), pod(1), new], [report(0), report(1), unreachable(2)])
    assert result["phase"] == "Resyncing"
    assert result["members"][2]["state"] == "starting"
    assert conditions(result) == {"Ready": "False", "Synced": "False", "Progressing": "True", "Degraded": "False"}


def test_a_new_pod_not_scheduled_yet_is_starting_not_degraded() -> None:
    new = pod(2, ready=False, ip=None, fresh=True, started_at=NOW)
    result = compute(3, [pod(0), pod(1), new], [report(0), report(1)])
    assert result["phase"] == "Resyncing"
    assert result["members"][2]["state"] == "pending"


def test_a_pod_starting_for_longer_than_the_grace_is_degraded() -> None:
    late = pod(2, ready=False, fresh=True, started_at=NOW - status.STARTUP_GRACE - datetime.timedelta(seconds=1))
    result = compute(3, [pod(0), pod(1), late], [report(0), report(1), unreachable(2)])
    assert result["phase"] == "Degraded"
    assert result["members"][2]["state"] == "unreachable"


def _manifest(container_status: dict[str, Any], **status_fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "lb-2", "creationTimestamp": "2025-01-02T03:00:00Z"},
            "status": {"podIP": "10.0.0.2", "containerStatuses": [container_status], **status_fields}}


@pytest.mark.parametrize("container, fresh", [
    ({"restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}, True),
    ({"restartCount": 0, "state": {"running": {"startedAt": "2025-01-02T03:01:00Z"}}}, True),
    ({"restartCount": 0, "state": {"terminated": {"exitCode": 137}}}, False),  # killed, not restarted yet
    ({"restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}, False),
    ({"restartCount": 1, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1}}}, False),
])
def test_a_pod_is_fresh_only_until_something_fails(container: dict[str, Any], fresh: bool) -> None:
    assert pod_info(_manifest(container)).fresh is fresh


def test_a_pod_started_at_is_its_start_time_else_its_creation() -> None:
    container = {"restartCount": 0, "state": {"running": {}}}
    started = pod_info(_manifest(container, startTime="2025-01-02T03:00:30Z")).started_at
    assert started == datetime.datetime(2025, 1, 2, 3, 0, 30, tzinfo=datetime.UTC)
    assert pod_info(_manifest(container)).started_at == datetime.datetime(2025, 1, 2, 3, 0, tzinfo=datetime.UTC)


def test_a_crashed_pod_is_degraded_even_before_its_restart() -> None:
    crashed = pod_info(_manifest({"restartCount": 0, "state": {"terminated": {"exitCode": 137}}}))
    result = compute(3, [pod(0), pod(1), crashed], [report(0), report(1), unreachable(2)], now=NOW)
    assert result["phase"] == "Degraded"


def test_a_member_lag_is_the_largest_its_peers_report() -> None:
    result = compute(3, [pod(0), pod(1), pod(2)],
                     [report(0, lags={"lb-1": 3, "lb-2": 10}), report(1, lags={"lb-2": 25, "lb-0": 0}), report(2)])
    lags = {m["pod"]: m.get("lagEntries") for m in result["members"]}
    assert lags == {"lb-0": 0, "lb-1": 3, "lb-2": 25}


def test_a_member_entry_carries_the_node_report() -> None:
    member = compute(1, [pod(0, restarts=2)], [report(0)])["members"][0]
    assert member == {"pod": "lb-0", "ip": "10.0.0.0", "ready": True, "synced": True, "state": "ready",
                      "restarts": 2, "versionVector": {"lb-0": {"epoch": 1, "seq": 5}}}


def test_a_pod_without_ip_is_pending_in_the_members() -> None:
    member = compute(1, [pod(0, ready=False, ip=None)], [])["members"][0]
    assert (member["state"], member["ip"], member["ready"]) == ("pending", "", False)


def test_transition_times_move_only_when_a_condition_flips() -> None:
    first = compute(2, [pod(0), pod(1)], [report(0), report(1)], now=NOW)
    same = compute(2, [pod(0), pod(1)], [report(0), report(1)], previous=first, now=LATER)
    assert same["conditions"] == first["conditions"]
    flipped = compute(2, [pod(0), pod(1)], [report(0), unreachable(1)], previous=first, now=LATER)
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times["Ready"] == "2025-01-02T03:04:05Z"  # still True: one pod is ready but unreachable
    assert times["Degraded"] == "2025-01-02T03:09:05Z"
    assert times["Synced"] == "2025-01-02T03:09:05Z"


@pytest.mark.parametrize("old, new, expected", [
    (None, {"phase": "Ready"}, {"phase": "Ready"}),
    ({"phase": "Ready"}, {"phase": "Ready"}, {}),
    ({"phase": "Ready", "members": [{"pod": "a"}]}, {"phase": "Ready", "members": [{"pod": "b"}]},
     {"members": [{"pod": "b"}]}),
])
def test_only_changed_status_fields_are_patched(old: Any, new: Any, expected: Any) -> None:
    assert status.changed_fields(old, new) == expected


def _pending_pod(i: int, **status_fields: Any) -> PodInfo:
    return pod_info({"metadata": {"name": f"lb-{i}", "creationTimestamp": "2025-01-02T03:04:00Z"},
                     "status": {"phase": "Pending", **status_fields}})


UNSCHEDULABLE = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/1 nodes are available: 1 Insufficient cpu."}]}


def test_an_unschedulable_pod_is_degraded_with_the_schedulers_message_and_one_warning() -> None:
    up = compute(3, [pod(0), pod(1), pod(2)], [report(0), report(1), report(2)])
    pods = [pod(0), pod(1), pod(2), _pending_pod(3, **UNSCHEDULABLE)]
    result = compute(4, pods, [report(0), report(1), report(2)], previous=up, now=LATER)
    assert result["phase"] == "Degraded"
    degraded = next(c for c in result["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "Unschedulable"
    assert degraded["message"] == "lb-3 Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
    assert result["members"][3]["problem"] == "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
    assert status.Notice(type="Warning", reason="Unschedulable",
                         message="lb-3: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.") in status.notices(up, result)
    again = compute(4, pods, [report(0), report(1), report(2)], previous=result, now=LATER)
    assert status.notices(result, again) == []  # once per transition, not per poll


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "CrashLoopBackOff", "CreateContainerConfigError"])
def test_a_container_that_cannot_start_is_degraded(reason: str) -> None:
    stuck = _pending_pod(2, podIP="10.0.0.2", containerStatuses=[
        {"name": "node", "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "details"}}}])
    result = compute(3, [pod(0), pod(1), stuck], [report(0), report(1), unreachable(2)])
    degraded = next(c for c in result["conditions"] if c["type"] == "Degraded")
    assert (result["phase"], degraded["reason"], degraded["message"]) == ("Degraded", reason, f"lb-2 {reason}: details")


def test_a_scale_up_is_scaling_until_the_new_pods_are_ready() -> None:
    up = compute(3, [pod(0), pod(1), pod(2)], [report(0), report(1), report(2)])
    grown = [pod(0), pod(1), pod(2), *(pod(i, ready=False, fresh=True, started_at=NOW) for i in (3, 4))]
    # The StatefulSet made both pods before the operator's first poll after the scale.
    first = compute(5, grown, [report(0), report(1), report(2), unreachable(3), unreachable(4)], previous=up)
    assert (first["phase"], first["replicas"]) == ("Scaling", 5)
    syncing = [report(0), report(1), report(2), report(3, state="syncing", ready=False, synced=False), unreachable(4)]
    second = compute(5, grown, syncing, previous=first)
    assert second["phase"] == "Scaling"
    assert next(c for c in second["conditions"] if c["type"] == "Progressing")["message"] == (
        "5 pods for 5 replicas, starting: lb-3, lb-4")
    done = [pod(i) for i in range(5)]
    third = compute(5, done, [report(0), report(1), report(2), report(3), report(4, synced=False)], previous=second)
    assert third["phase"] == "Resyncing"
    assert compute(5, done, [report(i) for i in range(5)], previous=third)["phase"] == "Ready"


def test_a_scale_down_is_scaling_at_once() -> None:
    up = compute(5, [pod(i) for i in range(5)], [report(i) for i in range(5)])
    assert compute(2, [pod(i) for i in range(5)], [report(i) for i in range(5)], previous=up)["phase"] == "Scaling"


def clock_report(i: int, *, offset: float | None, skewed: bool) -> MemberReport:
    base = report(i)
    node = {**base.node, "clock": {"max_offset_ms": 500, "offset_ms": offset, "skewed": skewed,
                                   "since": 1700000000 if skewed else None}}
    return MemberReport(pod=base.pod, data={**(base.data or {}), "node": node})


def test_a_skewed_clock_is_a_condition_a_degraded_cluster_and_one_warning() -> None:
    fine = compute(3, [pod(0), pod(1), pod(2)], [clock_report(i, offset=2.0, skewed=False) for i in range(3)])
    clock = next(c for c in fine["conditions"] if c["type"] == "ClockSkew")
    assert (clock["status"], fine["phase"]) == ("False", "Ready")
    assert fine["members"][0]["clockOffsetMs"] == 2.0
    # lb-2 is 850 ms ahead: it refuses to be ready (its /readyz answers 503, reason clock_skew).
    reports = [clock_report(0, offset=-3.0, skewed=False), clock_report(1, offset=1.0, skewed=False),
               clock_report(2, offset=850.4, skewed=True)]
    reports[2] = MemberReport(pod="lb-2", data={**(reports[2].data or {}),
                                                "node": {**reports[2].node, "ready": False}})
    skewed = compute(3, [pod(0), pod(1), pod(2, ready=False)], reports, previous=fine, now=LATER)
    clock = next(c for c in skewed["conditions"] if c["type"] == "ClockSkew")
    assert (clock["status"], clock["message"]) == ("True", "clock skew: lb-2 is 850 ms ahead of its peers")
    degraded = next(c for c in skewed["conditions"] if c["type"] == "Degraded")
    assert (skewed["phase"], degraded["reason"]) == ("Degraded", "ClockSkew")
    notices = status.notices(fine, skewed)
    assert [n for n in notices if n.reason == "ClockSkew"] == [status.Notice(
        type="Warning", reason="ClockSkew", message="clock skew: lb-2 is 850 ms ahead of its peers")]
    again = compute(3, [pod(0), pod(1), pod(2, ready=False)], reports, previous=skewed, now=LATER)
    assert status.notices(skewed, again) == []
    back = compute(3, [pod(0), pod(1), pod(2)], [clock_report(i, offset=1.0, skewed=False) for i in range(3)],
                   previous=again, now=LATER)
    assert next(c for c in back["conditions"] if c["type"] == "ClockSkew")["status"] == "False"
    assert [n.reason for n in status.notices(again, back)] == ["Ready", "ClockSynced"]


def test_nodes_that_do_not_report_their_clock_leave_the_condition_unknown() -> None:
    old = compute(3, [pod(0), pod(1), pod(2)], [report(0), report(1), report(2)])
    assert "ClockSkew" not in conditions(old)
    skewed = compute(1, [pod(0)], [clock_report(0, offset=900.0, skewed=True)])
    kept = compute(1, [pod(0)], [report(0)], previous=skewed, now=LATER)  # downgraded: no clock field
    assert next(c for c in kept["conditions"] if c["type"] == "ClockSkew") == next(
        c for c in skewed["conditions"] if c["type"] == "ClockSkew")
    assert [n.reason for n in status.notices(skewed, kept)] == ["Ready"]  # no ClockSkew, no ClockSynced


def settled_pod(i: int) -> PodInfo:
    return PodInfo(name=f"lb-{i}", ip=f"10.0.0.{i}", ready=True, restarts=0, terminating=False,
                   ready_since=NOW - datetime.timedelta(minutes=5))


def peer_report(i: int, peers: list[dict[str, Any]]) -> MemberReport:
    base = report(i)
    return MemberReport(pod=base.pod, data={**(base.data or {}), "members": peers})


@pytest.mark.parametrize("view", [
    {"name": "lb-2", "state": "unreachable", "unreachable_since": NOW.timestamp() - 60, "reachable": False},
    {"name": "lb-2", "state": "ready", "reachable": False, "last_seen_seconds_ago": 60.0},  # an older node
], ids=["unreachable-state", "reachable-false"])
def test_a_member_its_peers_cannot_reach_is_degraded_after_the_grace(view: dict[str, Any]) -> None:
    pods = [settled_pod(0), settled_pod(1), settled_pod(2)]
    result = compute(3, pods, [peer_report(0, [view]), report(1), report(2)])
    assert result["members"][2]["unreachableFrom"] == ["lb-0"]
    degraded = next(c for c in result["conditions"] if c["type"] == "Degraded")
    assert (result["phase"], degraded["reason"], degraded["message"]) == (
        "Degraded", "PeersUnreachable", "lb-0 cannot reach lb-2 for 60 s")


def test_a_member_its_peers_lost_only_just_now_is_not_degraded() -> None:
    view = {"name": "lb-2", "state": "unreachable", "unreachable_since": NOW.timestamp() - 5, "reachable": False}
    result = compute(3, [settled_pod(0), settled_pod(1), settled_pod(2)], [peer_report(0, [view]), report(1), report(2)])
    assert result["phase"] == "Ready"
    assert result["members"][2]["unreachableFrom"] == ["lb-0"]


def test_pods_on_a_node_that_is_not_ready_are_degraded_not_resyncing() -> None:
    lost = pod_info({"metadata": {"name": "lb-2"}, "status": {"podIP": "10.0.0.2", "conditions": [
        {"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "False"}],
        "containerStatuses": [{"restartCount": 0, "state": {"running": {}}}]}})
    assert lost.node_lost
    result = compute(3, [pod(0), pod(1), lost], [report(0), report(1), report(2)])
    degraded = next(c for c in result["conditions"] if c["type"] == "Degraded")
    assert (result["phase"], degraded["reason"]) == ("Degraded", "NodeNotReady")
