"""Owner-wide operations: every record of an owner, and its erasure.

Stores here play replicas: each is its own life, and a change reaches another store when the
test applies it there, in whatever order the test picks. An erasure must void what was written
before it wherever and whenever that arrives, and never what was written after it.
"""

from __future__ import annotations

import itertools

import pytest

from leaderboard_node.domain import errors
from leaderboard_node.domain.changes import Change
from leaderboard_node.domain.leaderboards import TournamentSettings
from leaderboard_node.domain.records import Operator
from leaderboard_node.domain.schedule import next_reset

from .conftest import leaderboard, make_store

NOW = 1_700_000_000


def _replicas(count: int = 3, **boards: dict[str, object]):
    # each store's clock a second ahead of the one before: a later store's changes are stamped later
    stores = [make_store(f"n{i}@0000000000001", start_ms=NOW * 1000 + 1000 * i) for i in range(count)]
    for board, settings in boards.items():
        _, _, changes = stores[0].create_leaderboard(leaderboard(board, **settings))
        for other in stores[1:]:
            _apply(other, changes)
    return stores


def _apply(store, changes: list[Change]) -> None:
    for change in changes:
        store.apply(change)


def _visible(store, board: str, *, expiry: int | None = None) -> dict[str, int]:
    page = store.list_records(board, limit=100, now=NOW, expiry=expiry)
    return {view.owner_id: view.score for view in page.records}


def test_owner_records_lists_every_leaderboard_and_period_in_pages(store):
    store.create_leaderboard(leaderboard("a"))
    store.create_leaderboard(leaderboard("b", operator=Operator.INCR, reset_schedule="0 * * * *"))
    store.create_leaderboard(leaderboard("c"))
    store.write_record("a", "p1", score=5, now=NOW)
    store.write_record("a", "p2", score=9, now=NOW)
    store.write_record("b", "p1", score=3, now=NOW)
    store.write_record("b", "p1", score=4, now=NOW + 3600)  # the next period: a record of its own
    store.write_record("c", "p2", score=1, now=NOW)
    first = store.owner_records("p1", limit=2)
    assert [(v.leaderboard_id, v.score, v.rank) for v in first.records] == [("a", 5, 2), ("b", 3, 1)]
    rest = store.owner_records("p1", limit=2, cursor=first.next_cursor)
    assert [(v.leaderboard_id, v.expiry, v.score) for v in rest.records] == [
        ("b", next_reset("0 * * * *", NOW + 3600), 4)]
    assert rest.next_cursor is None
    assert store.owner_records("nobody", limit=10).records == []


def test_erasing_an_owner_removes_its_records_joins_and_attempts_everywhere(store):
    store.create_leaderboard(leaderboard("a"))
    store.create_leaderboard(leaderboard("t", tournament=TournamentSettings(start_time=NOW - 10, duration=3600,
                                                                            max_num_score=1, join_required=True)))
    store.write_record("a", "p1", score=5, now=NOW)
    store.write_record("a", "p2", score=6, now=NOW)
    store.join_tournament("t", "p1", now=NOW)
    store.write_record("t", "p1", score=1, now=NOW)
    store.grant_attempts("t", "p1", 2, now=NOW)
    erased, _, _ = store.erase_owner("p1")
    assert erased == 2
    assert _visible(store, "a") == {"p2": 6}
    assert store.owner_records("p1", limit=10).records == []
    with pytest.raises(errors.TournamentJoinRequired):  # the join went with it
        store.write_record("t", "p1", score=1, now=NOW)
    store.join_tournament("t", "p1", now=NOW)
    view, _ = store.write_record("t", "p1", score=7, now=NOW)
    assert (view.score, view.num_score, view.max_num_score) == (7, 1, 1)  # the granted attempts are gone too


@pytest.mark.parametrize("operator", [Operator.BEST, Operator.SET, Operator.INCR])
def test_a_write_made_before_an_erasure_cannot_bring_the_record_back_when_it_arrives_later(operator):
    a, b, c = _replicas(board={"operator": operator})
    _, early = a.write_record("board", "p1", score=10, now=NOW)
    _apply(b, early)
    _, late = a.write_record("board", "p1", score=20, now=NOW)  # made before the erasure, delayed
    _, _, erasure = b.erase_owner("p1")
    _apply(a, erasure)
    _apply(b, late)
    _apply(c, erasure + early + late)  # c sees the erasure first, then both writes
    for store in (a, b, c):
        assert _visible(store, "board") == {}, store.node


