"""Reset and end events in the domain: which periods end, what an event holds, and how the
event log orders, deduplicates, pages and redacts whatever order events arrive in."""

from __future__ import annotations

import itertools
import random

import pytest

from leaderboard_node.domain import errors
from leaderboard_node.domain.changes import EventPut
from leaderboard_node.domain.events import (
    EventKind,
    EventLog,
    decode_cursor,
    encode_cursor,
    periods_ending,
)
from leaderboard_node.domain.leaderboards import TournamentSettings
from leaderboard_node.domain.schedule import next_reset

from .conftest import leaderboard, make_store

NOW = 1_700_000_000
HOURLY = "0 * * * *"


def test_a_scheduled_leaderboard_ends_a_period_at_every_reset():
    board = leaderboard("lb", reset_schedule=HOURLY)
    first = next_reset(HOURLY, NOW)
    periods = periods_ending(board, after=NOW, until=first + 2 * 3600, limit=10)
    assert [p.expiry for p in periods] == [first, first + 3600, first + 7200]
    assert periods[1].start == first
    assert periods_ending(board, after=NOW, until=first + 7200, limit=2)[-1].expiry == first + 3600
    assert periods_ending(leaderboard("never"), after=0, until=NOW, limit=10) == []


def test_a_tournament_ends_its_periods_then_ends_once():
    cup = leaderboard("t", reset_schedule=HOURLY, tournament=TournamentSettings(
        start_time=NOW, end_time=NOW + 3 * 3600, duration=600))
    periods = periods_ending(cup, after=NOW - 1, until=NOW + 10 * 3600, limit=10)
    first = next_reset(HOURLY, NOW)
    assert [p.expiry for p in periods] == [first, first + 3600, first + 7200, NOW + 3 * 3600]
    assert periods[0].start == NOW
    once = leaderboard("o", tournament=TournamentSettings(start_time=NOW, end_time=NOW + 60, duration=60))
    assert [p.expiry for p in periods_ending(once, after=0, until=NOW + 10_000, limit=10)] == [NOW + 60]
    endless = leaderboard("e", tournament=TournamentSettings(start_time=NOW, duration=60))
    assert periods_ending(endless, after=0, until=NOW + 10_000, limit=10) == []


def test_an_event_holds_the_final_top_n_rank_count_and_the_period():
    store = make_store()
    store.create_leaderboard(leaderboard("t", tournament=TournamentSettings(
        start_time=NOW - 60, end_time=NOW + 60, duration=120, max_num_score=3)))
    for owner, score in (("p1", 5), ("p2", 9), ("p3", 7)):
        store.write_record("t", owner, score=score, now=NOW)
    period = store.period(store.leaderboard("t"), NOW)
    (change,) = store.produce_event(store.leaderboard("t"), period, top=2)
    event = change.event
    assert event.kind is EventKind.TOURNAMENT_END
    assert (event.period_start, event.period_end, event.rank_count, event.top_limit) == (NOW - 60, NOW + 60, 3, 2)
    assert [(s.rank, s.owner_id, s.score, s.max_num_score) for s in event.standings] == [
        (1, "p2", 9, 3), (2, "p3", 7, 3)]
    assert store.events.has(event.key) and event.id.startswith("evt_")


def _events(count: int, *, origins=("a@1", "b@1", "c@1"), seed: int = 0):
    """Changes of ``count`` events made by several lives, each life numbering its own."""
    rng = random.Random(seed)
    producers = {origin: make_store(origin, start_ms=NOW * 1000 + rng.randrange(1000)) for origin in origins}
    board = leaderboard("lb", reset_schedule=HOURLY)
    for store in producers.values():
        store.create_leaderboard(board)
    made = []
    periods = periods_ending(store.leaderboard("lb"), after=NOW, until=NOW + count * 3600 + 3600, limit=count)
    for period in periods:
        store = producers[rng.choice(origins)]
        made += store.produce_event(store.leaderboard("lb"), period, top=10)
    return made


