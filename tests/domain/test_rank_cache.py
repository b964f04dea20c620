"""The rank cache's packed records: owner keys, buckets built from a full sync, lazy digests."""

from __future__ import annotations

import sys
import uuid

import pytest

from leaderboard_node.domain import record_codec
from leaderboard_node.domain.rank_cache import Bucket
from leaderboard_node.domain.record_codec import adopt, owner_key, split_elements, pack_lengths
from leaderboard_node.domain.records import Slot, SlotKind

HLC = 1_700_000_000_000 << 16
UUIDS = sorted(str(uuid.UUID(int=i * 0x1234_5678_9ABC_DEF0_1357_9BDF)) for i in range(1, 6))


def _set(origin: str, score: int, *, username: str | None = None, hlc: int = HLC) -> tuple[Slot, ...]:
    return (Slot(origin, SlotKind.SET, hlc, score, 0, 1, hlc >> 16, username, None),)  # a first write


def _bucket(records: dict[str, int], *, origin: str = "n1") -> Bucket:
    bucket = Bucket(descending=True, expiry=0)
    for owner, score in records.items():
        bucket.apply_slots(owner, _set(origin, score))
    return bucket


def _elements(bucket: Bucket) -> list[bytes]:
    return bucket.elements_after(None, len(bucket))


def test_a_first_write_of_a_uuid_owner_packs_into_80_bytes():
    bucket = _bucket({UUIDS[0]: 5})
    (element,) = _elements(bucket)
    assert sys.getsizeof(element) <= 80
    assert bucket.get(UUIDS[0]).value.num_score == 1
    bucket.apply_slots(UUIDS[0], (Slot("n1", SlotKind.SET, HLC + (5 << 16), 6, 0, 2, 1_000, None, None),))
    record = bucket.get(UUIDS[0])
    assert (record.value.score, record.value.num_score, record.value.create_ms) == (6, 2, 1_000)


def test_a_canonical_uuid_owner_is_packed_into_17_bytes():
    assert len(owner_key(UUIDS[0])) == 17
    assert owner_key(UUIDS[0].upper()) == UUIDS[0].upper().encode()  # other spellings stay text
    assert owner_key("player-42") == b"player-42"


@pytest.mark.parametrize("owners", [UUIDS, ["p1", "p10", "p2", "q"]], ids=["uuids", "text"])
def test_ties_on_score_fall_to_the_lower_owner_id_whatever_its_form(owners):
    bucket = _bucket({owner: 7 for owner in reversed(owners)})
    assert [record.owner for record in bucket] == sorted(owners)
    for owner in owners:
        assert bucket.get(owner).owner == owner


def test_uuid_owners_rank_before_text_owners_on_the_same_score():
    bucket = _bucket({"aaa": 7, UUIDS[-1]: 7})
    assert [record.owner for record in bucket] == [UUIDS[-1], "aaa"]


def test_a_bucket_built_from_a_sync_holds_the_same_records_and_digest():
    source = _bucket({owner: index for index, owner in enumerate(UUIDS + ["text-owner"])})
    built = Bucket.from_sync(_elements(source), [], descending=True, expiry=0)
    assert not built.digest_settled
    assert [(r.owner, r.value) for r in built] == [(r.owner, r.value) for r in source]
    assert built.get("text-owner").value.score == 5
    assert built.digest == source.digest and built.digest_settled


def test_writes_while_a_digest_settles_keep_it_exact():
    source = _bucket({owner: index for index, owner in enumerate(UUIDS)})
    built = Bucket.from_sync(_elements(source), [], descending=True, expiry=0)
    assert built.settle(2) == len(UUIDS) - 2
    for bucket in (source, built):
        bucket.apply_slots(UUIDS[0], _set("n1", 99, hlc=HLC + 1))
        bucket.apply_slots("newcomer", _set("n1", 3, hlc=HLC + 1))
    assert built.settle(100) == 0
    assert built.digest == source.digest


