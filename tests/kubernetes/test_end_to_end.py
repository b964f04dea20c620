"""
The cluster as a user sees it: ``kubectl apply`` a LeaderboardCluster, use it, ``kubectl scale``
it, lose a pod, scale it down. The operator runs embedded in the test loop against kmock; the
:class:`Kubelet` harness turns its StatefulSet into real node processes on 127.0.0.x, and the
nodes find each other through the emulated Kubernetes API (kubernetes discovery).

One scenario, because each cluster start costs seconds of a 2-core machine; each step asserts
what a user would check at that point.
"""

from __future__ import annotations

from typing import Any

import pytest

from leaderboard_client import LeaderboardClient
from leaderboard_operator import resources
from leaderboard_operator.status import PHASES

from ..harness import all_records
from ..operator.conftest import NAMESPACE, Cluster, RunningOperator, kmock_key
from .kubelet import Kubelet, call, wait_for

NAME = "lb"
SELECTOR = f"app.kubernetes.io/name=leaderboard-node,app.kubernetes.io/instance={NAME}"
BOARDS = ("global", "coins")


# ----------------------------------------------------------------------------- helpers

def cr(cluster: Cluster) -> dict[str, Any]:
    return cluster.get(resources.CLUSTERS, NAME) or {}


def status_of(cluster: Cluster) -> dict[str, Any]:
    return cr(cluster).get("status") or {}


def statuses_seen(cluster: Cluster) -> list[dict[str, Any]]:
    """Every status the CR has had, in order (kmock keeps each version of an object)."""
    history = cluster.kmock.objects[kmock_key(resources.CLUSTERS), NAMESPACE, NAME].history
    return [dict(version.raw.get("status") or {}) for version in history if version is not None]


def events(cluster: Cluster) -> list[dict[str, Any]]:
    found = [cluster.get(resources.EVENTS, name) for name in cluster.names(resources.EVENTS)]
    return sorted((e for e in found if e and (e.get("involvedObject") or {}).get("name") == NAME),
                  key=lambda e: e["metadata"]["resourceVersion"].zfill(12))


def settled(cluster: Cluster, replicas: int) -> dict[str, Any] | None:
    """The status once the operator reports ``replicas`` members, all ready and synced, phase Ready."""
    status = status_of(cluster)
    members = status.get("members") or []
    if (status.get("phase") == "Ready" and status.get("replicas") == replicas
            and status.get("readyReplicas") == replicas and status.get("syncedReplicas") == replicas
            and [m["pod"] for m in members] == [f"{NAME}-{i}" for i in range(replicas)]
            and all(m["ready"] and m["synced"] and m["state"] == "ready" for m in members)):
        return status
    return None


async def scale(cluster: Cluster, replicas: int) -> None:
    """``kubectl scale lbc/lb --replicas=N``: a merge patch of the ``scale`` subresource."""
    await cluster.request("PATCH", resources.CLUSTERS.url(namespace=NAMESPACE, name=NAME, subresource="scale"),
                          json={"spec": {"replicas": replicas}},
                          headers={"Content-Type": "application/merge-patch+json"})
    assert cr(cluster)["spec"]["replicas"] == replicas


async def holdings(kubelet: Kubelet, pod: str) -> dict[str, dict[str, int]]:
    return await call(kubelet.pod(pod).url, lambda c: {board: all_records(c, board) for board in BOARDS})


async def digests(kubelet: Kubelet, pods: list[str]) -> dict[str, tuple[str, ...]]:
    found = {}
    for pod in pods:
        found[pod] = await call(kubelet.pod(pod).url, lambda c: tuple(c.digest(b)["digest"] for b in BOARDS))
    return found


async def converged(kubelet: Kubelet, pods: list[str]) -> dict[str, tuple[str, ...]] | None:
    found = await digests(kubelet, pods)
    return found if len(set(found.values())) == 1 else None


async def node_info(kubelet: Kubelet, pod: str) -> dict[str, Any]:
    return await call(kubelet.pod(pod).url, lambda c: c.cluster())


