"""The operator as the signer of node identity certificates, against the emulated API.

kmock has no certificate controller: the harness (``apiserver.py``) records who made each
CertificateSigningRequest from the bearer token, as the API server would from a pod's bound
token (``spec.username``, ``spec.extra``). The operator approves and signs only a pod's request
for its own name, and denies the rest, saying why.
"""

from __future__ import annotations

import base64
import datetime
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from leaderboard_operator import rendering, resources

from .apiserver import pod_token_identity
from .conftest import NAMESPACE, OPERATOR_NAMESPACE, ApiServer, Cluster, RunningOperator, eventually

CSR_URL = resources.CSRS.url()


async def add_pod(cluster: Cluster, name: str, *, namespace: str = NAMESPACE, instance: str = "lb",
                  service_account: str = "lb-node") -> str:
    """A pod of StatefulSet ``instance`` as its controller makes it (owned by it, when it exists:
    the garbage collector would delete a pod of a missing owner); its uid."""
    sts = cluster.get(resources.STATEFULSETS, instance, namespace=namespace)
    owners = [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": instance, "uid": sts["metadata"]["uid"],
               "controller": True}] if sts else []
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "ownerReferences": owners,
                        "labels": {rendering.LABEL_NAME: rendering.APP_NAME, rendering.LABEL_INSTANCE: instance}},
           "spec": {"serviceAccountName": service_account, "containers": [{"name": "node", "image": "x"}]}}
    created = await cluster.request("POST", resources.PODS.url(namespace=namespace), json=pod)
    return str(created["metadata"]["uid"])


def token_of(k8s: ApiServer, *, pod: str, uid: str, namespace: str = NAMESPACE,
             service_account: str = "lb-node") -> str:
    token = secrets.token_urlsafe(16)
    k8s.tokens[token] = pod_token_identity(namespace=namespace, service_account=service_account, pod=pod, pod_uid=uid)
    return token


async def request_certificate(cluster: Cluster, *, cn: str, dns: str, token: str | None,
                              signer: str = rendering.SIGNER_NAME) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
           .sign(key, hashes.SHA256()))
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": f"{cn}-"},
            "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                     "signerName": signer, "usages": ["digital signature", "server auth", "client auth"],
                     "expirationSeconds": 3600}}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    created = await cluster.request("POST", CSR_URL, json=body, headers=headers)
    return str(created["metadata"]["name"])


def csr(cluster: Cluster, name: str) -> dict[str, Any]:
    found = cluster.get(resources.CSRS, name, namespace=None)
    assert found is not None
    return found


def conditions(cluster: Cluster, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (csr(cluster, name).get("status") or {}).get("conditions") or []}


def denied(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return conditions(cluster, name).get("Denied")


async def cluster_with_identities(cluster: Cluster) -> str:
    """A LeaderboardCluster lb, once the operator made its CA bundle; the CA's PEM."""
    await cluster.apply_cluster("lb", {"replicas": 2})
    bundle = await eventually(lambda: cluster.get(resources.CONFIGMAPS, "lb-identity-ca")
                              and cluster.get(resources.STATEFULSETS, "lb")
                              and cluster.get(resources.CONFIGMAPS, "lb-identity-ca"), timeout=10,
                              what="the cluster's CA bundle and StatefulSet")
    return str(bundle["data"]["ca.crt"])


async def test_the_operator_signs_a_pods_request_for_its_own_name(cluster: Cluster, k8s: ApiServer,
                                                                  operator: RunningOperator) -> None:
    ca_pem = await cluster_with_identities(cluster)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    secret = cluster.get(resources.SECRETS, operator.config.identity_ca_secret, namespace=OPERATOR_NAMESPACE)
    assert secret is not None and secret["type"] == "kubernetes.io/tls"  # the CA's key: the operator's own Secret
    other = await request_certificate(cluster, cn="x", dns="x", token=None, signer="example.com/someone-else")
    uid = await add_pod(cluster, "lb-0")
    dns = "lb-0.lb-peers.lb-test.svc"
    name = await request_certificate(cluster, cn="lb-0", dns=dns, token=token_of(k8s, pod="lb-0", uid=uid))

    issued = await eventually(lambda: (csr(cluster, name).get("status") or {}).get("certificate"), timeout=10,
                              what="the certificate")
    certificate = x509.load_pem_x509_certificate(base64.b64decode(issued))
    certificate.verify_directly_issued_by(ca)
    assert certificate.subject.rfc4514_string() == "CN=lb-0"
    assert certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [dns]
    assert set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    lifetime = certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=55) < lifetime <= datetime.timedelta(hours=1)  # as asked, under the cap
    approved = conditions(cluster, name)["Approved"]
    assert approved["reason"] == "PodIdentity" and "lb-test/lb-0" in approved["message"]
    assert csr(cluster, name)["spec"]["username"] == "system:serviceaccount:lb-test:lb-node"  # as the API recorded it
    assert not csr(cluster, other).get("status"), "a request to another signer is none of the operator's business"


