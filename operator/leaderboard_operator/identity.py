"""
Node identity certificates: the operator's CA, and the signer that answers the nodes' requests.

Pods of a StatefulSet share one template and one ServiceAccount, so no Secret can be mounted
into one pod only. Each node therefore makes its own key and asks for a certificate with a
CertificateSigningRequest (``certificates.k8s.io/v1``, stable) to the signer
:data:`~.rendering.SIGNER_NAME`, which this operator implements (the node's side is
``leaderboard_node.transport.certificate_request``). The API server records who made the
request: ``spec.username`` is the ServiceAccount (``system:serviceaccount:NS:SA``) and
``spec.extra`` carries the pod's name and uid from its bound token
(``authentication.kubernetes.io/pod-name``, ``pod-uid``). A request is approved and signed
only when all of this holds (:func:`check_request`), and denied with the reason otherwise:

* it comes from a pod's bound token (a ServiceAccount, with a pod name in ``extra``);
* that pod exists in the ServiceAccount's namespace, with that uid (if the token says), runs as
  that ServiceAccount, and belongs to a LeaderboardCluster of that namespace (its labels, its
  StatefulSet, the cluster's own ServiceAccount) that has identities on;
* the request's signature is valid, its subject is ``CN=<pod>``, its only name is the pod's
  DNS name ``POD.NAME-peers.NAMESPACE.svc``, its key EC P-256/P-384 or RSA of 2048 bits or
  more, its usages among digital signature, key encipherment, server auth and client auth.

The certificate the operator issues is its own making, not a copy of the request: that CN and
that DNS name, server and client auth, valid from five minutes ago (clock skew) for
``min(spec.expirationSeconds, certificate_seconds)``.

One CA serves every cluster: a pod's DNS name is unique beyond its cluster, and nodes accept
peers by that name, so a pod of one cluster is no member of another. The CA's key is in a
Secret of the operator's own namespace (``identity_ca_secret``, created at first use: a
``kubernetes.io/tls`` Secret), the only Secret the operator reads; its certificate goes to each
cluster's ``NAME-identity-ca`` ConfigMap. It is valid for ten years; to replace it, delete the
Secret and restart the operator, then the pods (they trust the new CA once their ConfigMap
has it, and get new certificates as they restart).

Caveats:

* Requests are answered as their watch events arrive (kopf ``on.event``: nothing is written
  to them but the answer). One that fails on an API error is not retried by the operator: the
  node asks again when its request has been pending for a minute.
* A denial is posted as a Warning event ``CertificateDenied`` on the cluster when the pod
  belongs to one; otherwise it is only logged (and in the request's condition).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from leaderboard_operator import rendering, resources
from leaderboard_operator.kube import Conflict, Kube, NotFound

log = logging.getLogger("leaderboard_operator.identity")

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
ALLOWED_USAGES = frozenset({"digital signature", "key encipherment", "server auth", "client auth"})
NEEDED_USAGES = frozenset({"server auth", "client auth"})
CA_YEARS = 10
BACKDATE = datetime.timedelta(minutes=5)
MIN_SECONDS = 600  # the API server's own minimum of expirationSeconds


# ----------------------------------------------------------------------------- the CA


@dataclasses.dataclass(frozen=True)
class ClusterCA:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @classmethod
    def generate(cls) -> ClusterCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, resources.GROUP),
                             x509.NameAttribute(NameOID.COMMON_NAME, "leaderboard-operator node identity CA")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
        return cls(certificate=certificate, key=key)

    def secret(self, *, namespace: str, name: str) -> dict[str, Any]:
        key = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {rendering.LABEL_MANAGED_BY: rendering.MANAGER,
                                    rendering.LABEL_PART_OF: "leaderboard-cluster"}},
            "data": {"tls.crt": base64.b64encode(self.pem.encode()).decode(),
                     "tls.key": base64.b64encode(key).decode()},
        }

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> ClusterCA:
        data = secret.get("data") or {}
        try:
            certificate = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
            key = serialization.load_pem_private_key(base64.b64decode(data["tls.key"]), password=None)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"the identity CA Secret holds no PEM certificate and key (tls.crt, tls.key): {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the identity CA's key is not an EC key")
        return cls(certificate=certificate, key=key)

    def sign(self, request: x509.CertificateSigningRequest, *, pod: str, dns_name: str, seconds: float) -> bytes:
        """A certificate for ``pod`` with the request's key, made here (nothing else is copied)."""
        now = datetime.datetime.now(datetime.UTC)
        public_key = request.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, pod)]))
            .issuer_name(self.certificate.subject).public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(seconds=seconds))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        return certificate.public_bytes(serialization.Encoding.PEM)


