"""
Rendering: a cluster's spec -> the manifests of its children. Pure functions, no I/O.

Every child of a ``LeaderboardCluster`` named ``NAME`` is rendered here:

=========================  ==========================================================
``NAME-peers``             headless Service (peer port 7351), ``publishNotReadyAddresses``
``NAME``                   client Service (port from ``spec.service``, default 7350)
``NAME-config``            ConfigMap with the node's ``node.yaml``
``NAME-node``              ServiceAccount, Role (get/list/watch pods) and RoleBinding
``NAME``                   StatefulSet of nodes, volumeClaimTemplate ``data`` at ``/data``
``NAME``                   PodDisruptionBudget
``NAME-peer-token``        Secret with the peer token, only without ``spec.auth.peerTokenSecret``
``NAME``                   NetworkPolicy: the peer port only from the cluster's own pods
                           (``spec.networkPolicy``, on by default)
``NAME-identity-ca``       ConfigMap with the CA bundle of the nodes' identity certificates
``leaderboard-node-csr.``  ClusterRoleBinding (cluster-scoped, so not owned: deleted explicitly)
``NAMESPACE.NAME``         letting the nodes request their certificates (both with
                           ``spec.identity.enabled``, on by default; see ``identity.py``)
=========================  ==========================================================

The functions take the cluster's name, namespace and parsed spec (:class:`ClusterSpec`) and
return :class:`Child` values: the manifest plus what the applying layer must know to patch it
safely -- which fields are immutable once created (never patched), which fields the spec owns
whole (see :data:`STATEFULSET_OWNED`), which maps hold quantities (compared by meaning: the API
server stores ``0.5`` as ``500m``), and whether the object is created once and never patched
(the token Secret). Owner references are not added
here: the handlers adopt the children (:func:`kopf.adopt`) with the real owner body.

Caveats:

* Names: ``NAME`` names the client Service, so it must be a DNS-1035 label (no dots), and pods
  are ``NAME-<ordinal>`` and the StatefulSet's revision label is ``NAME-<hash>``, which must fit
  in 63 characters, so ``NAME`` is limited to 52 (:func:`check_name`; the CRD has the same rule).
* The node reads ``/etc/leaderboard/node.yaml``; per-pod values (name, IP, namespace) come as
  ``LEADERBOARD_*`` env vars, which the node's loader parses as YAML scalars.
* The ConfigMap, the peer token and the client API's keys (``spec.auth.serverKeySecret`` and
  ``clientKeySecret``, when set; without them the nodes' client API is open) are projected into
  one volume at ``/etc/leaderboard`` (a nested mount into a read-only ConfigMap volume can fail
  to create its mount point). The node reads the keys from those files.
* A config change rolls the pods: the pod template carries a hash of the config.
* The volumeClaimTemplates of a StatefulSet are immutable: a changed ``spec.storage`` applies
  to new clusters only (see :data:`STATEFULSET_IMMUTABLE`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from kubernetes.utils import parse_quantity

from leaderboard_operator import resources

CLIENT_PORT = 7350
PEER_PORT = 7351
CONFIG_DIR = "/etc/leaderboard"
CONFIG_FILE = f"{CONFIG_DIR}/node.yaml"
CONFIG_KEY = "node.yaml"
TOKEN_KEY = "token"
TOKEN_FILE = f"{CONFIG_DIR}/secrets/{TOKEN_KEY}"
SERVER_KEY_FILE = f"{CONFIG_DIR}/secrets/server-key"  # the client API's keys, from spec.auth
CLIENT_KEY_FILE = f"{CONFIG_DIR}/secrets/client-key"
DATA_DIR = "/data"
IDENTITY_DIR = "/var/run/leaderboard/identity"  # an emptyDir in memory: the node's key and certificate
IDENTITY_CERT_FILE = f"{IDENTITY_DIR}/tls.crt"
IDENTITY_KEY_FILE = f"{IDENTITY_DIR}/tls.key"
IDENTITY_CA_KEY = "ca.crt"
IDENTITY_CA_FILE = f"{CONFIG_DIR}/identity/{IDENTITY_CA_KEY}"
SIGNER_NAME = f"{resources.GROUP}/node-identity"
OWNER_UID_ANNOTATION = f"{resources.GROUP}/owner-uid"  # on cluster-scoped children, which cannot be owned
NODE_UID = 10001
MAX_NAME_LENGTH = 52
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

APP_NAME = "leaderboard-node"
MANAGER = "leaderboard-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
CONFIG_HASH_ANNOTATION = f"{resources.GROUP}/config-hash"

FieldPath = tuple[str | int, ...]  # an int indexes a list

# Fields that cannot change after creation: never patched, never compared.
STATEFULSET_IMMUTABLE: tuple[FieldPath, ...] = (
    ("spec", "selector"),
    ("spec", "serviceName"),
    ("spec", "podManagementPolicy"),
    ("spec", "volumeClaimTemplates"),
)
SERVICE_IMMUTABLE: tuple[FieldPath, ...] = (("spec", "clusterIP"),)
ROLEBINDING_IMMUTABLE: tuple[FieldPath, ...] = (("roleRef",),)

# Fields whose whole value comes from the cluster's spec, and inside which the API server adds
# nothing: the child must match them exactly (not as a subset: a key the spec dropped is removed,
# and the field is cleared when the spec drops it), at once, not with the next unrelated patch.
POD_SPEC = ("spec", "template", "spec")
CONTAINER = (*POD_SPEC, "containers", 0)
STATEFULSET_OWNED: tuple[FieldPath, ...] = (
    (*POD_SPEC, "affinity"),
    (*POD_SPEC, "tolerations"),
    (*POD_SPEC, "nodeSelector"),
    (*POD_SPEC, "topologySpreadConstraints"),
    (*CONTAINER, "resources"),
)
# Maps of quantities, which the API server stores in canonical form (compared by meaning).
STATEFULSET_QUANTITIES: tuple[FieldPath, ...] = (
    (*CONTAINER, "resources", "requests"),
    (*CONTAINER, "resources", "limits"),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StorageSpec:
    size: str = "1Gi"
    storage_class_name: str | None = None
    retain_on_delete: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyncSpec:
    """``spec.sync``; the defaults equal the node's own (``LeaderboardSyncSettings``)."""

    batch_size: int = 1000
    batch_timeout: float = 0.005
    compression: bool = True
    blacklist_cache: tuple[str, ...] = ()
    backlog_size: int = 100_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class SecretKeyRef:
    """A key of a Secret in the cluster's namespace (``{name, key}``)."""

    name: str
    key: str

    @classmethod
    def parse(cls, raw: Any, *, field: str, default_key: str) -> SecretKeyRef | None:
        if raw is None:
            return None
        if not isinstance(raw, Mapping) or not raw.get("name"):
            raise ValueError(f"{field} must name a Secret: {{name: SECRET, key: KEY}}, got {raw!r}")
        return cls(name=str(raw["name"]), key=str(raw.get("key") or default_key))


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkPolicySpec:
    """``spec.networkPolicy``: who reaches the client port (``client_from``: NetworkPolicyPeers;
    None: anyone); the peer port only from the cluster's own pods."""

    enabled: bool = True
    client_from: tuple[Mapping[str, Any], ...] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    type: str = "ClusterIP"
    port: int = CLIENT_PORT


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A parsed ``LeaderboardCluster.spec``, with the CRD's defaults filled in."""

    replicas: int = 3
    image: str = ""
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    storage: StorageSpec = StorageSpec()
    sync: SyncSpec = SyncSpec()
    peer_token_secret: str | None = None
    server_key: SecretKeyRef | None = None  # the client API's admin key
    client_key: SecretKeyRef | None = None  # its ordinary key (needs a server key)
    max_unavailable: int | str = 1
    affinity: Mapping[str, Any] | None = None
    tolerations: Sequence[Mapping[str, Any]] | None = None
    topology_spread_constraints: Sequence[Mapping[str, Any]] | None = None
    node_selector: Mapping[str, str] | None = None
    service: ServiceSpec = ServiceSpec()
    metrics_enabled: bool = True
    network_policy: NetworkPolicySpec = NetworkPolicySpec()
    identity: bool = True  # node identity certificates (identity.py)

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None, *, default_image: str) -> ClusterSpec:
        """
        Parse a raw spec. The API server applies the CRD's defaults, but the same defaults are
        applied here too, so that a spec never seen by a real API server renders the same.
        """
        raw: dict[str, Any] = _plain(spec or {})
        storage = raw.get("storage") or {}
        sync = raw.get("sync") or {}
        service = raw.get("service") or {}
        replicas = int(raw.get("replicas", 3))
        if replicas < 1:
            raise ValueError(f"spec.replicas must be at least 1, got {replicas}")
        for part, quantities in (raw.get("resources") or {}).items():
            for key, value in (quantities or {}).items():
                _check_quantity(f"spec.resources.{part}.{key}", value)
        _check_quantity("spec.storage.size", storage.get("size") or "1Gi")
        auth = raw.get("auth") or {}
        server_key = SecretKeyRef.parse(auth.get("serverKeySecret"), field="spec.auth.serverKeySecret",
                                        default_key="server-key")
        client_key = SecretKeyRef.parse(auth.get("clientKeySecret"), field="spec.auth.clientKeySecret",
                                        default_key="client-key")
        if client_key is not None and server_key is None:
            raise ValueError("spec.auth.clientKeySecret needs spec.auth.serverKeySecret too: "
                             "with a client key alone, nobody could create a leaderboard")
        return cls(
            replicas=replicas,
            image=raw.get("image") or default_image,
            image_pull_policy=raw.get("imagePullPolicy") or "IfNotPresent",
            resources=raw.get("resources") or {},
            storage=StorageSpec(
                size=str(storage.get("size") or "1Gi"),
                storage_class_name=storage.get("storageClassName") or None,
                retain_on_delete=bool(storage.get("retainOnDelete", False)),
            ),
            sync=SyncSpec(
                batch_size=int(sync.get("batchSize", 1000)),
                batch_timeout=float(sync.get("batchTimeout", 0.005)),
                compression=bool(sync.get("compression", True)),
                blacklist_cache=tuple(sync.get("blacklistCache") or ()),
                backlog_size=int(sync.get("backlogSize", 100_000)),
            ),
            peer_token_secret=auth.get("peerTokenSecret") or None,
            server_key=server_key,
            client_key=client_key,
            max_unavailable=(raw.get("podDisruptionBudget") or {}).get("maxUnavailable", 1),
            affinity=raw.get("affinity") or None,
            tolerations=raw.get("tolerations") or None,
            topology_spread_constraints=raw.get("topologySpreadConstraints") or None,
            node_selector=raw.get("nodeSelector") or None,
            service=ServiceSpec(type=service.get("type") or "ClusterIP", port=int(service.get("port") or CLIENT_PORT)),
            metrics_enabled=bool((raw.get("metrics") or {}).get("enabled", True)),
            network_policy=_network_policy(raw.get("networkPolicy") or {}),
            identity=bool((raw.get("identity") or {}).get("enabled", True)),
        )


