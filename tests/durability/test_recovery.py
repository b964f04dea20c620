"""Nodes keep their state on disk: restarts, whole-cluster crashes, damaged files."""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from leaderboard_client import ApiError
from leaderboard_node.durability import frames
from leaderboard_node.replication import binarylog_pb2 as pb
from leaderboard_node.replication.sync import SYNC_FORMAT

from ..harness import Cluster, NodeProcess, all_records, fill_board, has_leaderboard, node_info, wait_until


def _durable_node(tmp_path: Path, name: str, **durability) -> NodeProcess:
    return NodeProcess(name, tmp_path, settings={
        "node": {"data_dir": str(tmp_path / f"{name}-data")},
        "durability": {"fsync": "everysec", **durability},
        "cluster": {"leaderboard_sync": {"bootstrap_timeout": 5}},
    })


def _wait_for_snapshots(node: NodeProcess, count: int) -> None:
    wait_until(lambda: node_info(node)["durability"]["snapshots_written"] >= count,
               message=f"{count} snapshot(s) written by {node.name}")


def test_a_single_node_keeps_its_records_across_a_sigkill(tmp_path):
    node = _durable_node(tmp_path, "solo").start()
    try:
        with node.client() as client:
            client.create_leaderboard("kept", operator="incr")
            for i in range(50):
                client.write_record("kept", f"p{i % 5}", i)
            before = all_records(client, "kept")
            digest = client.digest("kept")["digest"]
        node.kill()
        node.start()
        with node.client() as client:
            assert all_records(client, "kept") == before
            assert client.digest("kept")["digest"] == digest
            client.write_record("kept", "p0", 1)  # and it keeps accepting writes in a new epoch
            assert client.record("kept", "p0")["score"] == before["p0"] + 1
        assert node_info(node)["durability"]["recovery"]["replayed_batches"] >= 1
    finally:
        node.kill()


def test_a_snapshot_trims_the_log_and_recovery_starts_from_it(tmp_path):
    node = _durable_node(tmp_path, "snap", snapshot_interval=0.5).start()
    try:
        with node.client() as client:
            fill_board(client, "snap", 500)
        _wait_for_snapshots(node, 1)
        with node.client() as client:
            client.write_record("snap", "late", 10_000)
        node.kill()
        node.start()
        recovery = node_info(node)["durability"]["recovery"]
        assert recovery["snapshot"] is not None and recovery["snapshot_records"] >= 500
        with node.client() as client:
            assert client.record("snap", "late")["rank"] == 1
            assert client.records("snap", limit=1)["rank_count"] == 501
    finally:
        node.kill()


class Writer(threading.Thread):
    def __init__(self, node, board, prefix, *, seconds=20.0):
        super().__init__(daemon=True)
        self.node, self.board, self.prefix, self.seconds = node, board, prefix, seconds
        self.acknowledged: dict[str, int] = {}
        self.stopped = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.seconds
        with self.node.client(timeout=3) as client:
            for i in range(100_000):
                if self.stopped.is_set() or time.monotonic() > deadline:
                    return
                batch = [{"owner_id": f"{self.prefix}-{i}-{j}", "score": i} for j in range(10)]
                try:
                    client.write_batch(self.board, batch)
                except (ApiError, OSError):
                    return  # the node was killed: everything before this was acknowledged
                self.acknowledged.update({b["owner_id"]: b["score"] for b in batch})


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_a_whole_cluster_killed_mid_load_comes_back_with_every_acknowledged_write(tmp_path, fsync):
    cluster = Cluster.create(tmp_path, 3, prefix=f"crash-{fsync}", settings={"durability": {"fsync": fsync}},
                             sync={"bootstrap_timeout": 15}, data=True)
    cluster.start()
    try:
        with cluster.nodes[0].client() as client:
            client.create_leaderboard("crash")
        wait_until(lambda: all(has_leaderboard(c, "crash") for c in cluster.clients()), message="the board everywhere")
        writers = [Writer(node, "crash", node.name) for node in cluster.nodes]
        for writer in writers:
            writer.start()
        time.sleep(1.5)
        for node in cluster.nodes:  # all at once, as a node-pool rotation gone wrong
            node.kill()
        for writer in writers:
            writer.join(timeout=10)
        acknowledged = {k: v for w in writers for k, v in w.acknowledged.items()}
        assert len(acknowledged) > 200
        cluster.start()
        cluster.wait_converged(["crash"], timeout=60)
        for node in cluster.nodes:
            with node.client() as client:
                held = all_records(client, "crash")
            lost = [k for k, v in acknowledged.items() if held.get(k) != v]
            assert not lost, f"{node.name} lost {len(lost)} acknowledged writes (fsync={fsync})"
            assert node_info(node)["durability"]["recovery"]["replayed_batches"] > 0
    finally:
        cluster.stop()
    cluster.assert_logs_clean()