def test_records_out_of_rank_order_are_refused():
    elements = _elements(_bucket({owner: index for index, owner in enumerate(UUIDS)}))
    with pytest.raises(ValueError, match="order"):
        Bucket.from_sync(list(reversed(elements)), [], descending=True, expiry=0)


def test_an_owner_sent_twice_merges_like_two_replicas_of_it():
    older = _elements(_bucket({UUIDS[0]: 9}))  # moved while the snapshot streamed: sent at 9, then at 1
    newer = _bucket({})
    newer.apply_slots(UUIDS[0], _set("n1", 1, hlc=HLC + (1 << 16)))
    built = Bucket.from_sync(older + _elements(newer), [], descending=True, expiry=0)
    assert [(r.owner, r.value.score) for r in built] == [(UUIDS[0], 1)]
    assert built.digest == newer.digest


@pytest.mark.parametrize("owner", ["q", "p1", "abcd", "é"])
def test_short_text_owners_travel_too(owner):
    source = _bucket({owner: 3})
    adopted = adopt(_elements(source), record_codec.origin_table(), descending=True)
    built = Bucket.from_sync(adopted, [], descending=True, expiry=0)
    assert built.get(owner).value == source.get(owner).value


def test_a_record_rewritten_in_place_between_chunks_is_not_sent_again():
    bucket = _bucket({owner: index for index, owner in enumerate(UUIDS)})
    first = bucket.elements_after(None, 2)
    # the chunk's last record gets a newer slot with the same score: its element sorts just after
    bucket.apply_slots(bucket.get(UUIDS[-2]).owner, _set("n1", 3, username="x", hlc=HLC + (1 << 16)))
    rest = bucket.elements_after(first[-1], 10)
    assert UUIDS[-2] not in [bucket._decode(e).owner for e in rest]
    assert len(first) + len(rest) == len(UUIDS)


def test_elements_from_a_process_with_another_node_table_are_repointed():
    record_codec._intern("sync-test-a")
    record_codec._intern("sync-test-b")
    source = _bucket({UUIDS[0]: 1}, origin="sync-test-b")
    source.apply_slots("with-name", _set("sync-test-a", 2, username="ace"))
    source.apply_slots("two-slots", (Slot("sync-test-a", SlotKind.BEST, HLC, 5, 0, 1, 1_000, None, None),
                                     Slot("sync-test-b", SlotKind.BEST, HLC, 6, 0, 1, 1_000, None, None)))
    table = record_codec.origin_table()
    # the same names in another order, as another process may have interned them
    swapped = list(table)
    a, b = swapped.index("sync-test-a"), swapped.index("sync-test-b")
    swapped[a], swapped[b] = swapped[b], swapped[a]
    sent = [_swap_origins(e, a, b) for e in _elements(source)]
    adopted = adopt(split_elements(b"".join(sent), pack_lengths(sent)), swapped, descending=True)
    built = Bucket.from_sync(adopted, [], descending=True, expiry=0)
    assert [(r.owner, r.slots) for r in built] == [(r.owner, r.slots) for r in source]


