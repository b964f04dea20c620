"""Leaderboards, tournaments, buckets and cursors through the store."""

from __future__ import annotations

import pytest

from leaderboard_node.domain import errors
from leaderboard_node.domain.changes import LeaderboardKill, LeaderboardPut
from leaderboard_node.domain.leaderboards import TournamentSettings
from leaderboard_node.domain.rank_cache import Bucket
from leaderboard_node.domain.records import Operator, SortOrder
from leaderboard_node.domain.schedule import next_reset

from .conftest import leaderboard, make_store

NOW = 1_700_000_000  # a Tuesday, 22:13:20 UTC


def test_creating_an_identical_leaderboard_twice_returns_the_first(store):
    first, created, _ = store.create_leaderboard(leaderboard("lb"))
    again, created_again, changes = store.create_leaderboard(leaderboard("lb"))
    assert created and not created_again and again == first and changes == []


def test_creating_a_leaderboard_with_other_settings_conflicts(store):
    store.create_leaderboard(leaderboard("lb"))
    with pytest.raises(errors.LeaderboardExists):
        store.create_leaderboard(leaderboard("lb", operator=Operator.SET))


def test_a_recreated_leaderboard_shows_none_of_the_old_records(store):
    store.create_leaderboard(leaderboard("lb"))
    store.write_record("lb", "p1", score=5, now=NOW)
    store.delete_leaderboard("lb")
    with pytest.raises(errors.LeaderboardNotFound):
        store.get_record("lb", "p1", now=NOW)
    recreated, created, _ = store.create_leaderboard(leaderboard("lb"))
    assert created and recreated.generation == 2
    assert store.list_records("lb", limit=10, now=NOW).records == []


def test_a_delete_arriving_before_the_create_keeps_the_leaderboard_dead():
    origin, replica = make_store("a"), make_store("b")
    _, _, created = origin.create_leaderboard(leaderboard("lb"))
    _, writes = origin.write_record("lb", "p1", score=1, now=NOW)
    deleted = origin.delete_leaderboard("lb")
    for change in deleted + writes + created:
        replica.apply(change)
    assert replica.leaderboards.get("lb") is None
    assert list(replica.buckets()) == []


def test_records_that_arrive_before_their_leaderboard_appear_when_it_does():
    origin, replica = make_store("a"), make_store("b")
    _, _, created = origin.create_leaderboard(leaderboard("lb"))
    _, writes = origin.write_record("lb", "p1", score=1, now=NOW)
    for change in writes + created:
        replica.apply(change)
    assert replica.get_record("lb", "p1", now=NOW).score == 1


def test_ties_fall_to_the_lower_owner_id_in_both_sort_orders():
    for order in ("desc", "asc"):
        store = make_store()
        store.create_leaderboard(leaderboard("lb", sort_order=SortOrder(order)))
        for owner in ("b", "a", "c", "B"):
            store.write_record("lb", owner, score=7, subscore=1, now=NOW)
        assert [v.owner_id for v in store.list_records("lb", limit=10, now=NOW).records] == ["B", "a", "b", "c"]


def test_paging_forward_stays_correct_while_records_move(store):
    store.create_leaderboard(leaderboard("lb"))
    for i in range(10):
        store.write_record("lb", f"p{i}", score=100 - i, now=NOW)
    first = store.list_records("lb", limit=4, now=NOW)
    assert [v.owner_id for v in first.records] == ["p0", "p1", "p2", "p3"]
    store.write_record("lb", "p9", score=1000, now=NOW)  # jumps to the top: not seen again
    store.write_record("lb", "new", score=95, now=NOW)  # lands after the cursor: seen next
    second = store.list_records("lb", limit=4, now=NOW, cursor=first.next_cursor)
    assert [(v.owner_id, v.rank) for v in second.records] == [("p4", 6), ("new", 7), ("p5", 8), ("p6", 9)]


def test_a_cursor_from_an_ended_period_is_refused(store):
    store.create_leaderboard(leaderboard("lb", reset_schedule="0 * * * *"))
    for i in range(5):
        store.write_record("lb", f"p{i}", score=i, now=NOW)
    page = store.list_records("lb", limit=2, now=NOW)
    later = next_reset("0 * * * *", NOW) + 1
    with pytest.raises(errors.CursorExpired) as raised:
        store.list_records("lb", limit=2, now=later, cursor=page.next_cursor)
    assert raised.value.field == "cursor"


