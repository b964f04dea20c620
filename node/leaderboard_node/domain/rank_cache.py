"""The rank cache: the records of one bucket, kept in rank order.

A bucket holds the records of one leaderboard incarnation and one reset period. Each record
is one packed ``bytes`` element (``record_codec``): a 16-byte sort prefix of its score and
subscore, its owner id, and its slots. A ``SortedList`` of elements gives O(log n) insert,
delete, rank lookup and rank-to-record; comparing two elements is one ``memcmp``, ties on
(score, subscore) fall to the lower owner id for both sort orders, and ranks are unique.

Owners are found through a dict keyed by the *hash* of the owner id, not the id itself: the
id is already inside the element, and a second copy as a dict key would cost more than the
rest of the record. Two owners with the same 64-bit hash share a dict entry (a tuple of their
elements), so a collision costs time, never correctness.

Every bucket keeps a digest of its visible content: the sum, modulo 2**128, of a hash of
each record. Updating it costs one hash per change, and two replicas holding the same
records have the same digest whatever order they applied changes in.

Deleted records leave their slots behind as tombstones so that late, older slots from other
nodes cannot bring them back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from sortedcontainers import SortedList

from .record_codec import compact_value, decode_slots, encode_slots, score_of, sort_prefix
from .records import Slot, Slots, Value, merge, merge_slot, merge_slots

_PREFIX = 16
_DIGEST_MOD = 1 << 128
_LOAD = 1000  # SortedList sublist size: fewer, longer sublists save memory at 1M records
SEPARATOR = b"\x00"
AFTER = b"\x01"


def sort_key(score: int, subscore: int, owner: str, *, descending: bool) -> bytes:
    """The part of an element that orders it: prefix and owner id."""
    return sort_prefix(score, subscore, descending=descending) + owner.encode()


class Record:
    """A decoded view of one element; its slots are unpacked only when asked for."""

    __slots__ = ("owner", "key", "element", "value", "_slots", "_descending")

    def __init__(self, owner: str, key: bytes, element: bytes, value: Value, slots: Slots | None,
                 descending: bool = True) -> None:
        self.owner = owner
        self.key = key  # sort prefix + owner: a position for cursors
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


def record_hash(owner: str, value: Value) -> int:
    text = "\x1f".join((
        owner, str(value.score), str(value.subscore), str(value.num_score), str(value.create_ms),
        str(value.update_ms), value.username or "", value.metadata or "",
    ))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


class Bucket:
    """Records of one leaderboard incarnation in one reset period, in rank order."""

    __slots__ = ("descending", "expiry", "_order", "_index", "_tombstones", "_digest", "_count", "last_stored")

    def __init__(self, *, descending: bool, expiry: int) -> None:
        self.descending = descending
        self.expiry = expiry
        self._order: SortedList = SortedList()
        self._order._reset(_LOAD)
        self._index: dict[int, bytes | tuple[bytes, ...]] = {}
        self._tombstones: dict[str, Slots] = {}
        self._digest = 0
        self._count = 0
        self.last_stored: Record | None = None  # the record the latest write left (None: deleted)

    def __len__(self) -> int:
        return self._count

    # ------------------------------------------------------------------ elements

    def _element(self, owner: str) -> bytes | None:
        found = self._index.get(hash(owner))
        if found is None:
            return None
        owner_bytes = owner.encode()
        candidates = (found,) if isinstance(found, bytes) else found
        end = _PREFIX + len(owner_bytes)
        for element in candidates:
            if element[_PREFIX:end] == owner_bytes and element[end:end + 1] == SEPARATOR:
                return element
        return None

    def _index_put(self, owner: str, element: bytes, old: bytes | None) -> None:
        key = hash(owner)
        found = self._index.get(key)
        if found is None or (old is not None and found is old):
            self._index[key] = element
            return
        others = tuple(e for e in ((found,) if isinstance(found, bytes) else found) if e is not old)
        self._index[key] = others + (element,) if others else element

    def _index_drop(self, owner: str, old: bytes) -> None:
        key = hash(owner)
        found = self._index.get(key)
        if found is old:
            del self._index[key]
        elif isinstance(found, tuple):
            others = tuple(e for e in found if e is not old)
            self._index[key] = others[0] if len(others) == 1 else others

    def _decode(self, element: bytes) -> Record:
        separator = element.index(0, _PREFIX)
        owner = element[_PREFIX:separator].decode()
        score, subscore = score_of(element, descending=self.descending)
        value = compact_value(element, separator + 1, score=score, subscore=subscore)
        if value is not None:  # one node's set: the value is in the element, no slots to unpack
            return Record(owner, element[:separator], element, value, None, self.descending)
        slots = decode_slots(element, separator + 1, score=score, subscore=subscore)
        merged = merge(slots, descending=self.descending)
        assert merged is not None
        return Record(owner, element[:separator], element, merged, slots, self.descending)

    # --------------------------------------------------------------------- reads

    def __iter__(self) -> Iterator[Record]:
        for element in self._order:
            yield self._decode(element)

    @property
    def digest(self) -> str:
        return f"{self._digest:032x}"

    def get(self, owner: str) -> Record | None:
        element = self._element(owner)
        return None if element is None else self._decode(element)

    def slots_of(self, owner: str) -> Slots:
        record = self.get(owner)
        if record is not None:
            return record.slots
        return self._tombstones.get(owner, ())

    def owners_with_slots(self) -> Iterator[tuple[str, Slots]]:
        """Every owner with slots, records in rank order first, then tombstones."""
        for record in self:
            yield record.owner, record.slots
        yield from self._tombstones.items()

    def rank(self, record: Record) -> int:
        """1-based rank of a record in this bucket."""
        return self._order.bisect_left(record.element) + 1

    def slice(self, start: int, stop: int) -> list[Record]:
        return [self._decode(element) for element in self._order.islice(start, stop)]

    def index_after(self, key: bytes) -> int:
        """Index of the first record after the position ``key`` (a record's sort key)."""
        return self._order.bisect_right(key + AFTER)

    def index_before(self, key: bytes) -> int:
        """Index of the record at the position ``key``, or of the first one after it."""
        return self._order.bisect_left(key + SEPARATOR)

    def records_after(self, key: bytes | None, limit: int) -> list[Record]:
        """Up to ``limit`` records after ``key`` in rank order (keyset iteration for snapshots)."""
        start = 0 if key is None else self.index_after(key)
        return self.slice(start, start + limit)

    def tombstones(self) -> list[tuple[str, Slots]]:
        return list(self._tombstones.items())

    def around(self, owner: str, limit: int) -> tuple[int, list[Record]]:
        """``min(limit, len)`` records centred on ``owner`` and the index of the first one."""
        element = self._element(owner)
        if element is None or limit <= 0:
            return 0, []
        total = self._count
        size = min(limit, total)
        index = self._order.bisect_left(element)
        start = max(0, min(index - (size - 1) // 2, total - size))
        return start, self.slice(start, start + size)

    # -------------------------------------------------------------------- writes

    def apply_slot(self, owner: str, slot: Slot, *, current: Record | None | bool = False) -> bool:
        """Merge one node's slot into a record; True when the record's slots changed.

        ``current`` is the owner's record when the caller has just read it (False: look it up).
        """
        record = self.get(owner) if current is False else current
        assert not isinstance(record, bool)
        merged = merge_slot(record.slots if record is not None else self._tombstones.get(owner, ()), slot)
        if merged is None:
            return False
        self._store(owner, merged, record)
        return True

    def apply_slots(self, owner: str, slots: Slots) -> bool:
        record = self.get(owner)
        merged = merge_slots(record.slots if record is not None else self._tombstones.get(owner, ()), slots)
        if merged is None:
            return False
        self._store(owner, merged, record)
        return True

    def _pack(self, owner: str, slots: Slots, value: Value) -> bytes:
        return (sort_key(value.score, value.subscore, owner, descending=self.descending) + SEPARATOR
                + encode_slots(slots, score=value.score, subscore=value.subscore))

    def _store(self, owner: str, slots: Slots, old_record: Record | None) -> None:
        value = merge(slots, descending=self.descending)
        old = None
        if old_record is not None:
            old = old_record.element
            self._digest -= record_hash(owner, old_record.value)
            self._order.remove(old)
            self._count -= 1
            if value is None:
                self._index_drop(owner, old)
        if value is None:
            self._tombstones[owner] = slots
            self._digest %= _DIGEST_MOD
            self.last_stored = None
            return
        if self._tombstones:
            self._tombstones.pop(owner, None)
        element = self._pack(owner, slots, value)
        self._order.add(element)
        self._index_put(owner, element, old)
        self._count += 1
        self._digest = (self._digest + record_hash(owner, value)) % _DIGEST_MOD
        self.last_stored = Record(owner, element[:element.index(0, _PREFIX)], element, value, slots, self.descending)

    @classmethod
    def from_ranked(cls, items: list[tuple[str, Slots]], *, descending: bool, expiry: int) -> Bucket:
        """A bucket built at once from records (a full sync sends them in rank order, which makes
        the sort below linear); tombstones may be among them."""
        bucket = cls(descending=descending, expiry=expiry)
        elements: list[bytes] = []
        digest = 0
        seen: set[str] = set()
        for owner, slots in items:
            if owner in seen:
                raise ValueError("an owner appears twice in one bucket")
            seen.add(owner)
            value = merge(slots, descending=descending)
            if value is None:
                bucket._tombstones[owner] = slots
                continue
            element = bucket._pack(owner, slots, value)
            elements.append(element)
            bucket._index_put(owner, element, None)
            digest += record_hash(owner, value)
        bucket._order.update(elements)
        bucket._count = len(elements)
        bucket._digest = digest % _DIGEST_MOD
        return bucket

    def absorb(self, other: Bucket) -> None:
        """Merge every record and tombstone of ``other`` into this bucket."""
        for owner, slots in other.owners_with_slots():
            self.apply_slots(owner, slots)