async def test_a_pod_asking_for_another_pods_name_is_denied(cluster: Cluster, k8s: ApiServer,
                                                            operator: RunningOperator) -> None:
    await cluster_with_identities(cluster)
    await add_pod(cluster, "lb-0")
    uid = await add_pod(cluster, "lb-1")
    name = await request_certificate(cluster, cn="lb-0", dns="lb-0.lb-peers.lb-test.svc",
                                     token=token_of(k8s, pod="lb-1", uid=uid))
    condition = await eventually(lambda: denied(cluster, name), timeout=10, what="the denial")
    assert condition["reason"] == "BadRequest" and "CN=lb-1" in condition["message"], condition
    assert "certificate" not in csr(cluster, name)["status"]

    def warned() -> list[dict[str, Any]]:
        found = [cluster.get(resources.EVENTS, event) for event in cluster.names(resources.EVENTS)]
        return [e for e in found if e and e["reason"] == "CertificateDenied" and e["type"] == "Warning"]

    events = await eventually(warned, what="a Warning event CertificateDenied on the cluster")
    assert events[0]["involvedObject"]["name"] == "lb" and name in events[0]["message"]


async def test_a_pod_of_another_namespace_is_denied(cluster: Cluster, k8s: ApiServer,
                                                    operator: RunningOperator) -> None:
    await cluster_with_identities(cluster)
    uid = await add_pod(cluster, "lb-0", namespace="elsewhere")  # same names, no LeaderboardCluster there
    token = token_of(k8s, pod="lb-0", uid=uid, namespace="elsewhere")
    for dns in ("lb-0.lb-peers.elsewhere.svc", "lb-0.lb-peers.lb-test.svc"):
        name = await request_certificate(cluster, cn="lb-0", dns=dns, token=token)
        condition = await eventually(lambda name=name: denied(cluster, name), timeout=10, what="the denial")
        assert condition["reason"] == "NotAClusterPod", condition


async def test_a_request_made_without_a_pods_token_is_denied(cluster: Cluster, k8s: ApiServer,
                                                             operator: RunningOperator) -> None:
    await cluster_with_identities(cluster)
    uid = await add_pod(cluster, "lb-0")
    for token in (None, token_of(k8s, pod="lb-0", uid="not-" + uid)):  # an admin; a token of a former lb-0
        name = await request_certificate(cluster, cn="lb-0", dns="lb-0.lb-peers.lb-test.svc", token=token)
        condition = await eventually(lambda name=name: denied(cluster, name), timeout=10, what="the denial")
        assert condition["reason"] == ("NotAServiceAccount" if token is None else "PodMismatch"), condition


async def test_switching_identities_and_the_network_policy_off_removes_their_children(
        cluster: Cluster, k8s: ApiServer, operator: RunningOperator) -> None:
    await cluster_with_identities(cluster)
    binding = "leaderboard-node-csr.lb-test.lb"
    await eventually(lambda: cluster.get(resources.NETWORKPOLICIES, "lb")
                     and cluster.get(resources.CLUSTERROLEBINDINGS, binding, namespace=None), what="the policy")
    await cluster.patch(resources.CLUSTERS, "lb", {"spec": {"identity": {"enabled": False},
                                                            "networkPolicy": {"enabled": False}}})
    await eventually(lambda: cluster.get(resources.NETWORKPOLICIES, "lb") is None
                     and cluster.get(resources.CONFIGMAPS, "lb-identity-ca") is None
                     and cluster.get(resources.CLUSTERROLEBINDINGS, binding, namespace=None) is None,
                     timeout=10, what="the policy, the CA bundle and the binding gone")
    config = cluster.get(resources.CONFIGMAPS, "lb-config")
    assert config is not None and "peer_identity" not in config["data"]["node.yaml"]
    uid = await add_pod(cluster, "lb-0")
    name = await request_certificate(cluster, cn="lb-0", dns="lb-0.lb-peers.lb-test.svc",
                                     token=token_of(k8s, pod="lb-0", uid=uid))
    condition = await eventually(lambda: denied(cluster, name), timeout=10, what="the denial")
    assert condition["reason"] == "IdentityDisabled", condition
