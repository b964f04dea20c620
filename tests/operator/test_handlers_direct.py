"""
The handler functions called directly (no operator running), twice in a row as kopf may do:
the second call must find nothing to do, and failures must land in ``status.lastError``.
"""

from __future__ import annotations

import asyncio

import kopf
import pytest

from leaderboard_operator import Context, handlers, resources
from leaderboard_operator.settings import OperatorConfig

from .conftest import NAMESPACE, ApiServer, Cluster, FakeMembers, handler_kwargs, writes


async def test_calling_the_children_handler_twice_writes_nothing_the_second_time(
        cluster: Cluster, k8s: ApiServer, context: Context) -> None:
    raw = await cluster.apply_cluster("lb")
    first = handler_kwargs(raw)
    await handlers.reconcile(context=context, trigger="create", **first)
    created = writes(k8s)
    # the cluster, the operator's identity CA, then the children (with the NetworkPolicy, the CA
    # bundle and the nodes' ClusterRoleBinding)
    assert len([w for w in created if w.startswith("POST")]) == 1 + 1 + 12
    status = dict(first["patch"].status)  # the new spec's status, at once
    assert (status["selector"], status["phase"], status["observedGeneration"], status["members"]) == (
        "app.kubernetes.io/name=leaderboard-node,app.kubernetes.io/instance=lb", "Pending", 1, [])

    token = cluster.get(resources.SECRETS, "lb-peer-token")
    await handlers.reconcile(context=context, trigger="create", **handler_kwargs(raw))
    # The token Secret, which the operator may create but not read, is created again: a 409.
    assert [w for w in writes(k8s) if "/secrets" not in w] == [w for w in created if "/secrets" not in w]
    assert cluster.get(resources.SECRETS, "lb-peer-token") == token


async def test_calling_the_delete_handler_twice_is_harmless(cluster: Cluster, context: Context) -> None:
    raw = await cluster.apply_cluster("lb")
    await handlers.reconcile(context=context, trigger="create", **handler_kwargs(raw))
    assert cluster.names(resources.STATEFULSETS) == {"lb"}
    await handlers.delete(context=context, **handler_kwargs(raw))
    await handlers.delete(context=context, **handler_kwargs(raw))
    for res in (resources.STATEFULSETS, resources.SERVICES, resources.CONFIGMAPS,
                resources.ROLES, resources.ROLEBINDINGS, resources.SERVICEACCOUNTS, resources.PDBS):
        assert cluster.names(res) == set(), res.kind
    assert cluster.names(resources.SECRETS) == {"lb-peer-token"}  # not the operator's to delete
    await cluster.delete(resources.CLUSTERS, "lb")
    assert cluster.names(resources.SECRETS) == set()  # the garbage collector's


async def test_calling_the_members_handler_twice_patches_the_status_once(
        cluster: Cluster, members: FakeMembers, context: Context) -> None:
    members.answers[0] = members.report("lb-0")
    raw = await cluster.apply_cluster("lb", {"replicas": 1})
    await cluster.add_pod("lb", 0, ip="127.0.0.1", port=members.ports[0])
    first = handler_kwargs(raw)
    await handlers.monitor(context=context, **first)
    status = dict(first["patch"].status)
    assert status["phase"] == "Ready"
    assert status["members"][0]["pod"] == "lb-0"

    second = handler_kwargs({**raw, "status": status})
    await handlers.monitor(context=context, **second)
    assert not second["patch"]


async def test_a_foreign_object_in_the_way_is_reported_not_overwritten(cluster: Cluster, context: Context) -> None:
    owner = await cluster.request("POST", resources.CONFIGMAPS.url(namespace=NAMESPACE), json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": NAMESPACE}})
    foreign = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "lb-config", "namespace": NAMESPACE, "ownerReferences": [{
                   "apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": owner["metadata"]["uid"],
                   "controller": True}]},
               "data": {"node.yaml": "mine"}}
    await cluster.request("POST", resources.CONFIGMAPS.url(namespace=NAMESPACE), json=foreign)
    raw = await cluster.apply_cluster("lb")
    for _ in range(2):
        kwargs = handler_kwargs(raw)
        with pytest.raises(kopf.TemporaryError):
            await handlers.reconcile(context=context, trigger="create", **kwargs)
        assert kwargs["patch"].status["lastError"]["reason"] == "OwnershipConflict"
        assert "ConfigMap/lb-config" in kwargs["patch"].status["lastError"]["message"]
    assert cluster.get(resources.CONFIGMAPS, "lb-config")["data"] == {"node.yaml": "mine"}


