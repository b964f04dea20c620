"""A hostile peer (one that holds the peer token) and hostile headers, against real nodes.

Each message is refused with a 4xx, changes neither data nor positions, and leaves the node
serving and replicating; the node it targets and its peers stay equal.
"""

from __future__ import annotations

import http.client
import re

import pytest

from leaderboard_node.domain.clock import MAX_HLC
from leaderboard_node.replication import binarylog_pb2 as pb

from ..harness import Cluster, has_leaderboard, node_info, wait_until
from .conftest import write_secret

BOARD = "hostile"
U64_MAX = (1 << 64) - 1


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    token = write_secret(workdir, "peer.token", "peer-token-0123456789abcdef")
    cluster = Cluster.create(workdir, 2, prefix="target", settings={"auth": {"peer_token_file": str(token)}})
    cluster.start()
    with cluster.nodes[0].client() as client:
        client.create_leaderboard(BOARD, operator="incr")
        client.write_record(BOARD, "keeper", 10)
    wait_until(lambda: has_leaderboard(cluster.nodes[1].client(), BOARD) and _has(cluster.nodes[1], "keeper"),
               message="the board and its record on both nodes")
    yield cluster
    cluster.stop()
    errors = {node.name: node.log_errors() for node in cluster.nodes}
    assert not any(errors.values()), errors


def _token(cluster) -> str:
    return (cluster.nodes[0].workdir / "peer.token").read_text().strip()


