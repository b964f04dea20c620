"""The operator, embedded and running against kmock: children are created, patched, repaired, deleted."""

from __future__ import annotations

import base64

import kubernetes_validate
import yaml

from leaderboard_operator import resources
from leaderboard_operator.handlers import FINALIZER

from .conftest import NAMESPACE, OPERATOR_NAMESPACE, ApiServer, Cluster, RunningOperator, eventually, kmock_key, writes

CHILDREN = [
    (resources.SERVICES, "lb-peers"),
    (resources.SERVICES, "lb"),
    (resources.CONFIGMAPS, "lb-config"),
    (resources.SERVICEACCOUNTS, "lb-node"),
    (resources.ROLES, "lb-node"),
    (resources.ROLEBINDINGS, "lb-node"),
    (resources.STATEFULSETS, "lb"),
    (resources.PDBS, "lb"),
    (resources.SECRETS, "lb-peer-token"),
    (resources.NETWORKPOLICIES, "lb"),
    (resources.CONFIGMAPS, "lb-identity-ca"),
]


def all_children_exist(cluster: Cluster) -> bool:
    return all(cluster.get(res, name) is not None for res, name in CHILDREN)


def cluster_scoped(cluster: Cluster, resource: resources.Resource) -> list[dict]:
    """The live objects of a cluster-scoped resource."""
    return [obj.raw for (res, _, _), obj in cluster.kmock.objects.items()
            if res == kmock_key(resource) and not obj.deleted]


async def test_applying_a_cluster_creates_all_children_owned_by_it(cluster: Cluster, operator: RunningOperator) -> None:
    body = await cluster.apply_cluster("lb")
    await eventually(lambda: all_children_exist(cluster), what="all children of lb")
    for res, name in CHILDREN:
        child = cluster.get(res, name)
        assert child is not None
        refs = child["metadata"]["ownerReferences"]
        assert refs == [{
            "apiVersion": "leaderboard-cluster.dev/v1alpha1", "kind": "LeaderboardCluster", "name": "lb",
            "uid": body["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
        }], f"{res.kind}/{name}"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "leaderboard-operator"
        assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == "lb"
        assert child["metadata"]["namespace"] == NAMESPACE
        kubernetes_validate.validate(child, "1.30", strict=True)


async def test_applying_a_cluster_creates_a_headless_peer_service(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb")
    service = await eventually(lambda: cluster.get(resources.SERVICES, "lb-peers"), what="Service lb-peers")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert {"name": "peer", "port": 7351, "targetPort": "peer", "protocol": "TCP"} in service["spec"]["ports"]


async def test_applying_a_cluster_renders_its_settings_into_the_children(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {
        "replicas": 5, "image": "example/leaderboard:1.2", "sync": {"batchSize": 250, "compression": False},
        "service": {"type": "NodePort", "port": 8000}, "storage": {"size": "5Gi"},
    })
    sts = await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), what="StatefulSet lb")
    assert sts["spec"]["replicas"] == 5
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "example/leaderboard:1.2"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    client = await eventually(lambda: cluster.get(resources.SERVICES, "lb"), what="Service lb")
    assert client["spec"]["type"] == "NodePort"
    assert client["spec"]["ports"][0]["port"] == 8000
    config = await eventually(lambda: cluster.get(resources.CONFIGMAPS, "lb-config"), what="ConfigMap lb-config")
    node_yaml = yaml.safe_load(config["data"]["node.yaml"])
    assert node_yaml["cluster"]["leaderboard_sync"]["batch_size"] == 250
    assert node_yaml["cluster"]["leaderboard_sync"]["compression"] is False


async def test_the_generated_peer_token_is_kept_across_reconciliations(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb")
    secret = await eventually(lambda: cluster.get(resources.SECRETS, "lb-peer-token"), what="Secret lb-peer-token")
    token = base64.b64decode(secret["data"]["token"])
    assert len(token) >= 32
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 4}})
    await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb")["spec"]["replicas"] == 4, what="the scale-up")
    assert cluster.get(resources.SECRETS, "lb-peer-token")["data"]["token"] == secret["data"]["token"]