def _network_policy(raw: Mapping[str, Any]) -> NetworkPolicySpec:
    client_from = raw.get("clientFrom")
    if client_from is not None and (not isinstance(client_from, list)
                                    or not all(isinstance(peer, Mapping) for peer in client_from)):
        raise ValueError(f"spec.networkPolicy.clientFrom must be a list of NetworkPolicyPeers, got {client_from!r}")
    return NetworkPolicySpec(enabled=bool(raw.get("enabled", True)),
                             client_from=None if client_from is None else tuple(dict(p) for p in client_from))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Child:
    """One rendered child and the rules to apply it (see the module docstring)."""

    resource: resources.Resource
    manifest: dict[str, Any]
    immutable: tuple[FieldPath, ...] = ()
    owned: tuple[FieldPath, ...] = ()
    quantities: tuple[FieldPath, ...] = ()
    create_only: bool = False

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        """None for a cluster-scoped child."""
        namespace = self.manifest["metadata"].get("namespace")
        return None if namespace is None else str(namespace)

    @property
    def cluster_scoped(self) -> bool:
        return not self.resource.namespaced

    def __str__(self) -> str:
        return f"{self.resource.kind}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Names:
    """The names of a cluster's children."""

    cluster: str

    @property
    def peers_service(self) -> str:
        return f"{self.cluster}-peers"

    @property
    def client_service(self) -> str:
        return self.cluster

    @property
    def config_map(self) -> str:
        return f"{self.cluster}-config"

    @property
    def service_account(self) -> str:
        return f"{self.cluster}-node"

    @property
    def role(self) -> str:
        return f"{self.cluster}-node"

    @property
    def role_binding(self) -> str:
        return f"{self.cluster}-node"

    @property
    def stateful_set(self) -> str:
        return self.cluster

    @property
    def pdb(self) -> str:
        return self.cluster

    @property
    def generated_secret(self) -> str:
        return f"{self.cluster}-peer-token"

    @property
    def network_policy(self) -> str:
        return self.cluster

    @property
    def identity_ca(self) -> str:
        return f"{self.cluster}-identity-ca"

    def node_csr_binding(self, namespace: str) -> str:
        return f"leaderboard-node-csr.{namespace}.{self.cluster}"

    def peer_domain(self, namespace: str) -> str:
        """The DNS domain of the pods under the headless Service: a pod is ``POD.<this>``."""
        return f"{self.peers_service}.{namespace}.svc"

    def peer_token_secret(self, spec: ClusterSpec) -> str:
        return spec.peer_token_secret or self.generated_secret


