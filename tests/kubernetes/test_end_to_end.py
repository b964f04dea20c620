"""
The cluster as a user sees it: ``kubectl apply`` a LeaderboardCluster, use it, ``kubectl scale``
it, lose a pod, ask for a pod that does not fit, lose the node, scale it down. The operator runs
embedded in the test loop against kmock (behaving as a real API server where the operator can
tell, see ``tests/operator/apiserver.py``); the :class:`Kubelet` harness plays the scheduler,
the StatefulSet controller, the node lifecycle controller and the kubelet, turning the
StatefulSet into real node processes on 127.0.0.x, and the nodes find each other through the
emulated Kubernetes API (kubernetes discovery).

The spec asks for ``cpu: "0.5"`` (stored as ``500m``: no drift may follow) and a server API key
from a Secret (the nodes refuse requests without it; the operator reads them from ``/readyz``).

One scenario, because each cluster start costs seconds of a 2-core machine; each step records
the phases the cluster's status went through and the events the operator posted, and asserts
them, with what a user would check at that point.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from leaderboard_client import LeaderboardClient
from leaderboard_operator import resources

from ..harness import all_records
from ..operator.conftest import NAMESPACE, Cluster, RunningOperator, kmock_key
from .kubelet import Kubelet, wait_for
from .kubelet import call as call_with

T = TypeVar("T")

NAME = "lb"
SELECTOR = f"app.kubernetes.io/name=leaderboard-node,app.kubernetes.io/instance={NAME}"
BOARDS = ("global", "coins")
SERVER_KEY = "e2e-server-key-0123456789abcdef"
SPEC = {"replicas": 3, "resources": {"requests": {"cpu": "0.5"}},
        "auth": {"serverKeySecret": {"name": "lb-keys", "key": "server-key"}}}


async def call(url: str, fn: Callable[[LeaderboardClient], T], *, timeout: float = 10.0) -> T:
    return await call_with(url, fn, timeout=timeout, api_key=SERVER_KEY)


# ----------------------------------------------------------------------------- helpers

def cr(cluster: Cluster) -> dict[str, Any]:
    return cluster.get(resources.CLUSTERS, NAME) or {}


def status_of(cluster: Cluster) -> dict[str, Any]:
    return cr(cluster).get("status") or {}


def statuses_seen(cluster: Cluster) -> list[dict[str, Any]]:
    """Every status the CR has had, in order (kmock keeps each version of an object)."""
    try:
        history = cluster.kmock.objects[kmock_key(resources.CLUSTERS), NAMESPACE, NAME].history
    except KeyError:
        return []  # not created yet
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
    await cluster.patch(resources.CLUSTERS, NAME, {"spec": {"replicas": replicas}}, subresource="scale")
    assert cr(cluster)["spec"]["replicas"] == replicas


@dataclasses.dataclass
class Step:
    """What the status and the events did from one point on: the user's view of one step."""

    cluster: Cluster
    statuses: int
    events: set[str]

    @classmethod
    def start(cls, cluster: Cluster) -> Step:
        return cls(cluster, len(statuses_seen(cluster)) - 1, {e["metadata"]["name"] for e in events(cluster)})

    def phases(self) -> list[str]:
        return _phases(statuses_seen(self.cluster)[max(self.statuses, 0):])

    def statuses_since(self) -> list[dict[str, Any]]:
        return statuses_seen(self.cluster)[max(self.statuses, 0):]

    def posted(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in events(self.cluster) if e["metadata"]["name"] not in self.events]

    async def posted_until(self, kubelet: Kubelet, last: tuple[str, str]) -> list[tuple[str, str]]:
        """The events posted since the step began, once the last of them is ``last`` (events
        reach the API a little after the status that caused them)."""
        def check() -> list[tuple[str, str]] | None:
            posted = [e for e in self.posted() if e[1] not in ("Reconciled",)]
            assert posted and posted[-1] == last, posted
            return posted
        return await wait_for(check, timeout=10, kubelet=kubelet, what=f"the events of the step, up to {last}")

    def messages(self, reason: str) -> list[str]:
        return [e["message"] for e in events(self.cluster)
                if e["metadata"]["name"] not in self.events and e["reason"] == reason]


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