async def test_a_cluster_with_its_own_token_secret_gets_no_generated_one(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {"auth": {"peerTokenSecret": "my-token"}})
    sts = await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), what="StatefulSet lb")
    sources = sts["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    assert sources[1]["secret"]["name"] == "my-token"
    assert cluster.get(resources.SECRETS, "lb-peer-token") is None


async def test_scaling_a_cluster_changes_the_statefulset_replicas(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb")
    await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), what="StatefulSet lb")
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 5}})
    await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb")["spec"]["replicas"] == 5,
                     what="StatefulSet lb scaled to 5")


async def test_a_spec_change_patches_the_children(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {"tolerations": [{"key": "a", "operator": "Exists"}]})
    await eventually(lambda: all_children_exist(cluster), what="all children of lb")
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {
        "image": "leaderboard-node:2", "sync": {"batchSize": 7}, "service": {"port": 9000},
        "podDisruptionBudget": {"maxUnavailable": 2}, "tolerations": None,
    }})

    def patched() -> bool:
        sts = cluster.get(resources.STATEFULSETS, "lb")
        node_yaml = yaml.safe_load(cluster.get(resources.CONFIGMAPS, "lb-config")["data"]["node.yaml"])
        return (sts["spec"]["template"]["spec"]["containers"][0]["image"] == "leaderboard-node:2"
                and "tolerations" not in sts["spec"]["template"]["spec"]
                and node_yaml["cluster"]["leaderboard_sync"]["batch_size"] == 7
                and cluster.get(resources.SERVICES, "lb")["spec"]["ports"][0]["port"] == 9000
                and cluster.get(resources.PDBS, "lb")["spec"]["maxUnavailable"] == 2)

    await eventually(patched, what="the children patched to the new spec")


async def test_a_config_change_rolls_the_pods(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb")
    sts = await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), what="StatefulSet lb")
    before = sts["spec"]["template"]["metadata"]["annotations"]["leaderboard-cluster.dev/config-hash"]
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"sync": {"backlogSize": 10}}})
    await eventually(
        lambda: cluster.get(resources.STATEFULSETS, "lb")["spec"]["template"]["metadata"]["annotations"][
            "leaderboard-cluster.dev/config-hash"] != before,
        what="a new config hash on the pod template")