def _check_quantity(field: str, value: Any) -> None:
    try:
        parse_quantity(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{field} must be a quantity such as 500m, 2 or 1Gi, got {value!r}") from exc


def check_name(name: str) -> None:
    """The cluster's name must fit its children's names (the CRD says the same, in CEL)."""
    if not DNS_1035_LABEL.fullmatch(name):
        raise ValueError(
            f"metadata.name {name!r} is not a DNS-1035 label (lower case letters, digits and '-', starting "
            f"with a letter, ending with a letter or digit; no dots): it names the cluster's Services"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"the cluster's name is {len(name)} characters long; at most {MAX_NAME_LENGTH} fit "
            f"in the names of its pods and their StatefulSet revision labels"
        )


def selector_labels(name: str) -> dict[str, str]:
    """The labels that select a cluster's pods (and its PVCs)."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name}


def selector_string(name: str) -> str:
    """The same selector as a string, for ``status.selector`` and the node's discovery."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(name).items())


def common_labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        LABEL_MANAGED_BY: MANAGER,
        LABEL_COMPONENT: "node",
        LABEL_PART_OF: "leaderboard-cluster",
    }


def render_node_config(name: str, namespace: str, spec: ClusterSpec) -> dict[str, Any]:
    """The node's YAML settings (validated against ``leaderboard_node.config.Settings`` in tests)."""
    return {
        "node": {
            "listen": f"0.0.0.0:{CLIENT_PORT}",
            "peer_listen": f"0.0.0.0:{PEER_PORT}",
            "data_dir": DATA_DIR,
        },
        "cluster": {
            "discovery": {
                "mode": "kubernetes",
                "kubernetes": {
                    "namespace": namespace,
                    "label_selector": selector_string(name),
                    "port": PEER_PORT,
                },
            },
            "leaderboard_sync": {
                "batch_size": spec.sync.batch_size,
                "batch_timeout": spec.sync.batch_timeout,
                "compression": spec.sync.compression,
                "blacklist_cache": list(spec.sync.blacklist_cache),
                "backlog_size": spec.sync.backlog_size,
            },
        },
        "auth": {
            "peer_token_file": TOKEN_FILE,
            **({"server_key_file": SERVER_KEY_FILE} if spec.server_key else {}),
            **({"client_key_file": CLIENT_KEY_FILE} if spec.client_key else {}),
        },
        **({"tls": {
            "peer_cert_file": IDENTITY_CERT_FILE,
            "peer_key_file": IDENTITY_KEY_FILE,
            "ca_file": IDENTITY_CA_FILE,
            "peer_identity": True,
            "peer_domain": Names(name).peer_domain(namespace),
            "certificate_request": {"signer_name": SIGNER_NAME},
        }} if spec.identity else {}),
        "log": {"level": "info", "format": "json"},
    }


