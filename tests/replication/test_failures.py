"""Crashes, pauses, lost and reordered batches: the cluster converges and keeps every
write that a surviving node acknowledged."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from leaderboard_client import ApiError

from ..harness import NodeProcess, all_records, fill_board, has_leaderboard, node_info, wait_until


class Writer(threading.Thread):
    """Writes unique records to one node until stopped; remembers what was acknowledged."""

    def __init__(self, node, board: str, prefix: str, *, limit: int = 5000, seconds: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.node, self.board, self.prefix = node, board, prefix
        self.limit, self.seconds = limit, seconds
        self.acknowledged: dict[str, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        with self.node.client(timeout=5) as client:
            for i in range(self.limit):
                if self.stopped.is_set() or time.monotonic() > deadline:
                    break
                batch = [{"owner_id": f"{self.prefix}-{i}-{j}", "score": i * 10 + j} for j in range(5)]
                try:
                    client.write_batch(self.board, batch)
                except (ApiError, OSError):
                    continue
                for item in batch:
                    self.acknowledged[item["owner_id"]] = item["score"]
                time.sleep(0.002)


def test_a_node_killed_under_load_and_restarted_empty_resyncs_and_loses_nothing_acknowledged(cluster_factory):
    cluster = cluster_factory(3).start()
    first, second, victim = cluster.nodes
    with first.client() as client:
        client.create_leaderboard("load")
    wait_until(lambda: all(has_leaderboard(c, "load") for c in cluster.clients()), message="the board everywhere")
    writers = [Writer(first, "load", "a"), Writer(second, "load", "b")]
    for writer in writers:
        writer.start()
    time.sleep(1.0)
    victim.kill()
    time.sleep(0.5)
    victim.start(wait_ready=False)
    states = set()

    def ready() -> bool:
        try:
            info = node_info(victim)
        except OSError:
            return False
        states.add(info["state"])
        return info["ready"]

    wait_until(ready, timeout=30, message="the restarted node to be ready")
    time.sleep(1.0)
    for writer in writers:
        writer.stopped.set()
        writer.join(timeout=30)
    info = node_info(victim)
    assert info["full_syncs_taken"] >= 1 and info["last_full_sync"]["reason"] == "bootstrap"
    assert "syncing" in states
    cluster.wait_converged(["load"], timeout=30)
    acknowledged = {**writers[0].acknowledged, **writers[1].acknowledged}
    assert len(acknowledged) > 100
    for node in cluster.nodes:
        with node.client() as client:
            page = client.records("load", limit=1)
            assert page["rank_count"] >= len(acknowledged)
            held = all_records(client, "load")
            missing = {k: v for k, v in acknowledged.items() if held.get(k) != v}
            assert not missing, f"{node.name} lost {len(missing)} acknowledged writes"


def _pause(node):
    os.kill(node.process.pid, signal.SIGSTOP)


def _resume(node):
    os.kill(node.process.pid, signal.SIGCONT)


@pytest.mark.parametrize(("writes", "expect_full_sync"), [(10, False), (400, True)])
def test_a_paused_peer_catches_up_incrementally_or_by_full_sync_beyond_the_backlog(
        cluster_factory, writes, expect_full_sync):
    cluster = cluster_factory(3, sync={"backlog_size": 100, "batch_size": 20}).start()
    writer, other, paused = cluster.nodes
    with writer.client() as client:
        client.create_leaderboard("gap")
        wait_until(lambda: has_leaderboard(paused.client(), "gap"), message="the board on the paused node")
        before = node_info(paused)
        _pause(paused)
        try:
            for i in range(writes):
                client.write_record("gap", f"p{i}", i)
        finally:
            _resume(paused)
    cluster.wait_converged(["gap"], timeout=30)
    after = node_info(paused)
    took_full_sync = after["full_syncs_taken"] > before["full_syncs_taken"]
    assert took_full_sync is expect_full_sync, after
    with paused.client() as client:
        assert client.records("gap", limit=1)["rank_count"] == writes


def test_lost_duplicated_and_reordered_batches_still_converge(cluster_factory):
    faults = {"drop": 0.2, "duplicate": 0.2, "reorder": 0.2, "seed": 7}
    cluster = cluster_factory(3, sync={"faults": faults, "batch_size": 5}).start()
    clients = cluster.clients()
    clients[0].create_leaderboard("flaky", operator="incr")
    wait_until(lambda: all(has_leaderboard(c, "flaky") for c in clients), timeout=20, message="the board everywhere")
    for round_ in range(30):
        for index, client in enumerate(clients):
            client.write_record("flaky", f"p{round_ % 7}", index + 1)
    cluster.wait_converged(["flaky"], timeout=30)
    total = sum(clients[0].record("flaky", f"p{i}")["score"] for i in range(7))
    assert total == 30 * (1 + 2 + 3)


def _node_with_peers(tmp_path, name: str, peers: list[NodeProcess], **sync: object) -> NodeProcess:
    node = NodeProcess(name, tmp_path)
    node.settings = {"cluster": {
        "discovery": {"mode": "static", "static": {"peers": [f"{p.name}={p.peer_address}" for p in peers]}},
        "leaderboard_sync": {"anti_entropy_interval": 0.5, "bootstrap_timeout": 1, **sync},
    }}
    return node


def test_an_empty_node_whose_only_peer_sends_a_newer_format_stays_not_ready(tmp_path):
    newer = _node_with_peers(tmp_path, "newer", [], faults={"sync_format": 99}).start()
    try:
        with newer.client() as client:
            fill_board(client, "kept", 50)
        behind = _node_with_peers(tmp_path, "behind", [newer]).start(wait_ready=False)
        try:
            wait_until(lambda: any("bootstrap_refused" in line for line in behind.log_errors()), timeout=20,
                       message="the refusal in the log")
            with behind.client() as client:
                assert client.ready() is False  # not ready, past its bootstrap timeout, rather than empty
                with pytest.raises(ApiError) as refused:
                    client.write_record("kept", "p1", 1)
                assert refused.value.status == 503
        finally:
            behind.terminate()
    finally:
        newer.terminate()


def test_a_full_sync_refused_for_its_format_is_taken_from_another_peer(tmp_path):
    # The two sources are not peers of each other; the one sending a newer format holds more
    # records, so it is asked first.
    newer = _node_with_peers(tmp_path, "newer", [], faults={"sync_format": 99}).start()
    older = _node_with_peers(tmp_path, "older", []).start()
    try:
        with newer.client() as client:
            fill_board(client, "kept", 300, prefix="n")
        with older.client() as client:
            fill_board(client, "kept", 100, prefix="o")
        joining = _node_with_peers(tmp_path, "joining", [newer, older]).start(wait_ready=False)
        try:
            joining.wait_ready(timeout=30)
            assert any("format 99" in line for line in joining.log_errors() + joining.log_tail(200).splitlines())
            with joining.client() as client:  # the snapshot from the older one, the rest in batches
                wait_until(lambda: len(all_records(client, "kept")) == 400, timeout=30,
                           message="all 400 records on the joining node")
        finally:
            joining.terminate()
    finally:
        newer.terminate()
        older.terminate()
