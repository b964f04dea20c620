"""Real node processes with TLS on both ports: clients over https, peers replicating over TLS."""

from __future__ import annotations

import http.client
import shutil
import ssl

import pytest

from ..harness import Cluster, wait_until
from .test_tls import _self_signed

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def test_two_nodes_serve_https_and_replicate_to_each_other_over_tls(tmp_path):
    cluster = Cluster.create(tmp_path, 2, prefix="tls")
    cert, key = _self_signed(tmp_path, "cluster", san=",".join(f"IP:{node.host}" for node in cluster.nodes))
    trust = ssl.create_default_context(cafile=str(cert))
    for node in cluster.nodes:
        node.settings["tls"] = {"cert_file": str(cert), "key_file": str(key), "ca_file": str(cert)}
        node.ssl_context = trust
    cluster.start()
    try:
        first, second = cluster.clients()
        first.create_leaderboard("secure")
        first.write_record("secure", "p1", 42)
        wait_until(lambda: _score(second, "secure", "p1") == 42, message="the record on the second node")
        assert second.cluster()["members"][0]["reachable"] is True
        # Plain HTTP on a TLS port gets nothing useful, and a client that does not trust the
        # certificate is refused.
        plain = http.client.HTTPConnection(cluster.nodes[0].host, cluster.nodes[0].port, timeout=5)
        try:
            plain.request("GET", "/v1/leaderboards/secure/records")
            status = plain.getresponse().status
        except (http.client.HTTPException, OSError):
            status = None
        assert status is None or status >= 400, f"plain HTTP on the TLS port answered {status}"
        stranger = http.client.HTTPSConnection(cluster.nodes[0].host, cluster.nodes[0].port, timeout=5,
                                               context=ssl.create_default_context())
        with pytest.raises(ssl.SSLError):
            stranger.request("GET", "/healthz")
    finally:
        cluster.stop()
    cluster.assert_logs_clean()


def _score(client, board, owner):
    try:
        return client.record(board, owner)["score"]
    except Exception:
        return None