@pytest.mark.timeout(240)
async def test_a_user_applies_scales_crashes_overfills_loses_the_node_and_shrinks_a_cluster(
    cluster: Cluster, operator: RunningOperator, kubelet: Kubelet,
) -> None:
    writes = Writes()
    await cluster.request("POST", resources.SECRETS.url(namespace=NAMESPACE), json={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lb-keys", "namespace": NAMESPACE},
        "data": {"server-key": base64.b64encode(SERVER_KEY.encode()).decode()}})

    # 1. kubectl apply: three real nodes start, find each other through the API, turn ready.
    step = Step.start(cluster)
    await cluster.apply_cluster(NAME, SPEC)
    first = [f"{NAME}-{i}" for i in range(3)]
    await wait_for(lambda: kubelet.ready(*first), timeout=40, kubelet=kubelet,
                   what="pods lb-0..2 to run a node each and pass their readiness probe")
    for pod in first:
        info = (await node_info(kubelet, pod))["node"]
        assert info["name"] == pod  # from the pod's fieldRef
        # Its peers know it by the certificate the operator signed for it (node identities, on by default).
        assert info["identity"]["dns_name"] == f"{pod}.{NAME}-peers.{NAMESPACE}.svc", info["identity"]
        assert info["identity"]["certificates_issued"] == 1, info["identity"]
        members = await wait_for(lambda pod=pod: _sees(kubelet, pod, set(first) - {pod}), timeout=10,
                                 kubelet=kubelet, what=f"{pod} to list the two others as reachable members")
        assert {m["address"] for m in members} == {
            f"{kubelet.pod(m['name']).ip}:{kubelet.peer_port}" for m in members}
    async with aiohttp.ClientSession() as session:  # the key from the Secret is wired into the nodes
        async with session.get(f"{kubelet.pod('lb-0').url}/v1/leaderboards") as response:
            assert response.status == 401
    pods_path = resources.PODS.url(namespace=NAMESPACE)
    watches = [r for r in cluster.kmock if r.method.value == "GET" and r.url.path == pods_path
               and r.params.get("watch") == "true" and r.params.get("labelSelector") == SELECTOR]
    assert len(watches) >= 3, "each node watches its pods through the Kubernetes API"
    signed = {request["spec"]["extra"]["authentication.kubernetes.io/pod-name"][0]
              for (resource, _, _), request in ((key, obj.raw) for key, obj in cluster.kmock.objects.items())
              if resource == kmock_key(resources.CSRS) and (request.get("status") or {}).get("certificate")}
    assert signed == set(first), "each pod asked for its certificate itself, and got it"

    status = await wait_for(lambda: settled(cluster, 3), timeout=20, kubelet=kubelet,
                            what="status: 3 members, readyReplicas 3, phase Ready")
    assert status["selector"] == SELECTOR
    assert [m["ip"] for m in status["members"]] == [kubelet.pod(p).ip for p in first]
    phases = step.phases()
    assert phases[0] == "Pending" and phases[-1] == "Ready" and set(phases) <= {"Pending", "Resyncing", "Ready"}, phases
    posted = await step.posted_until(kubelet, ("Normal", "Ready"))
    assert all(kind == "Normal" for kind, _ in posted), posted

    await writes.setup(kubelet, "lb-0")
    await writes.write(kubelet, "lb-0", 200)
    for pod in ("lb-1", "lb-2"):
        held = await wait_for(lambda pod=pod: _holds(kubelet, pod, writes), timeout=15, kubelet=kubelet,
                              what=f"{pod} to serve what was written through lb-0")
        assert held == writes.expected

    # 2. kubectl scale --replicas=5: Scaling while the new pods full-sync from a ready peer.
    step = Step.start(cluster)
    await scale(cluster, 5)
    await wait_for(lambda: kubelet.ready("lb-3", "lb-4"), timeout=40, kubelet=kubelet,
                   what="pods lb-3 and lb-4 to run and pass their readiness probe")
    for pod in ("lb-3", "lb-4"):
        info = await node_info(kubelet, pod)
        assert info["node"]["full_syncs_taken"] >= 1, f"{pod} started empty: it must full-sync, got {info['node']}"
        assert await holdings(kubelet, pod) == writes.expected, f"{pod} after its full sync"
    await wait_for(lambda: settled(cluster, 5), timeout=20, kubelet=kubelet,
                   what="status: 5 members, readyReplicas 5, phase Ready")
    phases = step.phases()
    assert phases[:2] == ["Ready", "Scaling"] and phases[-1] == "Ready", phases
    assert set(phases) <= {"Ready", "Scaling", "Resyncing"}, phases  # starting pods are progress, not trouble
    posted = await step.posted_until(kubelet, ("Normal", "Ready"))
    assert ("Normal", "Scaling") in posted and not [kind for kind, _ in posted if kind == "Warning"], posted
    assert not [s for s in step.statuses_since() if s.get("observedGeneration") == 2 and s.get("phase") == "Ready"
                and s.get("readyReplicas", 0) < 5], "Ready claimed for generation 2 before its pods were"
    for pod in [f"{NAME}-{i}" for i in range(5)]:  # each node found the new pods through its watch
        await wait_for(lambda pod=pod: _sees(kubelet, pod, {f"{NAME}-{i}" for i in range(5)} - {pod}),
                       timeout=10, kubelet=kubelet, what=f"{pod} to list the four others as reachable members")
    await writes.write(kubelet, "lb-4", 100)  # the new nodes take writes too
    await wait_for(lambda: converged(kubelet, list(kubelet.pods)), timeout=20, kubelet=kubelet,
                   what="equal digests on all five nodes")

    # 3. A crash: lb-1's process is SIGKILLed; the kubelet holds it down while writes go on,
    #    then restarts it in the same pod (same IP, same volume, restartCount 1). Its readiness
    #    probe waits initialDelaySeconds, so the operator sees it resync.
    step = Step.start(cluster)
    ip_before = kubelet.pod("lb-1").ip
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
    status = await wait_for(lambda: settled(cluster, 5), timeout=40, kubelet=kubelet,
                            what="status back to Ready with 5 members after lb-1's restart")
    assert status["members"][1]["restarts"] == 1
    assert status["members"][1]["ip"] == ip_before == kubelet.pod("lb-1").ip
    info = (await node_info(kubelet, "lb-1"))["node"]
    assert info["durability"]["recovery"]["replayed_batches"] >= 1, info["durability"]
    assert await holdings(kubelet, "lb-1") == writes.expected, "lb-1 after its restart"
    assert step.phases() == ["Ready", "Degraded", "Resyncing", "Ready"], step.phases()
    posted = await step.posted_until(kubelet, ("Normal", "Ready"))
    assert posted[0] == ("Warning", "Degraded"), posted
    assert ("Normal", "Resyncing") in posted and "lb-1" in step.messages("Degraded")[0], posted

    # 4. A pod that does not fit: scale to 6 on a node with room for 5; the scheduler leaves
    #    lb-5 unscheduled, and says why. Scaling back to 5 removes it.
    step = Step.start(cluster)
    await scale(cluster, 6)
    status = await wait_for(lambda: _degraded_by(cluster, "Unschedulable"), timeout=15, kubelet=kubelet,
                            what="phase Degraded, reason Unschedulable")
    assert kubelet.unscheduled() == ["lb-5"]
    assert "Insufficient cpu" in _condition(status, "Degraded")["message"]
    assert status["members"][5]["problem"].startswith("Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.")
    await wait_for(lambda: ("Warning", "Unschedulable") in step.posted(), timeout=10, kubelet=kubelet,
                   what="a Warning event Unschedulable")
    assert "lb-5" in step.messages("Unschedulable")[0] and "Insufficient cpu" in step.messages("Unschedulable")[0]
    await scale(cluster, 5)
    await wait_for(lambda: settled(cluster, 5), timeout=20, kubelet=kubelet, what="status back to Ready with 5")
    phases = step.phases()
    assert phases[0] == "Ready" and "Degraded" in phases and phases[-1] == "Ready", phases
    assert set(phases) <= {"Ready", "Scaling", "Degraded"}, phases
    posted = await step.posted_until(kubelet, ("Normal", "Ready"))
    assert posted.count(("Warning", "Unschedulable")) == 1, posted  # once, not per poll
    assert ("Warning", "Degraded") in posted, posted

    # 5. A full outage: the node stops heartbeating and every pod turns Ready=False.
    step = Step.start(cluster)
    async with kubelet.node_not_ready():
        status = await wait_for(lambda: _degraded_by(cluster, "NoReplicasReady"), timeout=15, kubelet=kubelet,
                                what="phase Degraded, reason NoReplicasReady")
        assert status["readyReplicas"] == 0
        assert _condition(status, "Progressing")["status"] == "False"
    await wait_for(lambda: settled(cluster, 5), timeout=30, kubelet=kubelet, what="status back to Ready with 5")
    phases = step.phases()
    assert phases[:2] == ["Ready", "Degraded"] and phases[-1] == "Ready" and "Pending" not in phases, phases
    posted = await step.posted_until(kubelet, ("Normal", "Ready"))
    assert posted[0] == ("Warning", "Degraded"), posted
    # (The controller marks the pods one by one: the first Warning may name the first of them.)
    assert step.messages("Degraded")[0].startswith(("0/5 replicas ready", "on a node that is not ready: lb-")), (
        step.messages("Degraded"))

    # 6. kubectl scale --replicas=2: lb-4, lb-3, lb-2 stop gracefully (after taking writes just
    #    before), and the two nodes left hold every acknowledged write.
    step = Step.start(cluster)
    await writes.write(kubelet, "lb-4", 50)
    await writes.write(kubelet, "lb-3", 50)
    await writes.write(kubelet, "lb-2", 50)
    await scale(cluster, 2)
    await wait_for(lambda: set(kubelet.pods) == {"lb-0", "lb-1"}, timeout=45, kubelet=kubelet,
                   what="pods lb-2..4 to be terminated and deleted")
    assert [pod.name for pod in kubelet.removed] == ["lb-5", "lb-4", "lb-3", "lb-2"]
    assert all(pod.exits == [0] for pod in kubelet.removed[1:]), {p.name: p.exits for p in kubelet.removed}
    assert cluster.names(resources.PODS) == {"lb-0", "lb-1"}
    await wait_for(lambda: settled(cluster, 2), timeout=20, kubelet=kubelet,
                   what="status: 2 members, readyReplicas 2, phase Ready")
    assert step.phases() == ["Ready", "Scaling", "Ready"], step.phases()
    assert await step.posted_until(kubelet, ("Normal", "Ready")) == [("Normal", "Scaling"), ("Normal", "Ready")]
    for pod in ("lb-0", "lb-1"):
        assert await holdings(kubelet, pod) == writes.expected, f"{pod} lost acknowledged writes"
    found = await digests(kubelet, ["lb-0", "lb-1"])
    assert found["lb-0"] == found["lb-1"], found
    for pod, other in (("lb-0", "lb-1"), ("lb-1", "lb-0")):  # membership is refreshed every second
        await wait_for(lambda pod=pod, other=other: _sees(kubelet, pod, {other}, everyone=True), timeout=10,
                       kubelet=kubelet, what=f"{pod} to drop the removed pods from its members")

    # Throughout: the published counts never claimed more ready members than replicas, and the
    # quantities the API server normalised (0.5 -> 500m) never looked like drift.
    inconsistent = [(s["phase"], s["replicas"], s["readyReplicas"]) for s in statuses_seen(cluster)
                    if "replicas" in s and s["readyReplicas"] > s["replicas"]]
    assert not inconsistent, f"statuses with readyReplicas > replicas: {inconsistent}"
    assert cluster.get(resources.STATEFULSETS, NAME)["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m"}}
    assert not [e for e in events(cluster) if e["reason"] == "DriftCorrected"]


def _degraded_by(cluster: Cluster, reason: str) -> dict[str, Any] | None:
    status = status_of(cluster)
    if status.get("phase") == "Degraded" and _condition(status, "Degraded").get("reason") == reason:
        return status
    return None


def _down(cluster: Cluster, pod: str) -> dict[str, Any] | None:
    status = status_of(cluster)
    member = next((m for m in status.get("members") or [] if m["pod"] == pod), {})
    if status.get("phase") == "Degraded" and member.get("ready") is False and member.get("state") == "unreachable":
        return status
    return None


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


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
