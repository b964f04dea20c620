"""A node's certificate from the Kubernetes API: the node's certificate request against the
emulated API, answered by the embedded operator (kmock records who asked, see
``tests/operator/apiserver.py``). A node renews its certificate before it expires, and one whose
request is denied stays not ready and says why."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cryptography import x509

from leaderboard_node.config import (CertificateRequestSettings, KubernetesDiscoverySettings, TlsSettings)
from leaderboard_node.transport.certificate_request import CertificateRequester
from leaderboard_operator import OperatorConfig, rendering, resources

from ..harness import NodeProcess
from ..operator.conftest import NAMESPACE, OPERATOR_NAMESPACE, ApiServer, Cluster, RunningOperator
from ..operator.test_identity import add_pod, token_of
from .kubelet import wait_for

LIFETIME = 6.0  # seconds of the certificates the operator issues here: renewed after about 4


@pytest.fixture()
def operator_config(k8s: ApiServer) -> OperatorConfig:
    return OperatorConfig(server=str(k8s.url), reconcile_interval=1.0, poll_interval=0.5, api_timeout=5.0,
                          retry_delay=0.2, default_image="leaderboard-node:test", namespace=OPERATOR_NAMESPACE,
                          certificate_seconds=LIFETIME)


def api_settings(k8s: ApiServer, token: str, directory: Path) -> KubernetesDiscoverySettings:
    token_file = directory / "token"
    token_file.write_text(token + "\n")
    return KubernetesDiscoverySettings(namespace=NAMESPACE, api_server=str(k8s.url), token_file=token_file,
                                       ca_file=None)


def identity_tls(directory: Path) -> TlsSettings:
    return TlsSettings(peer_cert_file=directory / "tls.crt", peer_key_file=directory / "tls.key",
                       ca_file=directory / "ca.crt", peer_identity=True, peer_domain=f"lb-peers.{NAMESPACE}.svc",
                       certificate_request=CertificateRequestSettings(signer_name=rendering.SIGNER_NAME))


async def test_a_node_renews_its_certificate_before_it_expires(cluster: Cluster, k8s: ApiServer,
                                                               operator: RunningOperator, tmp_path: Path) -> None:
    await cluster.apply_cluster("lb", {"replicas": 1})
    await wait_for(lambda: cluster.get(resources.STATEFULSETS, "lb"), timeout=10, what="the StatefulSet")
    uid = await add_pod(cluster, "lb-0")
    tls = identity_tls(tmp_path)
    assert tls.certificate_request is not None
    requester = CertificateRequester(tls.certificate_request, tls=tls, node="lb-0",
                                     api=api_settings(k8s, token_of(k8s, pod="lb-0", uid=uid), tmp_path))
    try:
        await asyncio.wait_for(requester.obtain(), timeout=10)
        first = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
        assert requester.issued == 1 and requester.renew_at is not None
        requester.start()
        await wait_for(lambda: requester.issued >= 2, timeout=LIFETIME + 5, what="the renewed certificate")
        second = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    finally:
        await requester.close()
    assert second.serial_number != first.serial_number
    assert second.public_key() != first.public_key()  # a new key with each certificate
    assert first.not_valid_after_utc <= second.not_valid_after_utc
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0  # the key is the node's alone


async def test_a_node_whose_request_is_denied_stays_not_ready_and_says_why(
        cluster: Cluster, k8s: ApiServer, operator: RunningOperator, tmp_path: Path) -> None:
    uid = await add_pod(cluster, "stray-0", instance="stray", service_account="stray-node")  # of no cluster
    api = api_settings(k8s, token_of(k8s, pod="stray-0", uid=uid, service_account="stray-node"), tmp_path)
    node = NodeProcess("stray-0", tmp_path)
    tls = identity_tls(tmp_path).model_dump(mode="json", exclude_none=True)
    node.settings = {
        "cluster": {"discovery": {"mode": "kubernetes", "kubernetes": api.model_dump(mode="json")}},
        "tls": tls,
    }
    node.start(wait_ready=False)
    try:
        def denied() -> bool:
            return "certificate_denied" in node.log_path.read_text()

        await wait_for(denied, timeout=15, what="the denial in the node's log")
        line = next(json.loads(text) for text in node.log_path.read_text().splitlines() if "certificate_denied" in text)
        assert line["reason"] == "NotAClusterPod" and "stray-0" in line["detail"], line
        with node.client() as client:
            status, body = await asyncio.to_thread(client.request_raw, "GET", "/readyz")
        assert status == 503 and json.loads(body)["reason"] == "certificate"
    finally:
        await asyncio.to_thread(node.terminate)
    assert node.process is not None and node.process.returncode == 0  # SIGTERM while waiting: a clean stop