async def load_or_create_ca(kube: Kube, *, namespace: str, name: str) -> ClusterCA:
    """The CA in the operator's Secret, created at first use (a concurrent creation wins)."""
    try:
        return ClusterCA.from_secret(await kube.get(resources.SECRETS, namespace=namespace, name=name))
    except NotFound:
        pass
    ca = ClusterCA.generate()
    try:
        await kube.create(resources.SECRETS, ca.secret(namespace=namespace, name=name))
    except Conflict:
        return ClusterCA.from_secret(await kube.get(resources.SECRETS, namespace=namespace, name=name))
    log.info("Created the node identity CA in Secret %s/%s", namespace, name)
    return ca


# ----------------------------------------------------------------------------- the checks


@dataclasses.dataclass(frozen=True, kw_only=True)
class Requester:
    """Who made a request, as the API server recorded it."""

    namespace: str
    service_account: str
    pod: str
    pod_uid: str | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
    approved: bool
    reason: str
    message: str
    requester: Requester | None = None
    cluster: Mapping[str, Any] | None = None  # the LeaderboardCluster, when the pod belongs to one
    request: x509.CertificateSigningRequest | None = None
    dns_name: str = ""

    @classmethod
    def deny(cls, reason: str, message: str, **found: Any) -> Verdict:
        return cls(approved=False, reason=reason, message=message, **found)


def requester_of(csr: Mapping[str, Any]) -> Requester | Verdict:
    spec = csr.get("spec") or {}
    username = str(spec.get("username") or "")
    if not username.startswith(SERVICE_ACCOUNT_PREFIX) or username.count(":") != 3:
        return Verdict.deny("NotAServiceAccount", f"requested by {username or 'nobody'}, not a pod's ServiceAccount")
    namespace, service_account = username[len(SERVICE_ACCOUNT_PREFIX):].split(":")
    extra = spec.get("extra") or {}
    names, uids = extra.get(POD_NAME_EXTRA) or [], extra.get(POD_UID_EXTRA) or []
    if len(names) != 1:
        return Verdict.deny("NotAPod", f"requested by {username} with a token not bound to one pod "
                                       f"(spec.extra has no single {POD_NAME_EXTRA})")
    return Requester(namespace=namespace, service_account=service_account, pod=str(names[0]),
                     pod_uid=str(uids[0]) if len(uids) == 1 else None)


def check_request(csr: Mapping[str, Any], *, requester: Requester, pod: Mapping[str, Any] | None,
                  cluster: Mapping[str, Any] | None) -> Verdict:
    """Whether to sign (pure: the pod and its cluster are looked up by the caller)."""
    found: dict[str, Any] = {"requester": requester, "cluster": cluster}
    where = f"{requester.namespace}/{requester.pod}"
    if pod is None:
        return Verdict.deny("PodNotFound", f"no pod {where}", **found)
    metadata, pod_spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if requester.pod_uid is not None and metadata.get("uid") != requester.pod_uid:
        return Verdict.deny("PodMismatch", f"pod {where} is not the one the token was issued to "
                                           f"(uid {metadata.get('uid')}, token {requester.pod_uid})", **found)
    if (pod_spec.get("serviceAccountName") or "default") != requester.service_account:
        return Verdict.deny("PodMismatch", f"pod {where} does not run as {requester.service_account}", **found)
    labels = metadata.get("labels") or {}
    name = labels.get(rendering.LABEL_INSTANCE)
    owners = [ref for ref in metadata.get("ownerReferences") or [] if ref.get("controller")]
    if (labels.get(rendering.LABEL_NAME) != rendering.APP_NAME or not name or cluster is None
            or [(ref.get("kind"), ref.get("name")) for ref in owners] != [("StatefulSet", name)]):
        return Verdict.deny("NotAClusterPod", f"pod {where} is no pod of a LeaderboardCluster", **found)
    names = rendering.Names(name)
    if requester.service_account != names.service_account:
        return Verdict.deny("NotAClusterPod", f"{requester.service_account} is not the ServiceAccount of "
                                              f"LeaderboardCluster {requester.namespace}/{name}", **found)
    if not rendering.ClusterSpec.parse(cluster.get("spec") or {}, default_image="-").identity:
        return Verdict.deny("IdentityDisabled", f"LeaderboardCluster {requester.namespace}/{name} has "
                                                "spec.identity.enabled false", **found)
    dns_name = f"{requester.pod}.{names.peer_domain(requester.namespace)}"
    spec = csr.get("spec") or {}
    usages = set(spec.get("usages") or [])
    if not NEEDED_USAGES <= usages <= ALLOWED_USAGES:
        return Verdict.deny("BadUsages", f"usages {sorted(usages)}: it needs {sorted(NEEDED_USAGES)} and may add "
                                         f"only {sorted(ALLOWED_USAGES - NEEDED_USAGES)}", **found)
    try:
        request = x509.load_pem_x509_csr(base64.b64decode(spec.get("request") or "", validate=True))
    except ValueError as exc:
        return Verdict.deny("BadRequest", f"spec.request is no PEM certificate request: {exc}", **found)
    problem = _problem_of(request, pod=requester.pod, dns_name=dns_name)
    if problem:
        return Verdict.deny("BadRequest", problem, **found)
    return Verdict(approved=True, reason="PodIdentity",
                   message=f"pod {where} of LeaderboardCluster {requester.namespace}/{name} asks for its own name",
                   request=request, dns_name=dns_name, **found)


