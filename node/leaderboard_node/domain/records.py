"""Records and their write rules, as a conflict-free merge of per-node slots.

A record (one owner in one bucket) is not stored as a single value but as *slots*, one per
node that wrote it. Each slot is written by exactly one node (its ``origin``), so replication
never has to decide between two versions of a slot: the one with the later clock wins, and
both replicas agree. The record's visible value is a deterministic merge of its slots:

* ``set`` and ``delete`` slots are *bases*: the one with the greatest (HLC, origin) wins
  (last writer wins, node name breaking ties).
* ``best`` and ``incr`` slots are *contributions* built on top of a base; each carries a
  copy of the base it was made on. Contributions on an older base are void: a delete or a
  set wins over every contribution it has seen (and over concurrent ones), never over later
  ones.
* The value of ``best`` is the better of the base and all contributions' (score, subscore)
  pairs, taken as pairs. The value of ``incr``/``decr`` is the base plus every node's
  cumulative delta, so no acknowledged increment is lost.

Writes with the leaderboard's own operator become contributions (``best``, ``incr``,
``decr``) or bases (``set``). A per-write operator override different from the
leaderboard's is applied on the accepting node against its current value and replicated as
a ``set`` of the result.

``decr`` floors at 0 on the accepting node: it subtracts at most the value that node sees.
Two nodes decrementing the same record at the same moment each subtract in full, so the
merged value can go below 0 by the overlap; it is the exact sum of what was acknowledged.

``num_score`` counts writes that changed the record; the merge sums the counts of the base
and of the contributions, so concurrent changes on two nodes are both counted.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import NamedTuple

from .clock import physical_ms
from .errors import InvalidArgument

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class Operator(StrEnum):
    BEST = "best"
    SET = "set"
    INCR = "incr"
    DECR = "decr"


class SortOrder(StrEnum):
    DESC = "desc"
    ASC = "asc"


class SlotKind(IntEnum):
    SET = 1
    DELETE = 2
    BEST = 3
    INCR = 4


def contribution_kind(operator: Operator) -> SlotKind:
    """The slot kind a leaderboard's own operator writes."""
    if operator is Operator.BEST:
        return SlotKind.BEST
    if operator is Operator.SET:
        return SlotKind.SET
    return SlotKind.INCR


class Base(NamedTuple):
    """The value a contribution builds on: a set (present) or a delete (absent)."""

    hlc: int
    origin: str
    present: bool
    score: int
    subscore: int
    num_score: int
    create_ms: int
    username: str | None
    metadata: str | None

    @property
    def order(self) -> tuple[int, str]:
        return (self.hlc, self.origin)


class Slot(NamedTuple):
    """One node's part of a record."""

    origin: str
    kind: SlotKind
    hlc: int
    score: int  # SET: the value; BEST: the best pair's score; INCR: cumulative delta
    subscore: int
    num_score: int  # SET: the record's count after the set; BEST/INCR: this slot's own count
    create_ms: int
    username: str | None
    metadata: str | None
    base: Base | None = None  # BEST/INCR only: the base they were made on (None: the empty record)

    def as_base(self) -> Base | None:
        if self.kind is SlotKind.SET:
            return Base(self.hlc, self.origin, True, self.score, self.subscore, self.num_score,
                        self.create_ms, self.username, self.metadata)
        if self.kind is SlotKind.DELETE:
            return Base(self.hlc, self.origin, False, 0, 0, 0, 0, None, None)
        return self.base


class Value(NamedTuple):
    """What a reader sees of a record."""

    score: int
    subscore: int
    num_score: int
    create_ms: int
    update_ms: int
    username: str | None
    metadata: str | None


Slots = tuple[Slot, ...]


def _base_order(base: Base | None) -> tuple[int, str]:
    return (0, "") if base is None else base.order


def current_base(slots: Slots) -> Base | None:
    best: Base | None = None
    for slot in slots:
        candidate = slot.as_base()
        if candidate is not None and _base_order(candidate) > _base_order(best):
            best = candidate
    return best


def is_better(score: int, subscore: int, than_score: int, than_subscore: int, *, descending: bool) -> bool:
    if descending:
        return (score, subscore) > (than_score, than_subscore)
    return (score, subscore) < (than_score, than_subscore)


def _clamp(value: int) -> int:
    return INT64_MIN if value < INT64_MIN else INT64_MAX if value > INT64_MAX else value