def test_a_garbled_cursor_is_refused_with_the_field_named(store):
    store.create_leaderboard(leaderboard("lb"))
    for bad in ("!!", "AAAA", "x" * 40):
        with pytest.raises(errors.CursorInvalid) as raised:
            store.list_records("lb", limit=2, now=NOW, cursor=bad)
        assert raised.value.field == "cursor"


def test_each_reset_period_is_its_own_bucket_and_the_old_one_stays_readable_then_is_trimmed():
    store = make_store(retention=3600)
    store.create_leaderboard(leaderboard("lb", reset_schedule="0 0 * * *"))
    store.write_record("lb", "p1", score=10, now=NOW)
    first_expiry = next_reset("0 0 * * *", NOW)
    tomorrow = first_expiry + 60
    assert store.list_records("lb", limit=10, now=tomorrow).records == []
    assert store.get_record("lb", "p1", now=tomorrow, expiry=first_expiry).score == 10
    store.write_record("lb", "p1", score=3, now=tomorrow)
    assert store.get_record("lb", "p1", now=tomorrow).num_score == 1
    assert store.trim(first_expiry + 3601) == 1
    with pytest.raises(errors.BucketExpired):
        store.get_record("lb", "p1", now=first_expiry + 3601, expiry=first_expiry)


def test_blacklisted_leaderboards_list_in_order_without_ranks():
    store = make_store(blacklist=("tournament_*",))
    store.create_leaderboard(leaderboard("tournament_x"))
    store.create_leaderboard(leaderboard("regular"))
    for board in ("tournament_x", "regular"):
        for i in range(3):
            store.write_record(board, f"p{i}", score=i, now=NOW)
    assert [(v.owner_id, v.rank) for v in store.list_records("tournament_x", limit=5, now=NOW).records] == [
        ("p2", 0), ("p1", 0), ("p0", 0)]
    assert [v.rank for v in store.list_records("regular", limit=5, now=NOW).records] == [1, 2, 3]
    assert make_store(blacklist=("*",)).blacklist.matches("anything")


def test_ranks_can_be_turned_off_per_leaderboard(store):
    store.create_leaderboard(leaderboard("lb", enable_ranks=False))
    view, _ = store.write_record("lb", "p1", score=1, now=NOW)
    assert view.rank == 0


def _tournament(store, reset_schedule=None, **settings):
    defaults = dict(start_time=NOW - 100, end_time=0, duration=3600)
    defaults.update(settings)
    store.create_leaderboard(leaderboard("t", reset_schedule=reset_schedule,
                                         tournament=TournamentSettings(**defaults)))


def test_a_tournament_refuses_writes_outside_its_active_window(store):
    _tournament(store, start_time=NOW + 100)
    with pytest.raises(errors.TournamentOutsideWindow):
        store.write_record("t", "p1", score=1, now=NOW)
    store.write_record("t", "p1", score=1, now=NOW + 100)
    with pytest.raises(errors.TournamentOutsideWindow):
        store.write_record("t", "p1", score=2, now=NOW + 100 + 3600)


def test_a_tournament_with_a_reset_schedule_is_active_for_its_duration_after_each_reset(store):
    _tournament(store, reset_schedule="0 * * * *", duration=600, start_time=NOW - 86400)
    hour = next_reset("0 * * * *", NOW)
    store.write_record("t", "p1", score=1, now=hour + 10)
    with pytest.raises(errors.TournamentOutsideWindow):
        store.write_record("t", "p1", score=2, now=hour + 601)
    store.write_record("t", "p1", score=2, now=hour + 3600 + 5)


def test_a_tournament_that_requires_joining_refuses_strangers(store):
    _tournament(store, join_required=True)
    with pytest.raises(errors.TournamentJoinRequired):
        store.write_record("t", "p1", score=1, now=NOW)
    assert store.join_tournament("t", "p1", now=NOW)[0] is True
    assert store.join_tournament("t", "p1", now=NOW)[0] is False
    store.write_record("t", "p1", score=1, now=NOW)


def test_a_full_tournament_refuses_new_players_but_not_members(store):
    _tournament(store, max_size=2)
    store.join_tournament("t", "p1", now=NOW)
    store.write_record("t", "p2", score=1, now=NOW)
    with pytest.raises(errors.TournamentFull):
        store.join_tournament("t", "p3", now=NOW)
    with pytest.raises(errors.TournamentFull):
        store.write_record("t", "p3", score=1, now=NOW)
    store.write_record("t", "p1", score=1, now=NOW)
    store.write_record("t", "p2", score=2, now=NOW)