def _swap_origins(element: bytes, a: int, b: int) -> bytes:
    """Re-encode an element as a process whose table has entries ``a`` and ``b`` swapped would."""
    end = record_codec.key_end(element)
    if element[end + 1] == 0:
        (origin,) = record_codec._ORIGIN.unpack_from(element, end + 3)
        origin = {a: b, b: a}.get(origin, origin)
        return element[:end + 3] + record_codec._ORIGIN.pack(origin) + element[end + 5:]
    score, subscore = record_codec.score_of(element, descending=True)
    slots = record_codec.decode_slots(element, end + 1, score=score, subscore=subscore)
    table = list(record_codec.origin_table())
    table[a], table[b] = table[b], table[a]
    index = {name: i for i, name in enumerate(table)}
    saved = dict(record_codec._origin_index)
    record_codec._origin_index.clear()
    record_codec._origin_index.update(index)
    try:
        return element[:end + 1] + record_codec.encode_slots(slots, score=score, subscore=subscore)
    finally:
        record_codec._origin_index.clear()
        record_codec._origin_index.update(saved)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda e: e[:-1], id="cut-short"),
    pytest.param(lambda e: e + b"\x00", id="too-long"),
    pytest.param(lambda e: e[:16] + b"\xff\xfe" + e[18:], id="owner-not-utf8"),
    pytest.param(lambda e: e.replace(b"\x00", b"\x01"), id="no-separator"),
])
@pytest.mark.parametrize("kind", [SlotKind.SET, SlotKind.BEST, SlotKind.INCR])
def test_a_damaged_element_is_refused(damage, kind):
    element = _elements(_one_slot_bucket(kind, "player-1", 5))[0]
    assert adopt([element], record_codec.origin_table(), descending=True) == [element]
    with pytest.raises(ValueError):
        adopt([damage(element)], record_codec.origin_table(), descending=True)


def _one_slot_bucket(kind: SlotKind, owner: str, score: int, *, username: str | None = None) -> Bucket:
    bucket = Bucket(descending=True, expiry=0)
    bucket.apply_slots(owner, (Slot("n1", kind, HLC, score, 2, 1, HLC >> 16, username, None),))
    return bucket


@pytest.mark.parametrize("kind", [SlotKind.BEST, SlotKind.INCR])
def test_a_lone_best_or_incr_element_is_checked_against_its_sort_prefix(kind):
    element = _elements(_one_slot_bucket(kind, UUIDS[0], 5, username="Ann"))[0]
    built = Bucket.from_sync(adopt([element], record_codec.origin_table(), descending=True), [],
                             descending=True, expiry=0)
    assert (built.get(UUIDS[0]).value.score, built.get(UUIDS[0]).value.username) == (5, "Ann")
    other_prefix = _elements(_one_slot_bucket(kind, UUIDS[0], 6))[0][:record_codec.PREFIX_SIZE]
    with pytest.raises(ValueError, match="does not match"):
        adopt([other_prefix + element[record_codec.PREFIX_SIZE:]], record_codec.origin_table(), descending=True)


def test_records_sent_as_slots_by_an_older_build_are_taken_as_records():
    source = _bucket({UUIDS[0]: 5, "text-owner": 3})
    source.apply_slots("gone", (Slot("n1", SlotKind.DELETE, HLC, 0, 0, 0, 0, None, None),))
    built = Bucket.from_sync([], list(source.owners_with_slots()), descending=True, expiry=0)
    assert [(r.owner, r.value) for r in built] == [(r.owner, r.value) for r in source]
    assert built.tombstones() == source.tombstones()
    assert built.digest == source.digest


def test_an_elements_hash_read_from_its_bytes_is_its_records_hash():
    from leaderboard_node.domain.rank_cache import Bucket, element_hash, record_hash
    from leaderboard_node.domain.records import Slot, SlotKind

    for descending in (True, False):
        bucket = Bucket(descending=descending, expiry=0)
        bucket.apply_slot("00000000-0000-4000-8000-000000000001", Slot("a@1", SlotKind.SET, 5 << 16, 7, 1, 1, 5, None, None))
        bucket.apply_slot("plain", Slot("a@1", SlotKind.SET, 6 << 16, -3, 0, 4, 2, "ann", '{"x": 1}'))
        bucket.apply_slot("named", Slot("a@1", SlotKind.SET, 7 << 16, 2**62, -5, 1, 7, "é", None))
        bucket.apply_slot("summed", Slot("a@1", SlotKind.INCR, 8 << 16, 3, 0, 1, 8, None, None))
        bucket.apply_slot("summed", Slot("b@1", SlotKind.INCR, 9 << 16, 4, 0, 1, 9, "bo", None))
        for record in bucket:
            assert element_hash(record.element, descending=descending) == record_hash(
                record.key[16:], record.value, descending=descending), record.owner


