"""
The Kubernetes resources this operator touches, as plain values.

Everything the operator reads or writes is listed here (:data:`ALL`), with the verbs it uses
and no others (least privilege). The Helm chart grants exactly these (a test compares the two,
and another checks that the running operator uses nothing else), so adding a resource here
without granting it in the chart fails the test suite rather than a deployment.

Secrets are only created (the generated peer token), never read: the operator does not need to
read any Secret, so it is not allowed to. The garbage collector deletes that Secret with its
cluster (owner reference); the operator does not.
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

# Used by kopf itself rather than by our client, but the operator needs them all the same.
EVENTS = Resource(group="", version="v1", plural="events", kind="Event", verbs=frozenset({"create", "patch"}))
NAMESPACES = Resource(group="", version="v1", plural="namespaces", kind="Namespace", namespaced=False,
                      verbs=frozenset({"get", "list", "watch"}))
CRDS = Resource(group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions",
                kind="CustomResourceDefinition", namespaced=False, verbs=frozenset({"get", "list", "watch"}))

#: Everything the operator touches, for RBAC and for test harnesses that emulate the API.
ALL: tuple[Resource, ...] = (
    CLUSTERS, SERVICES, CONFIGMAPS, SECRETS, SERVICEACCOUNTS, ROLES, ROLEBINDINGS,
    STATEFULSETS, PDBS, PODS, PVCS, EVENTS, NAMESPACES, CRDS,
)

#: Subresources of the cluster resource written by the operator, with their verbs.
CLUSTER_SUBRESOURCES: dict[str, frozenset[str]] = {
    "status": frozenset({"get", "patch"}),
    # Setting blockOwnerDeletion on children requires update on the owner's finalizers.
    "finalizers": frozenset({"update"}),
}

#: The resources whose objects the operator creates and owns, by kind.
BY_KIND: dict[str, Resource] = {r.kind: r for r in ALL}
