"""The rank cache: the records of one bucket, kept in rank order.

A bucket holds the records of one leaderboard incarnation and one reset period. Records are
ordered by a *sort key*: a bytes string of the score and subscore (offset to unsigned and,
for descending boards, inverted) followed by the owner id in UTF-8. Comparing two keys is
one ``memcmp``, ties on (score, subscore) fall to the lower owner id for both sort orders,
and ranks are unique. A ``SortedList`` of keys gives O(log n) insert, delete, rank lookup
and rank-to-record; a dict maps owners to their records.

Every bucket keeps a digest of its visible content: the sum, modulo 2**128, of a hash of
each record. Updating it costs one hash per change, and two replicas holding the same
records have the same digest whatever order they applied changes in.

Deleted records leave their slots behind as tombstones so that late, older slots from other
nodes cannot bring them back.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedList

from .records import Slot, Slots, Value, merge, merge_slot, merge_slots

_KEY_PREFIX = struct.Struct(">QQ")
_OFFSET = 1 << 63
_MASK = (1 << 64) - 1
_DIGEST_MOD = 1 << 128
_LOAD = 1000  # SortedList sublist size: fewer, longer sublists save memory at 1M records


def sort_key(score: int, subscore: int, owner: str, *, descending: bool) -> bytes:
    high, low = score + _OFFSET, subscore + _OFFSET
    if descending:
        high, low = _MASK - high, _MASK - low
    return _KEY_PREFIX.pack(high, low) + owner.encode()


def owner_of(key: bytes) -> str:
    return key[_KEY_PREFIX.size:].decode()


@dataclass(slots=True)
class Record:
    owner: str
    key: bytes
    value: Value
    slots: Slots


def record_hash(owner: str, value: Value) -> int:
    text = "\x1f".join((
        owner, str(value.score), str(value.subscore), str(value.num_score), str(value.create_ms),
        str(value.update_ms), value.username or "", value.metadata or "",
    ))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


class Bucket:
    """Records of one leaderboard incarnation in one reset period, in rank order."""

    __slots__ = ("descending", "expiry", "_order", "_records", "_tombstones", "_digest")

    def __init__(self, *, descending: bool, expiry: int) -> None:
        self.descending = descending
        self.expiry = expiry
        self._order: SortedList = SortedList()
        self._order._reset(_LOAD)
        self._records: dict[str, Record] = {}
        self._tombstones: dict[str, Slots] = {}
        self._digest = 0

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        records = self._records
        for key in self._order:
            yield records[owner_of(key)]

    @property
    def digest(self) -> str:
        return f"{self._digest:032x}"

    def get(self, owner: str) -> Record | None:
        return self._records.get(owner)

    def slots_of(self, owner: str) -> Slots:
        record = self._records.get(owner)
        if record is not None:
            return record.slots
        return self._tombstones.get(owner, ())

    def owners_with_slots(self) -> Iterator[tuple[str, Slots]]:
        """Every owner with slots, records in rank order first, then tombstones."""
        for record in self:
            yield record.owner, record.slots
        yield from self._tombstones.items()

    def apply_slot(self, owner: str, slot: Slot) -> bool:
        """Merge one node's slot into a record; True when the record's slots changed."""
        merged = merge_slot(self.slots_of(owner), slot)
        if merged is None:
            return False
        self._store(owner, merged)
        return True

    def apply_slots(self, owner: str, slots: Slots) -> bool:
        merged = merge_slots(self.slots_of(owner), slots)
        if merged is None:
            return False
        self._store(owner, merged)
        return True

    def _store(self, owner: str, slots: Slots) -> None:
        value = merge(slots, descending=self.descending)
        old = self._records.get(owner)
        if old is not None:
            self._digest -= record_hash(owner, old.value)
            if value is not None and value.score == old.value.score and value.subscore == old.value.subscore:
                old.value, old.slots = value, slots
                self._digest = (self._digest + record_hash(owner, value)) % _DIGEST_MOD
                return
            self._order.remove(old.key)
            del self._records[owner]
        if value is None:
            self._tombstones[owner] = slots
            self._digest %= _DIGEST_MOD
            return
        self._tombstones.pop(owner, None)
        key = sort_key(value.score, value.subscore, owner, descending=self.descending)
        self._order.add(key)
        self._records[owner] = Record(owner, key, value, slots)
        self._digest = (self._digest + record_hash(owner, value)) % _DIGEST_MOD

    @classmethod
    def from_ranked(cls, items: list[tuple[str, Slots]], *, descending: bool, expiry: int) -> Bucket:
        """A bucket built at once from records (a full sync sends them in rank order, which makes
        the sort below linear); tombstones may be among them."""
        bucket = cls(descending=descending, expiry=expiry)
        keys: list[bytes] = []
        records = bucket._records
        digest = 0
        for owner, slots in items:
            value = merge(slots, descending=descending)
            if value is None:
                bucket._tombstones[owner] = slots
                continue
            key = sort_key(value.score, value.subscore, owner, descending=descending)
            keys.append(key)
            records[owner] = Record(owner, key, value, slots)
            digest += record_hash(owner, value)
        if len(records) != len(keys):
            raise ValueError("an owner appears twice in one bucket")
        bucket._order.update(keys)
        bucket._digest = digest % _DIGEST_MOD
        return bucket

    def absorb(self, other: Bucket) -> None:
        """Merge every record and tombstone of ``other`` into this bucket."""
        for owner, slots in other.owners_with_slots():
            self.apply_slots(owner, slots)

    def records_after(self, key: bytes | None, limit: int) -> list[Record]:
        """Up to ``limit`` records after ``key`` in rank order (keyset iteration for snapshots)."""
        start = 0 if key is None else self._order.bisect_right(key)
        return self.slice(start, start + limit)

    def tombstones(self) -> list[tuple[str, Slots]]:
        return list(self._tombstones.items())

    def rank(self, record: Record) -> int:
        """1-based rank of a record in this bucket."""
        return self._order.bisect_left(record.key) + 1

    def at(self, index: int) -> Record:
        return self._records[owner_of(self._order[index])]

    def slice(self, start: int, stop: int) -> list[Record]:
        records = self._records
        return [records[owner_of(key)] for key in self._order.islice(start, stop)]

    def index_after(self, key: bytes) -> int:
        return self._order.bisect_right(key)

    def index_before(self, key: bytes) -> int:
        return self._order.bisect_left(key)

    def around(self, owner: str, limit: int) -> tuple[int, list[Record]]:
        """``min(limit, len)`` records centred on ``owner`` and the index of the first one."""
        record = self._records.get(owner)
        if record is None or limit <= 0:
            return 0, []
        total = len(self._records)
        size = min(limit, total)
        index = self._order.bisect_left(record.key)
        start = max(0, min(index - (size - 1) // 2, total - size))
        return start, self.slice(start, start + size)