def test_a_buckets_digest_is_the_sum_of_its_elements_hashes_whatever_their_shape():
    from leaderboard_node.domain.rank_cache import Bucket, digest_of
    from leaderboard_node.domain.records import Slot, SlotKind

    bucket = Bucket(descending=True, expiry=0)
    for i in range(40):  # UUID and text owners, first writes and rewrites, with and without texts
        owner = f"00000000-0000-4000-8000-{i:012d}" if i % 2 else f"p{i}"
        bucket.apply_slot(owner, Slot("a@1", SlotKind.SET, (5 + i) << 16, i * 7, 0, 1, 5 + i, None, None))
        if i % 3 == 0:
            bucket.apply_slot(owner, Slot("a@1", SlotKind.SET, (90 + i) << 16, i, 0, 2, 5 + i, "u", None))
    assert f"{digest_of(bucket.elements(0, len(bucket)), descending=True):032x}" == bucket.digest


def test_first_write_elements_are_what_a_first_write_stores():
    from leaderboard_node.domain import record_codec, records
    from leaderboard_node.domain.rank_cache import Bucket
    from leaderboard_node.domain.records import Operator

    hlc = 1_700_000_000_123 << 16
    rows = [("00000000-0000-4000-8000-000000000001", 5, 1, None, None), ("text-owner", -7, 0, "ann", '{"a": 1}'),
            ("other", 0, 2, None, '{}')]
    for operator in (Operator.SET, Operator.BEST, Operator.INCR):
        for descending in (True, False):
            keyed = [(record_codec.owner_key(row[0]), *row[1:]) for row in rows]
            built = record_codec.first_write_elements(keyed, origin="a@0000000000001", hlc=hlc,
                                                       kind=records.contribution_kind(operator), descending=descending)
            bucket = Bucket(descending=descending, expiry=0)
            for owner, score, subscore, username, metadata in rows:
                slot = records.write((), origin="a@0000000000001", hlc=hlc, leaderboard_operator=operator,
                                     operator=operator, descending=descending, score=score, subscore=subscore,
                                     username=username, metadata=metadata)
                bucket.apply_slot(owner, slot)
            stored = {record.owner: record.element for record in bucket}
            assert [stored[row[0]] for row in rows] == built, (operator, descending)


def test_held_names_the_owners_a_bucket_has_a_record_or_a_tombstone_of():
    from leaderboard_node.domain import records
    from leaderboard_node.domain.rank_cache import Bucket
    from leaderboard_node.domain.record_codec import owner_key
    from leaderboard_node.domain.records import Slot, SlotKind

    bucket = Bucket(descending=True, expiry=0)
    assert bucket.held([owner_key("a")]) == set()
    for owner in ("a", "00000000-0000-4000-8000-000000000001", "gone"):
        bucket.apply_slot(owner, Slot("a@1", SlotKind.SET, 5 << 16, 1, 0, 1, 5, None, None))
    bucket.apply_slot("gone", records.tombstone(bucket.get("gone").slots, origin="a@1", hlc=9 << 16))
    asked = [owner_key(o) for o in ("a", "b", "gone", "00000000-0000-4000-8000-000000000001",
                                    "00000000-0000-4000-8000-000000000002")]
    assert bucket.held(asked) == {owner_key("a"), owner_key("gone"), owner_key("00000000-0000-4000-8000-000000000001")}


def test_a_large_import_merges_into_a_bucket_in_order_with_its_digest():
    from leaderboard_node.domain import record_codec, records
    from leaderboard_node.domain.rank_cache import Bucket, digest_of
    from leaderboard_node.domain.records import Operator

    bucket = Bucket(descending=False, expiry=0)
    kind = records.contribution_kind(Operator.BEST)
    for start, count in ((0, 500), (500, 20), (520, 2_000)):  # adds one by one, then merges a run
        rows = [(record_codec.owner_key(f"p{i}"), (i * 7919) % 1000, 0, None, None) for i in range(start, start + count)]
        bucket.insert_new(record_codec.first_write_elements(rows, origin="a@1", hlc=1 << 16, kind=kind,
                                                            descending=False))
    elements = bucket.elements(0, len(bucket))
    assert len(elements) == 2_520 and elements == sorted(elements)
    assert bucket.get("p2519") is not None and bucket.rank_of(bucket.get("p0").element) == 1
    assert f"{digest_of(elements, descending=False):032x}" == bucket.digest


