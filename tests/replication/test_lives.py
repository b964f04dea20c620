"""A node's lives: a restarted node, with or without its data, is a new writer and never
shrinks, replaces or overwrites what an earlier life wrote and a replica still holds.

Every test here runs real node processes whose peer links cross fault-injecting proxies
(``netfaults``), and judges strictly: every acknowledged increment counted, the best
acknowledged score kept, equal digests on every node.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from leaderboard_client import ApiError

from ..harness import Cluster, has_leaderboard, node_info, wait_until

OWNERS = [f"p{i}" for i in range(4)]


def _boards_everywhere(cluster: Cluster, *boards: str) -> None:
    clients = cluster.clients()
    wait_until(lambda: all(has_leaderboard(c, b) for c in clients for b in boards), timeout=20,
               message=f"{boards} on every node")


def _holds(node, board: str, expected: dict[str, int]) -> bool:
    with node.client(timeout=5) as client:
        try:
            return all(client.record(board, owner)["score"] == score for owner, score in expected.items())
        except Exception:
            return False


def _scores(node, board: str) -> dict[str, int]:
    with node.client(timeout=5) as client:
        return {owner: client.record(board, owner)["score"] for owner in OWNERS}


@pytest.mark.parametrize("variant", ["partition", "pause", "data_dir"])
def test_a_node_restarted_from_a_peer_that_lacks_its_last_writes_loses_none_of_them(
        cluster_factory, network, variant):
    """The sequence of the bug report: a's last writes live only on b when a restarts, syncs
    from c (which lacks them), and writes again; once the network heals, every node holds every
    increment a acknowledged in both lives, and the best score of its first life."""
    cluster = cluster_factory(3, network=network, data=variant == "data_dir").start()
    a, b, c = cluster.nodes
    with a.client() as client:
        client.create_leaderboard("counts", operator="incr")
        client.create_leaderboard("bests", operator="best")
        _boards_everywhere(cluster, "counts", "bests")
        # 1. every link up: 2 increments and a best of 100 per owner
        for owner in OWNERS:
            client.write_record("counts", owner, 1)
            client.write_record("counts", owner, 1)
            client.write_record("bests", owner, 100)
    first = {owner: 2 for owner in OWNERS}
    for node in cluster.nodes:
        wait_until(lambda: _holds(node, "counts", first), message=f"the first writes on {node.name}")
    # 2. c is cut off from a and b: a's next writes reach b only
    network.partition(a.name, c.name)
    network.partition(b.name, c.name)
    with a.client() as client:
        for owner in OWNERS:
            for _ in range(5):
                client.write_record("counts", owner, 1)
            client.write_record("bests", owner, 300)
    wait_until(lambda: _holds(b, "counts", {o: 7 for o in OWNERS}) and _holds(b, "bests", {o: 300 for o in OWNERS}),
               message="b holding a's second writes")
    assert _holds(c, "counts", first)
    # 3. a dies; when it starts again it can reach c only (b cut off or paused), and syncs from it
    a.kill()
    if variant == "pause":
        b.pause()  # b holds them, and answers nobody
        network.heal()
    else:
        network.isolate(b.name)
        network.connect(a.name, c.name)
    try:
        a.start(wait_ready=True, timeout=40)
        info = node_info(a)
        assert info["last_full_sync"] is None or info["last_full_sync"]["source"] == c.name
        # 4. three more increments, and a best that beats what c had (100) but not what b holds (300)
        with a.client() as client:
            for owner in OWNERS:
                for _ in range(3):
                    client.write_record("counts", owner, 1)
                assert client.write_record("bests", owner, 200)["score"] >= 200
    finally:
        if variant == "pause":
            b.resume()
    # 5. every link heals
    network.heal()
    cluster.wait_converged(["counts", "bests"], timeout=40)
    for node in cluster.nodes:
        assert _scores(node, "counts") == {o: 10 for o in OWNERS}, node.name
        assert _scores(node, "bests") == {o: 300 for o in OWNERS}, node.name


def _incr_everywhere(node, board: str, owners, times: int = 1) -> None:
    with node.client() as client:
        for owner in owners:
            for _ in range(times):
                client.write_record(board, owner, 1)


def test_a_node_restarted_twice_in_a_row_from_a_peer_that_lacks_both_lives_loses_nothing(cluster_factory, network):
    cluster = cluster_factory(3, network=network).start()
    a, b, c = cluster.nodes
    with a.client() as client:
        client.create_leaderboard("counts", operator="incr")
    _boards_everywhere(cluster, "counts")
    network.isolate(c.name)  # c sees none of what follows until the end
    network.connect(a.name, c.name)
    network.partition(a.name, c.name)
    for life in range(3):
        _incr_everywhere(a, "counts", OWNERS, times=2)
        wait_until(lambda: _holds(b, "counts", {o: 2 * (life + 1) for o in OWNERS}),
                   message=f"b holding a's writes of life {life}")
        if life < 2:
            a.kill()
            network.isolate(b.name)  # a's next life can reach c only, and syncs from it
            network.connect(a.name, c.name)
            a.start(timeout=40)
            network.heal(a.name)
            network.isolate(c.name)
            network.connect(a.name, b.name)
    network.heal()
    cluster.wait_converged(["counts"], timeout=40)
    for node in cluster.nodes:
        assert _scores(node, "counts") == {o: 6 for o in OWNERS}, node.name


def test_a_restarted_node_that_syncs_from_a_lagging_peer_loses_nothing(cluster_factory, network):
    cluster = cluster_factory(3, network=network).start()
    a, b, c = cluster.nodes
    with a.client() as client:
        client.create_leaderboard("counts", operator="incr")
        client.create_leaderboard("bests")
    _boards_everywhere(cluster, "counts", "bests")
    for source in (a.name, b.name):
        network[(source, c.name)].delay(1.5)  # everything c receives arrives late
        network[(c.name, source)].delay(1.5)
    with a.client() as client:
        for round_ in range(5):
            for owner in OWNERS:
                client.write_record("counts", owner, 1)
                client.write_record("bests", owner, 100 + round_)
    wait_until(lambda: _holds(b, "counts", {o: 5 for o in OWNERS}) and _holds(b, "bests", {o: 104 for o in OWNERS}),
               message="b holding every write")
    a.kill()
    network.isolate(b.name)
    network.connect(a.name, c.name)
    for source in (a.name, b.name):
        network[(source, c.name)].delay(1.5)
        network[(c.name, source)].delay(1.5)
    a.start(timeout=60)
    with a.client() as client:
        for owner in OWNERS:
            client.write_record("counts", owner, 1)
            client.write_record("bests", owner, 50)
    network.heal()
    cluster.wait_converged(["counts", "bests"], timeout=40)
    for node in cluster.nodes:
        assert _scores(node, "counts") == {o: 6 for o in OWNERS}, node.name
        assert _scores(node, "bests") == {o: 104 for o in OWNERS}, node.name


def test_a_delete_racing_a_restart_wins_over_what_it_saw_and_not_over_later_writes(cluster_factory, network):
    cluster = cluster_factory(3, network=network).start()
    a, b, c = cluster.nodes
    with a.client() as client:
        client.create_leaderboard("counts", operator="incr")
    _boards_everywhere(cluster, "counts")
    _incr_everywhere(a, "counts", OWNERS, times=3)
    for node in cluster.nodes:
        wait_until(lambda: _holds(node, "counts", {o: 3 for o in OWNERS}), message=f"the writes on {node.name}")
    a.kill()
    network.isolate(c.name)  # c keeps the old records while b deletes them and a restarts
    with b.client() as client:
        for owner in OWNERS:
            client.delete_record("counts", owner)
    network.isolate(b.name)
    network.connect(a.name, c.name)
    a.start(timeout=40)
    after_restart = {}
    with a.client() as client:
        for owner in OWNERS:  # made without having seen the delete: concurrent with it
            after_restart[owner] = client.write_record("counts", owner, 1)["score"]
    assert after_restart == {o: 4 for o in OWNERS}
    network.heal()
    cluster.wait_converged(["counts"], timeout=40)
    with b.client() as client:  # a write made after the delete was seen
        client.write_record("counts", OWNERS[0], 7)
    cluster.wait_converged(["counts"], timeout=40)
    for node in cluster.nodes:
        with node.client() as client:
            page = client.records("counts", limit=10)
            # The delete won over the increments it saw and over the concurrent one of a's new
            # life (made on what it had not seen); the write made after it is all there is.
            assert [(r["owner_id"], r["score"]) for r in page["records"]] == [(OWNERS[0], 7)], node.name


class _Writer(threading.Thread):
    """Increments and best scores through one node, each acknowledged only once a peer holds it
    (``ack=replicated``); remembers what was acknowledged and what is in doubt (no answer)."""

    def __init__(self, node, seed: int, *, seconds: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.node, self.rng, self.seconds = node, random.Random(seed), seconds
        self.acked = {owner: 0 for owner in OWNERS}
        self.doubt = {owner: 0 for owner in OWNERS}
        self.best_acked = {owner: 0 for owner in OWNERS}
        self.best_doubt = {owner: 0 for owner in OWNERS}
        self.stopped = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        client = self.node.client(timeout=5)
        try:
            for _ in range(5000):
                if self.stopped.is_set() or time.monotonic() > deadline:
                    return
                owner = self.rng.choice(OWNERS)
                best = self.rng.randint(1, 10_000)
                for board, payload in (("counts", 1), ("bests", best)):
                    try:
                        client.request("POST", f"/v1/leaderboards/{board}/records", {"owner_id": owner, "score": payload},
                                       query={"ack": "replicated", "ack_timeout": 2})
                    except ApiError as exc:
                        if exc.status in (503, 400, 404):  # refused: not written
                            time.sleep(0.05)
                            continue
                        self._doubt(board, owner, payload)
                    except OSError:
                        self._doubt(board, owner, payload)
                        client.close()
                        time.sleep(0.05)
                    else:
                        if board == "counts":
                            self.acked[owner] += 1
                        else:
                            self.best_acked[owner] = max(self.best_acked[owner], payload)
        finally:
            client.close()

    def _doubt(self, board: str, owner: str, payload: int) -> None:
        if board == "counts":
            self.doubt[owner] += 1
        else:
            self.best_doubt[owner] = max(self.best_doubt[owner], payload)


def test_every_node_restarted_in_turn_under_load_keeps_every_acknowledged_write(cluster_factory, network):
    cluster = cluster_factory(3, network=network, sync={"fold_delay": 1}).start()
    with cluster.nodes[0].client() as client:
        client.create_leaderboard("counts", operator="incr")
        client.create_leaderboard("bests", operator="best")
    _boards_everywhere(cluster, "counts", "bests")
    network[(cluster.nodes[0].name, cluster.nodes[1].name)].duplicate()  # and a link that repeats itself
    writers = [_Writer(node, seed) for seed, node in enumerate(cluster.nodes)]
    for writer in writers:
        writer.start()
    try:
        time.sleep(1.0)
        for node in cluster.nodes:
            node.kill()
            time.sleep(0.3)
            node.start(timeout=40)
            time.sleep(1.5)
    finally:
        for writer in writers:
            writer.stopped.set()
        for writer in writers:
            writer.join(timeout=30)
    network.heal()
    cluster.wait_converged(["counts", "bests"], timeout=40)
    acked = {o: sum(w.acked[o] for w in writers) for o in OWNERS}
    doubt = {o: sum(w.doubt[o] for w in writers) for o in OWNERS}
    best_acked = {o: max(w.best_acked[o] for w in writers) for o in OWNERS}
    best_bound = {o: max([best_acked[o]] + [w.best_doubt[o] for w in writers]) for o in OWNERS}
    assert sum(acked.values()) > 50
    for node in cluster.nodes:
        counts, bests = _scores(node, "counts"), _scores(node, "bests")
        for owner in OWNERS:
            assert acked[owner] <= counts[owner] <= acked[owner] + doubt[owner], (node.name, owner)
            assert best_acked[owner] <= bests[owner] <= best_bound[owner], (node.name, owner)
    # Every node's earlier life is retired on every node, once stable: records stop growing.
    for node in cluster.nodes:
        wait_until(lambda: len(node_info(node)["retired_lives"]) == 3, timeout=20,
                   message=f"{node.name} retiring every node's first life")


def test_a_node_whose_clock_runs_ahead_drags_no_clock_and_reports_not_ready(tmp_path):
    cluster = Cluster.create(tmp_path, 3)
    a, b, fast = cluster.nodes
    fast.settings["cluster"]["leaderboard_sync"]["faults"] = {"clock_offset": 10}
    try:
        a.start(wait_ready=False)
        b.start(wait_ready=False)
        fast.start(wait_ready=False)
        a.wait_ready()
        b.wait_ready()
        wait_until(lambda: (info := node_info(fast))["state"] == "ready" and info["clock"]["skewed"], timeout=20,
                   message="the fast node synced, and seeing its skew")
        clock = node_info(fast)["clock"]
        assert 9000 < clock["offset_ms"] < 11000 and clock["max_offset_ms"] == 500
        with fast.client() as client:
            assert client.ready() is False
            status, body = client.request_raw("GET", "/readyz")
            assert status == 503 and b"clock_skew" in body
        assert any("clock_offset_exceeded" in line for line in fast.log_errors())
        with a.client() as client:
            members = {m["name"]: m for m in client.cluster()["members"]}
            assert 9000 < members[fast.name]["clock_offset_ms"] < 11000
            assert client.ready()
            client.create_leaderboard("names", operator="set")
            written = client.write_record("names", "p1", 1)
        assert abs(written["update_time"] - time.time()) < 2  # a's clock was not pulled 10 s ahead
        # Back within bounds (a restart with its clock set right): sets made later in real time win.
        fast.kill()
        fast.settings["cluster"]["leaderboard_sync"]["faults"] = {"clock_offset": 0.2}
        fast.start(timeout=30)
        for value, node in enumerate((fast, a, b, fast), start=2):
            with node.client() as client:
                client.write_record("names", "p1", value)
            time.sleep(0.7)  # more than the bound apart
        cluster.wait_converged(["names"], timeout=30)
        for node in cluster.nodes:
            with node.client() as client:
                assert client.record("names", "p1")["score"] == 5, node.name
    finally:
        cluster.stop()
