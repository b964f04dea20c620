"""The peer endpoint with a token file: no token, a wrong token and the right one.

Every refused request is a 401, counted in
``leaderboard_peer_messages_rejected_total{reason="unauthorized"}``, and changes nothing.
"""

from __future__ import annotations

import http.client
import re

import pytest

from leaderboard_node.replication import binarylog_pb2 as pb

from .conftest import SERVER_KEY

BOARD = "peer-guarded"


@pytest.fixture(scope="module", autouse=True)
def seeded(keyed_node):
    with keyed_node.client(api_key=SERVER_KEY) as admin:
        admin.create_leaderboard(BOARD)
        admin.write_record(BOARD, "keeper", 10)


@pytest.fixture(scope="module")
def token(keyed_node) -> str:
    return (keyed_node.workdir / "peer.token").read_text().strip()


def _request(node, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = node.peer_address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _rejected(node) -> float:
    with node.client() as client:
        _, body = client.request_raw("GET", "/metrics")
    match = re.search(r'leaderboard_peer_messages_rejected_total\{reason="unauthorized"\} (\S+)', body.decode())
    return float(match.group(1)) if match else 0.0


def _state(node) -> tuple[object, ...]:
    with node.client(api_key=SERVER_KEY) as admin:
        cluster = admin.cluster()["node"]
        return admin.digest(BOARD)["digest"], cluster["version_vector"], cluster["records"], cluster["leaderboards"]


def _intruding_batch() -> bytes:
    """A well-formed batch that would overwrite a record and create a leaderboard if it got in."""
    batch = pb.Batch(first_seq=1, last_seq=2, sender="intruder")
    batch.origin.node, batch.origin.epoch = "intruder", 1
    entry = batch.entries.add(seq=1)
    definition = entry.leaderboard_create.leaderboard
    definition.id, definition.origin, definition.generation = "planted", "intruder", 1
    definition.sort_order, definition.operator = pb.SORT_ORDER_DESC, pb.OPERATOR_BEST
    entry = batch.entries.add(seq=2)
    delete = entry.leaderboard_delete
    delete.leaderboard_id, delete.generation = BOARD, 99
    return batch.SerializeToString()


PEER_CALLS = [
    ("POST", "/peer/v1/batch", _intruding_batch()),
    ("GET", "/peer/v1/status", None),
    ("POST", "/peer/v1/catchup", pb.CatchUpRequest(after_seq=0, max_entries=10).SerializeToString()),
    ("GET", "/peer/v1/snapshot", None),
]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": "bearer"},
    {"X-Api-Key": "anything"},
], ids=["no-token", "wrong-token", "empty-bearer", "api-key-header"])
@pytest.mark.parametrize(("method", "path", "body"), PEER_CALLS, ids=[p for _, p, _ in PEER_CALLS])
def test_a_peer_request_without_the_right_token_is_refused_counted_and_changes_nothing(
        keyed_node, method, path, body, headers):
    before_state, before_count = _state(keyed_node), _rejected(keyed_node)
    status, answer = _request(keyed_node, method, path, body, {"Content-Type": "application/x-protobuf", **headers})
    assert status == 401, answer
    assert b"unauthorized" in answer
    assert _rejected(keyed_node) == before_count + 1
    assert _state(keyed_node) == before_state


def test_the_client_server_key_is_not_a_peer_token(keyed_node):
    before = _rejected(keyed_node)
    status, _ = _request(keyed_node, "GET", "/peer/v1/status", None, {"Authorization": f"Bearer {SERVER_KEY}"})
    assert status == 401 and _rejected(keyed_node) == before + 1


def test_the_right_token_is_let_in(keyed_node, token):
    status, answer = _request(keyed_node, "GET", "/peer/v1/status", None, {"Authorization": f"Bearer {token}"})
    assert status == 200
    reply = pb.Status()
    reply.ParseFromString(answer)
    assert reply.self.node == keyed_node.name


def test_a_batch_with_the_right_token_is_applied(keyed_node, token):
    """The control case: the same bytes that were refused above do get in with the token."""
    before = _rejected(keyed_node)
    status, answer = _request(keyed_node, "POST", "/peer/v1/batch", _intruding_batch(),
                              {"Authorization": f"Bearer {token}", "Content-Type": "application/x-protobuf"})
    assert status == 200
    ack = pb.BatchAck()
    ack.ParseFromString(answer)
    assert ack.accepted and ack.applied_seq == 2
    assert _rejected(keyed_node) == before
    with keyed_node.client(api_key=SERVER_KEY) as admin:
        assert admin.request_raw("GET", "/v1/leaderboards/planted")[0] == 200