def test_a_restarted_node_with_its_disk_catches_up_incrementally(tmp_path):
    cluster = Cluster.create(tmp_path, 3, prefix="incr", data=True)
    cluster.start()
    try:
        first, _, restarted = cluster.nodes
        with first.client() as client:
            fill_board(client, "inc", 300)
        cluster.wait_converged(["inc"])
        restarted.kill()
        with first.client() as client:
            client.write_batch("inc", [{"owner_id": f"q{i}", "score": i} for i in range(50)])
        restarted.start()
        cluster.wait_converged(["inc"])
        info = node_info(restarted)
        assert info["full_syncs_taken"] == 0, info
        assert info["durability"]["recovery"]["replayed_batches"] > 0
        with restarted.client() as client:
            assert client.records("inc", limit=1)["rank_count"] == 350
    finally:
        cluster.stop()


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_log_is_cut_reported_and_refilled_from_peers(tmp_path, damage):
    cluster = Cluster.create(tmp_path, 2, prefix=f"dmg-{damage}", data=True)
    cluster.start()
    try:
        victim = cluster.nodes[1]
        with cluster.nodes[0].client() as client:
            client.create_leaderboard("dmg")
            for i in range(20):
                client.write_batch("dmg", [{"owner_id": f"p{i}-{j}", "score": j} for j in range(20)])
        cluster.wait_converged(["dmg"])
        victim.kill()
        segment = max(_segments(tmp_path / f"{victim.name}-data"), key=lambda p: p.stat().st_size)
        data = bytearray(segment.read_bytes())
        rng = random.Random(3)
        offset = rng.randrange(len(data) // 4, len(data) - 10)
        if damage == "truncate":
            segment.write_bytes(bytes(data[:offset]))
        else:
            data[offset] ^= 0x5A
            segment.write_bytes(bytes(data))
        victim.start()
        recovery = node_info(victim)["durability"]["recovery"]
        assert recovery["damaged_log"], recovery
        cluster.wait_converged(["dmg"], timeout=30)
        with victim.client() as client:
            assert client.records("dmg", limit=1)["rank_count"] == 400
    finally:
        cluster.stop()


def test_a_damaged_snapshot_falls_back_to_the_previous_one_or_a_full_sync(tmp_path):
    cluster = Cluster.create(tmp_path, 2, prefix="snapdmg", settings={"durability": {"snapshot_interval": 0.3}},
                             data=True)
    cluster.start()
    try:
        victim = cluster.nodes[1]
        with cluster.nodes[0].client() as client:
            fill_board(client, "s", 300)
        cluster.wait_converged(["s"])
        _wait_for_snapshots(victim, 2)
        victim.kill()
        for snapshot in (tmp_path / f"{victim.name}-data").glob("snapshot-*.snap"):
            data = bytearray(snapshot.read_bytes())
            data[len(data) // 2] ^= 0xFF
            snapshot.write_bytes(bytes(data))
        victim.start()
        recovery = node_info(victim)["durability"]["recovery"]
        assert len(recovery["damaged_snapshots"]) >= 1
        cluster.wait_converged(["s"], timeout=30)
        with victim.client() as client:
            assert client.records("s", limit=1)["rank_count"] == 300
    finally:
        cluster.stop()


def test_a_snapshot_a_newer_build_wrote_stops_the_node_and_stays_on_disk(tmp_path):
    node = _durable_node(tmp_path, "newer", snapshot_interval=0.3).start()
    try:
        with node.client() as client:
            fill_board(client, "kept", 100)
        _wait_for_snapshots(node, 1)
    finally:
        node.kill()
    data_dir = tmp_path / "newer-data"
    newest = max(data_dir.glob("snapshot-*.snap"))
    chunks = list(frames.scan(newest.read_bytes(), frames.ScanResult()))
    header = pb.SyncChunk.FromString(chunks[0])
    header.header.format = SYNC_FORMAT + 1  # as a later build would write it
    chunks[0] = header.SerializeToString()
    newest.write_bytes(b"".join(frames.encode(chunk) for chunk in chunks))
    on_disk = {path.name: path.read_bytes() for path in data_dir.iterdir()}

    node.start(wait_ready=False)
    assert node.process is not None
    assert node.process.wait(timeout=30) == 3
    assert any("recovery_refused" in line for line in node.log_errors()), node.log_tail()
    # Nothing was discarded: a build that reads the format finds the disk as it was.
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == on_disk


FORMAT_1 = Path(__file__).parent / "fixtures" / "format-1-node-0"


def test_a_data_directory_of_the_previous_format_loads_and_its_writers_retire_as_lives_of_epoch_0(tmp_path):
    """The fixture is node-0's data directory from a 2-node cluster of the build before lives
    (commit 548000f, snapshot format 1): a snapshot and the log after it, with records both nodes
    wrote (``counts``: 3 + 2, then 1 + 1 each; ``bests``: 100 and 150; ``names``: one writer;
    a deleted ``gone``). Its slots name nodes, not lives."""
    data = tmp_path / "node-0-data"
    shutil.copytree(FORMAT_1, data)
    node = NodeProcess("node-0", tmp_path, settings={
        "node": {"data_dir": str(data)},
        "cluster": {"leaderboard_sync": {"bootstrap_timeout": 2, "fold_delay": 0}},
    }).start()
    try:
        with node.client() as client:
            counts = client.records("counts", limit=10)["records"]
            assert [(r["owner_id"], r["score"], r["num_score"]) for r in counts] == [
                (f"p{i}", 7, 4) for i in range(5)]
            bests = client.records("bests", limit=10)["records"]
            assert {(r["score"], r["metadata"]["node"]) for r in bests} == {(150, "b")}
            names = client.records("names", limit=10)["records"]
            assert [(r["owner_id"], r["username"]) for r in names] == [(f"p{i}", f"user{i}") for i in (4, 3, 2, 1, 0)]
            digest = client.digest("counts")["digest"]
            # node-0's writes of that build are a life of its (epoch 0): retired and folded, the
            # values unchanged; node-1 is no member here, so its writes stay as they are.
            wait_until(lambda: "node-0" in node_info(node)["retired_lives"], message="node-0's old lives retired")
            wait_until(lambda: client.digest("counts")["digest"] == digest, message="the same digest after folding")
            client.write_record("counts", "p0", 1)
            assert client.record("counts", "p0")["score"] == 8
        node.kill()
        node.start()
        with node.client() as client:
            assert client.record("counts", "p0")["score"] == 8
            assert client.record("counts", "p1")["score"] == 7
    finally:
        node.kill()
