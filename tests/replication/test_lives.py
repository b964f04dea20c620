"""A node's lives: a restarted node, with or without its data, is a new writer and never
shrinks, replaces or overwrites what an earlier life wrote and a replica still holds.

Every test here runs real node processes whose peer links cross fault-injecting proxies
(``netfaults``), and judges strictly: every acknowledged increment counted, the best
acknowledged score kept, equal digests on every node.
"""

from __future__ import annotations

import pytest

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
