"""The BinaryLog schema and its codec."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaderboard_node.domain.changes import (
    AttemptsGrant,
    DeliveryProgress,
    EventPut,
    LeaderboardKill,
    LeaderboardPut,
    OwnerErase,
    RecordSlotPut,
    Setting,
    SettingPut,
    TournamentJoin,
)
from leaderboard_node.domain.events import Event, EventKind, Standing
from leaderboard_node.domain.clock import MAX_HLC, MAX_MS, HybridLogicalClock
from leaderboard_node.domain.leaderboards import Leaderboard, TournamentSettings
from leaderboard_node.domain.records import Base, Operator, Slot, SlotKind, SortOrder
from leaderboard_node.domain.store import LeaderboardStore
from leaderboard_node.replication import binarylog_pb2 as pb
from leaderboard_node.replication import protocol_codegen
from leaderboard_node.replication.outbox import build_batch
from leaderboard_node.replication.protocol import (
    FormatTooNew,
    ProtocolError,
    encode_entry,
    record_key,
    entry_from_pb,
    entry_to_pb,
    frame,
    read_frames,
)
from leaderboard_node.replication.sync import SYNC_FORMAT, SnapshotReceiver, snapshot_chunks
from leaderboard_node.replication.versions import VersionVector


def test_the_generated_code_matches_the_proto_file():
    committed = protocol_codegen.TARGET.read_text()
    assert protocol_codegen.generate() == committed, "run ./run proto and commit the result"


ids = st.text(alphabet="abcXYZ019_-.:", min_size=1, max_size=12)
int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
hlcs = st.integers(0, MAX_HLC)
millis = st.integers(0, MAX_MS)
optional_text = st.none() | st.text(max_size=10)
bases = st.none() | st.builds(Base, hlcs, ids, st.booleans(), int64, int64,
                              st.integers(0, 1 << 40), millis, optional_text, optional_text)
slots = st.one_of(
    st.builds(lambda o, k, h, s, ss, n, c, u, m: Slot(o, k, h, s, ss, n, c, u, m, None),
              ids, st.sampled_from([SlotKind.SET]), hlcs, int64, int64,
              st.integers(0, 1 << 40), millis, optional_text, optional_text),
    st.builds(lambda o, k, h, s, ss, n, c, u, m, b: Slot(o, k, h, s, ss, n, c, u, m, b),
              ids, st.sampled_from([SlotKind.BEST, SlotKind.INCR]), hlcs, int64, int64,
              st.integers(0, 1 << 40), millis, optional_text, optional_text, bases),
    st.builds(lambda o, h: Slot(o, SlotKind.DELETE, h, 0, 0, 0, 0, None, None), ids, hlcs),
)
tournaments = st.none() | st.builds(
    lambda title, description, category, start, length, duration, size, num, join: TournamentSettings(
        title, description, category, start, start + length if length else 0, duration, size, num, join),
    st.text(max_size=5), st.text(max_size=5), st.integers(0, 127), st.integers(0, 1 << 31),
    st.integers(0, 1 << 30), st.integers(1, 1 << 20), st.integers(0, 1000), st.integers(0, 1000), st.booleans())
definitions = st.builds(
    Leaderboard, id=ids, sort_order=st.sampled_from(list(SortOrder)), operator=st.sampled_from(list(Operator)),
    reset_schedule=st.none() | st.just("0 0 * * *"), metadata=st.just('{"a":1}'), authoritative=st.booleans(),
    enable_ranks=st.booleans(), tournament=tournaments, generation=st.integers(1, 50),
    create_hlc=hlcs, origin=ids,
)
changes = st.one_of(
    st.builds(RecordSlotPut, ids, ids, st.integers(0, 1 << 40), ids, slots, st.booleans()),
    st.builds(LeaderboardPut, definitions),
    st.builds(LeaderboardKill, ids, st.lists(ids, max_size=3).map(tuple), st.integers(0, 100)),
    st.builds(TournamentJoin, ids, ids, st.integers(0, 1 << 40), ids, hlcs),
    st.builds(OwnerErase, ids, hlcs, ids),
    st.builds(AttemptsGrant, ids, ids, st.integers(0, 1 << 40), ids, ids, hlcs, st.integers(0, 1 << 40)),
    st.builds(SettingPut, ids, ids, st.just(Setting.ENABLE_RANKS), st.booleans(), hlcs, ids),
    st.builds(SettingPut, ids, ids, st.just(Setting.EVENT_TOP), st.none() | st.integers(1, 1000), hlcs, ids),
    st.builds(SettingPut, ids, ids, st.just(Setting.WEBHOOK_URL),
              st.none() | st.sampled_from(["http://127.0.0.1:9000/hook", "https://example.com/x?y=1"]), hlcs, ids),
    st.builds(DeliveryProgress, ids, ids, st.integers(1, 1 << 40)),
    st.builds(
        lambda top, kind, times, count, hlc, origin, number: EventPut(Event(
            "lb", "1.ab", kind, times, times + 60, times, times + 30, count + len(top), 100, tuple(top), hlc, origin,
            number)),
        st.lists(st.builds(Standing, st.integers(0, 1000), ids, optional_text, int64, int64, st.integers(0, 1 << 40),
                           st.integers(0, 1 << 40), optional_text, millis, millis), max_size=5),
        st.sampled_from(list(EventKind)), st.integers(0, 1 << 31), st.integers(0, 1000), hlcs, ids,
        st.integers(1, 1 << 40)),
)


@settings(max_examples=300)
@given(changes, st.integers(1, 1 << 50))
def test_every_change_survives_the_wire_unchanged(change, seq):
    entry = pb.Entry()
    entry_to_pb(seq, change, entry)
    decoded = entry_from_pb(pb.Entry.FromString(entry.SerializeToString()))
    assert decoded == change


def test_a_definition_no_client_could_create_is_refused_from_a_peer():
    entry = pb.Entry(seq=1)
    definition = entry.leaderboard_create.leaderboard
    definition.id, definition.origin, definition.generation = "lb", "n", 1
    definition.reset_schedule = "0 0 31 2 *"  # never fires
    try:
        entry_from_pb(pb.Entry.FromString(entry.SerializeToString()))
    except ProtocolError:
        return
    raise AssertionError("a definition with a cron that never fires was accepted")


@pytest.mark.parametrize("url", ["ftp://x/y", "http://user:pw@h/", "not a url"])
def test_a_webhook_url_no_client_could_set_is_refused_from_a_peer(url):
    entry = pb.Entry(seq=1)
    setting = entry.setting_update
    setting.leaderboard_id, setting.incarnation, setting.origin = "lb", "1.a", "n@1"
    setting.name, setting.text = pb.SETTING_NAME_WEBHOOK_URL, url
    with pytest.raises(ProtocolError):
        entry_from_pb(pb.Entry.FromString(entry.SerializeToString()))


def test_an_event_with_more_standings_than_its_top_is_refused_from_a_peer():
    event = Event("lb", "1.a", EventKind.LEADERBOARD_RESET, 0, 60, 0, 60, 5, 1,
                  (Standing(1, "a", None, 1, 0, 1, 0, None, 0, 0), Standing(2, "b", None, 0, 0, 1, 0, None, 0, 0)),
                  1, "n@1", 1)
    entry = pb.Entry()
    entry_to_pb(1, EventPut(event), entry)
    with pytest.raises(ProtocolError):
        entry_from_pb(pb.Entry.FromString(entry.SerializeToString()))


def test_an_entry_without_a_change_is_refused():
    try:
        entry_from_pb(pb.Entry(seq=3))
    except ProtocolError:
        return
    raise AssertionError("an empty entry was accepted")


def test_a_batch_keeps_only_the_latest_update_of_each_record_but_covers_the_whole_range():
    def put(owner, score, hlc):
        return RecordSlotPut("lb", "1.a", 0, owner, Slot("n", SlotKind.SET, hlc, score, 0, 1, 0, None, None), True)

    entries = [(1, put("a", 1, 1)), (2, put("b", 1, 2)), (3, put("a", 2, 3)),
               (4, LeaderboardKill("other", ("1.x",), 1)), (5, put("a", 3, 5))]
    encoded = [(seq, record_key(change), encode_entry(seq, change)) for seq, change in entries]
    batch = pb.Batch.FromString(build_batch(("n", 7), "n", encoded, first_seq=1, last_seq=5, hlc=9).data)
    assert (batch.origin.node, batch.origin.epoch, batch.first_seq, batch.last_seq) == ("n", 7, 1, 5)
    assert [e.seq for e in batch.entries] == [2, 4, 5]
    assert entry_from_pb(batch.entries[2]) == entries[4][1]


def test_frames_split_a_stream_at_any_boundary():
    messages = [b"", b"x" * 10, b"y" * 70000, b"z"]
    stream = b"".join(frame(m) for m in messages)
    for step in (1, 3, 4096):
        buffer, out = bytearray(), []
        for start in range(0, len(stream), step):
            buffer.extend(stream[start:start + step])
            out.extend(read_frames(buffer))
        assert out == messages and not buffer


def test_entries_whose_record_hashes_collide_are_all_kept():
    def put(owner, score, hlc):
        return RecordSlotPut("lb", "1.a", 0, owner, Slot("n", SlotKind.SET, hlc, score, 0, 1, 0, None, None), True)

    entries = [(1, put("a", 1, 1)), (2, put("b", 1, 2)), (3, put("a", 2, 3))]
    colliding = [(seq, 42, encode_entry(seq, change)) for seq, change in entries]  # one hash for every record
    batch = pb.Batch.FromString(build_batch(("n", 7), "n", colliding, first_seq=1, last_seq=3, hlc=9).data)
    assert [e.seq for e in batch.entries] == [2, 3]


# ------------------------------------------------------------------ sync stream format


def _snapshot_of_a_board(*, format_number: int | None) -> list[bytes]:
    store = LeaderboardStore(node="sender", clock=HybridLogicalClock())
    store.create_leaderboard(Leaderboard(id="lb", operator=Operator.SET))
    for i in range(5):
        store.write_record("lb", f"p{i}", score=i, now=1_700_000_000)

    async def collect() -> list[bytes]:
        return [c async for c in snapshot_chunks(store, source=("sender", 1), vector=VersionVector(),
                                                   chunk_records=2)]

    chunks = asyncio.run(collect())
    if format_number is not None:
        header = pb.SyncChunk.FromString(chunks[0])
        if format_number:
            header.header.format = format_number
        else:
            header.header.ClearField("format")
        chunks[0] = header.SerializeToString()
    return chunks


def _receiving_store() -> LeaderboardStore:
    return LeaderboardStore(node="receiver", clock=HybridLogicalClock())


def test_a_snapshot_says_which_format_it_is_in():
    assert pb.SyncChunk.FromString(_snapshot_of_a_board(format_number=None)[0]).header.format == SYNC_FORMAT


def test_a_snapshot_in_a_newer_format_is_refused_before_anything_is_applied():
    store = _receiving_store()
    receiver = SnapshotReceiver(store)
    chunks = _snapshot_of_a_board(format_number=SYNC_FORMAT + 1)
    try:
        receiver.feed(chunks[0])
    except FormatTooNew as exc:
        assert f"format {SYNC_FORMAT + 1}" in str(exc)
    else:
        raise AssertionError("a newer format was read")
    assert isinstance(FormatTooNew("x"), ProtocolError)  # a peer's such snapshot is retried elsewhere
    assert not store.leaderboards and store.record_count() == 0


def test_a_snapshot_of_a_build_before_formats_were_numbered_is_read():
    store = _receiving_store()
    receiver = SnapshotReceiver(store)
    for chunk in _snapshot_of_a_board(format_number=0):
        receiver.feed(chunk)
    assert receiver.result().records == 5 and store.record_count() == 5


def test_fold_slots_travel_in_full_syncs_and_are_refused_in_batches():
    from leaderboard_node.domain.lives import life_id
    from leaderboard_node.replication.protocol import slot_from_pb, slot_to_pb

    fold = Slot(life_id("a", 3), SlotKind.FOLD_INCR, 7 << 16, 5, 0, 2, 1, None, None, None, 9)
    message = pb.Slot()
    slot_to_pb(fold, message)
    assert slot_from_pb(message, folds=True) == fold
    with pytest.raises(ProtocolError):  # a batch may not carry one
        slot_from_pb(message)


def test_a_slot_claiming_to_cover_lives_it_cannot_is_refused():
    from leaderboard_node.domain.lives import life_id
    from leaderboard_node.replication.protocol import slot_from_pb, slot_to_pb

    for slot in (Slot(life_id("a", 3), SlotKind.INCR, 7 << 16, 5, 0, 2, 1, None, None, None, 99),  # not epoch + 1
                 Slot(life_id("a", 3), SlotKind.SET, 7 << 16, 5, 0, 2, 1, None, None, None, 4),  # a base
                 Slot(life_id("a", 3), SlotKind.FOLD_BEST, 7 << 16, 5, 0, 2, 1, None, None, None, 3)):  # not its own
        message = pb.Slot()
        slot_to_pb(slot, message)
        with pytest.raises(ProtocolError):
            slot_from_pb(message, folds=True)
    absorbed = Slot(life_id("a", 3), SlotKind.INCR, 7 << 16, 5, 0, 2, 1, None, None, None, 4)
    message = pb.Slot()
    slot_to_pb(absorbed, message)
    assert slot_from_pb(message) == absorbed


def test_peer_clock_readings_beyond_2106_are_refused():
    from leaderboard_node.replication.protocol import slot_from_pb, slot_to_pb

    message = pb.Slot()
    slot_to_pb(Slot("a", SlotKind.SET, MAX_HLC + 1, 5, 0, 1, 1, None, None), message)
    with pytest.raises(ProtocolError):
        slot_from_pb(message)


def test_a_full_sync_carries_erasures_attempts_settings_events_and_delivery_progress():
    now = 1_700_000_000
    store = LeaderboardStore(node="sender@1", clock=HybridLogicalClock())
    store.create_leaderboard(Leaderboard(id="cup", tournament=TournamentSettings(
        start_time=now - 10, end_time=now + 50, duration=60, max_num_score=1)))
    store.write_record("cup", "p1", score=3, now=now)
    store.write_record("cup", "p2", score=4, now=now)
    store.join_tournament("cup", "p3", now=now)
    store.grant_attempts("cup", "p2", 2, now=now)
    store.update_settings("cup", {Setting.ENABLE_RANKS: False, Setting.WEBHOOK_URL: "http://127.0.0.1:1/h"})
    (put,) = store.produce_event(store.leaderboard("cup"), store.period(store.leaderboard("cup"), now), top=10)
    store.record_delivery("node:http://127.0.0.1:1/h", put.event)
    store.erase_owner("p1")
    assert store.list_records("cup", limit=10, now=now).records[0].owner_id == "p2"

    async def collect() -> list[bytes]:
        return [c async for c in snapshot_chunks(store, source=("sender", 1), vector=VersionVector(), chunk_records=1)]

    receiver_store = _receiving_store()
    receiver = SnapshotReceiver(receiver_store)
    for chunk in asyncio.run(collect()):
        receiver.feed(chunk)
    receiver.result()
    cup = receiver_store.leaderboard("cup")
    assert [(v.owner_id, v.rank, v.max_num_score) for v in receiver_store.list_records("cup", limit=10, now=now).records
            ] == [("p2", 0, 3)]
    assert receiver_store.size(cup, now + 50) == 2
    assert receiver_store.setting(cup, Setting.WEBHOOK_URL) == "http://127.0.0.1:1/h"
    assert [e.id for e in receiver_store.events] == [put.event.id]
    assert receiver_store.events.progress == {"node:http://127.0.0.1:1/h": {"sender@1": 1}}
    # p1's old slot, arriving late, stays void there too
    receiver_store.apply(RecordSlotPut("cup", cup.incarnation, now + 50, "p1",
                                       Slot("other@1", SlotKind.SET, 1, 9, 0, 1, 0, None, None), True))
    assert receiver_store.record_count() == 1


def test_a_snapshot_that_sends_more_events_than_it_announced_is_refused():
    from leaderboard_node.replication.protocol import event_to_pb
    from leaderboard_node.replication.sync import EVENT_SLACK

    header = pb.SyncChunk()
    header.header.SetInParent()
    header.header.source.node, header.header.source.epoch = "liar", 1
    header.header.format = SYNC_FORMAT  # announces no events
    receiver = SnapshotReceiver(_receiving_store())
    receiver.feed(header.SerializeToString())
    chunk = pb.SyncChunk()
    for number in range(1, EVENT_SLACK + 2):
        event_to_pb(Event("lb", "1.a", EventKind.LEADERBOARD_RESET, 0, number, 0, number, 0, 1, (), 1, "liar@1",
                          number), chunk.events.events.add())
    with pytest.raises(ProtocolError, match="more events than it announced"):
        receiver.feed(chunk.SerializeToString())
    assert len(receiver.store.events) == 0  # refused before any was held


def _snapshot(store: LeaderboardStore) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [c async for c in snapshot_chunks(store, source=("sender", 1), vector=VersionVector(), chunk_records=4)]

    return asyncio.run(collect())


def _scores(store: LeaderboardStore) -> dict[str, int]:
    return {r.owner_id: r.score for r in store.list_records("lb", limit=100, now=1_700_000_000).records}


def _held_copy_and_a_newer_snapshot() -> tuple[LeaderboardStore, list[bytes]]:
    sender = LeaderboardStore(node="sender", clock=HybridLogicalClock())
    sender.create_leaderboard(Leaderboard(id="lb", operator=Operator.SET))
    for i in range(10):
        sender.write_record("lb", f"p{i}", score=i, now=1_700_000_000)
    held = _receiving_store()
    receiver = SnapshotReceiver(held)
    for chunk in _snapshot(sender):
        receiver.feed(chunk)
    receiver.result()
    sender.write_record("lb", "p0", score=100, now=1_700_000_000)
    sender.write_record("lb", "p10", score=10, now=1_700_000_000)
    return held, _snapshot(sender)


def test_a_snapshot_of_a_bucket_held_here_is_merged_a_slice_at_a_time_while_writes_go_on():
    held, chunks = _held_copy_and_a_newer_snapshot()
    receiver = SnapshotReceiver(held, merge_slice=3)
    steps = 0
    for chunk in chunks:
        receiver.feed(chunk)
        while receiver.merge_step():
            steps += 1
            held.write_record("lb", f"local{steps}", score=-steps, now=1_700_000_000)  # served between slices
    receiver.result()
    assert steps == 4  # 11 records, 3 a slice
    assert _scores(held) == {**{f"p{i}": i for i in range(1, 10)}, "p0": 100, "p10": 10,
                             **{f"local{s}": -s for s in range(1, 5)}}


def test_a_bucket_deleted_while_a_snapshot_merges_into_it_stays_deleted():
    held, chunks = _held_copy_and_a_newer_snapshot()
    receiver = SnapshotReceiver(held, merge_slice=3)
    for chunk in chunks:
        receiver.feed(chunk)
        if receiver.merge_step():
            held.delete_leaderboard("lb")
    receiver.result()
    assert "lb" not in [lb.id for lb in held.list_leaderboards(tournaments=False)] and held.record_count() == 0
