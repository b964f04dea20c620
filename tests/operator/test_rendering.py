"""Rendering is pure: a spec in, manifests out. The manifests must be valid Kubernetes objects."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from leaderboard_node.config import load_settings

from leaderboard_operator import rendering
from leaderboard_operator.rendering import ClusterSpec

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.30"


def parse(spec: dict[str, Any] | None = None) -> ClusterSpec:
    return ClusterSpec.parse(spec or {}, default_image="leaderboard-node:test")


def full_spec() -> dict[str, Any]:
    return yaml.safe_load((REPO / "crds" / "examples" / "full.yaml").read_text())["spec"]


def by_kind(children: list[rendering.Child]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for child in children:
        kinds.setdefault(child.manifest["kind"], []).append(child.manifest)
    return kinds


def stateful_set(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return rendering.render_stateful_set("lb", "ns", parse(spec)).manifest


def resolved_env(manifest: dict[str, Any], *, pod: str = "lb-0", ip: str = "10.1.2.3", namespace: str = "ns") -> dict[str, str]:
    """The container's env as the kubelet would resolve the fieldRefs."""
    fields = {"metadata.name": pod, "status.podIP": ip, "metadata.namespace": namespace}
    env = {}
    for var in manifest["spec"]["template"]["spec"]["containers"][0]["env"]:
        env[var["name"]] = var["value"] if "value" in var else fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


@pytest.mark.parametrize("spec", [{}, "full"], ids=["defaults", "full-example"])
def test_every_rendered_child_is_a_valid_kubernetes_object(spec: Any) -> None:
    cluster = parse(full_spec() if spec == "full" else spec)
    children = rendering.render_children("lb", "ns", cluster)
    children.append(rendering.render_peer_token_secret("lb", "ns", token="t0k3n"))
    for child in children:
        kubernetes_validate.validate(child.manifest, KUBERNETES_VERSION, strict=True)
        assert child.resource.kind == child.manifest["kind"]
        assert child.resource.api_version == child.manifest["apiVersion"]


def test_the_children_are_named_after_the_cluster() -> None:
    kinds = by_kind(rendering.render_children("lb", "ns", parse()))
    names = {kind: sorted(m["metadata"]["name"] for m in manifests) for kind, manifests in kinds.items()}
    assert names == {
        "ServiceAccount": ["lb-node"], "Role": ["lb-node"], "RoleBinding": ["lb-node"],
        "ConfigMap": ["lb-config", "lb-identity-ca"], "Service": ["lb", "lb-peers"], "PodDisruptionBudget": ["lb"],
        "StatefulSet": ["lb"], "NetworkPolicy": ["lb"], "ClusterRoleBinding": ["leaderboard-node-csr.ns.lb"],
    }


def test_every_child_carries_the_standard_labels() -> None:
    for child in rendering.render_children("lb", "ns", parse()):
        labels = child.manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "leaderboard-node"
        assert labels["app.kubernetes.io/instance"] == "lb"
        assert labels["app.kubernetes.io/managed-by"] == "leaderboard-operator"
        assert child.manifest["metadata"].get("namespace") == (None if child.cluster_scoped else "ns")


def test_the_headless_service_publishes_not_ready_peers() -> None:
    service = rendering.render_peers_service("lb", "ns").manifest
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0] == {"name": "peer", "port": 7351, "targetPort": "peer", "protocol": "TCP"}
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "leaderboard-node", "app.kubernetes.io/instance": "lb"}


def test_the_client_service_takes_its_type_and_port_from_the_spec() -> None:
    default = rendering.render_client_service("lb", "ns", parse()).manifest
    assert default["spec"]["type"] == "ClusterIP"
    assert default["spec"]["ports"] == [{"name": "http", "port": 7350, "targetPort": "http", "protocol": "TCP"}]
    custom = rendering.render_client_service("lb", "ns", parse({"service": {"type": "LoadBalancer", "port": 80}})).manifest
    assert custom["spec"]["type"] == "LoadBalancer"
    assert custom["spec"]["ports"][0]["port"] == 80


def test_the_node_role_only_reads_pods() -> None:
    role = rendering.render_role("lb", "ns").manifest
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = rendering.render_role_binding("lb", "ns").manifest
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lb-node"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lb-node", "namespace": "ns"}]


