"""The rank cache: the records of one bucket, kept in rank order.

A bucket holds the records of one leaderboard incarnation and one reset period. Each record
is one packed ``bytes`` element (``record_codec``): a 16-byte sort prefix of its score and
subscore, its owner key, and its slots. A ``SortedList`` of elements gives O(log n) insert,
delete, rank lookup and rank-to-record; comparing two elements is one ``memcmp``, ties on
(score, subscore) fall to the lower owner key for both sort orders, and ranks are unique.

Owners are found through a dict keyed by the *hash* of the owner key, not the key itself:
the key is already inside the element, and a second copy as a dict key would cost more than
the rest of the record. The hash is kept as a float of its top 53 bits: 32 bytes in the
allocator (24, in its 16-byte steps). An int would take 48 even when shifted to 60 bits: a
shift allocates its result as wide as its operand, 64 bits, and never gives the rest back
(measured: 184 against 168 bytes a record of a synced node at 1M, the one time ints were
tried). Over a whole full sync the keys are computed by maps in C (``_index_keys``). Two
owners with the same index key share a dict entry (a tuple of their elements), so a
collision costs time, never correctness.

Every bucket keeps a digest of its visible content: the sum, modulo 2**128, of a hash of
each record (XXH3-128 of its position and visible value, ``record_hash``). Updating it costs one hash per change, and two replicas holding the same
records have the same digest whatever order they applied changes in. Because the digest is
a sum, a bucket built at once (a full sync) need not hash its records before it serves: the
sender sends the sum of each chunk's hashes beside it, and a bucket built from chunks that
all carried one starts with its digest settled; otherwise (snapshots of earlier builds) it
keeps the list of elements it was built from, adds their hashes a slice at a time
(``settle``), and meanwhile adds and subtracts the hashes of later changes as usual; the
digest is exact once that list is consumed, and until then ``digest_settled`` is False.

Deleted records leave their slots behind as tombstones so that late, older slots from other
nodes cannot bring them back.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Iterator
from itertools import islice, repeat

from sortedcontainers import SortedList
from xxhash import xxh3_128_intdigest

from .record_codec import (
    FIRST_WRITE_SIZE,
    PREFIX,
    PREFIX_SIZE,
    UUID_KEY_END,
    compact_fields,
    compact_value,
    decode_slots,
    encode_slots,
    first_writes_only,
    key_end,
    owner_key,
    owner_of,
    retired_mask,
    score_of,
    sort_prefix,
    writes_of_retired_lives,
)
from .lives import NO_HORIZONS, Horizons
from .records import Slot, Slots, Value, merge, merge_slot, merge_slots, settle

_DIGEST_MOD = 1 << 128
_PREFIX_UNPACK = PREFIX.unpack_from
_UUID_START = PREFIX_SIZE + 1
_OFFSET = 1 << 63
_OFFSET_DESCENDING = (1 << 64) - 1 - _OFFSET  # score_of's mask and offset in one subtraction
_LOAD = 1000  # SortedList sublist size: fewer, longer sublists save memory at 1M records
SEPARATOR = b"\x00"
AFTER = b"\x01"
_HASHED = struct.Struct(">qqqqq")


Visible = tuple[str, int, int, int, int, int, "str | None", "str | None"]
"""owner, score, subscore, num_score, create_ms, update_ms, username, metadata"""


def _index_key(key: bytes) -> float:
    """Where the owner index keeps the owner with this owner key (see the module docstring)."""
    return float(hash(key) >> 11)


_UUID_TAG = operator.itemgetter(PREFIX_SIZE)
_UUID_KEY = operator.itemgetter(slice(PREFIX_SIZE, UUID_KEY_END))
_TOP_53_BITS = (11).__rrshift__  # x >> 11


def _index_keys(elements: list[bytes]) -> list[float]:
    """``_index_key`` of each element's owner key: a full sync's or an import's, in C-level
    passes when every owner is a UUID (the common case), else one element at a time."""
    if bytes(map(_UUID_TAG, elements)).count(0) == len(elements):
        return list(map(float, map(_TOP_53_BITS, map(hash, map(_UUID_KEY, elements)))))
    return [_index_key(e[PREFIX_SIZE:key_end(e)]) for e in elements]


class Record:
    """A decoded view of one element; its slots are unpacked only when asked for."""

    __slots__ = ("owner", "key", "element", "value", "_slots", "_descending")

    def __init__(self, owner: str, key: bytes, element: bytes, value: Value, slots: Slots | None,
                 descending: bool = True) -> None:
        self.owner = owner
        self.key = key  # sort prefix + owner key: a position for cursors
        self.element = element
        self.value = value
        self._slots = slots
        self._descending = descending

    @property
    def slots(self) -> Slots:
        if self._slots is None:
            score, subscore = score_of(self.element, descending=self._descending)
            self._slots = decode_slots(self.element, len(self.key) + 1, score=score, subscore=subscore)
        return self._slots


def visible(element: bytes, descending: bool) -> Visible:
    """What a reader sees of an element of a bucket of that sort order, as a plain tuple: what
    pages are made of.

    The common element (one node's ``set``, a UUID or text owner) is read here in one pass,
    without the ``Record`` and ``Value`` that ``Bucket.decode`` builds for writers; anything
    else is merged from its slots. A pure function of its arguments, so a rendering of it can
    be kept for as long as the element exists.
    """
    if element[PREFIX_SIZE] == 0:
        h = element[_UUID_START:UUID_KEY_END].hex()
        owner = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        end = UUID_KEY_END
    else:
        end = element.index(0, PREFIX_SIZE)
        owner = element[PREFIX_SIZE:end].decode()
    high, low = _PREFIX_UNPACK(element)
    if descending:
        score, subscore = _OFFSET_DESCENDING - high, _OFFSET_DESCENDING - low
    else:
        score, subscore = high - _OFFSET, low - _OFFSET
    fields = compact_fields(element, end + 1)
    if fields is None:
        merged = merge(decode_slots(element, end + 1, score=score, subscore=subscore), descending=descending)
        assert merged is not None
        return (owner, *merged)
    return (owner, score, subscore, *fields)


def record_hash(key: bytes, value: Value, *, descending: bool) -> int:
    """A record's share of its bucket's digest: its position (sort prefix and owner key) and
    visible value, hashed with XXH3 (128 bits: a digest compares replicas, it guards against no
    adversary). ``element_hash`` gets the same number from a packed record's bytes."""
    return xxh3_128_intdigest(sort_prefix(value.score, value.subscore, descending=descending) + key + b"\x00"
                              + _COUNTS3.pack(value.num_score, value.create_ms, value.update_ms)
                              + (value.username or "").encode() + b"\x00" + (value.metadata or "").encode())


_COUNTS3 = struct.Struct(">QQQ")
_COMPACT_HEAD = struct.Struct(">BBHQ")
_COUNTS = struct.Struct(">QQ")
_TEXT_LEN = struct.Struct(">I")


def element_hash(element: bytes, *, descending: bool) -> int:
    """``record_hash`` of a packed record, read straight from its bytes when it is one life's
    ``set`` (the common shape: its sort prefix and owner key are hashed as they are, and no
    ``Record`` or ``Value`` is built); the same number either way."""
    end = UUID_KEY_END if element[PREFIX_SIZE] == 0 else element.index(0, PREFIX_SIZE)
    offset = end + 1
    if element[offset] != 0:
        score, subscore = score_of(element, descending=descending)
        value = merge(decode_slots(element, offset, score=score, subscore=subscore), descending=descending)
        assert value is not None
        return record_hash(element[PREFIX_SIZE:end], value, descending=descending)
    _, flags, _, hlc = _COMPACT_HEAD.unpack_from(element, offset)
    offset += _COMPACT_HEAD.size
    update_ms = hlc >> 16
    if flags & 8:  # record_codec._FRESH: a first write
        counts = _COUNTS3.pack(1, update_ms, update_ms)
    else:
        num_score, create_ms = _COUNTS.unpack_from(element, offset)
        counts = _COUNTS3.pack(num_score, create_ms, update_ms)
        offset += _COUNTS.size
    if not flags & 3:
        return xxh3_128_intdigest(element[:end] + b"\x00" + counts + b"\x00")
    username = metadata = b""
    if flags & 1:
        (size,) = _TEXT_LEN.unpack_from(element, offset)
        username = element[offset + 4:offset + 4 + size]
        offset += 4 + size
    if flags & 2:
        (size,) = _TEXT_LEN.unpack_from(element, offset)
        metadata = element[offset + 4:offset + 4 + size]
    return xxh3_128_intdigest(element[:end] + b"\x00" + counts + username + b"\x00" + metadata)


_HLC_UNPACK = struct.Struct(">Q").unpack_from
_COUNTS3_PACK = _COUNTS3.pack


_RECORD_KEY = operator.itemgetter(slice(0, UUID_KEY_END))  # sort prefix and owner key
_CLOCK_MS = operator.itemgetter(slice(UUID_KEY_END + 5, UUID_KEY_END + 11))  # a compact slot's hlc >> 16
_BEFORE_CREATE = b"\x00" + _COUNTS3.pack(1, 0, 0)[:10]  # the zero, num_score 1, create_ms's high bytes
_BEFORE_UPDATE = b"\x00\x00"
_AFTER_UPDATE = b"\x00"


def _first_writes_digest(elements: list[bytes]) -> int | None:
    """``digest_of`` elements that are all UUID owners' first writes without texts (a full
    sync's chunk of a board loaded by first writes or imports), None for any other list.

    What ``record_hash`` hashes of such a record is its sort prefix and owner key, a zero, its
    counts (``num_score`` 1, then the write's milliseconds twice: the top six bytes of its
    clock, big-endian in eight) and a zero: pieces of the element and constants, joined and
    hashed by maps over the list, without a Python step per record (twice as fast as the loop
    of ``digest_of``).
    """
    count = len(elements)
    if count < 64 or set(map(len, elements)) != {FIRST_WRITE_SIZE} or not first_writes_only(b"".join(elements), count):
        return None
    ms = list(map(_CLOCK_MS, elements))
    return sum(map(xxh3_128_intdigest, map(b"".join, zip(
        map(_RECORD_KEY, elements), repeat(_BEFORE_CREATE), ms, repeat(_BEFORE_UPDATE), ms, repeat(_AFTER_UPDATE)))))


def digest_of(elements: list[bytes], *, descending: bool) -> int:
    """The sum of the records' hashes, modulo 2**128: their share of a bucket's digest.

    A full sync's sender hashes every record it sends: a chunk of UUID owners' first writes
    without texts (the commonest) is hashed in C-level passes (``_first_writes_digest``); any
    other, record by record, the commonest shape inline, as ``element_hash`` would.
    """
    total = _first_writes_digest(elements)
    if total is not None:
        return total % _DIGEST_MOD
    total = 0
    for element in elements:
        if len(element) == FIRST_WRITE_SIZE and element[PREFIX_SIZE] == 0 and element[UUID_KEY_END + 2] == 8:
            ms = _HLC_UNPACK(element, UUID_KEY_END + 5)[0] >> 16
            total += xxh3_128_intdigest(element[:UUID_KEY_END] + b"\x00" + _COUNTS3_PACK(1, ms, ms) + b"\x00")
        else:
            total += element_hash(element, descending=descending)
    return total % _DIGEST_MOD


class Bucket:
    """Records of one leaderboard incarnation in one reset period, in rank order."""

    __slots__ = ("descending", "expiry", "horizons", "_order", "_index", "_tombstones", "_digest", "_unhashed",
                 "_count", "packed_bytes", "last_stored")

    def __init__(self, *, descending: bool, expiry: int, horizons: Horizons = NO_HORIZONS) -> None:
        self.descending = descending
        self.expiry = expiry
        self.horizons = horizons  # the store's: which lives are retired (records fold what they wrote)
        self._order: SortedList = SortedList()
        self._order._reset(_LOAD)
        self._index: dict[float, bytes | tuple[bytes, ...]] = {}
        self._tombstones: dict[str, Slots] = {}
        self._digest = 0
        self._unhashed: list[bytes] = []  # elements whose hashes the digest still lacks
        self._count = 0
        self.packed_bytes = 0  # the records' packed bytes: what they cost beyond a fixed ~100 B each
        self.last_stored: Record | None = None  # the record the latest write left (None: deleted)

    def __len__(self) -> int:
        return self._count

    # ------------------------------------------------------------------ elements

    def _element(self, key: bytes) -> bytes | None:
        found = self._index.get(_index_key(key))
        if found is None:
            return None
        end = PREFIX_SIZE + len(key)
        if isinstance(found, bytes):
            return found if found[PREFIX_SIZE:end] == key and found[end] == 0 else None
        for element in found:
            if element[PREFIX_SIZE:end] == key and element[end] == 0:
                return element
        return None

    def _index_put(self, key: bytes, element: bytes, old: bytes | None) -> None:
        slot = _index_key(key)
        found = self._index.get(slot)
        if found is None or (old is not None and found is old):
            self._index[slot] = element
            return
        others = tuple(e for e in ((found,) if isinstance(found, bytes) else found) if e is not old)
        self._index[slot] = others + (element,) if others else element

    def _index_drop(self, key: bytes, old: bytes) -> None:
        slot = _index_key(key)
        found = self._index.get(slot)
        if found is old:
            del self._index[slot]
        elif isinstance(found, tuple):
            others = tuple(e for e in found if e is not old)
            self._index[slot] = others[0] if len(others) == 1 else others

    def held(self, keys: list[bytes]) -> set[bytes]:
        """The owner keys among ``keys`` this bucket holds a record or a tombstone of: an
        import's check, one set operation for the many owners a bucket does not hold."""
        found: set[bytes] = set()
        if self._count:
            by_slot = dict(zip(map(float, map(_TOP_53_BITS, map(hash, keys))), keys))  # _index_key of each
            if len(by_slot) == len(set(keys)):
                candidates = (by_slot[slot] for slot in self._index.keys() & by_slot.keys())
            else:  # two of the keys share an index slot (1 in 2^53 a pair): each is looked up
                candidates = iter(keys)
            found.update(key for key in candidates if self._element(key) is not None)
        if self._tombstones:
            found |= {owner_key(owner) for owner in self._tombstones}.intersection(keys)
        return found

    def decode(self, element: bytes) -> Record:
        return self._decode(element)

    def _decode(self, element: bytes) -> Record:
        end = key_end(element)
        owner = owner_of(element, end)
        score, subscore = score_of(element, descending=self.descending)
        value = compact_value(element, end + 1, score=score, subscore=subscore)
        if value is not None:  # one node's set: the value is in the element, no slots to unpack
            return Record(owner, element[:end], element, value, None, self.descending)
        slots = decode_slots(element, end + 1, score=score, subscore=subscore)
        merged = merge(slots, descending=self.descending)
        assert merged is not None
        return Record(owner, element[:end], element, merged, slots, self.descending)

    # --------------------------------------------------------------------- reads

    def __iter__(self) -> Iterator[Record]:
        for element in self._order:
            yield self._decode(element)

    @property
    def digest(self) -> str:
        self.settle(len(self._unhashed))
        return f"{self._digest:032x}"

    @property
    def digest_settled(self) -> bool:
        return not self._unhashed

    def settle(self, budget: int) -> int:
        """Hash up to ``budget`` records the digest still lacks; how many are left."""
        if not self._unhashed or budget <= 0:
            return len(self._unhashed)
        taken = self._unhashed[-budget:]
        del self._unhashed[-budget:]
        self._digest = (self._digest + digest_of(taken, descending=self.descending)) % _DIGEST_MOD
        return len(self._unhashed)

    def get(self, owner: str) -> Record | None:
        element = self._element(owner_key(owner))
        return None if element is None else self._decode(element)

    def holds(self, owner: str) -> bool:
        """Whether ``owner`` has slots here: a record, or a tombstone."""
        return owner in self._tombstones or self._element(owner_key(owner)) is not None

    def tombstone(self, owner: str) -> Slots:
        """The slots a deleted record left behind (none when it never existed)."""
        return self._tombstones.get(owner, ())

    def owners_with_slots(self) -> Iterator[tuple[str, Slots]]:
        """Every owner with slots, records in rank order first, then tombstones."""
        for record in self:
            yield record.owner, record.slots
        yield from self._tombstones.items()

    def element_of(self, owner: str) -> bytes | None:
        """The owner's packed record (read it with ``visible``)."""
        return self._element(owner_key(owner))

    def rank_of(self, element: bytes) -> int:
        """1-based rank of a packed record of this bucket."""
        return self._order.bisect_left(element) + 1

    def elements(self, start: int, stop: int) -> list[bytes]:
        """The packed records at indexes ``start`` to ``stop`` (read them with ``visible``)."""
        return list(self._order.islice(start, stop))

    def index_after(self, key: bytes) -> int:
        """Index of the first record after the position ``key`` (a record's sort key)."""
        return self._order.bisect_right(key + AFTER)

    def index_before(self, key: bytes) -> int:
        """Index of the record at the position ``key``, or of the first one after it."""
        return self._order.bisect_left(key + SEPARATOR)

    def elements_after(self, element: bytes | None, limit: int) -> list[bytes]:
        """Up to ``limit`` packed records after the position of ``element`` (its sort key) in
        rank order: keyset iteration for snapshots. A record rewritten in place is not sent
        again; one that moved meanwhile may be skipped or sent twice, never shifts the rest."""
        start = 0 if element is None else self.index_after(element[:key_end(element)])
        return list(self._order.islice(start, start + limit))

    def tombstones(self) -> list[tuple[str, Slots]]:
        return list(self._tombstones.items())

    def around(self, owner: str, limit: int) -> tuple[int, list[bytes], int]:
        """``min(limit, len)`` elements centred on ``owner``, the index of the first one, and the
        owner's own index (no elements when the owner has no record here)."""
        element = self._element(owner_key(owner))
        if element is None or limit <= 0:
            return 0, [], -1
        total = self._count
        size = min(limit, total)
        index = self._order.bisect_left(element)
        start = max(0, min(index - (size - 1) // 2, total - size))
        return start, self.elements(start, start + size), index

    # -------------------------------------------------------------------- writes

    def apply_slot(self, owner: str, slot: Slot, *, current: Record | None | bool = False) -> bool:
        """Merge one node's slot into a record; True when the record's slots changed.

        ``current`` is the owner's record when the caller has just read it (False: look it up).
        """
        key = owner_key(owner)
        if current is False:
            element = self._element(key)
            record = None if element is None else self._decode(element)
        else:
            record = current
        assert not isinstance(record, bool)
        merged = merge_slot(record.slots if record is not None else self.tombstone(owner), slot, self.horizons,
                            descending=self.descending)
        if merged is None:
            return False
        self._store(owner, key, merged, record)
        return True

    def apply_slots(self, owner: str, slots: Slots) -> bool:
        key = owner_key(owner)
        element = self._element(key)
        record = None if element is None else self._decode(element)
        merged = merge_slots(record.slots if record is not None else self.tombstone(owner), slots, self.horizons,
                             descending=self.descending)
        if merged is None:
            return False
        self._store(owner, key, merged, record)
        return True

    def _store(self, owner: str, key: bytes, slots: Slots, old_record: Record | None) -> None:
        value = merge(slots, descending=self.descending)
        old = None
        if old_record is not None:
            old = old_record.element
            self._digest -= record_hash(key, old_record.value, descending=self.descending)
            self._order.remove(old)
            self._count -= 1
            self.packed_bytes -= len(old)
            if value is None:
                self._index_drop(key, old)
        if value is None:
            self._tombstones[owner] = slots
            self._digest %= _DIGEST_MOD
            self.last_stored = None
            return
        if self._tombstones:
            self._tombstones.pop(owner, None)
        sort_key = sort_prefix(value.score, value.subscore, descending=self.descending) + key
        element = sort_key + SEPARATOR + encode_slots(slots, score=value.score, subscore=value.subscore)
        self._order.add(element)
        self._index_put(key, element, old)
        self._count += 1
        self.packed_bytes += len(element)
        self._digest = (self._digest + record_hash(key, value, descending=self.descending)) % _DIGEST_MOD
        self.last_stored = Record(owner, sort_key, element, value, slots, self.descending)

    def insert_new(self, elements: list[bytes], *, digest: int | None = None) -> None:
        """Insert packed records of owners this bucket holds nothing of (no record, no
        tombstone; the caller checked), in any order: a bulk import. ``digest`` is the sum of
        their hashes when the caller has it."""
        if not elements:
            return
        slots = _index_keys(elements)
        index = self._index
        if len(set(slots)) == len(slots) and not index.keys() & set(slots):
            index.update(zip(slots, elements))
        else:  # two owners in one index slot (1 in 2^53 a pair): the slow way
            for slot, element in zip(slots, elements):
                found = index.setdefault(slot, element)
                if found is not element:
                    index[slot] = (found if isinstance(found, tuple) else (found,)) + (element,)
        self._order.update(elements)  # one sort of everything when they are many, else one add each
        self._count += len(elements)
        self.packed_bytes += sum(map(len, elements))
        added = digest if digest is not None else digest_of(elements, descending=self.descending)
        self._digest = (self._digest + added) % _DIGEST_MOD

    def settle_lives(self, after: bytes | None, budget: int) -> bytes | None:
        """Settle up to ``budget`` records after the position ``after`` (None: from the first)
        with the lives retired now (``records.settle``): what retired lives wrote is folded.
        Returns where to go on from, None once every record and tombstone has been seen.

        A record that holds nothing a retired life wrote (most, and every record written by one
        life with ``set``) is skipped without being decoded. Settling keeps every visible value: ranks and the digest
        do not move.
        """
        elements = self.elements_after(after, budget)
        descending, horizons = self.descending, self.horizons
        mask = retired_mask(horizons)
        for element in elements:
            end = key_end(element)
            if not writes_of_retired_lives(element, end + 1, mask):
                continue
            record = self._decode(element)
            settled = settle(record.slots, horizons, descending=descending)
            if settled is not record.slots:
                self._store(record.owner, element[PREFIX_SIZE:end], settled, record)
        if len(elements) == budget:
            return elements[-1]  # its sort key still marks the place, whatever its slots are now
        for owner, slots in list(self._tombstones.items()):
            self._tombstones[owner] = settle(slots, horizons, descending=descending)
        return None

    @classmethod
    def from_sync(cls, elements: list[bytes], slotted: list[tuple[str, Slots]], *, descending: bool,
                  expiry: int, horizons: Horizons = NO_HORIZONS, digest: int | None = None) -> Bucket:
        """A bucket built at once from packed records in rank order (a full sync, already
        checked by ``record_codec.adopt``) and owners sent as slots (tombstones; records too, in
        snapshots of older builds); ValueError when the records are out of rank order. An owner
        sent twice (it moved or was deleted while the snapshot streamed) is merged, as replicas
        merge. Its digest is ``digest`` (the sum of the elements' hashes, as the sender computed
        it) or, without one, settles later (``settle``)."""
        if not all(map(operator.lt, elements, islice(elements, 1, None))):
            raise ValueError("synced records are not in strict rank order")
        bucket = cls(descending=descending, expiry=expiry, horizons=horizons)
        again: list[int] = []  # positions of owners met before (a record that moved while the snapshot streamed)
        slots = _index_keys(elements)
        index = bucket._index = dict(zip(slots, elements))
        if len(index) != len(elements):  # owners sent twice, or two owners in one index slot: one by one
            index = bucket._index = {}
            for position, (slot, element) in enumerate(zip(slots, elements)):
                found = index.setdefault(slot, element)
                if found is not element:
                    key = element[PREFIX_SIZE:key_end(element)]
                    if bucket._element(key) is not None:
                        again.append(position)
                        continue
                    index[slot] = (found if isinstance(found, tuple) else (found,)) + (element,)
        if again:
            skipped = set(again)
            later = [elements[position] for position in again]
            elements = [element for position, element in enumerate(elements) if position not in skipped]
        bucket._order.update(elements)
        bucket._count = len(elements)
        bucket.packed_bytes = sum(map(len, elements))
        if digest is None:
            bucket._unhashed = elements
        else:  # the later copies of owners sent twice were counted in it, and are merged below
            bucket._digest = (digest - (digest_of(later, descending=descending) if again else 0)) % _DIGEST_MOD
        if again:  # merge each later copy into the record, as any two states of it merge
            for element in later:
                record = bucket._decode(element)
                bucket.apply_slots(record.owner, record.slots)
        for owner, slots in slotted:
            if owner not in bucket._tombstones and bucket._element(owner_key(owner)) is None \
                    and merge(slots, descending=descending) is None:
                bucket._tombstones[owner] = slots
            else:  # a record sent as slots (older builds), or an owner sent twice: merge
                bucket.apply_slots(owner, slots)
        return bucket

    def absorb(self, other: Bucket) -> None:
        """Merge every record and tombstone of ``other`` into this bucket."""
        self.absorb_elements(other._order)
        for owner, slots in other._tombstones.items():
            self.apply_slots(owner, slots)

    def absorb_elements(self, elements: Iterable[bytes]) -> None:
        """Merge packed records (``record_codec.adopt``-ed) into this bucket.

        A record this bucket holds packed exactly so is skipped undecoded: when a node that
        holds a board repairs from a peer's full sync, that is nearly every record, and decoding
        and merging each (about 20 us) froze the node for 20 s at 1M records.
        """
        element_of = self._element
        for element in elements:
            if element_of(element[PREFIX_SIZE:key_end(element)]) != element:
                record = self._decode(element)
                self.apply_slots(record.owner, record.slots)