def merge(slots: Slots, *, descending: bool) -> Value | None:
    """The visible value of a record, or None when it does not exist (never written or deleted)."""
    if len(slots) == 1:  # the common case: one node wrote this record
        slot = slots[0]
        if slot.kind is SlotKind.DELETE:
            return None
        if slot.kind is SlotKind.SET:
            ms = physical_ms(slot.hlc)
            return Value(slot.score, slot.subscore, slot.num_score, slot.create_ms, ms, slot.username, slot.metadata)
    base = current_base(slots)
    base_order = _base_order(base)
    live = [s for s in slots if s.kind >= SlotKind.BEST and _base_order(s.base) == base_order]
    present = base is not None and base.present
    if not live:
        if not present:
            return None
        assert base is not None
        return Value(base.score, base.subscore, base.num_score, base.create_ms, physical_ms(base.hlc),
                     base.username, base.metadata)
    num_score = (base.num_score if present else 0) + sum(s.num_score for s in live)
    update_ms = physical_ms(max([s.hlc for s in live] + ([base.hlc] if base is not None else [])))
    create_ms = base.create_ms if present else min(s.create_ms for s in live)
    if live[0].kind is SlotKind.BEST:
        winner: Base | Slot | None = base if present else None
        for slot in sorted(live, key=lambda s: s.origin):
            if winner is None or is_better(slot.score, slot.subscore, winner.score, winner.subscore, descending=descending):
                winner = slot
        assert winner is not None
        latest = max(live, key=lambda s: (s.hlc, s.origin))
        username = latest.username if latest.username is not None else winner.username
        return Value(winner.score, winner.subscore, num_score, create_ms, update_ms, username, winner.metadata)
    score = (base.score if present else 0) + sum(s.score for s in live)
    subscore = (base.subscore if present else 0) + sum(s.subscore for s in live)
    latest_slot = max(live, key=lambda s: (s.hlc, s.origin))
    username, metadata = latest_slot.username, latest_slot.metadata
    if present and base is not None and base.hlc > latest_slot.hlc:  # pragma: no cover - contributions follow their base
        username, metadata = base.username, base.metadata
    return Value(_clamp(score), _clamp(subscore), num_score, create_ms, update_ms, username, metadata)


def merge_slot(slots: Slots, incoming: Slot) -> Slots | None:
    """Slots with ``incoming`` merged in, or None when it changes nothing (older or equal)."""
    for index, slot in enumerate(slots):
        if slot.origin == incoming.origin:
            if incoming.hlc <= slot.hlc:
                return None
            return slots[:index] + (incoming,) + slots[index + 1:]
    return tuple(sorted(slots + (incoming,), key=lambda s: s.origin))


def merge_slots(slots: Slots, others: Slots) -> Slots | None:
    merged: Slots | None = None
    for slot in others:
        result = merge_slot(merged if merged is not None else slots, slot)
        if result is not None:
            merged = result
    return merged


def _checked(value: int, *, field: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgument(f"{field} would leave the 64-bit integer range", field=field)
    return value


def write(
    slots: Slots,
    *,
    origin: str,
    hlc: int,
    leaderboard_operator: Operator,
    operator: Operator,
    descending: bool,
    score: int,
    subscore: int,
    username: str | None,
    metadata: str | None,
) -> Slot | None:
    """The slot ``origin`` writes for one submission, or None when the write changes nothing."""
    current = merge(slots, descending=descending)
    now_ms = physical_ms(hlc)
    own = next((s for s in slots if s.origin == origin), None)
    base = current_base(slots)

    if operator is Operator.BEST:
        if current is not None and not is_better(score, subscore, current.score, current.subscore, descending=descending):
            return None
        new_score, new_subscore = score, subscore
    elif operator is Operator.SET:
        new_score, new_subscore = score, subscore
    elif operator is Operator.INCR:
        new_score = _checked((current.score if current else 0) + score, field="score")
        new_subscore = _checked((current.subscore if current else 0) + subscore, field="subscore")
    else:  # DECR floors at 0 on this node; the API accepts only non-negative decrements
        new_score = max(0, (current.score if current else 0) - score)
        new_subscore = max(0, (current.subscore if current else 0) - subscore)

    new_username = username if username is not None else (current.username if current else None)
    new_metadata = metadata if metadata is not None else (current.metadata if current else None)
    if current is not None and (new_score, new_subscore, new_username, new_metadata) == (
        current.score, current.subscore, current.username, current.metadata
    ):
        return None
    create_ms = current.create_ms if current is not None else now_ms
    kind = contribution_kind(leaderboard_operator)
    own_is_live = own is not None and own.kind >= SlotKind.BEST and _base_order(own.base) == _base_order(base)

    if kind is SlotKind.BEST and operator is Operator.BEST:
        own_count = own.num_score if own_is_live and own is not None else 0
        return Slot(origin, SlotKind.BEST, hlc, new_score, new_subscore, own_count + 1, create_ms,
                    new_username, new_metadata, base)
    if kind is SlotKind.INCR and operator in (Operator.INCR, Operator.DECR):
        delta_score = new_score - (current.score if current else 0)
        delta_subscore = new_subscore - (current.subscore if current else 0)
        if own_is_live and own is not None:
            return Slot(origin, SlotKind.INCR, hlc, own.score + delta_score, own.subscore + delta_subscore,
                        own.num_score + 1, min(own.create_ms, create_ms), new_username, new_metadata, base)
        return Slot(origin, SlotKind.INCR, hlc, delta_score, delta_subscore, 1, create_ms,
                    new_username, new_metadata, base)
    num_score = (current.num_score if current else 0) + 1
    return Slot(origin, SlotKind.SET, hlc, new_score, new_subscore, num_score, create_ms, new_username, new_metadata)


def tombstone(*, origin: str, hlc: int) -> Slot:
    """The slot ``origin`` writes to delete a record: a base that holds no value."""
    return Slot(origin, SlotKind.DELETE, hlc, 0, 0, 0, 0, None, None)
