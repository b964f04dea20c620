"""The test harness's API server does what a real one does to what it is sent (see ``apiserver.py``)."""

from __future__ import annotations

import pytest

from leaderboard_operator import rendering, resources

from .apiserver import canonical_quantity
from .conftest import NAMESPACE, Cluster


@pytest.mark.parametrize("given, stored", [
    ("0.5", "500m"), ("1000m", "1"), ("1024Mi", "1Gi"), ("1536Mi", "1536Mi"), (2, "2"), ("1.5", "1500m"),
    ("100M", "100M"), ("1000k", "1M"), ("0.5Ki", "512"), ("1Gi", "1Gi"), ("250m", "250m"), ("0", "0"),
])
def test_quantities_are_stored_in_canonical_form(given: str | int, stored: str) -> None:
    assert canonical_quantity(given) == stored


async def test_a_statefulset_is_stored_defaulted_with_canonical_quantities(cluster: Cluster) -> None:
    spec = rendering.ClusterSpec.parse({"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"},
                                                      "limits": {"cpu": 1}}}, default_image="img:1")
    child = rendering.render_stateful_set("lb", NAMESPACE, spec)
    stored = await cluster.request("POST", resources.STATEFULSETS.url(namespace=NAMESPACE), json=child.manifest)
    assert stored["metadata"]["generation"] == 1
    assert stored["spec"]["revisionHistoryLimit"] == 10
    container = stored["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1"}}
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["readinessProbe"]["successThreshold"] == 1
    assert stored["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


async def test_a_merge_patch_is_defaulted_again(cluster: Cluster) -> None:
    child = rendering.render_stateful_set("lb", NAMESPACE, rendering.ClusterSpec.parse({}, default_image="img:1"))
    await cluster.request("POST", resources.STATEFULSETS.url(namespace=NAMESPACE), json=child.manifest)
    containers = [{**child.manifest["spec"]["template"]["spec"]["containers"][0],
                   "resources": {"limits": {"memory": "2048Mi"}}}]
    stored = await cluster.patch(resources.STATEFULSETS, "lb", {"spec": {"template": {"spec": {"containers": containers}}}})
    assert stored["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"memory": "2Gi"}}
    assert stored["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"] == "File"
    assert stored["metadata"]["generation"] == 2
    same = await cluster.patch(resources.STATEFULSETS, "lb", {"metadata": {"labels": {"x": "y"}}})
    assert same["metadata"]["generation"] == 2  # metadata is not the spec


async def test_a_service_name_must_be_a_dns_1035_label(cluster: Cluster) -> None:
    service = rendering.render_client_service("lb.x", NAMESPACE, rendering.ClusterSpec.parse({}, default_image="i")).manifest
    async with cluster.kmock.request("POST", resources.SERVICES.url(namespace=NAMESPACE), json=service) as response:
        assert response.status == 422
        body = await response.json()
    assert body["reason"] == "Invalid" and "DNS-1035" in body["message"] and "metadata.name" in body["message"]
    config = rendering.render_config_map("lb.x", NAMESPACE, rendering.ClusterSpec.parse({}, default_image="i")).manifest
    await cluster.request("POST", resources.CONFIGMAPS.url(namespace=NAMESPACE), json=config)  # a subdomain: fine


async def test_a_service_gets_a_cluster_ip_that_survives_patches(cluster: Cluster) -> None:
    service = rendering.render_client_service("lb", NAMESPACE, rendering.ClusterSpec.parse(
        {"service": {"type": "NodePort"}}, default_image="i")).manifest
    stored = await cluster.request("POST", resources.SERVICES.url(namespace=NAMESPACE), json=service)
    assert stored["spec"]["clusterIP"] and stored["spec"]["sessionAffinity"] == "None"
    node_port = stored["spec"]["ports"][0]["nodePort"]
    patched = await cluster.patch(resources.SERVICES, "lb", {"spec": {"ports": service["spec"]["ports"]}})
    assert patched["spec"]["clusterIP"] == stored["spec"]["clusterIP"]
    assert patched["spec"]["ports"][0]["nodePort"] == node_port


async def test_a_cluster_is_defaulted_pruned_and_validated_by_its_crd(cluster: Cluster) -> None:
    stored = await cluster.apply_cluster("lb", {"replicas": 2, "unknownField": 1})
    assert stored["spec"]["replicas"] == 2 and stored["spec"]["storage"] == {"size": "1Gi", "retainOnDelete": False}
    assert "unknownField" not in stored["spec"]
    for spec in ({"replicas": 0}, {"service": {"type": "ExternalName"}},
                 {"auth": {"clientKeySecret": {"name": "keys"}}}):  # the last: a CEL rule
        async with cluster.kmock.request("POST", resources.CLUSTERS.url(namespace=NAMESPACE), json={
                "apiVersion": f"{resources.GROUP}/{resources.VERSION}", "kind": resources.KIND,
                "metadata": {"name": "bad", "namespace": NAMESPACE}, "spec": spec}) as response:
            assert response.status == 422, spec


async def test_the_status_and_the_spec_are_written_apart(cluster: Cluster) -> None:
    await cluster.apply_cluster("lb")
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 4}, "status": {"phase": "Ready"}})
    stored = cluster.get(resources.CLUSTERS, "lb")
    assert stored["spec"]["replicas"] == 4 and "status" not in stored
    assert stored["metadata"]["generation"] == 2
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 5}, "status": {"phase": "Ready"}},
                        subresource="status")
    stored = cluster.get(resources.CLUSTERS, "lb")
    assert stored["spec"]["replicas"] == 4 and stored["status"] == {"phase": "Ready"}
    assert stored["metadata"]["generation"] == 2