def test_a_tournament_counts_score_attempts(store):
    _tournament(store, max_num_score=2)
    store.write_record("t", "p1", score=1, now=NOW)
    store.write_record("t", "p1", score=2, now=NOW)
    with pytest.raises(errors.TournamentMaxNumScore):
        store.write_record("t", "p1", score=3, now=NOW)


def test_an_authoritative_leaderboard_refuses_client_writes(store):
    store.create_leaderboard(leaderboard("lb", authoritative=True))
    with pytest.raises(errors.AuthoritativeLeaderboard):
        store.write_record("lb", "p1", score=1, now=NOW, server=False)
    store.write_record("lb", "p1", score=1, now=NOW, server=True)


def test_around_owner_is_filled_from_the_other_side_at_the_ends(store):
    store.create_leaderboard(leaderboard("lb"))
    for i in range(6):
        store.write_record("lb", f"p{i}", score=100 - i, now=NOW)
    top = store.around_owner("lb", "p0", limit=3, now=NOW)
    assert [(v.owner_id, v.rank) for v in top.records] == [("p0", 1), ("p1", 2), ("p2", 3)]
    bottom = store.around_owner("lb", "p5", limit=4, now=NOW)
    assert [v.rank for v in bottom.records] == [3, 4, 5, 6]
    assert len(store.around_owner("lb", "p3", limit=50, now=NOW).records) == 6
    assert store.around_owner("lb", "nobody", limit=5, now=NOW).records == []


def test_a_refused_write_leaves_no_bucket_behind(store):
    """An empty bucket only this node had would make replica digests differ for good."""
    store.create_leaderboard(leaderboard("lb", operator=Operator.DECR))
    with pytest.raises(errors.InvalidArgument):
        store.write_record("lb", "p1", score=-1, now=NOW)
    assert list(store.buckets()) == []
    store.write_record("lb", "p1", score=1, now=NOW)
    assert len(list(store.buckets())) == 1


def _synced_copy(source_store, leaderboard_id: str, *, now: int) -> Bucket:  # type: ignore[no-untyped-def]
    """A bucket built at once from ``source_store``'s current bucket, as a full sync builds it."""
    definition = source_store.leaderboard(leaderboard_id)
    source = source_store.bucket(definition.id, definition.incarnation, source_store.period(definition, now).expiry)
    return Bucket.from_sync(source.elements_after(None, len(source)), [], descending=source.descending,
                            expiry=source.expiry)


def test_a_bucket_built_at_once_is_unsettled_until_its_digest_is_hashed_or_it_is_gone():
    source = make_store("n2")
    source.create_leaderboard(leaderboard("daily", reset_schedule="0 0 * * *"))
    source.create_leaderboard(leaderboard("kept"))
    for i in range(50):
        source.write_record("daily", f"p{i}", score=i, now=NOW)
        source.write_record("kept", f"p{i}", score=i, now=NOW)
    store = make_store(retention=3600)
    for definition in source.leaderboards.definitions():
        store.apply(LeaderboardPut(definition))
    daily, kept = source.leaderboard("daily"), source.leaderboard("kept")
    store.install_bucket("daily", daily.incarnation, _synced_copy(source, "daily", now=NOW))
    store.install_bucket("kept", kept.incarnation, _synced_copy(source, "kept", now=NOW))
    assert not store.digests_settled()
    while store.settle_digests(7):  # a slice at a time, as the replicator does
        pass
    assert store.digests_settled()
    assert store.digest("kept", now=NOW) == source.digest("kept", now=NOW)

    store.install_bucket("daily", daily.incarnation, _synced_copy(source, "daily", now=NOW))
    assert not store.digests_settled()  # a second full sync of the same bucket replaces it
    assert store.trim(next_reset("0 0 * * *", NOW) + 3601) == 1  # the period ended: dropped unsettled
    assert store.digests_settled()

    store.apply(LeaderboardKill("kept", (kept.incarnation,), 1))
    fresh = make_store()
    fresh.apply(LeaderboardPut(kept))
    fresh.install_bucket("kept", kept.incarnation, _synced_copy(source, "kept", now=NOW))
    assert not fresh.digests_settled()
    fresh.apply(LeaderboardKill("kept", (kept.incarnation,), 1))  # dropped before it settled
    assert fresh.digests_settled() and not fresh.settle_digests(100)