class Writes:
    """What the test wrote and had acknowledged: ``global`` (best, one write per owner) and
    ``coins`` (incr: every node adds to the same owners, so no increment may be lost)."""

    def __init__(self) -> None:
        self.expected: dict[str, dict[str, int]] = {board: {} for board in BOARDS}
        self.batches = 0

    async def setup(self, kubelet: Kubelet, pod: str) -> None:
        def create(client: LeaderboardClient) -> None:
            client.create_leaderboard("global", sort_order="desc", operator="best")
            client.create_leaderboard("coins", sort_order="desc", operator="incr")
        await call(kubelet.pod(pod).url, create)

    async def write(self, kubelet: Kubelet, pod: str, count: int) -> None:
        """``count`` new owners on ``global`` and an increment of 1..10 for ten ``coins`` owners."""
        self.batches += 1
        tag = f"b{self.batches}-{pod}"
        best = [{"owner_id": f"{tag}-p{i}", "score": (i * 7919) % 100_003, "subscore": i} for i in range(count)]
        coins = [{"owner_id": f"c{i}", "score": i + 1} for i in range(10)]

        def run(client: LeaderboardClient) -> None:
            for start in range(0, len(best), 1000):
                results = client.write_batch("global", best[start:start + 1000])
                assert all("error" not in r for r in results["records"]), results
            results = client.write_batch("coins", coins)
            assert all("error" not in r for r in results["records"]), results

        await call(kubelet.pod(pod).url, run, timeout=30)
        self.expected["global"].update({r["owner_id"]: r["score"] for r in best})
        for record in coins:
            owner = record["owner_id"]
            self.expected["coins"][owner] = self.expected["coins"].get(owner, 0) + record["score"]


# ----------------------------------------------------------------------------- the scenario