async def test_a_deleted_child_is_recreated(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb")
    await eventually(lambda: all_children_exist(cluster), what="all children of lb")
    await cluster.delete(resources.STATEFULSETS, "lb")
    await cluster.delete(resources.SERVICES, "lb-peers")
    assert cluster.get(resources.STATEFULSETS, "lb") is None
    await eventually(lambda: all_children_exist(cluster), what="the deleted children to come back")


async def test_an_edited_child_is_reverted(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb")
    await eventually(lambda: all_children_exist(cluster), what="all children of lb")
    await cluster.patch(resources.STATEFULSETS, "lb", {"spec": {"replicas": 1}})
    await cluster.patch(resources.CONFIGMAPS, "lb-config", {"data": {"node.yaml": "tampered: true\n"}})
    await eventually(
        lambda: cluster.get(resources.STATEFULSETS, "lb")["spec"]["replicas"] == 3
        and "tampered" not in cluster.get(resources.CONFIGMAPS, "lb-config")["data"]["node.yaml"],
        what="the edits reverted")


async def test_deleting_a_cluster_leaves_nothing_behind(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb")
    await eventually(lambda: all_children_exist(cluster), what="all children of lb")
    await eventually(lambda: FINALIZER in (cluster.get(resources.CLUSTERS, "lb")["metadata"].get("finalizers") or []),
                     what="the operator's finalizer on lb")
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "data-lb-0", "namespace": NAMESPACE,
                          "labels": {"app.kubernetes.io/name": "leaderboard-node", "app.kubernetes.io/instance": "lb"}}}
    await cluster.request("POST", resources.PVCS.url(namespace=NAMESPACE), json=claim)
    await cluster.delete(resources.CLUSTERS, "lb")
    await eventually(lambda: cluster.get(resources.CLUSTERS, "lb") is None, what="lb released by its finalizer")
    leftovers = {(res.kind, name) for res in resources.ALL if res.namespaced and res is not resources.EVENTS
                 for name in cluster.names(res)}
    assert leftovers == set()
    assert cluster_scoped(cluster, resources.CLUSTERROLEBINDINGS) == []  # not owned: deleted by the operator


async def test_deleting_one_cluster_keeps_another(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb")
    await cluster.apply_cluster("other")
    await eventually(lambda: all_children_exist(cluster) and cluster.get(resources.STATEFULSETS, "other"),
                     what="both clusters' children")
    await cluster.delete(resources.CLUSTERS, "lb")
    await eventually(lambda: cluster.get(resources.CLUSTERS, "lb") is None, what="lb deleted")
    assert cluster.names(resources.STATEFULSETS) == {"other"}
    assert cluster.names(resources.CONFIGMAPS) == {"other-config", "other-identity-ca"}
    assert {b["metadata"]["name"] for b in cluster_scoped(cluster, resources.CLUSTERROLEBINDINGS)} == {
        "leaderboard-node-csr.lb-test.other"}


async def test_an_invalid_spec_is_reported_in_the_status(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {"replicas": 0}, admission=False)
    error = await eventually(lambda: cluster.get(resources.CLUSTERS, "lb")["status"]["lastError"],
                             what="status.lastError")
    assert error["reason"] == "InvalidSpec"
    assert "replicas" in error["message"]
    assert cluster.get(resources.STATEFULSETS, "lb") is None

    def warning_events() -> list[dict]:
        found = [cluster.get(resources.EVENTS, name) for name in cluster.names(resources.EVENTS)]
        return [e for e in found if e and e["reason"] == "InvalidSpec" and e["type"] == "Warning"]

    events = await eventually(warning_events, what="a Warning Event with reason InvalidSpec")
    assert events[0]["involvedObject"]["name"] == "lb"


async def test_fixing_an_invalid_spec_clears_the_error(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {"replicas": 0}, admission=False)
    await eventually(lambda: cluster.get(resources.CLUSTERS, "lb")["status"]["lastError"], what="status.lastError")
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 2}})
    await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), what="StatefulSet lb after the fix")
    await eventually(lambda: "lastError" not in cluster.get(resources.CLUSTERS, "lb")["status"],
                     what="status.lastError cleared")


def drift_checks(operator: RunningOperator) -> float:
    return operator.context.metrics.reconciles.labels("drift", "success")._value.get()


async def test_quantities_the_api_normalises_are_no_drift(cluster: Cluster, k8s: ApiServer, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"},
                                                     "limits": {"cpu": "1000m", "memory": 2147483648}}})
    await eventually(lambda: all_children_exist(cluster), what="all children of lb")
    container = cluster.get(resources.STATEFULSETS, "lb")["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2147483648"}}
    checks = drift_checks(operator)
    await eventually(lambda: drift_checks(operator) >= checks + 3, what="three more drift checks")
    assert [w for w in writes(k8s) if w.startswith("PATCH") and "/statefulsets/" in w] == []
    assert not [e for e in events(cluster) if e["reason"] == "DriftCorrected"]
    assert 'action="patched"' not in operator.context.metrics.render().decode()


async def test_removing_a_field_from_the_spec_removes_it_at_once_and_a_scale_rolls_nothing(
        cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {"resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
                                       "nodeSelector": {"disk": "ssd", "zone": "a"}})
    sts = await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb"), what="StatefulSet lb")
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"memory": "1Gi"}
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"resources": {"limits": None}, "nodeSelector": {"zone": None}}})

    def template() -> dict:
        return cluster.get(resources.STATEFULSETS, "lb")["spec"]["template"]

    await eventually(lambda: template()["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "250m"}}
                     and template()["spec"]["nodeSelector"] == {"disk": "ssd"}, timeout=3,
                     what="the limits and the zone selector removed from the pod template")
    before = template()
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 4}}, subresource="scale")
    await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb")["spec"]["replicas"] == 4, what="the scale to 4")
    assert template() == before, "a scale changed the pod template: every pod would roll"
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"resources": None}})
    await eventually(lambda: "resources" not in template()["spec"]["containers"][0], timeout=3,
                     what="the resources removed from the container")