def render_node_config_text(name: str, namespace: str, spec: ClusterSpec) -> str:
    header = f"# Rendered by {MANAGER} for LeaderboardCluster {namespace}/{name}; edits are overwritten.\n"
    return header + str(yaml.safe_dump(render_node_config(name, namespace, spec), sort_keys=False))


def render_children(name: str, namespace: str, spec: ClusterSpec, *, identity_ca: str = "",
                    node_csr_role: str = "leaderboard-operator-node-csr") -> list[Child]:
    """All children except the token Secret, in a sensible creation order; ``identity_ca`` is the
    PEM of the identity CA (the operator's, see ``identity.py``), ``node_csr_role`` the chart's
    ClusterRole the nodes' certificate requests need."""
    check_name(name)
    optional: dict[str, list[Child]] = {"network_policy": [], "identity": []}
    if spec.network_policy.enabled:
        optional["network_policy"].append(render_network_policy(name, namespace, spec))
    if spec.identity:
        optional["identity"] += [render_identity_ca(name, namespace, identity_ca),
                                 render_node_csr_binding(name, namespace, cluster_role=node_csr_role)]
    return [
        render_service_account(name, namespace),
        render_role(name, namespace),
        render_role_binding(name, namespace),
        *optional["identity"],
        render_config_map(name, namespace, spec),
        render_peers_service(name, namespace),
        render_client_service(name, namespace, spec),
        *optional["network_policy"],
        render_pdb(name, namespace, spec),
        render_stateful_set(name, namespace, spec),
    ]


