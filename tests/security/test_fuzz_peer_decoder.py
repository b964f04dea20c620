"""Fuzzing the peer decoder path with hypothesis (bounded, derandomized).

What a peer sends goes through ``protocol.decompress``, ``read_frames``, ``protocol.parse``,
``entry_from_pb`` and then ``Replicator.receive_batch`` or ``SnapshotReceiver.feed``. Fed random
bytes, byte-level mutations of valid messages, and well-formed messages with hostile field
values, that path may only raise ``ProtocolError`` (which the peer endpoint answers with a
400), and a rejected input leaves the store as it was.

Each example runs against a fresh in-process replicator seeded with a leaderboard, a
tournament and records, so that mutated messages hit real ids and incarnations.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaderboard_node.config import NodeSettings, Settings
from leaderboard_node.domain.changes import Change
from leaderboard_node.domain.leaderboards import Leaderboard, TournamentSettings
from leaderboard_node.domain.records import Operator, SortOrder
from leaderboard_node.node import Node, NodeState, Now
from leaderboard_node.replication import binarylog_pb2 as pb
from leaderboard_node.replication.protocol import (
    MAX_FRAME_BYTES,
    ProtocolError,
    compress,
    decompress,
    entry_from_pb,
    entry_to_pb,
    frame,
    parse,
    read_frames,
)
from leaderboard_node.replication.replicator import Replicator
from leaderboard_node.replication import sync
from leaderboard_node.replication.sync import SnapshotReceiver
from leaderboard_node.replication.versions import VersionVector

NOW = 1_700_000_000
FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BOARD, CUP = "fuzz-board", "fuzz-cup"


class _Unreachable:
    """Transport and discovery of a replicator that never calls out."""

    async def peers(self) -> list[Any]:
        return []

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - receive_batch calls nothing
        raise AssertionError(f"the fuzzed replicator called {name}")


def _node(name: str) -> Node:
    node = Node(Settings(node=NodeSettings(name=name)), now=Now(lambda: NOW))
    node.set_state(NodeState.READY)
    return node


def _seed(node: Node) -> list[Change]:
    """The same definitions on every node (same settings, same incarnation), and some records."""
    store, changes = node.store, []
    for definition in (
        Leaderboard(BOARD, SortOrder.DESC, Operator.BEST, reset_schedule="0 0 * * *"),
        Leaderboard(CUP, SortOrder.ASC, Operator.INCR, tournament=TournamentSettings(
            title="cup", start_time=NOW - 100, duration=3600, max_size=50, join_required=False)),
    ):
        changes += store.create_leaderboard(definition)[2]
    for i in range(5):
        changes += store.write_record(BOARD, f"{node.name}-p{i}", score=i * 10, subscore=i, username=f"u{i}",
                                      metadata='{"i":%d}' % i, now=NOW)[1]
        changes += store.write_record(CUP, f"{node.name}-p{i}", score=i, now=NOW)[1]
    changes += store.join_tournament(CUP, f"{node.name}-joiner", now=NOW)[1]
    changes += store.delete_record(BOARD, f"{node.name}-p0", now=NOW)
    return changes


def _replicator() -> Replicator:
    node = _node("fuzz-target")
    replicator = Replicator(node=node, settings=node.settings.cluster.leaderboard_sync, transport=_Unreachable(),
                            discovery=_Unreachable(), epoch=1)
    node.publish(_seed(node))
    return replicator


def _fingerprint(replicator: Replicator) -> Any:
    store = replicator.store
    buckets = sorted((lid, inc, b.expiry, b.digest) for lid, inc, b in store.buckets())  # settles digests first
    return (
        replicator.state_digest(),
        replicator.vector.to_json(),
        store.record_count(),
        sorted((lb.id, lb.incarnation) for lb in store.leaderboards.definitions()),
        sorted(store.leaderboards.tombstones().items()),
        sorted((lid, inc, exp, tuple(sorted(owners))) for lid, inc, exp, owners in store.joins()),
        buckets,
    )


def _peer_batch() -> pb.Batch:
    """A valid batch of another node's changes to the same leaderboards."""
    peer = _node("fuzz-peer")
    changes = _seed(peer)
    batch = pb.Batch(first_seq=1, last_seq=len(changes), sender="fuzz-peer", sent_hlc=peer.clock.now())
    batch.origin.node, batch.origin.epoch = "fuzz-peer", 7
    for seq, change in enumerate(changes, start=1):
        entry_to_pb(seq, change, batch.entries.add())
    return batch