async def test_the_scale_subresource_reads_and_writes_the_replicas(cluster: Cluster) -> None:
    await cluster.apply_cluster("lb", {"replicas": 3})
    await cluster.patch(resources.CLUSTERS, "lb", {"status": {"replicas": 3, "selector": "a=b"}}, subresource="status")
    scale = await cluster.request("GET", resources.CLUSTERS.url(namespace=NAMESPACE, name="lb", subresource="scale"))
    assert (scale["kind"], scale["spec"], scale["status"]) == ("Scale", {"replicas": 3}, {"replicas": 3, "selector": "a=b"})
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"replicas": 5}, "metadata": {"labels": {"x": "y"}}},
                        subresource="scale")
    stored = cluster.get(resources.CLUSTERS, "lb")
    assert stored["spec"]["replicas"] == 5 and "x" not in (stored["metadata"].get("labels") or {})
    assert stored["metadata"]["generation"] == 2
    async with cluster.kmock.request(
            "PATCH", resources.CLUSTERS.url(namespace=NAMESPACE, name="lb", subresource="scale"),
            json={"spec": {"replicas": 0}}, headers={"Content-Type": "application/merge-patch+json"}) as response:
        assert response.status == 422


async def test_the_dependents_of_a_deleted_owner_are_collected(cluster: Cluster) -> None:
    owner = await cluster.apply_cluster("lb")
    ref = {"apiVersion": f"{resources.GROUP}/{resources.VERSION}", "kind": resources.KIND, "name": "lb",
           "uid": owner["metadata"]["uid"], "controller": True}
    for name, finalizers in (("plain", []), ("held", ["test/hold"])):
        await cluster.request("POST", resources.CONFIGMAPS.url(namespace=NAMESPACE), json={
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE, "ownerReferences": [ref], "finalizers": finalizers}})
    await cluster.delete(resources.CLUSTERS, "lb")
    assert cluster.get(resources.CONFIGMAPS, "plain") is None
    held = cluster.get(resources.CONFIGMAPS, "held")
    assert held is not None and held["metadata"]["deletionTimestamp"]


async def test_the_rendered_network_policy_is_accepted_and_a_wrong_one_refused(cluster: Cluster) -> None:
    spec = rendering.ClusterSpec.parse({"networkPolicy": {"clientFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}},
                                       default_image="i")
    policy = rendering.render_network_policy("lb", NAMESPACE, spec).manifest
    stored = await cluster.request("POST", resources.NETWORKPOLICIES.url(namespace=NAMESPACE), json=policy)
    assert stored["spec"] == policy["spec"]  # nothing for the API server to default: no drift
    url = resources.NETWORKPOLICIES.url(namespace=NAMESPACE)
    for field, wrong in (("port", {"port": "peer_port"}), ("from", {"ipBlock": {"cidr": "10.0.0.0/8"},
                                                                     "podSelector": {}})):
        broken = {**policy, "metadata": {**policy["metadata"], "name": f"broken-{field}"}}
        rule = dict(broken["spec"]["ingress"][0])
        if field == "port":
            rule["ports"] = [wrong]
        else:
            rule["from"] = [wrong]
        broken["spec"] = {**broken["spec"], "ingress": [rule]}
        async with cluster.kmock.request("POST", url, json=broken) as response:
            assert response.status == 422, field
            assert f"spec.ingress[0].{field}" in (await response.json())["message"]