@pytest.mark.timeout(110)
async def test_a_user_applies_scales_crashes_and_shrinks_a_cluster_without_losing_writes(
    cluster: Cluster, operator: RunningOperator, kubelet: Kubelet,
) -> None:
    writes = Writes()

    # 1. kubectl apply: three real nodes start, find each other through the API, turn ready.
    await cluster.apply_cluster(NAME, {"replicas": 3})
    first = [f"{NAME}-{i}" for i in range(3)]
    await wait_for(lambda: kubelet.ready(*first), timeout=40, kubelet=kubelet,
                   what="pods lb-0..2 to run a node each and pass their readiness probe")
    for pod in first:
        assert (await node_info(kubelet, pod))["node"]["name"] == pod  # from the pod's fieldRef
        members = await wait_for(lambda pod=pod: _sees(kubelet, pod, set(first) - {pod}), timeout=10,
                                 kubelet=kubelet, what=f"{pod} to list the two others as reachable members")
        assert {m["address"] for m in members} == {
            f"{kubelet.pod(m['name']).ip}:{kubelet.peer_port}" for m in members}
    pods_path = resources.PODS.url(namespace=NAMESPACE)
    watches = [r for r in cluster.kmock if r.method.value == "GET" and r.url.path == pods_path
               and r.params.get("watch") == "true" and r.params.get("labelSelector") == SELECTOR]
    assert len(watches) >= 3, "each node watches its pods through the Kubernetes API"

    status = await wait_for(lambda: settled(cluster, 3), timeout=20, kubelet=kubelet,
                            what="status: 3 members, readyReplicas 3, phase Ready")
    assert status["selector"] == SELECTOR
    assert [m["ip"] for m in status["members"]] == [kubelet.pod(p).ip for p in first]

    await writes.setup(kubelet, "lb-0")
    await writes.write(kubelet, "lb-0", 200)
    for pod in ("lb-1", "lb-2"):
        held = await wait_for(lambda pod=pod: _holds(kubelet, pod, writes), timeout=15, kubelet=kubelet,
                              what=f"{pod} to serve what was written through lb-0")
        assert held == writes.expected

    # 2. kubectl scale --replicas=5: the new pods full-sync from a ready peer, then turn ready.
    scale_mark = len(statuses_seen(cluster))
    await scale(cluster, 5)
    await wait_for(lambda: kubelet.ready("lb-3", "lb-4"), timeout=40, kubelet=kubelet,
                   what="pods lb-3 and lb-4 to run and pass their readiness probe")
    for pod in ("lb-3", "lb-4"):
        info = await node_info(kubelet, pod)
        assert info["node"]["full_syncs_taken"] >= 1, f"{pod} started empty: it must full-sync, got {info['node']}"
        assert await holdings(kubelet, pod) == writes.expected, f"{pod} after its full sync"
    status = await wait_for(lambda: settled(cluster, 5), timeout=20, kubelet=kubelet,
                            what="status: 5 members, readyReplicas 5, phase Ready")
    # Starting pods are progress, not trouble: the scale-up never showed the cluster Degraded.
    scale_phases = _phases(statuses_seen(cluster)[scale_mark:])
    assert "Degraded" not in scale_phases and scale_phases[-1] == "Ready", scale_phases
    for pod in [f"{NAME}-{i}" for i in range(5)]:  # each node found the new pods through its watch
        await wait_for(lambda pod=pod: _sees(kubelet, pod, {f"{NAME}-{i}" for i in range(5)} - {pod}),
                       timeout=10, kubelet=kubelet, what=f"{pod} to list the four others as reachable members")
    await writes.write(kubelet, "lb-4", 100)  # the new nodes take writes too
    await wait_for(lambda: converged(kubelet, list(kubelet.pods)), timeout=20, kubelet=kubelet,
                   what="equal digests on all five nodes")

    # 3. A crash: lb-1's process is SIGKILLed; the kubelet holds it down while writes go on,
    #    then restarts it in the same pod (same IP, same volume, restartCount 1).
    ip_before = kubelet.pod("lb-1").ip
    mark = len(statuses_seen(cluster))
    events_before = {e["metadata"]["name"] for e in events(cluster)}
    with kubelet.hold_readiness("lb-1"):
        with kubelet.hold("lb-1"):
            kubelet.kill("lb-1")
            # (Right after the kill, a poll may see the node unreachable while its pod still says
            # Ready: the kubelet has not noticed yet. Wait for both.)
            degraded = await wait_for(lambda: _down(cluster, "lb-1"), timeout=15, kubelet=kubelet,
                                      what="phase Degraded with lb-1 not ready and unreachable")
            assert degraded["readyReplicas"] == 4
            assert _condition(degraded, "Ready")["status"] == "False"
            assert _condition(degraded, "Degraded")["status"] == "True"
            assert cluster.get(resources.PODS, "lb-1")["status"]["containerStatuses"][0]["state"]["terminated"]
            await writes.write(kubelet, "lb-0", 3000)  # lb-1 misses these: it must get them from a peer
            await writes.write(kubelet, "lb-2", 100)
        # Restarted, it resyncs; its pod stays unready here as under a long probe period, so the
        # operator's polls cannot miss the resync however quick it is.
        await wait_for(lambda: status_of(cluster).get("phase") == "Resyncing", timeout=30, kubelet=kubelet,
                       what="phase Resyncing while lb-1 resyncs or waits for its readiness probe")
    status = await wait_for(lambda: settled(cluster, 5), timeout=40, kubelet=kubelet,
                            what="status back to Ready with 5 members after lb-1's restart")
    assert status["members"][1]["restarts"] == 1
    assert status["members"][1]["ip"] == ip_before == kubelet.pod("lb-1").ip
    assert cluster.get(resources.PODS, "lb-1")["status"]["containerStatuses"][0]["restartCount"] == 1
    # It came back with its own state from its volume, and got what it missed from its peers:
    # the 3100 records written while it was down exist nowhere else. (Its peers' senders resend
    # from their backlogs when it answers again, so a pull -- catch_ups_taken or a full sync --
    # is only needed for what they have not pushed by then; either way is a resync.)
    info = (await node_info(kubelet, "lb-1"))["node"]
    assert info["durability"]["recovery"]["replayed_batches"] >= 1, info["durability"]
    assert await holdings(kubelet, "lb-1") == writes.expected, "lb-1 after its restart"
    # The published status went from Ready through a down lb-1 (Degraded) and its resync back
    # to Ready, and the operator posted the phase changes as Events. Resyncing covers both the
    # node's own starting/syncing states and the moment it is synced but its pod has not
    # passed the readiness probe yet, so the operator's polls see it.
    phases = _phases(statuses_seen(cluster)[mark - 1:])
    assert phases[:2] == ["Ready", "Degraded"] and phases[-1] == "Ready", phases
    assert "Resyncing" in phases and phases.index("Resyncing") > 1, phases
    assert set(phases) <= {"Ready", "Degraded", "Resyncing"}, phases
    posted = await wait_for(lambda: _new_events(cluster, events_before, until="Ready"), timeout=10, kubelet=kubelet,
                            what="Events of the phase changes: Degraded, then Ready")
    assert (posted[0]["reason"], posted[0]["type"]) == ("Degraded", "Warning"), posted
    assert "lb-1" in posted[0]["message"], posted[0]
    assert {e["reason"] for e in posted} <= {"Degraded", "Resyncing", "Ready"}, posted
    assert "Resyncing" in {e["reason"] for e in posted}, posted

    # 4. kubectl scale --replicas=2: lb-4, lb-3, lb-2 stop gracefully (after taking writes just
    #    before), and the two nodes left hold every acknowledged write.
    await writes.write(kubelet, "lb-4", 50)
    await writes.write(kubelet, "lb-3", 50)
    await writes.write(kubelet, "lb-2", 50)
    await scale(cluster, 2)
    await wait_for(lambda: set(kubelet.pods) == {"lb-0", "lb-1"}, timeout=45, kubelet=kubelet,
                   what="pods lb-2..4 to be terminated and deleted")
    assert [pod.name for pod in kubelet.removed] == ["lb-4", "lb-3", "lb-2"]
    assert all(pod.exits == [0] for pod in kubelet.removed), {p.name: p.exits for p in kubelet.removed}
    assert cluster.names(resources.PODS) == {"lb-0", "lb-1"}
    await wait_for(lambda: settled(cluster, 2), timeout=20, kubelet=kubelet,
                   what="status: 2 members, readyReplicas 2, phase Ready")
    for pod in ("lb-0", "lb-1"):
        assert await holdings(kubelet, pod) == writes.expected, f"{pod} lost acknowledged writes"
    found = await digests(kubelet, ["lb-0", "lb-1"])
    assert found["lb-0"] == found["lb-1"], found
    for pod, other in (("lb-0", "lb-1"), ("lb-1", "lb-0")):  # membership is refreshed every second
        await wait_for(lambda pod=pod, other=other: _sees(kubelet, pod, {other}, everyone=True), timeout=10,
                       kubelet=kubelet, what=f"{pod} to drop the removed pods from its members")

    # Throughout, the published counts never claimed more ready members than replicas.
    inconsistent = [(s["phase"], s["replicas"], s["readyReplicas"]) for s in statuses_seen(cluster)
                    if "replicas" in s and s["readyReplicas"] > s["replicas"]]
    assert not inconsistent, f"statuses with readyReplicas > replicas: {inconsistent}"


