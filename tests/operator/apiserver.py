"""
What a real Kubernetes API server does that kmock does not, played by the test harness.

kmock (0.8) stores what it is sent, as sent. A real API server (1.36, checked by hand against
kube-apiserver, kube-controller-manager and kube-scheduler; see
``/work/shared/notes/real-apiserver.md``) changes and refuses things on the way in, and the
operator's defects of issue 15 all hid in that gap. :class:`ApiServer` closes the part of it
the operator meets; every write goes through :meth:`ApiServer._admit`, which computes the
object as a real server would store it and hands kmock a patch that produces exactly that:

* **Canonical quantities.** ``cpu: "0.5"`` is stored as ``500m``, ``1000m`` as ``1``,
  ``1024Mi`` as ``1Gi``, ``2`` (a number) as ``"2"`` (:func:`canonical_quantity`), in the
  containers of pods and pod templates and in claim templates.
* **Defaulting.** StatefulSets, pod templates, pods and Services get the fields the API
  server's defaulting functions add (``revisionHistoryLimit``, ``terminationMessagePath``,
  probes' ``successThreshold``, ``sessionAffinity``, an allocated ``clusterIP``...), and a
  LeaderboardCluster gets its CRD's structural defaults, with undeclared fields pruned.
* **Validation.** Names: DNS-1035 labels for Services, DNS-1123 subdomains for the rest. A
  LeaderboardCluster is validated against its CRD's ``openAPIV3Schema`` and its CEL rules
  (``x-kubernetes-validations``, evaluated with cel-python), on every write, status included.
  Refusals are 422 ``Invalid`` with the field named, as the real server answers.
* **generation** starts at 1 and grows when the spec changes (never on status writes).
* **Status subresource** of the custom resource: a write to the object keeps its status, a
  write to ``/status`` keeps everything else.
* **Scale subresource** of the custom resource: ``GET .../scale`` answers an
  ``autoscaling/v1`` ``Scale``; a PATCH of ``.../scale`` changes only ``spec.replicas`` (the
  CRD's ``specReplicasPath``) and is validated like any other write.
* **Garbage collection** (background propagation): when an object goes, its dependents
  whose owners are all gone go too (marked for deletion first if they have finalizers).
* **NetworkPolicies** are validated (a pod selector, ports that are numbers or IANA service
  names, peers that are selectors or an IP block, policy types) and defaulted (``protocol``,
  ``policyTypes``) as the API server does.
* **CertificateSigningRequests** (``certificates.k8s.io/v1``): the API server, not the client,
  fills in who made one (``spec.username``, ``uid``, ``groups``, ``extra``): here from the
  bearer token, which :attr:`ApiServer.tokens` maps to a pod's identity as a bound
  ServiceAccount token would (the kubelet harness registers one per pod; an unknown token is
  the cluster admin). ``spec`` is validated (a PEM request, known usages,
  ``expirationSeconds`` >= 600) and immutable; the ``approval`` subresource changes only the
  conditions (Approved and Denied exclude each other, neither is taken back); the ``status``
  subresource sets the certificate only on an approved request, once, as PEM. There is no
  signer: the operator is the signer of its requests, and nothing else answers them.

It also keeps what the harness needed before: a new ``resourceVersion`` on every write, ``uid``,
``creationTimestamp`` and ``generateName``, and 422 instead of 500 for a failed JSON-patch
``test``. Writes are serialised by one lock, so that an object is admitted against the state
it is then written over.

Caveats: no resourceVersion preconditions, no strategic merge or apply patches (the operator
sends neither), no status isolation for built-in kinds (the kubelet harness patches pods'
status on the pod itself), and only the defaults the operator's children can meet.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import decimal
import itertools
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import celpy
import jsonpatch
import jsonschema
import kmock as kmock_lib
import yaml
from cryptography import x509
from kubernetes.utils import parse_quantity

from leaderboard_operator import resources

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "leaderboardclusters.yaml"
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
SKIP_ADMISSION_HEADER = "X-Harness-Skip-Admission"  # objects an older CRD (without these rules) let in


def kmock_key(resource: resources.Resource) -> kmock_lib.resource:
    return kmock_lib.resource(group=resource.group, version=resource.version, plural=resource.plural)


# ----------------------------------------------------------------------------- quantities

_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def canonical_quantity(value: str | int | float) -> str:
    """A quantity as the API server stores it (``resource.Quantity``'s canonical string).

    Binary-suffixed integers of at least 1Ki keep the largest binary suffix that divides them
    (``1024Mi`` -> ``1Gi``); everything else is decimal, rounded up to nano units, with the
    largest decimal suffix that leaves an integer (``0.5`` -> ``500m``, ``1000m`` -> ``1``)."""
    text = str(value).strip()
    number = parse_quantity(text)  # ValueError for nonsense
    if re.search(r"[KMGTPE]i$", text) and number == number.to_integral_value() and abs(number) >= 1024:
        exponent = 0
        while exponent < 6 and number % (1024 ** (exponent + 1)) == 0:
            exponent += 1
        return f"{int(number) // 1024 ** exponent}{_BINARY_SUFFIXES[exponent]}"
    nanos = int((number * 10 ** 9).to_integral_value(rounding=decimal.ROUND_CEILING))
    if nanos == 0:
        return "0"
    exponent = -9
    while exponent < 18 and nanos % 10 ** (exponent + 3 + 9) == 0:
        exponent += 3
    return f"{nanos // 10 ** (exponent + 9)}{_DECIMAL_SUFFIXES[exponent]}"


def _canonical_map(quantities: Any, field: str) -> Any:
    if not isinstance(quantities, dict):
        return quantities
    result = {}
    for key, value in quantities.items():
        try:
            result[key] = canonical_quantity(value)
        except (ValueError, TypeError, decimal.InvalidOperation) as exc:
            raise invalid(f"{field}.{key}", value, "must match the regular expression of a quantity") from exc
    return result


# ----------------------------------------------------------------------------- errors

def invalid(field: str, value: Any, detail: str, *, kind: str = "", name: str = "") -> kmock_lib.KubernetesError:
    """A 422 as the real API server words it."""
    prefix = f'{kind} "{name}" is invalid: ' if kind else ""
    return kmock_lib.KubernetesError(status=422, reason="Invalid",
                                     message=f"{prefix}{field}: Invalid value: {value!r}: {detail}")


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise invalid("metadata.name", name, "name or generateName is required", kind=kind, name=str(name))
    if kind == "Service":
        if len(name) > 63 or not DNS_1035_LABEL.fullmatch(name):
            raise invalid("metadata.name", name,
                          "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                          "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
                          "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')", kind=kind, name=name)
    elif len(name) > 253 or not DNS_1123_SUBDOMAIN.fullmatch(name):
        raise invalid("metadata.name", name,
                      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                      "and must start and end with an alphanumeric character", kind=kind, name=name)


# ----------------------------------------------------------------------------- defaulting

def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        probe.setdefault(key, value)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(container: dict[str, Any], *, pod: bool, field: str) -> None:
    image = str(container.get("image") or "")
    container.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        _default_probe(container.get(key))
    for var in container.get("env") or []:
        field_ref = (var.get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    resources_ = container.get("resources")
    if isinstance(resources_, dict):
        for part in ("requests", "limits"):
            if part in resources_:
                resources_[part] = _canonical_map(resources_[part], f"{field}.resources.{part}")
        if pod and resources_.get("limits"):  # a pod's requests default to its limits (pods only)
            resources_["requests"] = {**resources_["limits"], **(resources_.get("requests") or {})}


def _default_pod_spec(spec: dict[str, Any], *, pod: bool, field: str) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    if pod:
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
    for index, container in enumerate(spec.get("containers") or []):
        _default_container(container, pod=pod, field=f"{field}.containers[{index}]")
    for volume in spec.get("volumes") or []:
        for source in ("projected", "configMap", "secret"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 0o644)


def default_stateful_set(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strategy.get("type") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"partition": 0})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    template = spec.setdefault("template", {})
    _default_pod_spec(template.setdefault("spec", {}), pod=False, field="spec.template.spec")
    for claim in spec.get("volumeClaimTemplates") or []:
        claim_spec = claim.setdefault("spec", {})
        claim_spec.setdefault("volumeMode", "Filesystem")
        requests = (claim_spec.get("resources") or {}).get("requests")
        if requests is not None:
            claim_spec["resources"]["requests"] = _canonical_map(requests, "spec.volumeClaimTemplates.resources.requests")
        claim.setdefault("status", {"phase": "Pending"})


def default_pod(obj: dict[str, Any]) -> None:
    _default_pod_spec(obj.setdefault("spec", {}), pod=True, field="spec")


_cluster_ips = (f"10.96.{n // 250}.{n % 250 + 1}" for n in itertools.count(1))
_node_ports = itertools.count(30000)


def default_service(obj: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    old_spec = (old or {}).get("spec") or {}
    service_type = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if "clusterIP" not in spec:
        spec["clusterIP"] = old_spec.get("clusterIP") or next(_cluster_ips)
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    old_node_ports = {port.get("port"): port.get("nodePort") for port in old_spec.get("ports") or []}
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if service_type in ("NodePort", "LoadBalancer") and "nodePort" not in port:
            port["nodePort"] = old_node_ports.get(port.get("port")) or next(_node_ports)
    if service_type in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if service_type == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


# ----------------------------------------------------------------------------- the custom resource

def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return loaded


def crd_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """Default a value the way the API server does (absent fields with a default get it)."""
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in (schema.get("properties") or {}):
                    value[name] = apply_defaults(extra, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def undeclared(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """Fields of ``value`` that the API server would prune under ``schema``."""
    if schema.get("x-kubernetes-preserve-unknown-fields") is True:
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                found += undeclared(properties[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                found += undeclared(extra, item, f"{path}.{key}")
            else:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += undeclared(schema["items"], item, f"{path}[{index}]")
    return found


def prune(schema: Mapping[str, Any], value: Any) -> Any:
    """Drop what the schema does not declare (structural pruning)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") is True:
        return value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {key: prune(properties[key], item) if key in properties else prune(extra, item)
                for key, item in value.items() if key in properties or isinstance(extra, dict)}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(schema["items"], item) for item in value]
    return value


