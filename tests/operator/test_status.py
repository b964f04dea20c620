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


def test_no_ready_member_is_pending() -> None:
    assert compute(2, [pod(0, ready=False), pod(1, ready=False)], [])["phase"] == "Pending"


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