def _in_life_order(changes: list[EventPut], rng: random.Random) -> list[EventPut]:
    """A delivery order replication could make: each life's events in order, lives interleaved."""
    queues = {}
    for change in changes:
        queues.setdefault(change.event.origin, []).append(change)
    out = []
    while queues:
        origin = rng.choice(sorted(queues))
        out.append(queues[origin].pop(0))
        if not queues[origin]:
            del queues[origin]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_a_reader_paging_on_any_node_never_misses_an_event_whatever_arrives_late(seed):
    rng = random.Random(seed)
    changes = _events(20, seed=seed)
    everything = sorted(c.event.id for c in changes)
    reader_seen: list[str] = []
    cursor: dict[str, int] = {}
    logs = [EventLog() for _ in range(3)]
    orders = [_in_life_order(changes, rng) for _ in logs]
    # the reader asks a random node after each arrival anywhere, a page of 3 at a time
    steps = [(i, change) for i, order in enumerate(orders) for change in order]
    rng.shuffle(steps)
    pending = {i: list(order) for i, order in enumerate(orders)}
    for i, _ in steps:
        logs[i].add(pending[i].pop(0).event)
        node = rng.randrange(3)
        page, cursor = logs[node].after(cursor, limit=3)
        reader_seen += [event.id for event in page]
        cursor = decode_cursor(encode_cursor(cursor))
    while True:
        page, cursor = logs[0].after(cursor, limit=3)
        if not page:
            break
        reader_seen += [event.id for event in page]
    assert sorted(set(reader_seen)) == everything
    assert [e.id for e in logs[0].after({}, limit=100)[0]] == [e.id for e in logs[2].after({}, limit=100)[0]]


def test_two_copies_of_one_event_leave_the_same_one_shown_on_every_node():
    a = make_store("a@1", start_ms=NOW * 1000)
    b = make_store("b@1", start_ms=NOW * 1000 + 5)
    for store in (a, b):
        store.create_leaderboard(leaderboard("lb", reset_schedule=HOURLY))
    period = periods_ending(a.leaderboard("lb"), after=NOW, until=NOW + 3600, limit=1)[0]
    first = a.produce_event(a.leaderboard("lb"), period, top=10)
    second = b.produce_event(b.leaderboard("lb"), period, top=10)  # b had not seen a's
    for order in itertools.permutations(first + second):
        log = make_store("c@1")
        for change in order:
            log.apply(change)
        (shown,), _ = log.events.after({}, limit=10)
        assert shown == first[0].event
        assert len(log.events) == 2


def test_numbers_keep_growing_after_a_lifes_events_are_trimmed():
    store = make_store("a@1")
    store.create_leaderboard(leaderboard("lb", reset_schedule=HOURLY))
    periods = periods_ending(store.leaderboard("lb"), after=NOW, until=NOW + 3 * 3600, limit=2)
    (old,) = store.produce_event(store.leaderboard("lb"), periods[0], top=1)
    _, cursor = store.events.after({}, limit=10)
    assert store.trim_events(periods[1].expiry) == 1
    (new,) = store.produce_event(store.leaderboard("lb"), periods[1], top=1)
    assert new.event.number == old.event.number + 1
    assert store.events.after(cursor, limit=10)[0] == [new.event]


def test_an_erased_owner_keeps_its_place_in_earlier_standings_without_its_name_in_any_order():
    a = make_store("a@1", start_ms=NOW * 1000)
    a.create_leaderboard(leaderboard("t", tournament=TournamentSettings(start_time=NOW - 10, end_time=NOW + 10,
                                                                        duration=20)))
    a.write_record("t", "p1", score=3, username="alice", metadata='{"k":1}', now=NOW)
    a.write_record("t", "p2", score=2, username="bob", now=NOW)
    produced = a.produce_event(a.leaderboard("t"), a.period(a.leaderboard("t"), NOW), top=10)
    _, _, erasure = a.erase_owner("p1")
    for order in (produced + erasure, erasure + produced):
        replica = make_store("b@1")
        for change in order:
            replica.apply(change)
        (event,), _ = replica.events.after({}, limit=1)
        assert [(s.owner_id, s.score, s.username, s.metadata) for s in event.standings] == [
            ("p1", 3, None, None), ("p2", 2, "bob", None)]


def test_a_cursor_that_was_altered_is_refused_naming_after():
    text = encode_cursor({"a@1": 3})
    assert decode_cursor(text) == {"a@1": 3}
    for bad in (text[:-2] + "AA", "garbage", ""):
        with pytest.raises(errors.CursorInvalid) as caught:
            decode_cursor(bad)
        assert caught.value.field == "after"


def test_a_write_landing_in_a_period_whose_event_was_produced_is_counted_late():
    store = make_store("a@1", start_ms=NOW * 1000)
    other = make_store("b@1", start_ms=NOW * 1000)
    for s in (store, other):
        s.create_leaderboard(leaderboard("lb", reset_schedule=HOURLY))
    _, late = other.write_record("lb", "p1", score=5, now=NOW)  # accepted before the end, delayed
    period = store.period(store.leaderboard("lb"), NOW)
    (change,) = store.produce_event(store.leaderboard("lb"), period, top=10)
    for c in late:
        store.apply(c)
    assert store.late_writes == 1
    assert change.event.rank_count == 0  # the event stands as produced
    assert store.get_record("lb", "p1", now=NOW, expiry=period.expiry).score == 5  # readable in its period