def _cel_rules(schema: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
    for rule in schema.get("x-kubernetes-validations") or []:
        yield path, rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from _cel_rules(sub, (*path, name))


def admit_cluster(obj: dict[str, Any], old: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A LeaderboardCluster as the API server stores it: pruned, defaulted, validated.

    Validation ratchets (Kubernetes >= 1.30): on an update, a value that did not change is not
    refused, so the status of an object let in by an older CRD can still be written."""
    schema = crd_schema()
    metadata = obj.get("metadata") or {}
    name = str(metadata.get("name"))
    _check_name(resources.KIND, metadata.get("name"))
    body = {key: value for key, value in obj.items() if key not in ("spec", "status")}
    for part in ("spec", "status"):
        if part in obj:
            body[part] = prune(schema["properties"][part], obj[part])
    body = apply_defaults(schema, body)
    def unchanged(path: tuple[Any, ...]) -> bool:
        return old is not None and _get(old, path) == _get(body, path)

    errors = sorted((error for error in jsonschema.Draft4Validator(schema).iter_errors(body)
                     if not unchanged(tuple(error.absolute_path))), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        field = ".".join(str(part) for part in error.absolute_path)
        raise invalid(field, error.instance, error.message, kind=resources.KIND, name=name)
    environment = celpy.Environment()
    for path, rule in _cel_rules(schema):
        target: Any = body if not path else _get(body, path)
        if target is None or unchanged(path if path else ("metadata", "name")):
            continue  # rules of an absent or unchanged field do not apply
        scope = {"self": celpy.json_to_cel(target if path else {"metadata": {"name": name}, **target})}
        if not environment.program(environment.compile(rule["rule"])).evaluate(scope):
            field = ".".join(path) or "<root>"
            raise invalid(field, "object", rule.get("message") or f"failed rule: {rule['rule']}",
                          kind=resources.KIND, name=name)
    return body


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if isinstance(tree, list) and isinstance(key, int) and key < len(tree):
            tree = tree[key]
        elif isinstance(tree, dict) and key in tree:
            tree = tree[key]
        else:
            return None
    return tree


def scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1`` Scale of a custom resource (the CRD's replicas and selector paths)."""
    metadata = obj.get("metadata") or {}
    return {
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {key: metadata.get(key) for key in ("name", "namespace", "uid", "resourceVersion")},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas")},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": (obj.get("status") or {}).get("selector", "")},
    }


# ----------------------------------------------------------------------------- network policies

IANA_SVC_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*[a-z0-9]|[a-z]")


def admit_network_policy(obj: dict[str, Any]) -> None:
    """Validate and default a NetworkPolicy as the API server does (the parts a policy can get wrong)."""
    name = str((obj.get("metadata") or {}).get("name"))
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("podSelector"), dict):
        raise invalid("spec.podSelector", None, "Required value", kind="NetworkPolicy", name=name)
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for index, rule in enumerate(spec.get(direction) or []):
            for number, port in enumerate(rule.get("ports") or []):
                field = f"spec.{direction}[{index}].ports[{number}]"
                port.setdefault("protocol", "TCP")
                if port["protocol"] not in ("TCP", "UDP", "SCTP"):
                    raise invalid(f"{field}.protocol", port["protocol"], 'supported values: "SCTP", "TCP", "UDP"',
                                  kind="NetworkPolicy", name=name)
                value = port.get("port")
                if isinstance(value, str) and not (len(value) <= 15 and IANA_SVC_NAME.fullmatch(value)):
                    raise invalid(f"{field}.port", value, "must contain only alpha-numeric characters (a-z, 0-9), "
                                  "and hyphens (-), at most 15, at least one letter", kind="NetworkPolicy", name=name)
                if isinstance(value, int) and not 1 <= value <= 65535:
                    raise invalid(f"{field}.port", value, "must be between 1 and 65535, inclusive",
                                  kind="NetworkPolicy", name=name)
            for number, peer in enumerate(rule.get(peers_key) or []):
                field = f"spec.{direction}[{index}].{peers_key}[{number}]"
                kinds = [key for key in ("podSelector", "namespaceSelector", "ipBlock") if key in peer]
                if not kinds or ("ipBlock" in kinds and len(kinds) > 1) or set(peer) - set(kinds):
                    raise invalid(field, peer, "must specify a peerSelector or ipBlock, not both, and nothing else",
                                  kind="NetworkPolicy", name=name)
    if "policyTypes" not in spec:
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    for value in spec["policyTypes"]:
        if value not in ("Ingress", "Egress"):
            raise invalid("spec.policyTypes", value, 'supported values: "Egress", "Ingress"',
                          kind="NetworkPolicy", name=name)


