"""Node identities (``tls.peer_identity``) on real node processes: per-node certificates from a
test CA whose DNS name is the node's under the cluster's domain (``NODE.test.lb``).

A holder of the peer token (and even of a member's certificate) cannot push entries under
another node's origin: 403, counted, nothing changes on any node. Pulls check the certificate
of the node a peer claims to be. Relayed catch-ups and full syncs still work, and a node's
certificate files can be replaced while it runs.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import secrets
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from leaderboard_node.replication import binarylog_pb2 as pb

from ..harness import (Cluster, NodeProcess, all_records, free_port, has_leaderboard, loopback_host, node_info,
                       wait_until)
from .conftest import write_secret
from .pki import TestCA, serial_of

DOMAIN = "test.lb"
BOARD = "guarded"


def identity_settings(ca: TestCA, node: str, *, directory: Path) -> dict[str, Any]:
    cert, key = ca.issue(node, domain=DOMAIN, into=directory)
    return {"tls": {"peer_cert_file": str(cert), "peer_key_file": str(key), "ca_file": str(ca.ca_file),
                    "peer_identity": True, "peer_domain": DOMAIN, "reload_interval": 0.2}}


def identity_cluster(workdir: Path, names: list[str], *, data: bool = False) -> tuple[Cluster, TestCA, str]:
    ca = TestCA(workdir / "ca")
    token = "peer-token-" + secrets.token_hex(8)
    token_file = write_secret(workdir, "peer.token", token)
    cluster = Cluster.create(workdir, len(names), prefix="id", data=data)
    for node, name in zip(cluster.nodes, names, strict=True):
        node.name = name
    for node in cluster.nodes:  # Cluster.create named them id-0..: name the peers again
        peers = [f"{other.name}={other.peer_address}" for other in cluster.nodes if other is not node]
        node.settings["cluster"]["discovery"]["static"]["peers"] = peers
        node.log_path = workdir / f"{node.name}.log"
        node.settings.update(identity_settings(ca, node.name, directory=workdir / "certs"))
        node.settings["auth"] = {"peer_token_file": str(token_file)}
    return cluster, ca, token


def peer_call(node: NodeProcess, method: str, path: str, body: bytes | None, *, token: str,
              context: ssl.SSLContext) -> tuple[int, bytes]:
    host, port = node.peer_address.split(":")
    connection = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
    try:
        connection.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                             "Content-Type": "application/x-protobuf"})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def holding(ca: TestCA, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context that trusts the cluster's CA and presents ``cert`` (if any)."""
    context = ssl.create_default_context(cafile=str(ca.ca_file))
    context.check_hostname = False
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def rejected(node: NodeProcess, reason: str) -> float:
    with node.client() as client:
        _, body = client.request_raw("GET", "/metrics")
    found = re.search(rf'leaderboard_peer_messages_rejected_total\{{reason="{reason}"\}} (\S+)', body.decode())
    return float(found.group(1)) if found else 0.0


def state(node: NodeProcess) -> tuple[Any, ...]:
    with node.client() as client:
        info = client.cluster()["node"]
        return all_records(client, BOARD), info["version_vector"], info["records"], info["leaderboards"]


def forged_batch(*, origin: str, epoch: int, after: int) -> bytes:
    """Entries ``after + 1`` and ``after + 2`` of ``origin``: a leaderboard planted, then ``BOARD`` deleted."""
    batch = pb.Batch(first_seq=after + 1, last_seq=after + 2, sender=origin)
    batch.origin.node, batch.origin.epoch = origin, epoch
    definition = batch.entries.add(seq=after + 1).leaderboard_create.leaderboard
    definition.id, definition.origin, definition.generation = "planted", origin, 1
    definition.sort_order, definition.operator = pb.SORT_ORDER_DESC, pb.OPERATOR_BEST
    delete = batch.entries.add(seq=after + 2).leaderboard_delete
    delete.leaderboard_id, delete.generation = BOARD, 99
    return batch.SerializeToString()


def position(node: NodeProcess, origin: str) -> tuple[int, int]:
    """(epoch, seq) of ``origin``'s current life in ``node``'s version vector."""
    lives = [entry for entry in node_info(node)["version_vector"].values() if entry["node"] == origin]
    entry = max(lives, key=lambda entry: entry["epoch"])
    return int(entry["epoch"]), int(entry["seq"])


