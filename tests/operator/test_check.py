"""``helm test``'s check (``python -m leaderboard_operator.check``) against the emulated API and fake members."""

from __future__ import annotations

import asyncio

import kmock as kmock_lib
import pytest

from leaderboard_operator import check, cli, resources
from leaderboard_operator.metrics import OperatorMetrics

from .conftest import NAMESPACE, ApiServer, Cluster, FakeMembers, kmock_key

DEPLOYMENTS = resources.Resource(group="apps", version="v1", plural="deployments", kind="Deployment")


async def add_operator_deployment(k8s: ApiServer, cluster: Cluster, *, available: int) -> None:
    k8s.resources[kmock_key(DEPLOYMENTS)] = kmock_lib.ResourceInfo(
        kind="Deployment", namespaced=True, verbs={"get", "list", "create", "patch"}, subresources={"status"})
    labels = {"app.kubernetes.io/name": "leaderboard-operator"}
    await cluster.request("POST", DEPLOYMENTS.url(namespace=NAMESPACE), json={
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "lb-leaderboard-operator", "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "operator", "image": "leaderboard-operator:0.1.0"}]}}},
        "status": {"replicas": 1, "availableReplicas": available, "updatedReplicas": 1}})


async def ready_cluster(cluster: Cluster, members: FakeMembers, *, phase: str = "Ready") -> str:
    members.answers[0] = members.report("lb-0")
    await cluster.apply_cluster("lb", {"replicas": 1})
    await cluster.patch(resources.CLUSTERS, "lb", {"status": {"phase": phase, "observedGeneration": 1}},
                        subresource="status")
    return f"http://127.0.0.1:{members.ports[0]}"


async def run_check(k8s: ApiServer, *args: str) -> int:
    return await asyncio.to_thread(check.main, ["--server", str(k8s.url), "--namespace", NAMESPACE,
                                                "--timeout", "1", "--interval", "0.1", *args])


async def test_the_check_passes_for_a_working_operator_and_cluster(
        cluster: Cluster, k8s: ApiServer, members: FakeMembers, capsys: pytest.CaptureFixture[str]) -> None:
    await add_operator_deployment(k8s, cluster, available=1)
    url = await ready_cluster(cluster, members)
    metrics = OperatorMetrics()
    metrics.reconciles.labels("create", "success").inc()
    runner = await cli.serve_metrics(metrics, port=0, host="127.0.0.1")
    try:
        code = await run_check(k8s, "--deployment", "lb-leaderboard-operator", "--cluster", "lb", "--cluster-url", url,
                               "--metrics-url", f"http://127.0.0.1:{runner.addresses[0][1]}/metrics")
    finally:
        await runner.cleanup()
    assert code == 0, capsys.readouterr()
    assert capsys.readouterr().out.count("ok: ") == 4


@pytest.mark.parametrize("problem", ["operator-unavailable", "cluster-not-ready", "node-not-answering"])
async def test_the_check_fails_saying_what_it_saw(
        problem: str, cluster: Cluster, k8s: ApiServer, members: FakeMembers, capsys: pytest.CaptureFixture[str]) -> None:
    await add_operator_deployment(k8s, cluster, available=0 if problem == "operator-unavailable" else 1)
    url = await ready_cluster(cluster, members, phase="Degraded" if problem == "cluster-not-ready" else "Ready")
    if problem == "node-not-answering":
        members.answers[0] = members.report("lb-0", ready=False)
    code = await run_check(k8s, "--deployment", "lb-leaderboard-operator", "--cluster", "lb", "--cluster-url", url)
    error = capsys.readouterr().err
    assert code == 1
    expected = {"operator-unavailable": "0 available", "cluster-not-ready": "phase Degraded",
                "node-not-answering": "/readyz answered 503"}[problem]
    assert expected in error, error