def events(cluster: Cluster) -> list[dict]:
    found = [cluster.get(resources.EVENTS, name) for name in cluster.names(resources.EVENTS)]
    return [e for e in found if e]


async def test_a_name_that_is_no_dns_label_creates_nothing_and_is_reported(cluster: Cluster, operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb.x", admission=False)  # as an older CRD, without the name rule, would let in
    error = await eventually(lambda: cluster.get(resources.CLUSTERS, "lb.x")["status"]["lastError"],
                             what="status.lastError of lb.x")
    assert error["reason"] == "InvalidSpec" and "DNS-1035" in error["message"], error
    await eventually(lambda: [e for e in events(cluster) if e["reason"] == "InvalidSpec" and e["type"] == "Warning"],
                     what="a Warning event InvalidSpec")
    created = {(res.kind, name) for res in resources.ALL if res.namespaced and res not in (resources.EVENTS, resources.CLUSTERS)
               for name in cluster.names(res)}
    assert created == set()


async def test_the_crd_refuses_a_name_that_is_no_dns_label(cluster: Cluster) -> None:
    for name in ("lb.x", "9lb", "x" * 53, "Lb"):  # the last is not even a DNS-1123 subdomain
        async with cluster.kmock.request("POST", resources.CLUSTERS.url(namespace=NAMESPACE), json={
                "apiVersion": f"{resources.GROUP}/{resources.VERSION}", "kind": resources.KIND,
                "metadata": {"name": name, "namespace": NAMESPACE}, "spec": {}}) as response:
            assert response.status == 422, name
            assert "DNS-1035" in (await response.json())["message"] or name == "Lb"
    await cluster.apply_cluster("x" * 52)


def verbs_used(k8s: ApiServer) -> dict[tuple[str, str], set[str]]:
    """(API group, resource[/subresource]) -> verbs, of the requests kopf and the operator's client made."""
    used: dict[tuple[str, str], set[str]] = {}
    for request in k8s:
        agent = request.headers.get("User-Agent", "")
        if not (agent.startswith("kopf/") or agent.startswith("leaderboard-operator")) or request.resource is None:
            continue
        if request.resource.plural is None:
            continue  # discovery
        verb = {"GET": "watch" if request.params.get("watch") == "true" else "get" if request.name else "list",
                "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[request.method.value]
        plural = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        used.setdefault((request.resource.group, plural), set()).add(verb)
    return used


async def test_the_operator_uses_only_what_resources_declares(cluster: Cluster, k8s: ApiServer,
                                                              operator: RunningOperator) -> None:
    await cluster.apply_cluster("lb", {"auth": {"serverKeySecret": {"name": "keys"}}})
    await eventually(lambda: all_children_exist(cluster), what="all children of lb")
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 4}}, subresource="scale")
    await cluster.patch(resources.STATEFULSETS, "lb", {"spec": {"replicas": 1}})  # drift
    await eventually(lambda: cluster.get(resources.STATEFULSETS, "lb")["spec"]["replicas"] == 4, what="the drift fixed")
    await cluster.delete(resources.CLUSTERS, "lb")
    await eventually(lambda: cluster.get(resources.CLUSTERS, "lb") is None, what="lb deleted")
    declared = {(res.group, res.plural): res.verbs for res in resources.ALL}
    declared |= {(resources.GROUP, f"{resources.PLURAL}/{sub}"): verbs
                 for sub, verbs in resources.CLUSTER_SUBRESOURCES.items()}
    used = verbs_used(k8s)
    assert used[("", "secrets")] == {"create", "get"}
    secret_reads = {r.url.path for r in k8s if r.resource is not None and r.resource.plural == "secrets"
                    and r.method.value == "GET"}
    assert secret_reads == {f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/secrets/{operator.config.identity_ca_secret}"}
    declared |= {(resources.CSRS.group, f"{resources.CSRS.plural}/{sub}"): verbs
                 for sub, verbs in resources.CSR_SUBRESOURCES.items()}
    declared[("", "secrets")] = resources.SECRETS.verbs | resources.OWN_SECRETS  # its own CA, by name
    undeclared = {key: verbs - declared.get(key, set()) for key, verbs in used.items()
                  if verbs - declared.get(key, set())}
    assert undeclared == {}