async def test_an_unreachable_api_is_a_temporary_error_in_the_status(cluster: Cluster, operator_config: OperatorConfig) -> None:
    raw = await cluster.apply_cluster("lb")
    context = Context.create(operator_config)
    context.kube.use(kopf.ConnectionInfo(server="http://127.0.0.1:9"))  # the discard port: refused
    try:
        for _ in range(2):
            kwargs = handler_kwargs(raw)
            with pytest.raises(kopf.TemporaryError) as err:
                await handlers.reconcile(context=context, trigger="create", **kwargs)
            assert err.value.delay == operator_config.retry_delay
            assert kwargs["patch"].status["lastError"]["reason"] == "ReconcileFailed"
    finally:
        await context.close()


async def test_a_successful_reconciliation_clears_the_last_error(cluster: Cluster, context: Context) -> None:
    raw = await cluster.apply_cluster("lb")
    raw = {**raw, "status": {"lastError": {"time": "2024-01-01T00:00:00Z", "reason": "ReconcileFailed",
                                           "message": "boom"}}}
    kwargs = handler_kwargs(raw)
    await handlers.reconcile(context=context, trigger="resume", **kwargs)
    assert kwargs["patch"].status["lastError"] is None


async def test_an_invalid_spec_is_a_permanent_error(cluster: Cluster, context: Context) -> None:
    raw = await cluster.apply_cluster("lb", {"replicas": -2}, admission=False)
    kwargs = handler_kwargs(raw)
    with pytest.raises(kopf.PermanentError, match="replicas"):
        await handlers.reconcile(context=context, trigger="create", **kwargs)
    assert kwargs["patch"].status["lastError"]["reason"] == "InvalidSpec"


async def test_a_too_long_name_is_a_permanent_error(cluster: Cluster, context: Context) -> None:
    raw = await cluster.apply_cluster("x" * 53, admission=False)
    with pytest.raises(kopf.PermanentError, match="at most 52"):
        await handlers.reconcile(context=context, trigger="create", **handler_kwargs(raw))


async def test_a_drift_check_of_a_cluster_being_deleted_writes_nothing(
        cluster: Cluster, k8s: ApiServer, context: Context) -> None:
    raw = await cluster.apply_cluster("lb")
    before = writes(k8s)
    await handlers.reconcile(context=context, trigger="drift", stopped=True, **handler_kwargs(raw))
    deleting = {**raw, "metadata": {**raw["metadata"], "deletionTimestamp": "2025-01-01T00:00:00Z"}}
    await handlers.reconcile(context=context, trigger="drift", **handler_kwargs(deleting))
    assert writes(k8s) == before


async def test_a_drift_check_waits_for_a_deletion_in_progress(cluster: Cluster, context: Context) -> None:
    raw = await cluster.apply_cluster("lb")
    await handlers.reconcile(context=context, trigger="create", **handler_kwargs(raw))

    class Stopper:  # kopf's `stopped` flag: set when the deletion begins
        flag = False

        def __bool__(self) -> bool:
            return self.flag

    stopper = Stopper()
    async with context.lock(NAMESPACE, "lb"):  # as if the deletion handler were running
        drift = asyncio.create_task(handlers.reconcile(context=context, trigger="drift", stopped=stopper,
                                                       **handler_kwargs(raw)))
        await asyncio.sleep(0)  # the drift check starts and waits for the lock
        stopper.flag = True
        for res, name in ((resources.STATEFULSETS, "lb"), (resources.CONFIGMAPS, "lb-config")):
            await cluster.delete(res, name)
    await drift
    assert cluster.get(resources.STATEFULSETS, "lb") is None
    assert cluster.get(resources.CONFIGMAPS, "lb-config") is None


async def test_a_child_the_api_rejects_is_a_permanent_error(cluster: Cluster, k8s: ApiServer, context: Context) -> None:
    k8s[f"post {resources.STATEFULSETS.url(namespace=NAMESPACE)}"] << 422 << {
        "kind": "Status", "code": 422, "reason": "Invalid", "message": "spec.template.spec.tolerations: Invalid value"}
    raw = await cluster.apply_cluster("lb")
    kwargs = handler_kwargs(raw)
    with pytest.raises(kopf.PermanentError, match="tolerations"):
        await handlers.reconcile(context=context, trigger="create", **kwargs)
    assert kwargs["patch"].status["lastError"]["reason"] == "ReconcileFailed"
    assert "422 Invalid" in kwargs["patch"].status["lastError"]["message"]