def render_switched_off(name: str, namespace: str, spec: ClusterSpec) -> list[Child]:
    """The optional children the spec switches off: they must not exist (deleted if they do)."""
    off: list[Child] = []
    if not spec.network_policy.enabled:
        off.append(render_network_policy(name, namespace, spec))
    if not spec.identity:
        off += [render_identity_ca(name, namespace, ""), render_node_csr_binding(name, namespace, cluster_role="")]
    return off


def _metadata(name: str, namespace: str, cluster: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": common_labels(cluster)}


def render_service_account(name: str, namespace: str) -> Child:
    return Child(resource=resources.SERVICEACCOUNTS, manifest={
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(Names(name).service_account, namespace, name),
    })


def render_role(name: str, namespace: str) -> Child:
    return Child(resource=resources.ROLES, manifest={
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(Names(name).role, namespace, name),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    })


def render_role_binding(name: str, namespace: str) -> Child:
    names = Names(name)
    return Child(resource=resources.ROLEBINDINGS, immutable=ROLEBINDING_IMMUTABLE, manifest={
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(names.role_binding, namespace, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": [{"kind": "ServiceAccount", "name": names.service_account, "namespace": namespace}],
    })


def render_config_map(name: str, namespace: str, spec: ClusterSpec) -> Child:
    return Child(resource=resources.CONFIGMAPS, manifest={
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(Names(name).config_map, namespace, name),
        "data": {CONFIG_KEY: render_node_config_text(name, namespace, spec)},
    })


def render_peers_service(name: str, namespace: str) -> Child:
    return Child(resource=resources.SERVICES, immutable=SERVICE_IMMUTABLE, manifest={
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(Names(name).peers_service, namespace, name),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(name),
            "ports": [
                {"name": "peer", "port": PEER_PORT, "targetPort": "peer", "protocol": "TCP"},
                {"name": "http", "port": CLIENT_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    })


def render_client_service(name: str, namespace: str, spec: ClusterSpec) -> Child:
    return Child(resource=resources.SERVICES, immutable=SERVICE_IMMUTABLE, manifest={
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(Names(name).client_service, namespace, name),
        "spec": {
            "type": spec.service.type,
            "selector": selector_labels(name),
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}],
        },
    })


def render_pdb(name: str, namespace: str, spec: ClusterSpec) -> Child:
    return Child(resource=resources.PDBS, manifest={
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(Names(name).pdb, namespace, name),
        "spec": {
            "maxUnavailable": spec.max_unavailable,
            "selector": {"matchLabels": selector_labels(name)},
        },
    })


def render_network_policy(name: str, namespace: str, spec: ClusterSpec) -> Child:
    """The peer port from the cluster's own pods only; the client port from ``clientFrom`` (or
    from anywhere). Egress is not restricted. The ports are the pods' named ports."""
    client_rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": "http"}]}
    if spec.network_policy.client_from is not None:
        client_rule["from"] = [dict(peer) for peer in spec.network_policy.client_from]
    return Child(resource=resources.NETWORKPOLICIES, manifest={
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(Names(name).network_policy, namespace, name),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": selector_labels(name)}}],
                 "ports": [{"protocol": "TCP", "port": "peer"}]},
                client_rule,
            ],
        },
    })