VALID_BATCH = _peer_batch().SerializeToString()


def _snapshot_chunks() -> list[bytes]:
    """The ``SyncChunk`` messages of a full sync of a seeded store, unframed."""
    source = _node("fuzz-source")
    _seed(source)
    # sync.snapshot_chunks yields messages; older trees had snapshot_frames, yielding them framed.
    chunks = getattr(sync, "snapshot_chunks", None)
    framed = chunks is None
    produce = getattr(sync, "snapshot_frames") if framed else chunks

    async def collect() -> list[bytes]:
        return [c async for c in produce(source.store, source=("fuzz-source", 3), vector=VersionVector(),
                                         chunk_records=2)]

    out = asyncio.run(collect())
    return list(read_frames(bytearray(b"".join(out)))) if framed else out


VALID_CHUNKS = _snapshot_chunks()


def _mutate(data: bytes, draw: Any) -> bytes:
    """Byte-level damage: flips, truncation, insertion, deletion, duplication of a slice."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "duplicate"]))
        position = draw(st.integers(0, max(0, len(out) - 1)))
        if action == "flip" and out:
            out[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and out:
            out[position] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x22]))
        elif action == "truncate":
            del out[position:]
        elif action == "insert":
            out[position:position] = draw(st.binary(min_size=1, max_size=12))
        elif action == "delete":
            del out[position:position + draw(st.integers(1, 16))]
        elif action == "duplicate":
            end = min(len(out), position + draw(st.integers(1, 64)))
            out[end:end] = out[position:end]
    return bytes(out)


def _receive(replicator: Replicator, data: bytes) -> None:
    """Decode and apply as the peer endpoint does; a rejection must leave the store as it was."""
    before = _fingerprint(replicator)
    try:
        replicator.receive_batch(parse(pb.Batch, data))
    except ProtocolError:
        assert _fingerprint(replicator) == before, "a rejected batch changed the store"


# --------------------------------------------------------------------- parse and decode


@FUZZ
@given(st.binary(max_size=512), st.sampled_from([pb.Batch, pb.CatchUpRequest, pb.CatchUpResponse, pb.SyncChunk,
                                                  pb.Status, pb.BatchAck]))
def test_random_bytes_parse_or_raise_a_protocol_error(data, message_type):
    try:
        message = parse(message_type, data)
    except ProtocolError:
        return
    if message_type is pb.Batch:
        for entry in message.entries:
            try:
                entry_from_pb(entry)
            except ProtocolError:
                pass


@FUZZ
@given(st.data())
def test_a_mutated_valid_entry_decodes_or_raises_a_protocol_error(data):
    batch = pb.Batch()
    batch.ParseFromString(VALID_BATCH)
    entry = batch.entries[data.draw(st.integers(0, len(batch.entries) - 1))]
    damaged = _mutate(entry.SerializeToString(), data.draw)
    try:
        entry_from_pb(parse(pb.Entry, damaged))
    except ProtocolError:
        pass


# ----------------------------------------------------------------------- receive_batch


def test_the_valid_batch_is_accepted_and_changes_the_store():
    """The control case for the fuzzing below: the undamaged batch gets in."""
    replicator = _replicator()
    before = _fingerprint(replicator)
    ack = replicator.receive_batch(parse(pb.Batch, VALID_BATCH))
    assert ack.accepted and ack.applied_seq == len(_peer_batch().entries)
    assert _fingerprint(replicator) != before


@FUZZ
@given(st.binary(max_size=1024))
def test_receive_batch_of_random_bytes_raises_only_protocol_errors(data):
    _receive(_replicator(), data)


@FUZZ
@given(st.data())
def test_receive_batch_of_a_mutated_valid_batch_raises_only_protocol_errors(data):
    _receive(_replicator(), _mutate(VALID_BATCH, data.draw))


def _incarnations() -> list[str]:
    node = _node("fuzz-incarnations")
    _seed(node)
    return [lb.incarnation for lb in node.store.leaderboards.definitions()]


# Mostly names that exist on the target (so that entries reach the store), sometimes anything.
texts = st.one_of(
    st.sampled_from([BOARD, CUP, "fuzz-peer", "fuzz-target-p1", "fuzz-peer-p2", *_incarnations(), "",
                     "\x00", "é", "a" * 300]),
    st.text(min_size=1, max_size=8),
)
u64 = st.one_of(st.integers(0, 3), st.just(2**64 - 1), st.integers(0, 2**64 - 1))
s64 = st.one_of(st.integers(-3, 3), st.sampled_from([-(2**63), 2**63 - 1]), st.integers(-(2**63), 2**63 - 1))
enum_values = st.one_of(st.integers(0, 6), st.integers(0, 6), st.integers(-(2**31), 2**31 - 1))


@st.composite
def hostile_entries(draw: Any, seq: int) -> pb.Entry:
    """A well-formed entry whose fields are anything the wire format allows."""
    entry = pb.Entry(seq=seq)
    kind = draw(st.sampled_from(["record_update", "record_delete", "leaderboard_create", "leaderboard_delete",
                                 "tournament_join"] * 4 + ["none"]))
    if kind in ("record_update", "record_delete"):
        target = getattr(entry, kind)
        key = target.key
        key.leaderboard_id, key.incarnation, key.owner_id = draw(texts), draw(texts), draw(texts)
        key.expiry, key.ascending = draw(s64), draw(st.booleans())
        if kind == "record_update":
            slot = target.slot
            slot.origin, slot.kind, slot.hlc = draw(texts), draw(enum_values), draw(u64)
            slot.score, slot.subscore, slot.num_score, slot.create_ms = draw(s64), draw(s64), draw(u64), draw(u64)
            if draw(st.booleans()):
                slot.username = draw(texts)
            if draw(st.booleans()):
                slot.metadata = draw(st.sampled_from(["{}", "not json", '{"a":1}', "[]", ""]))
            if draw(st.booleans()):  # the lives a slot claims to account for
                slot.cover = draw(st.one_of(u64, st.sampled_from([1, 2, 8, 2**63])))
            if draw(st.booleans()):
                base = slot.base
                base.hlc, base.origin, base.present = draw(u64), draw(texts), draw(st.booleans())
                base.score, base.subscore, base.num_score = draw(s64), draw(s64), draw(u64)
        else:
            target.origin, target.hlc = draw(texts), draw(u64)
    elif kind == "leaderboard_create":
        definition = entry.leaderboard_create.leaderboard
        definition.id, definition.origin = draw(texts), draw(texts)
        definition.sort_order, definition.operator = draw(enum_values), draw(enum_values)
        definition.generation, definition.create_hlc = draw(u64), draw(u64)
        definition.metadata = draw(st.sampled_from(["{}", "", "nope", '{"a":[1,2]}']))
        definition.authoritative, definition.enable_ranks = draw(st.booleans()), draw(st.booleans())
        if draw(st.booleans()):
            definition.reset_schedule = draw(st.sampled_from(["0 0 * * *", "", "garbage", "61 * * * *", "* * * * * *",
                                                              "0 0 31 2 *", "@daily"]))
        if draw(st.booleans()):
            t = definition.tournament
            t.category, t.start_time, t.end_time, t.duration = draw(u64.map(lambda v: v % 2**32)), draw(u64), draw(u64), draw(u64)
            t.max_size, t.max_num_score, t.join_required = draw(u64), draw(u64), draw(st.booleans())
    elif kind == "leaderboard_delete":
        delete = entry.leaderboard_delete
        delete.leaderboard_id, delete.generation = draw(texts), draw(u64)
        delete.incarnations.extend(draw(st.lists(texts, max_size=3)))
    elif kind == "tournament_join":
        join = entry.tournament_join
        join.leaderboard_id, join.incarnation, join.owner_id, join.expiry = draw(texts), draw(texts), draw(texts), draw(s64)
    return entry


@st.composite
def hostile_batches(draw: Any) -> bytes:
    """Mostly a consistent batch (origin, range and sequences right) of hostile entries, so that
    the entries reach the store; sometimes hostile framing too."""
    batch = pb.Batch(sender=draw(texts), sent_hlc=draw(u64))
    count = draw(st.integers(1, 4))
    if draw(st.integers(0, 3)):
        batch.origin.node, batch.origin.epoch = "fuzz-peer", 7
        batch.first_seq, batch.last_seq = 1, count
        seqs = list(range(1, count + 1))
    else:
        batch.origin.node, batch.origin.epoch = draw(texts), draw(u64)
        first = draw(st.sampled_from([1, 0, 2, 2**64 - 1]))
        batch.first_seq = first
        batch.last_seq = draw(st.sampled_from([first + count - 1, first, first + 10, 0])) % 2**64
        seqs = draw(st.lists(u64, max_size=count))
    for seq in seqs:
        batch.entries.append(draw(hostile_entries(seq)))
    return batch.SerializeToString()


@FUZZ
@given(hostile_batches())
def test_receive_batch_of_well_formed_hostile_messages_raises_only_protocol_errors(data):
    _receive(_replicator(), data)


# ------------------------------------------------------------------------------- sync


def _feed_all(chunks: list[bytes]) -> None:
    replicator = _replicator()
    receiver = SnapshotReceiver(replicator.store)
    for chunk in chunks:
        before = _fingerprint(replicator)
        try:
            receiver.feed(chunk)
        except ProtocolError:
            assert _fingerprint(replicator) == before, "a rejected snapshot chunk changed the store"
            return
    try:
        receiver.result()
    except ProtocolError:
        pass


def test_the_valid_snapshot_is_merged():
    replicator = _replicator()
    receiver = SnapshotReceiver(replicator.store)
    for chunk in VALID_CHUNKS:
        receiver.feed(chunk)
    assert receiver.result().source == ("fuzz-source", 3)
    assert replicator.store.record_count() > 10


@FUZZ
@given(st.data())
def test_a_mutated_snapshot_raises_only_protocol_errors(data):
    chunks = list(VALID_CHUNKS)
    index = data.draw(st.integers(0, len(chunks) - 1))
    chunks[index] = _mutate(chunks[index], data.draw)
    if data.draw(st.booleans()):
        chunks = data.draw(st.permutations(chunks))
    _feed_all(chunks)


@FUZZ
@given(st.data())
def test_what_a_mutated_snapshot_lets_in_can_be_served(data):
    """Records travel packed as the rank cache keeps them: whatever the receiver accepts must
    decode on every read path (pages, owner lookups, around, digests, writes on top)."""
    from leaderboard_node.transport.page_json import page_body

    chunks = list(VALID_CHUNKS)
    index = data.draw(st.integers(1, len(chunks) - 2))
    chunks[index] = _mutate(chunks[index], data.draw)
    replicator = _replicator()
    receiver = SnapshotReceiver(replicator.store)
    try:
        for chunk in chunks:
            receiver.feed(chunk)
        receiver.result()
    except ProtocolError:
        return
    store = replicator.store
    for leaderboard in store.leaderboards.definitions():
        page = store.list_records(leaderboard.id, limit=100, now=NOW)
        page_body(page)
        for record in page.records:
            store.get_record(leaderboard.id, record.owner_id, now=NOW)
            store.around_owner(leaderboard.id, record.owner_id, limit=3, now=NOW)
            store.write_record(leaderboard.id, record.owner_id, score=1, now=NOW)
        store.digest(leaderboard.id, now=NOW)


@FUZZ
@given(st.lists(st.binary(max_size=256), max_size=6))
def test_a_snapshot_of_random_chunks_raises_only_protocol_errors(chunks):
    _feed_all([VALID_CHUNKS[0], *chunks])


# --------------------------------------------------------------- framing and compression


@FUZZ
@given(st.binary(max_size=512))
def test_read_frames_pops_complete_frames_or_raises_a_protocol_error(data):
    buffer = bytearray(data)
    try:
        frames = list(read_frames(buffer))
    except ProtocolError:
        return
    assert b"".join(frame(f) for f in frames) + bytes(buffer) == data


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=5), st.integers(0, 40))
def test_read_frames_of_a_stream_cut_anywhere_keeps_the_partial_frame(messages, cut):
    stream = b"".join(frame(m) for m in messages)
    buffer = bytearray(stream[:cut])
    first = list(read_frames(buffer))
    buffer += stream[cut:]
    assert first + list(read_frames(buffer)) == messages and not buffer


def test_a_frame_announcing_more_than_the_maximum_is_refused():
    with pytest.raises(ProtocolError):
        list(read_frames(bytearray((MAX_FRAME_BYTES + 1).to_bytes(4, "big") + b"x")))


@FUZZ
@given(st.binary(max_size=512))
def test_decompress_of_random_bytes_raises_only_protocol_errors(data):
    try:
        decompress(data, max_size=4096)
    except ProtocolError:
        pass


@FUZZ
@given(st.data(), st.binary(min_size=1, max_size=2048))
def test_decompress_of_a_damaged_frame_raises_only_protocol_errors_and_stays_bounded(data, payload):
    assert decompress(compress(payload)) == payload
    try:
        out = decompress(_mutate(compress(payload), data.draw), max_size=4096)
    except ProtocolError:
        return
    assert len(out) <= 4096


# ------------------------------------------------------- what gets in must stay servable


def _definition_entry(**changes: Any) -> bytes:
    batch = pb.Batch(first_seq=1, last_seq=1, sender="fuzz-peer")
    batch.origin.node, batch.origin.epoch = "fuzz-peer", 7
    definition = batch.entries.add(seq=1).leaderboard_create.leaderboard
    definition.id, definition.origin, definition.generation, definition.create_hlc = "planted", "fuzz-peer", 1, 1
    for name, value in changes.items():
        if name.startswith("tournament_"):
            setattr(definition.tournament, name.removeprefix("tournament_"), value)
            definition.tournament.duration = definition.tournament.duration or 60
        else:
            setattr(definition, name, value)
    return batch.SerializeToString()


def _slot_entry(metadata: str) -> bytes:
    board = _node("fuzz-incarnations")
    _seed(board)
    batch = pb.Batch(first_seq=1, last_seq=1, sender="fuzz-peer")
    batch.origin.node, batch.origin.epoch = "fuzz-peer", 7
    update = batch.entries.add(seq=1).record_update
    key = update.key
    key.leaderboard_id, key.incarnation, key.owner_id = BOARD, board.store.leaderboards.get(BOARD).incarnation, "planted"
    key.expiry = board.store.period(board.store.leaderboards.get(BOARD), NOW).expiry
    update.slot.origin, update.slot.kind, update.slot.hlc, update.slot.score = "fuzz-peer", pb.SLOT_KIND_SET, 1, 5
    update.slot.metadata = metadata
    return batch.SerializeToString()


@pytest.mark.parametrize("data", [
    pytest.param(_definition_entry(reset_schedule="garbage"), id="not-a-cron"),
    pytest.param(_definition_entry(reset_schedule=""), id="empty-cron"),
    pytest.param(_definition_entry(reset_schedule="0 0 31 2 *"), id="cron-never-fires"),
    pytest.param(_definition_entry(reset_schedule="0 0 * * *", tournament_start_time=2**62),
                 id="tournament-beyond-year-9999"),
    pytest.param(_definition_entry(metadata="not json"), id="definition-metadata-not-json"),  # rendered as {}
    pytest.param(_slot_entry("not json"), id="record-metadata-not-json"),
    pytest.param(_slot_entry("[1, 2]"), id="record-metadata-not-an-object"),
    pytest.param(_definition_entry(reset_schedule="0 0 * * *"), id="control-valid-definition"),
    pytest.param(_slot_entry('{"ok": true}'), id="control-valid-record"),
])
def test_what_the_decoder_lets_in_can_be_served(data):
    """A peer (or anyone, when no peer token is set) must not be able to plant what reads choke on."""
    from leaderboard_node.transport.client_api import render_leaderboard
    from leaderboard_node.transport.page_json import page_body

    replicator = _replicator()
    try:
        replicator.receive_batch(parse(pb.Batch, data))
    except ProtocolError:
        return  # refused: fine
    node = replicator.node
    for leaderboard in node.store.leaderboards.definitions():
        render_leaderboard(node, leaderboard)
        page_body(node.store.list_records(leaderboard.id, limit=100, now=NOW))
        node.store.digest(leaderboard.id, now=NOW)