# ----------------------------------------------------------------------------- certificate requests

CSR_KIND = "CertificateSigningRequest"
KNOWN_USAGES = frozenset({
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
    "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
    "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"})
CLUSTER_ADMIN = {"username": "kubernetes-admin", "uid": "", "groups": ["system:masters", "system:authenticated"]}


def pod_token_identity(*, namespace: str, service_account: str, pod: str, pod_uid: str) -> dict[str, Any]:
    """Who a pod's bound ServiceAccount token says its bearer is (what the API server records)."""
    return {
        "username": f"system:serviceaccount:{namespace}:{service_account}",
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{service_account}")),
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/pod-name": [pod], "authentication.kubernetes.io/pod-uid": [pod_uid],
                  "authentication.kubernetes.io/credential-id": [f"JTI={uuid.uuid4()}"]},
    }


def _csr_invalid(field: str, value: Any, detail: str, name: str) -> kmock_lib.KubernetesError:
    return invalid(field, value, detail, kind=CSR_KIND, name=name)


def admit_csr(obj: dict[str, Any], *, requester: Mapping[str, Any]) -> None:
    """A new request as the API server stores it: validated, with its requester filled in."""
    name = str((obj.get("metadata") or {}).get("name"))
    spec = obj.setdefault("spec", {})
    signer = spec.get("signerName")
    if not isinstance(signer, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9][-A-Za-z0-9_.]*",
                                                       signer):
        raise _csr_invalid("spec.signerName", signer, "must be a fully qualified domain and path of the form "
                           "'example.com/signer-name'", name)
    try:
        pem = base64.b64decode(spec.get("request") or "", validate=True)
        x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise _csr_invalid("spec.request", "<request data>", f"no PEM CERTIFICATE REQUEST block: {exc}", name) from exc
    usages = spec.get("usages")
    if not usages or any(usage not in KNOWN_USAGES for usage in usages):
        raise _csr_invalid("spec.usages", usages, "known key usages, at least one", name)
    seconds = spec.get("expirationSeconds")
    if seconds is not None and (not isinstance(seconds, int) or seconds < 600):
        raise _csr_invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 600 seconds "
                           "(10 minutes)", name)
    for key in ("username", "uid", "groups", "extra"):
        spec.pop(key, None)
        if requester.get(key):
            spec[key] = copy.deepcopy(requester[key])
    obj["status"] = {}


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or []}


