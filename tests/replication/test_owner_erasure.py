"""Owner erasure across real node processes: it replicates like a delete, a write made before it
that arrives late (from a node that was cut off) never brings a record back, writes made after
it stand, writes racing it leave every node with the same value, and all of that survives a
restart from the node's own disk and one from a peer (a full sync)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from leaderboard_client import ApiError

from ..harness import has_leaderboard, wait_until


def _value(node, board: str, owner: str) -> int | None:
    with node.client(timeout=5) as client:
        try:
            return client.record(board, owner)["score"]
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise


def test_an_erasure_racing_writes_on_other_nodes_holds_on_every_node_and_across_restarts(cluster_factory, network):
    cluster = cluster_factory(3, network=network, data=True).start()
    a, b, c = cluster.nodes
    with a.client() as client:
        client.create_leaderboard("counts", operator="incr")
        client.create_leaderboard("bests", operator="best")
        client.create_leaderboard("fresh")  # p1 has no record here anywhere when it is erased
        client.write_record("bests", "p1", 50)
    clients = cluster.clients()
    wait_until(lambda: all(has_leaderboard(x, board) for x in clients for board in ("counts", "bests", "fresh"))
               and _value(c, "bests", "p1") == 50, message="both boards and p1's first best everywhere")
    for client in clients:
        client.close()

    # 1. c is cut off and writes p1 (and p2, untouched by the erasure): made before it, arriving after it
    network.isolate(c.name)
    with c.client() as client:
        for _ in range(5):
            client.write_record("counts", "p1", 1000)
        client.write_record("bests", "p1", 10_000)
        client.write_record("fresh", "p1", 1)
        for _ in range(3):
            client.write_record("counts", "p2", 1)

    # 2. b keeps incrementing p1 while a erases it: these race the erasure
    racing = {"acknowledged": 0}
    stop = threading.Event()

    def race() -> None:
        with b.client() as client:
            while not stop.is_set():
                client.write_record("counts", "p1", 1)
                racing["acknowledged"] += 1

    writer = threading.Thread(target=race)
    writer.start()
    time.sleep(0.3)
    with a.client() as client:
        erased = client.erase_owner("p1")
    time.sleep(0.3)
    stop.set()
    writer.join(timeout=10)
    assert erased["records_erased"] >= 1 and racing["acknowledged"] > 0

    # 3. after b has seen the erasure, writes there count, whatever came before
    wait_until(lambda: _value(b, "bests", "p1") is None, message="the erasure on b")
    with b.client() as client:
        for _ in range(3):
            client.write_record("counts", "p1", 100)
        client.write_record("bests", "p1", 7)

    network.heal()
    cluster.wait_converged(["counts", "bests", "fresh"], timeout=40)
    assert {_value(node, "fresh", "p1") for node in cluster.nodes} == {None}
    counts = {_value(node, "counts", "p1") for node in cluster.nodes}
    assert len(counts) == 1, counts  # every node agrees
    (count,) = counts
    assert 300 <= count <= 300 + racing["acknowledged"], count  # c's 5 x 1000, made before the erasure: void
    assert {_value(node, "bests", "p1") for node in cluster.nodes} == {7}  # c's 10,000 never comes back
    assert {_value(node, "counts", "p2") for node in cluster.nodes} == {3}

    # 4. a restart from disk, and one from a peer: the same
    a.kill()
    a.start()
    c.kill()
    shutil.rmtree(Path(c.settings["node"]["data_dir"]))
    c.start()
    cluster.wait_converged(["counts", "bests"], timeout=40)
    for node in cluster.nodes:
        assert (_value(node, "counts", "p1"), _value(node, "bests", "p1")) == (count, 7), node.name
        with node.client() as client:
            owned = client.owner_records("p1")["records"]
        assert sorted((r["leaderboard_id"], r["score"]) for r in owned) == [("bests", 7), ("counts", count)]
