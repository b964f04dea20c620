"""
The Kubernetes resources this operator touches, as plain values.

Everything the operator reads or writes is listed here (:data:`ALL`), with the verbs it uses
and no others (least privilege). The Helm chart grants exactly these (a test compares the two,
and another checks that the running operator uses nothing else), so adding a resource here
without granting it in the chart fails the test suite rather than a deployment.

Secrets are created (the generated peer token, the identity CA) and read only by name: the
operator reads one Secret, its own identity CA in its own namespace (:data:`OWN_SECRETS`), and
no other. The garbage collector deletes the token Secret with its cluster (owner reference);
the operator does not.

Node identities (``identity.py``) add a few grants that are narrowed to names
(:data:`SIGNER_GRANTS`, the chart's ``resourceNames``): approving and signing for the
operator's own signer only, and binding only the chart's ClusterRole that lets the nodes ask
for certificates.
"""

from __future__ import annotations

import dataclasses

GROUP = "leaderboard-cluster.dev"
VERSION = "v1alpha1"
PLURAL = "leaderboardclusters"
KIND = "LeaderboardCluster"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Resource:
    """A resource kind of the Kubernetes API, and the verbs the operator uses on it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    verbs: frozenset[str] = frozenset()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def url(self, *, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The API path (not the full URL) of a collection or of one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource is not None:
                parts.append(subresource)
        return "/".join(parts)

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


_OWNED = frozenset({"get", "create", "patch", "delete"})  # see children.py

CLUSTERS = Resource(group=GROUP, version=VERSION, plural=PLURAL, kind=KIND,
                    verbs=frozenset({"get", "list", "watch", "patch"}))
SERVICES = Resource(group="", version="v1", plural="services", kind="Service", verbs=_OWNED)
CONFIGMAPS = Resource(group="", version="v1", plural="configmaps", kind="ConfigMap", verbs=_OWNED)
SECRETS = Resource(group="", version="v1", plural="secrets", kind="Secret", verbs=frozenset({"create"}))
SERVICEACCOUNTS = Resource(group="", version="v1", plural="serviceaccounts", kind="ServiceAccount", verbs=_OWNED)
ROLES = Resource(group="rbac.authorization.k8s.io", version="v1", plural="roles", kind="Role", verbs=_OWNED)
ROLEBINDINGS = Resource(group="rbac.authorization.k8s.io", version="v1", plural="rolebindings",
                        kind="RoleBinding", verbs=_OWNED)
STATEFULSETS = Resource(group="apps", version="v1", plural="statefulsets", kind="StatefulSet", verbs=_OWNED)
PDBS = Resource(group="policy", version="v1", plural="poddisruptionbudgets", kind="PodDisruptionBudget",
                verbs=_OWNED)
PODS = Resource(group="", version="v1", plural="pods", kind="Pod", verbs=frozenset({"get", "list", "watch"}))
PVCS = Resource(group="", version="v1", plural="persistentvolumeclaims", kind="PersistentVolumeClaim",
                verbs=frozenset({"get", "list", "delete"}))
NETWORKPOLICIES = Resource(group="networking.k8s.io", version="v1", plural="networkpolicies", kind="NetworkPolicy",
                           verbs=_OWNED)
# Node identities: the nodes' certificate requests (cluster-scoped), answered on two subresources,
# and one ClusterRoleBinding per cluster that lets its nodes make them.
CSRS = Resource(group="certificates.k8s.io", version="v1", plural="certificatesigningrequests",
                kind="CertificateSigningRequest", namespaced=False, verbs=frozenset({"get", "list", "watch"}),
                subresources=("approval", "status"))
CLUSTERROLEBINDINGS = Resource(group="rbac.authorization.k8s.io", version="v1", plural="clusterrolebindings",
                               kind="ClusterRoleBinding", namespaced=False, verbs=_OWNED)

# Used by kopf itself rather than by our client, but the operator needs them all the same.
EVENTS = Resource(group="", version="v1", plural="events", kind="Event", verbs=frozenset({"create", "patch"}))
NAMESPACES = Resource(group="", version="v1", plural="namespaces", kind="Namespace", namespaced=False,
                      verbs=frozenset({"get", "list", "watch"}))
CRDS = Resource(group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions",
                kind="CustomResourceDefinition", namespaced=False, verbs=frozenset({"get", "list", "watch"}))

#: Everything the operator touches, for RBAC and for test harnesses that emulate the API.
ALL: tuple[Resource, ...] = (
    CLUSTERS, SERVICES, CONFIGMAPS, SECRETS, SERVICEACCOUNTS, ROLES, ROLEBINDINGS,
    STATEFULSETS, PDBS, PODS, PVCS, NETWORKPOLICIES, CSRS, CLUSTERROLEBINDINGS, EVENTS, NAMESPACES, CRDS,
)

#: Subresources of the certificate requests, written when the operator answers one.
CSR_SUBRESOURCES: dict[str, frozenset[str]] = {
    "approval": frozenset({"patch"}),  # Approved or Denied
    "status": frozenset({"patch"}),  # the certificate (or Failed)
}

#: Grants restricted to names (``resourceNames``), by (API group, resource): the operator's own
#: signer (approve and sign), the nodes' ClusterRole (bind), and its own Secrets (get).
SIGNER_GRANTS: dict[tuple[str, str], frozenset[str]] = {
    ("certificates.k8s.io", "signers"): frozenset({"approve", "sign"}),
    ("rbac.authorization.k8s.io", "clusterroles"): frozenset({"bind"}),
}
#: What the operator does with Secrets of its own namespace, beyond creating them (by name only).
OWN_SECRETS = frozenset({"get"})

#: Subresources of the cluster resource written by the operator, with their verbs.
CLUSTER_SUBRESOURCES: dict[str, frozenset[str]] = {
    "status": frozenset({"get", "patch"}),
    # Setting blockOwnerDeletion on children requires update on the owner's finalizers.
    "finalizers": frozenset({"update"}),
}

#: The resources whose objects the operator creates and owns, by kind.
BY_KIND: dict[str, Resource] = {r.kind: r for r in ALL}