def _problem_of(request: x509.CertificateSigningRequest, *, pod: str, dns_name: str) -> str:
    try:
        if not request.is_signature_valid:
            return "the request's signature is not valid"
    except InvalidSignature:
        return "the request's signature is not valid"
    subject = [(attribute.oid, attribute.value) for attribute in request.subject]
    if subject != [(NameOID.COMMON_NAME, pod)]:
        return f"the subject must be CN={pod} alone, not {request.subject.rfc4514_string()}"
    names: list[str] = []
    for extension in request.extensions:
        if isinstance(extension.value, x509.SubjectAlternativeName):
            if any(not isinstance(general, x509.DNSName) for general in extension.value):
                return "it asks for names other than DNS names"
            names = extension.value.get_values_for_type(x509.DNSName)
    if names != [dns_name]:
        return f"it must ask for the DNS name {dns_name} alone, not {names}"
    key = request.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, (ec.SECP256R1, ec.SECP384R1)):
            return f"EC keys must be P-256 or P-384, not {key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return f"RSA keys need at least 2048 bits, not {key.key_size}"
    else:
        return f"keys must be EC or RSA, not {type(key).__name__}"
    return ""


def _condition(csr: Mapping[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True"
               for c in (csr.get("status") or {}).get("conditions") or [])


# ----------------------------------------------------------------------------- the handler


async def review(kube: Kube, csr: Mapping[str, Any]) -> Verdict:
    """Look up the requester's pod and cluster, then :func:`check_request`."""
    requester = requester_of(csr)
    if isinstance(requester, Verdict):
        return requester
    try:
        pod: Mapping[str, Any] | None = await kube.get(resources.PODS, namespace=requester.namespace,
                                                       name=requester.pod)
    except NotFound:
        pod = None
    cluster = None
    name = ((pod or {}).get("metadata") or {}).get("labels", {}).get(rendering.LABEL_INSTANCE)
    if name:
        try:
            cluster = await kube.get(resources.CLUSTERS, namespace=requester.namespace, name=name)
        except NotFound:
            cluster = None
    return check_request(csr, requester=requester, pod=pod, cluster=cluster)


async def answer(kube: Kube, csr: Mapping[str, Any], *, ca: ClusterCA, max_seconds: float) -> str:
    """Approve and sign, or deny, a pending request to our signer; what was done (for logs)."""
    metadata, spec, status = csr.get("metadata") or {}, csr.get("spec") or {}, csr.get("status") or {}
    name = str(metadata.get("name"))
    if spec.get("signerName") != rendering.SIGNER_NAME or status.get("certificate"):
        return "ignored"
    if _condition(csr, "Denied") or _condition(csr, "Failed"):
        return "ignored"
    verdict = await review(kube, csr)
    conditions = list(status.get("conditions") or [])
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"status": "True", "reason": verdict.reason, "message": verdict.message[:1024],
                 "lastUpdateTime": now, "lastTransitionTime": now}
    if not verdict.approved:
        if _condition(csr, "Approved"):  # approved by someone else, but not ours to sign
            await kube.patch(resources.CSRS, namespace=None, name=name, subresource="status",
                             patch={"status": {"conditions": [*conditions, {"type": "Failed", **condition}]}})
        else:
            await kube.patch(resources.CSRS, namespace=None, name=name, subresource="approval",
                             patch={"status": {"conditions": [*conditions, {"type": "Denied", **condition}]}})
        log.warning("Denied certificate request %s: %s: %s", name, verdict.reason, verdict.message)
        if verdict.cluster is not None:
            _post(verdict.cluster, reason="CertificateDenied", message=f"{name}: {verdict.message}")
        return "denied"
    if not _condition(csr, "Approved"):
        await kube.patch(resources.CSRS, namespace=None, name=name, subresource="approval",
                         patch={"status": {"conditions": [*conditions, {"type": "Approved", **condition}]}})
    requested = spec.get("expirationSeconds")
    seconds = min(float(requested), max_seconds) if requested else max_seconds
    assert verdict.request is not None and verdict.requester is not None
    pem = ca.sign(verdict.request, pod=verdict.requester.pod, dns_name=verdict.dns_name, seconds=seconds)
    await kube.patch(resources.CSRS, namespace=None, name=name, subresource="status",
                     patch={"status": {"certificate": base64.b64encode(pem).decode()}})
    log.info("Signed certificate request %s for %s (%s, %d s)", name, verdict.requester.pod, verdict.dns_name,
             seconds)
    return "signed"


def _post(cluster: Mapping[str, Any], *, reason: str, message: str) -> None:
    try:
        kopf.warn(dict(cluster), reason=reason, message=message[:1024])
    except LookupError:
        pass  # not inside a running operator