def render_identity_ca(name: str, namespace: str, ca_pem: str) -> Child:
    """The CA bundle the nodes verify each other's certificates against (public: a ConfigMap)."""
    return Child(resource=resources.CONFIGMAPS, manifest={
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(Names(name).identity_ca, namespace, name),
        "data": {IDENTITY_CA_KEY: ca_pem},
    })


def render_node_csr_binding(name: str, namespace: str, *, cluster_role: str) -> Child:
    """Lets the cluster's ServiceAccount create and read CertificateSigningRequests (cluster-scoped
    objects, so a ClusterRoleBinding; the operator deletes it with the cluster)."""
    names = Names(name)
    return Child(resource=resources.CLUSTERROLEBINDINGS, immutable=ROLEBINDING_IMMUTABLE, manifest={
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": names.node_csr_binding(namespace), "labels": common_labels(name)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": names.service_account, "namespace": namespace}],
    })


def render_peer_token_secret(name: str, namespace: str, *, token: str) -> Child:
    """The generated peer token; created once, never patched (its token must not change)."""
    encoded = base64.b64encode(token.encode()).decode()
    return Child(resource=resources.SECRETS, create_only=True, manifest={
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(Names(name).generated_secret, namespace, name),
        "type": "Opaque",
        "data": {TOKEN_KEY: encoded},
    })


def _env(name: str) -> list[dict[str, Any]]:
    def field(path: str) -> dict[str, Any]:
        return {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}

    return [
        {"name": "LEADERBOARD_NODE__NAME", "valueFrom": field("metadata.name")},
        {"name": "LEADERBOARD_NODE__ADVERTISE_HOST", "valueFrom": field("status.podIP")},
        {"name": "LEADERBOARD_NODE__LISTEN", "value": f"0.0.0.0:{CLIENT_PORT}"},
        {"name": "LEADERBOARD_NODE__PEER_LISTEN", "value": f"0.0.0.0:{PEER_PORT}"},
        {"name": "LEADERBOARD_NODE__DATA_DIR", "value": DATA_DIR},
        {"name": "LEADERBOARD_CLUSTER__DISCOVERY__MODE", "value": "kubernetes"},
        {"name": "LEADERBOARD_CLUSTER__DISCOVERY__KUBERNETES__LABEL_SELECTOR", "value": selector_string(name)},
        {"name": "LEADERBOARD_CLUSTER__DISCOVERY__KUBERNETES__NAMESPACE", "valueFrom": field("metadata.namespace")},
    ]


def _default_affinity(name: str) -> dict[str, Any]:
    """Prefer one node per host; a preference only, so small test clusters still schedule."""
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": selector_labels(name)},
            "topologyKey": "kubernetes.io/hostname",
        },
    }]}}


