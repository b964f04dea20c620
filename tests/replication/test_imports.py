"""A bulk import on one node reaches every node, whole, and survives a restart from disk."""

from __future__ import annotations

import orjson

from ..harness import has_leaderboard, node_info, wait_until


def test_an_import_reaches_every_node_and_a_node_restarted_from_its_disk_keeps_it(cluster_factory):
    cluster = cluster_factory(3, data=True).start()
    first, second, third = cluster.nodes
    with first.client() as client:
        client.create_leaderboard("imported", operator="best")
        wait_until(lambda: all(has_leaderboard(c, "imported") for c in cluster.clients()), message="the board")
        with second.client() as other:  # a record the import meets on another node
            other.write_record("imported", "p7", 1_000_000)
        for part in range(3):
            lines = b"\n".join(orjson.dumps({"owner_id": f"p{i}", "score": i})
                               for i in range(part * 10_000, (part + 1) * 10_000))
            assert client.import_records("imported", lines)["imported"] == 10_000
    cluster.wait_converged(["imported"], timeout=30)
    for node in cluster.nodes:
        with node.client() as client:
            page = client.records("imported", limit=2)
            assert page["rank_count"] == 30_000
            assert [(r["owner_id"], r["score"]) for r in page["records"]] == [("p7", 1_000_000), ("p29999", 29999)]
    before = cluster.digests("imported")
    third.kill()
    third.start()
    assert node_info(third)["durability"]["recovery"]["replayed_batches"] >= 1
    cluster.wait_converged(["imported"], timeout=30)
    assert cluster.digests("imported") == before