def admit_csr_update(old: Mapping[str, Any], new: dict[str, Any], *, subresource: str | None) -> dict[str, Any]:
    """What a write to a request changes: nothing of the spec, the conditions through ``approval``,
    the certificate (once, when approved) through ``status``."""
    name = str((old.get("metadata") or {}).get("name"))
    status = dict(old.get("status") or {})
    if subresource == "approval":
        status["conditions"] = copy.deepcopy((new.get("status") or {}).get("conditions") or [])
    elif subresource == "status":
        status = copy.deepcopy(dict(new.get("status") or {}))
    result = {**copy.deepcopy(dict(new)), "spec": copy.deepcopy(old.get("spec")), "status": status}
    before, after = _conditions(old), _conditions(result)
    if "Approved" in after and "Denied" in after:
        raise _csr_invalid("status.conditions", "Approved, Denied", "Approved and Denied conditions are mutually "
                           "exclusive", name)
    if any(kind in before and kind not in after for kind in ("Approved", "Denied")):
        raise _csr_invalid("status.conditions", list(after), "updates may not remove a condition of type "
                           "Approved or Denied", name)
    certificate = status.get("certificate")
    if certificate != (old.get("status") or {}).get("certificate"):
        if (old.get("status") or {}).get("certificate"):
            raise _csr_invalid("status.certificate", "<certificate data>", "updates may not modify existing "
                               "certificate content", name)
        if "Approved" not in after or "Denied" in after or "Failed" in after:
            raise _csr_invalid("status.certificate", "<certificate data>", "certificate may only be set when the "
                               "request is approved", name)
        try:
            x509.load_pem_x509_certificates(base64.b64decode(certificate, validate=True))
        except ValueError as exc:
            raise _csr_invalid("status.certificate", "<certificate data>", f"must contain at least one "
                               f"CERTIFICATE PEM block: {exc}", name) from exc
    return result


