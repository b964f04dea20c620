"""Settings that change on a live definition (ranks on and off, the events' top N, a webhook)
and extra tournament attempts: replicated registers and counters that converge in any order."""

from __future__ import annotations

import itertools

import pytest

from leaderboard_node.domain import errors
from leaderboard_node.domain.changes import Setting
from leaderboard_node.domain.leaderboards import TournamentSettings

from .conftest import leaderboard, make_store

NOW = 1_700_000_000


def _pair(**settings):
    a = make_store("a@0000000000001", start_ms=NOW * 1000)
    b = make_store("b@0000000000001", start_ms=NOW * 1000 + 1000)
    _, _, changes = a.create_leaderboard(leaderboard("lb", **settings))
    for change in changes:
        b.apply(change)
    return a, b


def test_turning_ranks_off_and_on_keeps_the_incarnation_and_the_records(store):
    created, _, _ = store.create_leaderboard(leaderboard("lb"))
    store.write_record("lb", "p1", score=5, now=NOW)
    store.update_settings("lb", {Setting.ENABLE_RANKS: False})
    assert store.get_record("lb", "p1", now=NOW).rank == 0
    assert store.leaderboard("lb").incarnation == created.incarnation
    with pytest.raises(errors.RanksDisabled):
        store.record_at_rank("lb", 1, now=NOW)
    store.update_settings("lb", {Setting.ENABLE_RANKS: True})
    assert store.get_record("lb", "p1", now=NOW).rank == 1
    # a retried create with the creation settings is still the same leaderboard
    assert store.create_leaderboard(leaderboard("lb"))[1] is False


def test_a_leaderboard_created_without_ranks_can_turn_them_on(store):
    store.create_leaderboard(leaderboard("lb", enable_ranks=False))
    store.write_record("lb", "p1", score=5, now=NOW)
    store.update_settings("lb", {Setting.ENABLE_RANKS: True})
    assert store.record_at_rank("lb", 1, now=NOW).owner_id == "p1"


def test_concurrent_toggles_converge_on_the_later_one_in_any_order():
    a, b = _pair()
    _, off = a.update_settings("lb", {Setting.ENABLE_RANKS: False})
    _, on = b.update_settings("lb", {Setting.ENABLE_RANKS: True})  # b's clock is ahead: the later one
    for first, second in itertools.permutations([off, on]):
        replica = make_store("c@0000000000001")
        replica.create_leaderboard(leaderboard("lb"))
        for change in first + second:
            replica.apply(change)
        assert replica.ranks_on(replica.leaderboard("lb")) is True
    for change in on:
        a.apply(change)
    for change in off:
        b.apply(change)
    assert a.ranks_on(a.leaderboard("lb")) is b.ranks_on(b.leaderboard("lb")) is True


def test_a_toggle_dies_with_its_incarnation(store):
    store.create_leaderboard(leaderboard("lb"))
    store.update_settings("lb", {Setting.ENABLE_RANKS: False})
    store.delete_leaderboard("lb")
    store.create_leaderboard(leaderboard("lb"))
    assert store.ranks_on(store.leaderboard("lb")) is True


def _cup(**settings):
    defaults = dict(start_time=NOW - 10, duration=3600, max_num_score=1)
    defaults.update(settings)
    return _pair(tournament=TournamentSettings(**defaults))


def test_attempts_granted_on_two_nodes_add_up_and_show_as_the_owners_limit():
    a, b = _cup()
    _, first = a.write_record("lb", "p1", score=1, now=NOW)
    with pytest.raises(errors.TournamentMaxNumScore):
        a.write_record("lb", "p1", score=2, now=NOW)
    view, grant_a = a.grant_attempts("lb", "p1", 1, now=NOW)
    assert (view.max_num_score, view.extra_attempts) == (2, 1)
    _, grant_a2 = a.grant_attempts("lb", "p1", 2, now=NOW)
    _, grant_b = b.grant_attempts("lb", "p1", 1, now=NOW)
    for change in first + grant_a + grant_a2:
        b.apply(change)
    for change in grant_b + grant_a:  # a duplicate and an old one change nothing
        a.apply(change)
    for store in (a, b):
        record = store.get_record("lb", "p1", now=NOW)
        assert record.max_num_score == 5, store.node
        assert store.list_records("lb", limit=10, now=NOW).records[0].max_num_score == 5
    for score in range(2, 6):
        a.write_record("lb", "p1", score=score, now=NOW)
    with pytest.raises(errors.TournamentMaxNumScore):
        a.write_record("lb", "p1", score=9, now=NOW)


def test_attempts_are_refused_where_they_mean_nothing(store):
    store.create_leaderboard(leaderboard("free", tournament=TournamentSettings(start_time=NOW - 10, duration=60)))
    with pytest.raises(errors.InvalidArgument):
        store.grant_attempts("free", "p1", 1, now=NOW)
    store.create_leaderboard(leaderboard("board"))
    with pytest.raises(errors.NotATournament):
        store.grant_attempts("board", "p1", 1, now=NOW)
    store.create_leaderboard(leaderboard("over", tournament=TournamentSettings(
        start_time=NOW - 100, end_time=NOW - 10, duration=60, max_num_score=1)))
    with pytest.raises(errors.TournamentOutsideWindow):
        store.grant_attempts("over", "p1", 1, now=NOW)


def test_a_joined_owner_is_listed_only_once_it_writes(store):
    """The documented choice (README, Tournaments): joining reserves a place, it writes no record."""
    store.create_leaderboard(leaderboard("t", tournament=TournamentSettings(start_time=NOW - 10, duration=60)))
    store.join_tournament("t", "p1", now=NOW)
    assert store.list_records("t", limit=10, now=NOW).records == []
    assert store.size(store.leaderboard("t"), store.period(store.leaderboard("t"), NOW).expiry) == 1


def test_a_tournament_starting_before_its_first_reset_is_active_from_its_start(store):
    """The documented choice (README, Tournaments): the first period runs from start_time to the
    first reset after it, rather than waiting for that reset as Nakama does."""
    start = NOW - NOW % 3600 + 600  # ten minutes past an hour
    store.create_leaderboard(leaderboard("t", reset_schedule="0 * * * *",
                                         tournament=TournamentSettings(start_time=start, duration=3600)))
    period = store.period(store.leaderboard("t"), start + 1)
    assert (period.active_start, period.expiry) == (start, start - 600 + 3600)
    store.write_record("t", "p1", score=1, now=start + 1)
