"""Bad peer traffic is refused, counted, and harmless."""

from __future__ import annotations

import http.client
import re

import pytest
import zstandard

from leaderboard_node.replication import binarylog_pb2 as pb

from ..harness import NodeProcess


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess("peer-endpoint", tmp_path_factory.mktemp("peer"),
                          settings={"cluster": {"leaderboard_sync": {"max_message_bytes": 65536}}})
    process.start()
    with process.client() as client:
        client.create_leaderboard("kept")
        client.write_record("kept", "p1", 10)
    yield process
    process.terminate()


def _post(node, path, body, headers=None):
    host, port = node.peer_address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("POST", path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def _rejected(node, reason):
    with node.client() as client:
        _, body = client.request_raw("GET", "/metrics")
    match = re.search(rf'leaderboard_peer_messages_rejected_total{{reason="{reason}"}} (\S+)', body.decode())
    return float(match.group(1)) if match else 0.0


def _valid_batch() -> pb.Batch:
    batch = pb.Batch(first_seq=1, last_seq=1, sender="intruder")
    batch.origin.node, batch.origin.epoch = "intruder", 1
    entry = batch.entries.add(seq=1)
    key = entry.record_update.key
    key.leaderboard_id, key.incarnation, key.expiry, key.owner_id = "kept", "1.x", 0, "evil"
    entry.record_update.slot.origin = "intruder"
    entry.record_update.slot.kind = pb.SLOT_KIND_SET
    entry.record_update.slot.hlc = 1
    return batch


@pytest.mark.parametrize("body", [
    b"\xff\xff\xff garbage",
    _valid_batch().SerializeToString()[:-7],
    pb.Batch(first_seq=5, last_seq=2).SerializeToString(),
])
def test_malformed_and_truncated_batches_are_refused_and_counted(node, body):
    before_digest = node.client().digest("kept")
    before = _rejected(node, "malformed")
    status, _ = _post(node, "/peer/v1/batch", body)
    assert status == 400
    assert _rejected(node, "malformed") == before + 1
    assert node.client().digest("kept") == before_digest
    assert node.client().ready()


def test_an_oversized_batch_is_refused_with_413(node):
    before = _rejected(node, "too_large")
    status, _ = _post(node, "/peer/v1/batch", b"\x00" * 70000)
    assert status == 413
    assert _rejected(node, "too_large") == before + 1


def test_a_compressed_batch_that_expands_beyond_the_limit_is_refused(node):
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * 10_000_000)
    status, _ = _post(node, "/peer/v1/batch", bomb, {"X-Leaderboard-Compression": "zstd"})
    assert status == 400
    assert node.client().ready()


def test_a_batch_with_an_entry_outside_its_range_changes_nothing(node):
    batch = _valid_batch()
    batch.entries[0].seq = 9
    before = node.client().digest("kept")
    status, _ = _post(node, "/peer/v1/batch", batch.SerializeToString())
    assert status == 400
    assert node.client().digest("kept") == before