def test_the_statefulset_runs_the_node_with_its_config() -> None:
    sts = stateful_set()
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == "lb-peers"
    pod = sts["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["serviceAccountName"] == "lb-node"
    container = pod["containers"][0]
    assert container["command"] == ["leaderboard-node"]
    assert container["args"] == ["--config", "/etc/leaderboard/node.yaml"]
    assert container["image"] == "leaderboard-node:test"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 7350}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 7350}
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert {"name": "config", "mountPath": "/etc/leaderboard", "readOnly": True} in container["volumeMounts"]


def test_the_statefulset_claims_storage_from_the_spec() -> None:
    claim = stateful_set({"storage": {"size": "20Gi", "storageClassName": "fast"}})["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert "storageClassName" not in stateful_set()["spec"]["volumeClaimTemplates"][0]["spec"]


def test_the_pods_get_their_identity_from_env_vars() -> None:
    env = resolved_env(stateful_set())
    assert env == {
        "LEADERBOARD_NODE__NAME": "lb-0",
        "LEADERBOARD_NODE__ADVERTISE_HOST": "10.1.2.3",
        "LEADERBOARD_NODE__LISTEN": "0.0.0.0:7350",
        "LEADERBOARD_NODE__PEER_LISTEN": "0.0.0.0:7351",
        "LEADERBOARD_NODE__DATA_DIR": "/data",
        "LEADERBOARD_CLUSTER__DISCOVERY__MODE": "kubernetes",
        "LEADERBOARD_CLUSTER__DISCOVERY__KUBERNETES__LABEL_SELECTOR":
            "app.kubernetes.io/name=leaderboard-node,app.kubernetes.io/instance=lb",
        "LEADERBOARD_CLUSTER__DISCOVERY__KUBERNETES__NAMESPACE": "ns",
    }


def test_the_peer_token_and_the_config_are_projected_into_one_directory() -> None:
    volume = stateful_set()["spec"]["template"]["spec"]["volumes"][0]
    sources = volume["projected"]["sources"]
    assert sources[0]["configMap"] == {"name": "lb-config", "items": [{"key": "node.yaml", "path": "node.yaml"}]}
    assert sources[1]["secret"] == {"name": "lb-peer-token", "items": [{"key": "token", "path": "secrets/token"}]}
    own = stateful_set({"auth": {"peerTokenSecret": "shared"}})["spec"]["template"]["spec"]["volumes"][0]
    assert own["projected"]["sources"][1]["secret"]["name"] == "shared"


def test_the_generated_token_secret_is_created_once_and_never_patched() -> None:
    child = rendering.render_peer_token_secret("lb", "ns", token="s3cret")
    assert child.create_only
    assert child.manifest["metadata"]["name"] == "lb-peer-token"
    assert base64.b64decode(child.manifest["data"]["token"]) == b"s3cret"


def test_scheduling_fields_pass_through_to_the_pods() -> None:
    spec = full_spec()
    pod = stateful_set(spec)["spec"]["template"]["spec"]
    assert pod["affinity"] == spec["affinity"]
    assert pod["tolerations"] == spec["tolerations"]
    assert pod["topologySpreadConstraints"] == spec["topologySpreadConstraints"]
    assert pod["nodeSelector"] == spec["nodeSelector"]
    assert pod["containers"][0]["resources"] == spec["resources"]


def test_without_affinity_the_pods_prefer_different_hosts() -> None:
    pod = stateful_set()["spec"]["template"]["spec"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert "tolerations" not in pod and "nodeSelector" not in pod


def test_a_config_change_changes_the_pod_template() -> None:
    before = stateful_set()["spec"]["template"]["metadata"]["annotations"]
    after = stateful_set({"sync": {"batchSize": 5}})["spec"]["template"]["metadata"]["annotations"]
    key = "leaderboard-cluster.dev/config-hash"
    assert before[key] != after[key]
    assert stateful_set()["spec"]["template"]["metadata"]["annotations"][key] == before[key]


def test_metrics_can_be_switched_off() -> None:
    assert stateful_set()["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    off = stateful_set({"metrics": {"enabled": False}})
    assert off["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "false"


def test_the_pdb_selects_the_pods() -> None:
    pdb = rendering.render_pdb("lb", "ns", parse({"podDisruptionBudget": {"maxUnavailable": "50%"}})).manifest
    assert pdb["spec"] == {"maxUnavailable": "50%", "selector": {"matchLabels": rendering.selector_labels("lb")}}


def test_the_node_config_maps_the_sync_spec() -> None:
    config = rendering.render_node_config("lb", "ns", parse(full_spec()))
    assert config["cluster"]["leaderboard_sync"] == {
        "batch_size": 500, "batch_timeout": 0.01, "compression": True,
        "blacklist_cache": ["tournament_*", "daily_scratch"], "backlog_size": 2000000,
    }
    assert config["auth"] == {"peer_token_file": "/etc/leaderboard/secrets/token",
                              "server_key_file": "/etc/leaderboard/secrets/server-key",
                              "client_key_file": "/etc/leaderboard/secrets/client-key"}
    assert rendering.render_node_config("lb", "ns", parse())["auth"] == {"peer_token_file": "/etc/leaderboard/secrets/token"}


def test_the_api_keys_come_from_the_secrets_the_spec_names() -> None:
    spec = {"auth": {"serverKeySecret": {"name": "keys"}, "clientKeySecret": {"name": "keys", "key": "game"}}}
    sources = stateful_set({**spec, "identity": {"enabled": False}})["spec"]["template"]["spec"]["volumes"][0][
        "projected"]["sources"]
    assert sources[2:] == [
        {"secret": {"name": "keys", "items": [{"key": "server-key", "path": "secrets/server-key"}]}},
        {"secret": {"name": "keys", "items": [{"key": "game", "path": "secrets/client-key"}]}},
    ]
    key = "leaderboard-cluster.dev/config-hash"
    assert stateful_set(spec)["spec"]["template"]["metadata"]["annotations"][key] != (
        stateful_set()["spec"]["template"]["metadata"]["annotations"][key])  # the pods roll to mount them


@pytest.mark.parametrize("spec", [{"auth": {"clientKeySecret": {"name": "keys"}}},
                                  {"auth": {"serverKeySecret": {"key": "k"}}}])
def test_api_keys_without_a_server_key_or_a_secret_name_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="serverKeySecret"):
        parse(spec)


@pytest.mark.parametrize("spec", [{}, "full"], ids=["defaults", "full-example"])
def test_the_rendered_config_map_is_valid_node_settings(spec: Any, tmp_path: Path) -> None:
    cluster = parse(full_spec() if spec == "full" else spec)
    config_map = rendering.render_config_map("lb", "ns", cluster).manifest
    path = tmp_path / "node.yaml"
    path.write_text(config_map["data"]["node.yaml"])

    alone = load_settings(config_file=path, environ={})
    assert alone.node.data_dir == Path("/data")
    assert alone.cluster.discovery.mode == "kubernetes"
    assert alone.cluster.leaderboard_sync.batch_size == cluster.sync.batch_size
    assert alone.auth.peer_token_file == Path("/etc/leaderboard/secrets/token")
    sources = alone.auth.key_sources()  # the node's own check of its keys' sources
    if cluster.server_key is not None:
        assert sources["server_key"] == Path("/etc/leaderboard/secrets/server-key")

    in_pod = load_settings(config_file=path, environ=resolved_env(rendering.render_stateful_set("lb", "ns", cluster).manifest))
    assert in_pod.node.name == "lb-0"
    assert in_pod.node.advertise_host == "10.1.2.3"
    assert in_pod.node.listen == "0.0.0.0:7350"
    assert in_pod.node.peer_listen == "0.0.0.0:7351"
    assert in_pod.cluster.discovery.kubernetes.namespace == "ns"
    assert in_pod.cluster.discovery.kubernetes.label_selector == rendering.selector_string("lb")
    assert in_pod.cluster.discovery.kubernetes.port == 7351


def test_the_sync_defaults_are_the_nodes_own_defaults() -> None:
    node_defaults = load_settings(environ={}).cluster.leaderboard_sync
    ours = parse().sync
    assert (ours.batch_size, ours.batch_timeout, ours.compression, list(ours.blacklist_cache), ours.backlog_size) == (
        node_defaults.batch_size, node_defaults.batch_timeout, node_defaults.compression,
        node_defaults.blacklist_cache, node_defaults.backlog_size)


def test_parsing_fills_in_the_defaults() -> None:
    cluster = parse({"replicas": 5})
    assert cluster.replicas == 5
    assert cluster.image == "leaderboard-node:test"
    assert cluster.image_pull_policy == "IfNotPresent"
    assert cluster.storage.size == "1Gi"
    assert cluster.service.port == 7350
    assert cluster.max_unavailable == 1
    assert cluster.peer_token_secret is None


@pytest.mark.parametrize("spec", [{"replicas": 0}, {"replicas": "many"}, {"sync": {"batchSize": "x"}}])
def test_parsing_rejects_a_nonsense_spec(spec: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse(spec)


def test_names_longer_than_the_statefulset_allows_are_refused() -> None:
    rendering.render_children("x" * 52, "ns", parse())
    with pytest.raises(ValueError, match="at most 52"):
        rendering.render_children("x" * 53, "ns", parse())


def test_the_network_policy_lets_only_the_clusters_pods_reach_the_peer_port() -> None:
    policy = rendering.render_network_policy("lb", "ns", parse()).manifest
    selector = {"matchLabels": rendering.selector_labels("lb")}
    assert policy["spec"]["podSelector"] == selector and policy["spec"]["policyTypes"] == ["Ingress"]
    peer_rule, client_rule = policy["spec"]["ingress"]
    assert peer_rule == {"from": [{"podSelector": selector}], "ports": [{"protocol": "TCP", "port": "peer"}]}
    assert client_rule == {"ports": [{"protocol": "TCP", "port": "http"}]}  # from anyone, unless the spec says
    ports = {p["name"] for p in stateful_set()["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {"peer", "http"} <= ports  # the policy names the pods' ports


def test_the_client_port_is_open_to_whom_the_spec_says() -> None:
    allowed = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "games"}}}]
    policy = rendering.render_network_policy("lb", "ns", parse({"networkPolicy": {"clientFrom": allowed}})).manifest
    assert policy["spec"]["ingress"][1] == {"ports": [{"protocol": "TCP", "port": "http"}], "from": allowed}


def test_the_network_policy_and_identities_can_be_switched_off() -> None:
    off = parse({"networkPolicy": {"enabled": False}, "identity": {"enabled": False}})
    kinds = by_kind(rendering.render_children("lb", "ns", off))
    assert "NetworkPolicy" not in kinds and "ClusterRoleBinding" not in kinds
    assert [c["metadata"]["name"] for c in kinds["ConfigMap"]] == ["lb-config"]
    assert {str(child) for child in rendering.render_switched_off("lb", "ns", off)} == {
        "NetworkPolicy/lb", "ConfigMap/lb-identity-ca", "ClusterRoleBinding/leaderboard-node-csr.ns.lb"}
    assert rendering.render_switched_off("lb", "ns", parse()) == []
    assert "tls" not in rendering.render_node_config("lb", "ns", off)


def test_identities_give_each_pod_a_certificate_request_and_the_ca_bundle() -> None:
    tls = rendering.render_node_config("lb", "ns", parse())["tls"]
    assert tls == {"peer_cert_file": "/var/run/leaderboard/identity/tls.crt",
                   "peer_key_file": "/var/run/leaderboard/identity/tls.key",
                   "ca_file": "/etc/leaderboard/identity/ca.crt", "peer_identity": True,
                   "peer_domain": "lb-peers.ns.svc",
                   "certificate_request": {"signer_name": "leaderboard-cluster.dev/node-identity"}}
    pod = stateful_set()["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["identity"] == {"name": "identity", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    assert {"configMap": {"name": "lb-identity-ca", "items": [{"key": "ca.crt", "path": "identity/ca.crt"}]}} in (
        volumes["config"]["projected"]["sources"])
    assert {"name": "identity", "mountPath": "/var/run/leaderboard/identity"} in pod["containers"][0]["volumeMounts"]
    binding = rendering.render_node_csr_binding("lb", "ns", cluster_role="release-node-csr").manifest
    assert binding["roleRef"]["name"] == "release-node-csr" and "namespace" not in binding["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lb-node", "namespace": "ns"}]
    assert rendering.render_identity_ca("lb", "ns", "PEM").manifest["data"] == {"ca.crt": "PEM"}