def _peer(node, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = node.peer_address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _send_batch(cluster, node, batch: pb.Batch) -> tuple[int, bytes]:
    return _peer(node, "POST", "/peer/v1/batch", batch.SerializeToString(),
                 {"Authorization": f"Bearer {_token(cluster)}", "Content-Type": "application/x-protobuf"})


def _position(node, of_node) -> dict[str, int]:
    vector = node_info(node)["version_vector"]
    return {key: value["seq"] for key, value in vector.items() if value["node"] == of_node.name}


def _state(node) -> tuple[object, ...]:
    info = node_info(node)
    with node.client() as client:
        return client.digest(BOARD)["digest"], info["version_vector"], info["records"]


def _origin_of(node) -> tuple[str, int, int]:
    info = node_info(node)
    return info["name"], info["epoch"], info["log_seq"]


def _update(batch: pb.Batch, seq: int, owner: str, score: int, origin: str) -> None:
    entry = batch.entries.add(seq=seq)
    update = entry.record_update
    key = update.key
    key.leaderboard_id, key.incarnation, key.owner_id = BOARD, "x", owner
    update.slot.origin, update.slot.kind, update.slot.hlc = origin, pb.SLOT_KIND_SET, 1 << 16
    update.slot.score, update.slot.num_score = score, 1


def _replicates(cluster, owner: str) -> None:
    """A write on the first node still reaches the second."""
    a, b = cluster.nodes
    with a.client() as client:
        client.write_record(BOARD, owner, 1)
    wait_until(lambda: _has(b, owner), timeout=10, message=f"{owner} replicated")


def _has(node, owner: str) -> bool:
    with node.client() as client:
        try:
            client.record(BOARD, owner)
            return True
        except Exception:
            return False


def test_an_empty_batch_claiming_every_sequence_is_refused_and_silences_nothing(pair):
    a, b = pair.nodes
    name, epoch, seq = _origin_of(a)
    before = _state(b)
    batch = pb.Batch(first_seq=seq + 1, last_seq=U64_MAX, sender=name)
    batch.origin.node, batch.origin.epoch = name, epoch
    status, body = _send_batch(pair, b, batch)
    assert status == 400 and b"malformed_message" in body
    assert _state(b) == before
    _replicates(pair, "after-empty-batch")


def test_a_batch_whose_last_sequence_has_no_entry_is_refused(pair):
    a, b = pair.nodes
    name, epoch, seq = _origin_of(a)
    batch = pb.Batch(first_seq=seq + 1, last_seq=seq + 50, sender=name)
    batch.origin.node, batch.origin.epoch = name, epoch
    _update(batch, seq + 1, "planted", 5, f"{name}@{epoch:013d}")
    before = _state(b)
    status, _ = _send_batch(pair, b, batch)
    assert status == 400 and _state(b) == before
    _replicates(pair, "after-short-batch")


@pytest.mark.parametrize("sent_hlc", [U64_MAX, MAX_HLC + 1])
def test_a_clock_reading_beyond_2106_is_refused_and_writes_go_on(pair, sent_hlc):
    a, b = pair.nodes
    batch = pb.Batch(first_seq=1, last_seq=1, sender="mallory", sent_hlc=sent_hlc)
    batch.origin.node, batch.origin.epoch = "mallory", 1
    _update(batch, 1, "planted", 5, "mallory@0000000000001")
    before = _state(b)
    status, _ = _send_batch(pair, b, batch)
    assert status == 400 and _state(b) == before
    with b.client() as client:
        written = client.write_record(BOARD, "after-clock", 1)
    assert written["update_time"] < 2**32
    status, _ = _peer(b, "GET", "/peer/v1/status", None, {"Authorization": f"Bearer {_token(pair)}"})
    assert status == 200
    _replicates(pair, "after-clock-attack")


def test_a_far_future_clock_within_range_is_applied_but_moves_no_clock(pair):
    a, b = pair.nodes
    future = (4_000_000_000 * 1000) << 16  # the year 2096
    batch = pb.Batch(first_seq=1, last_seq=1, sender="drifter", sent_hlc=future)
    batch.origin.node, batch.origin.epoch = "drifter", 1
    entry = batch.entries.add(seq=1)
    entry.tournament_join.leaderboard_id, entry.tournament_join.incarnation = "elsewhere", "1.x"
    entry.tournament_join.owner_id = "someone"
    status, _ = _send_batch(pair, b, batch)
    assert status == 200
    with b.client() as client:
        written = client.write_record(BOARD, "after-future", 1)
    assert abs(written["update_time"] - node_info(b)["started_at"]) < 3600
    assert _metric(b, "leaderboard_clock_timestamps_ignored_total") >= 1


def test_sequences_of_2_63_and_more_are_refused_before_anything_is_applied(pair):
    a, b = pair.nodes
    batch = pb.Batch(first_seq=1, last_seq=1 << 63, sender="big")
    batch.origin.node, batch.origin.epoch = "big", 1
    _update(batch, 1, "first-of-big", 1, "big@0000000000001")
    _update(batch, 1 << 63, "last-of-big", 1, "big@0000000000001")
    status, _ = _send_batch(pair, b, batch)
    assert status == 400
    assert not _has(b, "first-of-big")
    assert "big@0000000000001" not in node_info(b)["version_vector"]


def test_non_ascii_bytes_in_the_authorization_header_are_a_401_on_the_peer_port(pair):
    status, body = _peer(pair.nodes[1], "GET", "/peer/v1/status", None, {"Authorization": "Bearer \xff\xfe"})
    assert status == 401 and b"unauthorized" in body


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer \xff\xfe"}, {"X-Api-Key": "\xff\xfe-key"}])
def test_non_ascii_bytes_in_a_key_header_are_a_401_on_the_client_port(keyed_node, headers):
    conn = http.client.HTTPConnection(keyed_node.host, keyed_node.port, timeout=10)
    try:
        conn.request("GET", "/v1/leaderboards", headers=headers)
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
    assert status == 401 and b"authorization" in body
    assert not keyed_node.log_errors()


@pytest.mark.parametrize("path", [f"/v1/leaderboards/{BOARD}%0A/records/p1", f"/v1/leaderboards/{BOARD}/records/p1%0A"])
def test_ids_ending_in_a_newline_are_refused(pair, path):
    node = pair.nodes[0]
    with node.client() as client:
        status, body = client.request_raw("GET", path)
    assert status == 400 and b"invalid_argument" in body


def _metric(node, name: str) -> float:
    with node.client() as client:
        _, body = client.request_raw("GET", "/metrics")
    match = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    return float(match.group(1)) if match else 0.0