def _down(cluster: Cluster, pod: str) -> dict[str, Any] | None:
    status = status_of(cluster)
    member = next((m for m in status.get("members") or [] if m["pod"] == pod), {})
    if status.get("phase") == "Degraded" and member.get("ready") is False and member.get("state") == "unreachable":
        return status
    return None


def _new_events(cluster: Cluster, before: set[str], *, until: str) -> list[dict[str, Any]] | None:
    """The phase-change Events posted since ``before``, once the last of them has reason ``until``."""
    posted = [e for e in events(cluster) if e["metadata"]["name"] not in before and e["reason"] in PHASES]
    return posted if posted and posted[-1]["reason"] == until else None


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


async def _sees(kubelet: Kubelet, pod: str, others: set[str], *, everyone: bool = False) -> list[dict[str, Any]]:
    """Assert that ``pod`` lists exactly ``others`` as reachable members (as members at all: ``everyone``)."""
    members = (await node_info(kubelet, pod))["members"]
    names = sorted(m["name"] for m in members if m["reachable"] or everyone)
    assert names == sorted(others), f"{pod} sees {members}"
    return members


async def _holds(kubelet: Kubelet, pod: str, writes: Writes) -> dict[str, dict[str, int]] | None:
    held = await holdings(kubelet, pod)
    return held if held == writes.expected else None


def _phases(statuses: list[dict[str, Any]]) -> list[str]:
    """The distinct consecutive phases of a status history."""
    phases: list[str] = []
    for status in statuses:
        phase = status.get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
    return phases
