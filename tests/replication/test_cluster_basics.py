"""Writes on any node of a real 3-node cluster reach every node."""

from __future__ import annotations

import threading

from ..harness import has_leaderboard, wait_until


def test_writes_on_every_node_show_up_on_all_nodes(cluster_factory):
    cluster = cluster_factory(3).start()
    clients = cluster.clients()
    clients[0].create_leaderboard("global")
    wait_until(lambda: all(has_leaderboard(c, "global") for c in clients), message="the leaderboard on every node")
    for index, client in enumerate(clients):
        client.write_batch("global", [{"owner_id": f"n{index}-p{i}", "score": i * 10 + index} for i in range(100)])
    cluster.wait_converged(["global"])
    for client in clients:
        assert client.records("global", limit=1)["rank_count"] == 300
        assert client.record("global", "n2-p99")["rank"] == 1
    # The entries travelled in compressed batches pushed by their origin (not only pulled).
    metrics = _metrics(clients[0])
    assert metrics['leaderboard_replication_batches_received_total{origin="node-1",outcome="applied"}'] >= 1
    wire = sum(v for k, v in metrics.items() if k.startswith("leaderboard_replication_bytes_sent_total") and "wire" in k)
    raw = sum(v for k, v in metrics.items() if k.startswith("leaderboard_replication_bytes_sent_total") and "raw" in k)
    assert 0 < wire < raw
    assert all(member["lag_entries"] == 0 for member in clients[0].cluster()["members"])


def _metrics(client):
    _, body = client.request_raw("GET", "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_concurrent_increments_through_every_node_add_up(cluster_factory):
    cluster = cluster_factory(3).start()
    clients = cluster.clients()
    clients[0].create_leaderboard("kills", operator="incr")
    wait_until(lambda: all(has_leaderboard(c, "kills") for c in clients), message="the leaderboard on every node")
    acknowledged = [dict() for _ in clients]

    def hammer(index: int) -> None:
        with cluster.nodes[index].client() as client:
            for round_ in range(60):
                for owner in ("a", "b", "c"):
                    amount = index + 1 + round_ % 3
                    client.write_record("kills", owner, amount)
                    acknowledged[index][owner] = acknowledged[index].get(owner, 0) + amount

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    expected = {owner: sum(a.get(owner, 0) for a in acknowledged) for owner in ("a", "b", "c")}
    cluster.wait_converged(["kills"])
    for client in clients:
        assert {o: client.record("kills", o)["score"] for o in expected} == expected


def test_concurrent_best_and_set_writes_agree_everywhere(cluster_factory):
    cluster = cluster_factory(3).start()
    clients = cluster.clients()
    clients[0].create_leaderboard("best")
    clients[0].create_leaderboard("latest", operator="set")
    wait_until(lambda: all(has_leaderboard(c, "latest") for c in clients), message="leaderboards on every node")
    for index, client in enumerate(clients):
        for owner in range(20):
            client.write_record("best", f"p{owner}", (owner * 7 + index * 13) % 50, subscore=index)
            client.write_record("latest", f"p{owner}", index * 100 + owner)
    cluster.wait_converged(["best", "latest"])
    for owner in range(20):
        expected_best = max(((owner * 7 + i * 13) % 50, i) for i in range(3))
        for client in clients:
            record = client.record("best", f"p{owner}")
            assert (record["score"], record["subscore"]) == expected_best
    latest = {clients[0].record("latest", f"p{o}")["score"] for o in range(20)}
    assert all(value % 100 == int(value % 100) for value in latest)


def test_deletes_replicate_and_a_recreated_board_starts_empty_everywhere(cluster_factory):
    cluster = cluster_factory(3).start()
    a, b, c = cluster.clients()
    a.create_leaderboard("season")
    wait_until(lambda: all(has_leaderboard(x, "season") for x in (a, b, c)), message="the board everywhere")
    b.write_batch("season", [{"owner_id": f"p{i}", "score": i} for i in range(10)])
    cluster.wait_converged(["season"])
    c.delete_record("season", "p9")
    wait_until(lambda: a.records("season")["rank_count"] == 9, message="the record delete on node 0")
    b.delete_leaderboard("season")
    wait_until(lambda: not has_leaderboard(a, "season") and not has_leaderboard(c, "season"), message="the board gone")
    c.create_leaderboard("season")
    wait_until(lambda: has_leaderboard(a, "season"), message="the recreated board on node 0")
    cluster.wait_converged(["season"])
    for client in (a, b, c):
        assert client.records("season")["rank_count"] == 0


def test_a_write_acknowledged_as_replicated_is_on_a_peer_when_the_answer_comes(cluster_factory):
    cluster = cluster_factory(2).start()
    first, second = cluster.clients()
    first.create_leaderboard("acked")
    wait_until(lambda: has_leaderboard(second, "acked"), message="the board on the peer")
    record = first.request("POST", "/v1/leaderboards/acked/records", {"owner_id": "p1", "score": 7},
                           query={"ack": "replicated", "ack_timeout": 5})
    assert record["score"] == 7
    assert second.record("acked", "p1")["score"] == 7  # no waiting: the peer had it before the answer


def test_a_replicated_ack_times_out_with_a_clear_error_when_no_peer_answers(cluster_factory):
    import os
    import signal

    from leaderboard_client import ApiError

    cluster = cluster_factory(2).start()
    first, second = cluster.clients()
    first.create_leaderboard("lonely")
    wait_until(lambda: has_leaderboard(second, "lonely"), message="the board on the peer")
    os.kill(cluster.nodes[1].process.pid, signal.SIGSTOP)
    try:
        try:
            first.request("POST", "/v1/leaderboards/lonely/records", {"owner_id": "p1", "score": 7},
                          query={"ack": "replicated", "ack_timeout": 0.5})
        except ApiError as exc:
            assert exc.status == 504 and exc.code == "replication_timeout" and exc.field == "ack"
        else:
            raise AssertionError("the write was acknowledged as replicated with its only peer stopped")
        assert first.record("lonely", "p1")["score"] == 7  # applied here all the same
    finally:
        os.kill(cluster.nodes[1].process.pid, signal.SIGCONT)
    cluster.wait_converged(["lonely"])