def test_absorbing_a_synced_copy_merges_what_differs_and_keeps_what_is_the_same():
    held = _bucket({owner: index for index, owner in enumerate(UUIDS)})
    synced = Bucket.from_sync(_elements(held), [], descending=True, expiry=0)  # the same, packed the same
    held.apply_slots(UUIDS[0], _set("n1", 40, hlc=HLC + 1))  # newer here than in the copy
    synced.apply_slots(UUIDS[1], _set("n2", 50, hlc=HLC + 2))  # a second node's write only the copy has
    synced.apply_slots("newcomer", _set("n2", 7, hlc=HLC + 2))
    synced.apply_slots(UUIDS[2], ((Slot("n2", SlotKind.DELETE, HLC + 3, 0, 0, 0, 0, None, None),)))
    expected = _bucket({owner: index for index, owner in enumerate(UUIDS)})
    for bucket in (synced, held):  # what merging every owner of both, one at a time, holds
        for owner, slots in bucket.owners_with_slots():
            expected.apply_slots(owner, slots)
    held.absorb(synced)
    assert [(r.owner, r.slots) for r in held] == [(r.owner, r.slots) for r in expected]
    assert held.tombstone(UUIDS[2]) == expected.tombstone(UUIDS[2]) != ()
    assert held.digest == expected.digest and len(held) == len(UUIDS) + 1 - 1


def _first_writes(count: int, *, descending: bool = True) -> list[bytes]:
    bucket = Bucket(descending=descending, expiry=0)
    for i in range(count):  # distinct clocks: each record's milliseconds differ
        owner = str(uuid.UUID(int=(i + 1) * 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835 % (1 << 128)))
        bucket.apply_slot(owner, Slot("n1", SlotKind.SET, (1_700_000_000_000 + i * 977) << 16 | i, i * 31 - 500,
                                      0, 1, 1_700_000_000_000 + i * 977, None, None))
    return _elements(bucket)


@pytest.mark.parametrize("descending", [True, False])
def test_a_chunk_of_first_writes_is_hashed_at_once_as_record_by_record(descending):
    from leaderboard_node.domain.rank_cache import _first_writes_digest, element_hash

    elements = _first_writes(500, descending=descending)
    assert len(elements[0]) == record_codec.FIRST_WRITE_SIZE
    assert _first_writes_digest(elements) == sum(element_hash(e, descending=descending) for e in elements)
    named = _bucket({UUIDS[0]: 1})
    named.apply_slots(UUIDS[1], _set("n1", 2, username="ann"))
    assert _first_writes_digest(elements + _elements(named)) is None  # one with a name: record by record


def test_a_chunk_of_first_writes_is_adopted_at_once_as_record_by_record():
    elements = _first_writes(300)
    blob, lengths = b"".join(elements), pack_lengths(elements)
    table = record_codec.origin_table()
    assert record_codec.adopt_framed(blob, lengths, table, descending=True) == adopt(
        split_elements(blob, lengths), table, descending=True) == elements
    origin = record_codec.UUID_KEY_END + 4  # the low byte of the first element's origin
    unknown = blob[:origin] + bytes([len(table)]) + blob[origin + 1:]
    with pytest.raises(ValueError):
        record_codec.adopt_framed(unknown, lengths, table, descending=True)
    with pytest.raises(ValueError):  # a length that does not add up
        record_codec.adopt_framed(blob[:-1], lengths, table, descending=True)
