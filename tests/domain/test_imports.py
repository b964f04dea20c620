"""Bulk imports: the same records, counts and digests as the same writes made one by one, on
the importing node and on every node that applies what it replicates."""

from __future__ import annotations

import random

import pytest

from leaderboard_node.domain.clock import HybridLogicalClock
from leaderboard_node.domain.leaderboards import Leaderboard
from leaderboard_node.domain.records import Operator
from leaderboard_node.domain.store import LeaderboardStore, RecordWrite
from leaderboard_node.replication import binarylog_pb2 as pb
from leaderboard_node.replication.protocol import encode_entry, entry_from_pb

NOW = 1_700_000_000


def _store(name: str, operator: Operator) -> LeaderboardStore:
    store = LeaderboardStore(node=f"{name}@0000000000001", clock=HybridLogicalClock(wall=lambda: NOW * 1000))
    store.create_leaderboard(Leaderboard(id="board", operator=operator))
    return store


def _view(store: LeaderboardStore) -> list[tuple[str, int, int, int, str | None, str | None]]:
    page = store.list_records("board", limit=1000, now=NOW)
    return [(r.owner_id, r.score, r.subscore, r.num_score, r.username, r.metadata) for r in page.records]


def _wire(changes):
    return [entry_from_pb(pb.Entry.FromString(encode_entry(i + 1, change))) for i, change in enumerate(changes)]


@pytest.mark.parametrize("operator", list(Operator))
def test_an_import_holds_what_the_same_writes_one_by_one_hold(operator):
    rng = random.Random(3)
    seeded = [RecordWrite(f"old{i}", rng.randrange(100)) for i in range(20)]
    writes = [RecordWrite(f"p{rng.randrange(60)}" if i % 3 else f"old{rng.randrange(20)}", rng.randrange(1000),
                          rng.randrange(5), f"u{i}" if i % 4 == 0 else None, '{"i": %d}' % i if i % 5 == 0 else None)
              for i in range(200)]
    imported, one_by_one = _store("a", operator), _store("a", operator)
    for store in (imported, one_by_one):
        store.write_records("board", seeded, now=NOW)
        store.delete_record("board", "old3", now=NOW)  # a tombstoned owner: an ordinary write
    result, changes = imported.import_records("board", writes, now=NOW)
    assert result.fresh > 0 and not result.refused
    one_by_one.write_records("board", writes, now=NOW)
    assert _view(imported) == _view(one_by_one)
    assert imported.digest("board", now=NOW) == one_by_one.digest("board", now=NOW)
    # a node that held nothing applies the import's first writes as sent on the wire
    fresh_only = _store("c", operator)
    for change in _wire([c for c in changes if type(c).__name__ == "RecordsImported"]):
        fresh_only.apply(change)
    assert fresh_only.digest("board", now=NOW).count == result.fresh


def test_imported_records_replicate_to_a_peer_with_equal_digests():
    source = _store("a", Operator.SET)
    writes = [RecordWrite(f"00000000-0000-4000-8000-{i:012d}", i * 7 % 1000, 0, "n" if i % 9 == 0 else None)
              for i in range(5000)]
    _, changes = source.import_records("board", writes, now=NOW)
    peer = _store("b", Operator.SET)
    for change in _wire(changes):
        assert peer.apply(change)
    assert _view(peer) == _view(source)
    assert peer.digest("board", now=NOW) == source.digest("board", now=NOW)


def test_an_import_merges_into_a_peer_that_took_writes_of_the_same_owners_meanwhile():
    source, peer = _store("a", Operator.INCR), _store("b", Operator.INCR)
    _, changes = source.import_records("board", [RecordWrite(f"p{i}", 10) for i in range(50)], now=NOW)
    _, theirs = peer.write_records("board", [RecordWrite(f"p{i}", 1) for i in range(0, 50, 2)], now=NOW)
    for change in _wire(changes):
        peer.apply(change)
    for change in _wire(theirs):
        source.apply(change)
    assert _view(peer) == _view(source)
    assert {owner: score for owner, score, *_ in _view(peer)} == {f"p{i}": 10 + (1 if i % 2 == 0 else 0) for i in range(50)}
    assert peer.digest("board", now=NOW) == source.digest("board", now=NOW)