# ----------------------------------------------------------------------------- patches

def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into exactly ``new``."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key in old and isinstance(old[key], Mapping) and isinstance(value, Mapping):
            sub = merge_patch(old[key], value)
            if sub:
                patch[key] = sub
        elif key not in old or old[key] != value:
            patch[key] = value
    return patch


def _apply(old: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    if isinstance(patch, list):
        try:
            result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(dict(old)), patch, in_place=False)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise kmock_lib.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        return result
    return _merge(copy.deepcopy(dict(old)), patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- the server

@attrs.define(kw_only=True)
class ApiServer(kmock_lib.KubernetesEmulator):
    """kmock's emulator behaving like a real API server where the operator can tell (see the module docstring)."""

    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _writes: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    #: bearer token -> who the API server takes its bearer for (see :func:`pod_token_identity`)
    tokens: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False)

    def requester(self, request: kmock_lib.Request) -> Mapping[str, Any]:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        return self.tokens.get(token.strip(), CLUSTER_ADMIN) if scheme.lower() == "bearer" else CLUSTER_ADMIN

    async def _handle(self, request: kmock_lib.Request) -> aiohttp.web.StreamResponse:
        action = request.action
        if request.resource is None or action not in (kmock_lib.action.CREATE, kmock_lib.action.UPDATE,
                                                      kmock_lib.action.DELETE, kmock_lib.action.FETCH):
            return await super()._handle(request)
        if action == kmock_lib.action.FETCH:
            if request.subresource == "scale":
                obj = self._current(request)
                if obj is None:
                    raise kmock_lib.KubernetesError(status=404, reason="NotFound", message=f"{request.name} not found")
                return aiohttp.web.json_response(scale_of(obj))
            return await super()._handle(request)
        async with self._writes:
            if action in (kmock_lib.action.CREATE, kmock_lib.action.UPDATE):
                self._admit(request)
            response = await super()._handle(request)
            await self._collect_garbage()
            return response

    def _current(self, request: kmock_lib.Request) -> dict[str, Any] | None:
        try:
            obj = self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return None
        return None if obj.deleted else copy.deepcopy(obj.raw)

    def _admit(self, request: kmock_lib.Request) -> None:
        """Rewrite the request's body into what produces the object a real server would store."""
        skip = request.headers.get(SKIP_ADMISSION_HEADER) == "true"
        kind = self._kind(request.resource)
        if request.action == kmock_lib.action.CREATE:
            if not isinstance(request.data, dict):
                return
            new = copy.deepcopy(request.data)
            metadata = new.setdefault("metadata", {})
            if not metadata.get("name") and metadata.get("generateName"):
                metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", _now())
            metadata["generation"] = 1
            if kind == CSR_KIND:
                admit_csr(new, requester=self.requester(request))
            new = self._normalise(kind, new, old=None, skip=skip)
            new["metadata"]["resourceVersion"] = str(next(self._versions))
            request.data.clear()
            request.data.update(new)
            return
        old = self._current(request)
        if old is None:
            return  # kmock answers 404
        new = _apply(old, request.data)
        if kind == resources.KIND:
            if request.subresource == "status":
                new = {**old, "status": new.get("status"), "metadata": new["metadata"]}
            elif request.subresource == "scale":
                replicas = (new.get("spec") or {}).get("replicas")
                new = {**old, "spec": {**(old.get("spec") or {}), "replicas": replicas}}
            else:
                new = {**new, "status": old.get("status")}
            if new.get("status") is None:
                new.pop("status", None)
            new = copy.deepcopy(new)  # shares nothing with old, which the patch is computed against
        elif kind == CSR_KIND:
            new = admit_csr_update(old, new, subresource=request.subresource)
        new = self._normalise(kind, new, old=old, skip=skip)
        if self._spec_of(new) != self._spec_of(old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        if isinstance(request.data, list):
            request.data[:] = [{"op": "replace", "path": "", "value": new}]
        else:
            request.data.clear()
            request.data.update(merge_patch(old, new))

    @staticmethod
    def _spec_of(obj: Mapping[str, Any]) -> Any:
        return {key: value for key, value in obj.items() if key not in ("metadata", "status")}

    def _kind(self, resource: Any) -> str:
        try:
            return str(self.resources[resource].kind)
        except KeyError:
            return ""

    @staticmethod
    def _normalise(kind: str, obj: dict[str, Any], *, old: Mapping[str, Any] | None, skip: bool) -> dict[str, Any]:
        if skip:
            return obj
        name = (obj.get("metadata") or {}).get("name")
        if kind == resources.KIND:
            return admit_cluster(obj, old)
        if kind != "Event" or old is None:
            _check_name(kind, name)
        if kind == "StatefulSet":
            default_stateful_set(obj)
        elif kind == "Pod":
            default_pod(obj)
        elif kind == "Service":
            default_service(obj, old)
        elif kind == "Secret":
            obj.setdefault("type", "Opaque")
        elif kind == "NetworkPolicy":
            admit_network_policy(obj)
        return obj

    async def _collect_garbage(self) -> None:
        """Background deletion of the dependents whose owners are all gone."""
        while True:
            async with self._lock:
                live = {(obj.raw.get("metadata") or {}).get("uid") for obj in self.objects.values() if not obj.deleted}
                orphans = []
                for key, obj in self.objects.items():
                    if obj.deleted:
                        continue
                    metadata = obj.raw.get("metadata") or {}
                    owners = [ref.get("uid") for ref in metadata.get("ownerReferences") or []]
                    if owners and not any(uid in live for uid in owners) and not metadata.get("deletionTimestamp"):
                        orphans.append((key, obj))
                for (resource, _, _), obj in orphans:
                    if obj.raw.get("metadata", {}).get("finalizers"):
                        obj.patch({"metadata": {"deletionTimestamp": _now()}})
                        await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})
                    else:
                        raw = obj.raw
                        obj.delete()
                        await self._buses[resource].put({"type": "DELETED", "object": raw})
            if not orphans:
                return