@pytest.fixture(scope="module")
def trio(tmp_path_factory) -> Iterator[tuple[Cluster, TestCA, str]]:
    workdir = tmp_path_factory.mktemp("identity")
    cluster, ca, token = identity_cluster(workdir, ["alpha", "bravo", "charlie"])
    cluster.start()
    alpha, bravo, charlie = cluster.clients()
    alpha.create_leaderboard(BOARD)
    alpha.write_record(BOARD, "keeper", 10)
    wait_until(lambda: has_leaderboard(charlie, BOARD), message="the board on charlie")
    charlie.write_record(BOARD, "other", 5)
    cluster.wait_converged([BOARD])
    try:
        yield cluster, ca, token
    finally:
        cluster.stop()
    cluster.assert_logs_clean()


def test_a_token_holder_with_another_members_certificate_cannot_push_under_a_nodes_origin(trio):
    cluster, ca, token = trio
    alpha, bravo, charlie = cluster.nodes
    stolen = ca.directory.parent / "certs" / "charlie.crt", ca.directory.parent / "certs" / "charlie.key"
    epoch, applied = position(bravo, "alpha")
    batch = forged_batch(origin="alpha", epoch=epoch, after=applied)
    for target in (bravo, alpha):  # a third node, and the victim itself
        before, counted = {n.name: state(n) for n in cluster.nodes}, rejected(target, "origin_mismatch")
        status, answer = peer_call(target, "POST", "/peer/v1/batch", batch, token=token,
                                   context=holding(ca, *stolen))
        assert status == 403, answer
        assert json.loads(answer)["error"]["code"] == "origin_mismatch"
        assert rejected(target, "origin_mismatch") == counted + 1
        assert {n.name: state(n) for n in cluster.nodes} == before
    assert position(bravo, "alpha") == (epoch, applied)
    with bravo.client() as client:
        assert client.request_raw("GET", "/v1/leaderboards/planted")[0] == 404


def test_a_member_may_push_its_own_entries(trio):
    """The control case: charlie's certificate and the token do get a batch of charlie's in."""
    cluster, ca, token = trio
    _, bravo, _ = cluster.nodes
    epoch, applied = position(bravo, "charlie")
    again = pb.Batch(first_seq=applied, last_seq=applied, sender="charlie")  # a duplicate: changes nothing
    again.origin.node, again.origin.epoch = "charlie", epoch
    definition = again.entries.add(seq=applied).leaderboard_create.leaderboard
    definition.id, definition.origin, definition.generation = "duplicate", "charlie", 1
    certs = ca.directory.parent / "certs"
    status, answer = peer_call(bravo, "POST", "/peer/v1/batch", again.SerializeToString(), token=token,
                               context=holding(ca, certs / "charlie.crt", certs / "charlie.key"))
    assert status == 200, answer
    ack = pb.BatchAck()
    ack.ParseFromString(answer)
    assert ack.accepted and ack.applied_seq == applied


def test_without_a_certificate_of_the_clusters_ca_a_token_holder_cannot_even_connect(trio, tmp_path):
    cluster, ca, token = trio
    bravo = cluster.nodes[1]
    stranger = TestCA(tmp_path / "stranger", name="stranger CA")
    for context in (holding(ca), holding(ca, *stranger.issue("alpha", domain=DOMAIN))):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            peer_call(bravo, "GET", "/peer/v1/status", None, token=token, context=context)


def test_a_certificate_of_another_cluster_names_no_member(trio, tmp_path):
    cluster, ca, token = trio
    bravo = cluster.nodes[1]
    cert, key = ca.issue("alpha", domain="other.lb", into=tmp_path)
    counted = rejected(bravo, "not_a_member")
    for method, path, body in (("GET", "/peer/v1/status", None),
                               ("POST", "/peer/v1/batch", forged_batch(origin="alpha", epoch=1, after=0))):
        status, answer = peer_call(bravo, method, path, body, token=token, context=holding(ca, cert, key))
        assert status == 403 and json.loads(answer)["error"]["code"] == "not_a_member", answer
    assert rejected(bravo, "not_a_member") == counted + 2