def config_hash(name: str, namespace: str, spec: ClusterSpec) -> str:
    """Changes whenever the pods must restart to see a new config or token secret."""
    digest = hashlib.sha256()
    digest.update(render_node_config_text(name, namespace, spec).encode())
    digest.update(Names(name).peer_token_secret(spec).encode())
    for ref in (spec.server_key, spec.client_key):  # another Secret: the pods must mount it
        digest.update(f"|{ref.name}/{ref.key}".encode() if ref else b"|")
    return digest.hexdigest()[:16]


def render_stateful_set(name: str, namespace: str, spec: ClusterSpec) -> Child:
    names = Names(name)
    labels = common_labels(name)
    annotations = {CONFIG_HASH_ANNOTATION: config_hash(name, namespace, spec)}
    if spec.metrics_enabled:
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": str(CLIENT_PORT),
                            "prometheus.io/path": "/metrics"})
    else:
        annotations.update({"prometheus.io/scrape": "false"})

    container: dict[str, Any] = {
        "name": "node",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["leaderboard-node"],
        "args": ["--config", CONFIG_FILE],
        "ports": [
            {"name": "http", "containerPort": CLIENT_PORT, "protocol": "TCP"},
            {"name": "peer", "containerPort": PEER_PORT, "protocol": "TCP"},
        ],
        "env": _env(name),
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": CLIENT_PORT},
            "initialDelaySeconds": 2, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": CLIENT_PORT},
            "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 6,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            *([{"name": "identity", "mountPath": IDENTITY_DIR}] if spec.identity else []),
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.resources:
        container["resources"] = dict(spec.resources)

    pod_spec: dict[str, Any] = {
        "serviceAccountName": names.service_account,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": NODE_UID, "runAsGroup": NODE_UID, "fsGroup": NODE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": dict(spec.affinity) if spec.affinity else _default_affinity(name),
        "containers": [container],
        "volumes": [
            {"name": "config", "projected": {"defaultMode": 0o440, "sources": [
                {"configMap": {"name": names.config_map, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}},
                {"secret": {"name": names.peer_token_secret(spec),
                            "items": [{"key": TOKEN_KEY, "path": f"secrets/{TOKEN_KEY}"}]}},
                *({"secret": {"name": ref.name, "items": [{"key": ref.key, "path": path[len(CONFIG_DIR) + 1:]}]}}
                  for ref, path in ((spec.server_key, SERVER_KEY_FILE), (spec.client_key, CLIENT_KEY_FILE))
                  if ref is not None),
                *([{"configMap": {"name": names.identity_ca, "items": [
                    {"key": IDENTITY_CA_KEY, "path": IDENTITY_CA_FILE[len(CONFIG_DIR) + 1:]}]}}]
                  if spec.identity else []),
            ]}},
            {"name": "tmp", "emptyDir": {}},
            # The node's own key never touches a disk, and outlives a container restart.
            *([{"name": "identity", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}] if spec.identity else []),
        ],
    }
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.topology_spread_constraints:
        pod_spec["topologySpreadConstraints"] = [dict(c) for c in spec.topology_spread_constraints]

    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    }
    if spec.storage.storage_class_name:
        claim_spec["storageClassName"] = spec.storage.storage_class_name

    return Child(
        resource=resources.STATEFULSETS,
        immutable=STATEFULSET_IMMUTABLE,
        owned=STATEFULSET_OWNED,
        quantities=STATEFULSET_QUANTITIES,
        manifest={
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _metadata(names.stateful_set, namespace, name),
            "spec": {
                "replicas": spec.replicas,
                "serviceName": names.peers_service,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": selector_labels(name)},
                "updateStrategy": {"type": "RollingUpdate"},
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": "Retain" if spec.storage.retain_on_delete else "Delete",
                    "whenScaled": "Retain",
                },
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": pod_spec,
                },
                "volumeClaimTemplates": [{
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "labels": selector_labels(name)},
                    "spec": claim_spec,
                }],
            },
        },
    )


def _plain(value: Any) -> Any:
    """Deep-copy kopf's read-only views (Spec, Body...) into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