@pytest.mark.parametrize("operator", [Operator.BEST, Operator.SET, Operator.INCR])
def test_a_write_made_after_an_erasure_stands_on_every_replica_in_any_order(operator):
    a, b, c = _replicas(board={"operator": operator})
    _, before = a.write_record("board", "p1", score=10, now=NOW)
    _apply(b, before)
    _, _, erasure = b.erase_owner("p1")
    _, after = b.write_record("board", "p1", score=3, now=NOW)  # on the node that erased: built on it
    _apply(a, erasure + after)
    for order in itertools.permutations([before, erasure, after]):
        replica = make_store("n7@0000000000001")
        replica.create_leaderboard(leaderboard("board", operator=operator))
        for changes in order:
            _apply(replica, changes)
        assert replica.get_record("board", "p1", now=NOW).score == 3, order
    for store in (a, b):
        assert store.get_record("board", "p1", now=NOW).score == 3


def test_an_increment_made_concurrently_on_a_node_that_had_not_seen_the_erasure_is_void_as_after_a_delete():
    a, b = _replicas(2, board={"operator": Operator.INCR})
    _, first = a.write_record("board", "p1", score=5, now=NOW)
    _apply(b, first)
    _, _, erasure = b.erase_owner("p1")
    _, concurrent = a.write_record("board", "p1", score=1, now=NOW)  # a has not seen the erasure
    _apply(a, erasure)
    _apply(b, concurrent)
    assert _visible(a, "board") == _visible(b, "board") == {}
    view, _ = a.write_record("board", "p1", score=2, now=NOW)  # after it, on a
    assert view.score == 2


def test_an_erasure_reaches_buckets_the_owner_gets_slots_in_only_later():
    a, b = _replicas(2, board={}, other={})
    _, old = a.write_record("other", "p1", score=4, now=NOW)  # b has no slot of p1 in "other" yet
    _, _, erasure = b.erase_owner("p1")
    _apply(b, old)
    assert _visible(b, "other") == {}
    _apply(a, erasure)
    assert _visible(a, "other") == {}


def test_an_erasure_survives_a_full_sync_from_a_node_that_had_not_seen_it():
    from leaderboard_node.domain.rank_cache import Bucket

    a, b = _replicas(2, board={})
    a.write_record("board", "p1", score=4, now=NOW)
    a.write_record("board", "p2", score=5, now=NOW)
    b.erase_owner("p1")
    bucket = a.bucket("board", a.leaderboard("board").incarnation, 0)
    copy = Bucket.from_sync(bucket.elements(0, len(bucket)), bucket.tombstones(), descending=True, expiry=0)
    b.install_bucket("board", a.leaderboard("board").incarnation, copy)
    assert _visible(b, "board") == {"p2": 5}


def test_an_erasure_is_forgotten_after_its_retention():
    a, b = _replicas(2, board={})
    _, old = a.write_record("board", "p1", score=4, now=NOW)
    b.erasure_retention = 60
    b.erase_owner("p1")
    b.trim(NOW + 30)
    _apply(b, old)
    assert _visible(b, "board") == {}  # still held: void on arrival
    _, older = a.write_record("board", "p2", score=4, now=NOW)
    b.erase_owner("p2")
    b.trim(NOW + 120)
    _apply(b, older)
    assert _visible(b, "board") == {"p2": 4}  # forgotten: what the README warns about


def test_a_write_after_a_late_erasure_of_another_node_is_stamped_after_it():
    """An erasure stamped ahead of this node's clock (a peer whose clock runs fast) still loses to
    the writes this node makes after seeing it: they are stamped after it."""
    a, b = _replicas(2, board={"operator": Operator.SET})
    fast = make_store("n5@0000000000001", start_ms=(NOW + 3600) * 1000)
    fast.create_leaderboard(leaderboard("board", operator=Operator.SET))
    _, _, erasure = fast.erase_owner("p1")
    a.clock.max_ahead_ms = 500  # a's clock does not follow a peer's that far ahead
    _apply(a, erasure)
    assert a.clock.last < erasure[0].hlc
    view, _ = a.write_record("board", "p1", score=1, now=NOW)
    assert view.score == 1