class LyingPeer:
    """A peer port holding bravo's certificate (and the token) that says it is alpha, at a later
    life: a node that believed it would take alpha's entries (and alpha's retirement) from it."""

    def __init__(self, ca: TestCA, cert: Path, key: Path) -> None:
        self.host = loopback_host()
        self.port = free_port(self.host)
        self.paths: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.ca_file))
        context.load_cert_chain(str(cert), str(key))
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._answer)
        self.runner = web.AppRunner(app)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(context), self.loop).result(timeout=10)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _start(self, context: ssl.SSLContext) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port, ssl_context=context).start()

    async def _answer(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        status = pb.Status(state=pb.NODE_STATE_READY, records=1_000_000, protocol=2,
                           time_ms=int(time.time() * 1000))
        status.self.node, status.self.epoch = "alpha", 2**40
        position = status.vector.positions.add(seq=5)
        position.origin.node, position.origin.epoch = "alpha", 2**40
        return web.Response(body=status.SerializeToString(), content_type="application/x-protobuf")

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def test_a_peer_is_trusted_only_as_the_node_its_certificate_names(trio, tmp_path):
    """Listed as alpha, the liar fails the TLS handshake (its certificate names bravo); listed
    as bravo, it gets through TLS but says it is alpha, and its status is refused."""
    _, ca, token = trio
    certs = ca.directory.parent / "certs"
    as_alpha, as_bravo = (LyingPeer(ca, certs / "bravo.crt", certs / "bravo.key") for _ in range(2))
    delta = NodeProcess("delta", tmp_path)
    delta.settings = {
        **identity_settings(ca, "delta", directory=tmp_path),
        "auth": {"peer_token_file": str(write_secret(tmp_path, "peer.token", token))},
        "cluster": {"discovery": {"mode": "static",
                                  "static": {"peers": [f"alpha={as_alpha.address}", f"bravo={as_bravo.address}"]}},
                    "leaderboard_sync": {"anti_entropy_interval": 0.2, "bootstrap_timeout": 1}},
    }
    try:
        delta.start()
        wait_until(lambda: as_bravo.paths.count("/peer/v1/status") >= 3, message="delta to poll the liar thrice")
        members = {m["address"]: m for m in delta.client().cluster()["members"]}
        assert not members[as_alpha.address]["reachable"] and not members[as_bravo.address]["reachable"], members
        assert not [life for life in node_info(delta)["version_vector"].values() if life["node"] == "alpha"]
        assert as_alpha.paths == [], "no request gets past the handshake with a certificate of another name"
        assert set(as_bravo.paths) == {"/peer/v1/status"}, as_bravo.paths  # no catch-up, no snapshot
    finally:
        delta.terminate()
        as_alpha.close()
        as_bravo.close()
    assert not delta.log_errors(), delta.log_errors()[:3]


def test_a_nodes_certificate_files_can_be_replaced_while_it_runs(trio):
    cluster, ca, token = trio
    alpha, bravo, _ = cluster.nodes
    certs = ca.directory.parent / "certs"

    def served_serial() -> int:
        host, port = alpha.peer_address.split(":")
        with _connect(host, int(port), holding(ca, certs / "bravo.crt", certs / "bravo.key")) as tls:
            return serial_of(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode())

    first = served_serial()
    new_cert, new_key = ca.issue("alpha", domain=DOMAIN, into=certs, tag="-next")
    # Replaced as a Secret volume update replaces them: each file at once (key, then certificate).
    (certs / "alpha.key").write_bytes(new_key.read_bytes())
    (certs / "alpha.crt").write_bytes(new_cert.read_bytes())
    second = wait_until(lambda: (s := served_serial()) != first and s, message="alpha to serve its new certificate")
    assert second == serial_of(new_cert.read_bytes())
    assert node_info(alpha)["identity"]["reloads"] >= 1
    with alpha.client() as client:  # it still replicates, under its new certificate
        client.write_record(BOARD, "after-rotation", 7)
    with bravo.client() as client:
        wait_until(lambda: all_records(client, BOARD).get("after-rotation") == 7, message="the write on bravo")

    # A certificate of another node's name is refused: the one in use stays.
    wrong_cert, wrong_key = ca.issue("bravo", domain=DOMAIN, into=certs, tag="-wrong")
    (certs / "alpha.key").write_bytes(wrong_key.read_bytes())
    (certs / "alpha.crt").write_bytes(wrong_cert.read_bytes())
    wait_until(lambda: "tls_reload_refused" in alpha.log_path.read_text(), message="the refusal in alpha's log")
    assert served_serial() == second
    assert "names ['bravo']" in alpha.log_path.read_text()


class _connect:
    """A TLS connection to a peer port, to read the certificate it serves."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.raw = socket.create_connection((host, port), timeout=10)
        self.tls = context.wrap_socket(self.raw)

    def __enter__(self) -> ssl.SSLSocket:
        return self.tls

    def __exit__(self, *exc: object) -> None:
        self.tls.close()


def test_relayed_catch_ups_and_full_syncs_still_work(tmp_path):
    """alpha's entries reach charlie only through bravo (alpha is dead by the time charlie is
    back), and a restarted alpha without its data full-syncs: both are trusted on the relaying
    member's identity."""
    cluster, _, _ = identity_cluster(tmp_path, ["alpha", "bravo", "charlie"], data=True)
    cluster.start()
    alpha, bravo, charlie = cluster.nodes
    try:
        with alpha.client() as client:
            client.create_leaderboard(BOARD)
            client.write_record(BOARD, "first", 1)
        cluster.wait_converged([BOARD])
        charlie.kill()
        with alpha.client() as client:
            client.write_batch(BOARD, [{"owner_id": f"p{i}", "score": i} for i in range(50)])
        with bravo.client() as client:
            wait_until(lambda: len(all_records(client, BOARD)) == 51, message="bravo to hold alpha's batch")
        alpha.kill()
        charlie.start()  # recovers its own data, then catches up from the only member left
        info = node_info(charlie)
        assert info["catch_ups_taken"] >= 1 and info["full_syncs_taken"] == 0, info
        with charlie.client() as client:
            assert len(all_records(client, BOARD)) == 51

        shutil.rmtree(tmp_path / "id-0-data")  # alpha comes back without its data: a full sync
        alpha.start()
        info = node_info(alpha)
        assert info["full_syncs_taken"] >= 1, info
        with alpha.client() as client:
            assert len(all_records(client, BOARD)) == 51
    finally:
        cluster.stop()
    cluster.assert_logs_clean()


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("settings", "problem"), [
    ({"tls": {"peer_identity": True}}, "needs tls.ca_file"),
    ({"tls": {"peer_identity": True, "ca_file": "ca.crt"}}, "needs a peer certificate"),
    ({"tls": {"peer_identity": True, "ca_file": "ca.crt", "peer_cert_file": "n.crt", "peer_key_file": "n.key",
              "peer_server_name": "x"}}, "exclude each other"),
    ({"node": {"name": "Node_1"}}, "is not a DNS label"),
    ({"cluster": {"discovery": {"mode": "dns"}}}, "dns discovery knows only addresses"),
    ({"cluster": {"discovery": {"static": {"peers": ["127.0.0.1:7351"]}}}}, "needs a name that is a DNS label"),
], ids=["no-ca", "no-certificate", "server-name", "node-name", "dns-discovery", "unnamed-peer"])
def test_identities_need_a_ca_a_certificate_and_named_nodes(settings, problem):
    from pydantic import ValidationError

    from leaderboard_node.config import Settings

    base = {"node": {"name": "node-0"},
            "tls": {"peer_identity": True, "ca_file": "ca.crt", "peer_cert_file": "n.crt", "peer_key_file": "n.key"}}
    tree = {key: value if key == "tls" else {**base.get(key, {}), **value} for key, value in settings.items()}
    with pytest.raises(ValidationError, match=problem):
        Settings.model_validate({**base, **tree})


def test_a_node_refuses_to_start_with_a_certificate_of_another_name(tmp_path):
    ca = TestCA(tmp_path / "ca")
    node = NodeProcess("echo", tmp_path)
    node.settings = identity_settings(ca, "echo", directory=tmp_path)
    cert, key = ca.issue("foxtrot", domain=DOMAIN, into=tmp_path)
    node.settings["tls"].update(peer_cert_file=str(cert), peer_key_file=str(key))
    node.start(wait_ready=False)
    assert node.process is not None and node.process.wait(timeout=30) == 78
    assert "tls.peer_cert_file" in node.log_tail() and "names ['foxtrot']" in node.log_tail()
