"""Records and their write rules, as a conflict-free merge of per-life slots.

A record (one owner in one bucket) is not stored as a single value but as *slots*, one per
*life* that wrote it (a life is one run of a node's process, see ``lives``). Each slot is
written by exactly one life (its ``origin``), so replication never has to decide between two
versions of a slot: the one with the later clock wins, and both replicas agree. A restarted
node is a new life: it never writes its previous life's slot, so an old copy of that slot on
the peer it synced from cannot become the base of anything it writes. The record's visible
value is a deterministic merge of its slots:

* ``set`` and ``delete`` slots are *bases*: the one with the greatest (HLC, origin) wins
  (last writer wins, life id breaking ties).
* ``best`` and ``incr`` slots are *contributions* built on top of a base; each carries a
  copy of the base it was made on. Contributions on an older base are void: a delete or a
  set wins over every contribution it has seen (and over concurrent ones), never over later
  ones.
* The value of ``best`` is the better of the base and all contributions' (score, subscore)
  pairs, taken as pairs, with the winning write's username and metadata (ties go to the base,
  then to the lowest life id). The value of ``incr``/``decr`` is the base plus every life's
  cumulative delta, so no acknowledged increment is lost; its username and metadata are the
  latest contribution's.

Writes with the leaderboard's own operator become contributions (``best``, ``incr``,
``decr``) or bases (``set``). A per-write operator override different from the
leaderboard's is applied on the accepting node against its current value and replicated as
a ``set`` of the result. A new slot is always stamped later than every slot of the record it
was made from, even one stamped ahead by a node whose clock runs fast: a write wins over what
it has seen.

``decr`` floors at 0 on the accepting node: it subtracts at most the value that node sees.
Two nodes decrementing the same record at the same moment each subtract in full, so the
merged value can go below 0 by the overlap; it is the exact sum of what was acknowledged.

``num_score`` counts writes that changed the record; the merge sums the counts of the base
and of the contributions, so concurrent changes on two nodes are both counted.

**Settling.** After every merge a record is *settled* (``settle``): what *retired* lives
(every earlier life of a node name, once all members hold its final entries, see
``lives.Horizons``) contributed is folded into one *fold slot* per node name, whose value is
exactly what they contributed together: their sum for ``incr``, the best pair for ``best``
(one retired life's slot alone is left as it is: it is its own fold). What they contributed
on an older base, and a retired life's base that is no longer the current one, can never
count again and is dropped. The current life of a name takes in the fold slot (or that one
slot) the next time it writes the record. A slot's ``cover`` says which lives it accounts
for: a fold slot, every life of its name below ``cover``; a life's slot that took in its
name's earlier lives, that life and every earlier one (``cover`` is its epoch + 1); any other
slot, its own life only (``cover`` 0). Of two slots of one name, one that accounts for the
other's lives makes it redundant, and it is dropped. Settling never changes the visible
value, so replicas that have folded and replicas that have not yet agree on every digest.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum
from typing import NamedTuple

from .clock import physical_ms
from .errors import InvalidArgument
from .lives import NO_HORIZONS, Horizons, life_epoch, life_name, split_life

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
    FOLD_BEST = 5  # the best contributions of a node name's retired lives
    FOLD_INCR = 6  # the summed contributions of a node name's retired lives


CONTRIBUTION = SlotKind.BEST  # kinds from here up are contributions; below are bases
FOLDS = (SlotKind.FOLD_BEST, SlotKind.FOLD_INCR)
BEST_LIKE = (SlotKind.BEST, SlotKind.FOLD_BEST)


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
    """One life's part of a record (or the fold of a node name's retired lives)."""

    origin: str  # the life that writes it; of a fold slot, the folded life its ties go by
    kind: SlotKind
    hlc: int
    score: int  # SET: the value; BEST: the best pair's score; INCR: cumulative delta
    subscore: int
    num_score: int  # SET: the record's count after the set; BEST/INCR: this slot's own count
    create_ms: int
    username: str | None
    metadata: str | None
    base: Base | None = None  # contributions only: the base they were made on (None: the empty record)
    cover: int = 0  # the lives it accounts for (see the module docstring)

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


def _slot_order(slot: Slot) -> tuple[str, int]:
    return (slot.origin, slot.kind)


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


def _best_of(slots: Iterable[Slot], *, descending: bool, start: Base | Slot | None = None) -> Base | Slot | None:
    """The winning (score, subscore) pair: ``start``, then each slot in origin order that beats it."""
    winner = start
    for slot in sorted(slots, key=_slot_order):
        if winner is None or is_better(slot.score, slot.subscore, winner.score, winner.subscore, descending=descending):
            winner = slot
    return winner


def merge(slots: Slots, *, descending: bool) -> Value | None:
    """The visible value of a record, or None when it does not exist (never written or deleted)."""
    if len(slots) == 1:  # the common case: one life wrote this record
        slot = slots[0]
        if slot.kind is SlotKind.DELETE:
            return None
        if slot.kind is SlotKind.SET:
            ms = physical_ms(slot.hlc)
            return Value(slot.score, slot.subscore, slot.num_score, slot.create_ms, ms, slot.username, slot.metadata)
    base = current_base(slots)
    base_order = _base_order(base)
    live = [s for s in slots if s.kind >= CONTRIBUTION and _base_order(s.base) == base_order]
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
    if any(s.kind in BEST_LIKE for s in live):
        winner = _best_of(live, descending=descending, start=base if present else None)
        assert winner is not None
        return Value(winner.score, winner.subscore, num_score, create_ms, update_ms, winner.username, winner.metadata)
    score = (base.score if present else 0) + sum(s.score for s in live)
    subscore = (base.subscore if present else 0) + sum(s.subscore for s in live)
    latest_slot = max(live, key=lambda s: (s.hlc, s.origin))
    return Value(_clamp(score), _clamp(subscore), num_score, create_ms, update_ms, latest_slot.username,
                 latest_slot.metadata)


# ------------------------------------------------------------------------- settling


def _top(slot: Slot) -> int:
    """The first epoch above every life ``slot`` accounts for."""
    return slot.cover if slot.kind in FOLDS else life_epoch(slot.origin) + 1


def _covers_all_below(slot: Slot) -> bool:
    """Whether ``slot`` accounts for every earlier life of its name (a fold slot, or a life's
    slot that absorbed one), not only for its own life."""
    return slot.kind in FOLDS or slot.cover > 0


def _cover_rank(slot: Slot) -> tuple[int, bool, tuple[object, ...]]:
    # The widest cover wins; a fold slot over a life slot of the same reach (the fold holds that
    # life's final slot, the life is retired); anything else by value, so every node picks the same.
    return (_top(slot), slot.kind in FOLDS, tuple(slot[:9]))


def fold(slots: list[Slot], *, cover: int, descending: bool) -> Slot:
    """One slot that contributes exactly what ``slots`` (contributions of one node name, on the
    same base) contribute together, accounting for every life of that name below ``cover``."""
    base = slots[0].base
    num_score = sum(s.num_score for s in slots)
    create_ms = min(s.create_ms for s in slots)
    if any(s.kind in BEST_LIKE for s in slots):
        winner = _best_of(slots, descending=descending)
        assert isinstance(winner, Slot)
        return Slot(winner.origin, SlotKind.FOLD_BEST, max(s.hlc for s in slots), winner.score, winner.subscore,
                    num_score, create_ms, winner.username, winner.metadata, base, cover)
    latest = max(slots, key=lambda s: (s.hlc, s.origin))
    return Slot(latest.origin, SlotKind.FOLD_INCR, latest.hlc, _clamp(sum(s.score for s in slots)),
                _clamp(sum(s.subscore for s in slots)), num_score, create_ms, latest.username, latest.metadata,
                base, cover)


def _settle_name(group: list[Slot], horizon: int, base_order: tuple[int, str], *, descending: bool) -> list[Slot]:
    """Contributions of one node name: the redundant dropped, those of retired lives folded."""
    widest = max((s for s in group if _covers_all_below(s) and _base_order(s.base) == base_order),
                 key=_cover_rank, default=None)
    reach = 0 if widest is None else _top(widest)
    kept = [s for s in group if s is widest or _top(s) > reach]
    if horizon > reach:
        retired = [s for s in kept if _top(s) <= horizon]
        counting = [s for s in retired if _base_order(s.base) == base_order]  # the rest are void
        if len(counting) != len(retired) or len(counting) > 1:
            kept = [s for s in kept if _top(s) > horizon]
            if len(counting) > 1:
                kept.append(fold(counting, cover=horizon, descending=descending))
            else:  # one slot alone is its own fold (the current life absorbs it as it is)
                kept += counting
    return kept


def settle(slots: Slots, horizons: Horizons = NO_HORIZONS, *, descending: bool) -> Slots:
    """The slots of a record with the redundant ones dropped and those of retired lives folded
    (see the module docstring); the visible value is unchanged.

    Slots of lives that are not retired are kept even when void (on an older base): a life's
    next version of its slot must be stamped later than its last, and the last is read here.
    """
    if len(slots) == 1:
        slot = slots[0]
        if slot.kind < CONTRIBUTION or (not horizons and not _covers_all_below(slot)):
            return slots  # a lone base, or a lone contribution with nothing to fold
    base_order = _base_order(current_base(slots))
    kept: list[Slot] = []
    groups: dict[str, list[Slot]] = {}
    for slot in slots:
        name, epoch = split_life(slot.origin)
        if slot.kind < CONTRIBUTION:  # a retired life's base counts only while it is the current one
            if epoch >= horizons.get(name) or (slot.hlc, slot.origin) == base_order:
                kept.append(slot)
        else:
            groups.setdefault(name, []).append(slot)
    for name, group in groups.items():
        horizon = horizons.get(name)
        if len(group) == 1 and not _covers_all_below(group[0]) and life_epoch(group[0].origin) >= horizon:
            kept.append(group[0])
        else:
            kept += _settle_name(group, horizon, base_order, descending=descending)
    settled = tuple(sorted(kept, key=_slot_order))
    return slots if settled == slots else settled


# -------------------------------------------------------------------------- merging


def merge_slot(slots: Slots, incoming: Slot, horizons: Horizons = NO_HORIZONS, *,
               descending: bool = True) -> Slots | None:
    """Slots with ``incoming`` merged in and settled, or None when that changes nothing."""
    if not slots:  # a record's first slot: nothing to merge or settle (a lone slot stays as it is)
        return (incoming,)
    candidate: Slots | None = None
    folds = incoming.kind in FOLDS
    name = life_name(incoming.origin) if folds else ""
    for index, slot in enumerate(slots):
        if folds:
            if slot.kind not in FOLDS or life_name(slot.origin) != name:
                continue
            if _cover_rank(incoming) <= _cover_rank(slot):
                return None
        elif slot.origin != incoming.origin or slot.kind in FOLDS:
            continue
        elif incoming.hlc <= slot.hlc:
            return None
        candidate = slots[:index] + (incoming,) + slots[index + 1:]
        break
    if candidate is None:
        candidate = tuple(sorted(slots + (incoming,), key=_slot_order))
    settled = settle(candidate, horizons, descending=descending)
    return None if settled == slots else settled


def merge_slots(slots: Slots, others: Slots, horizons: Horizons = NO_HORIZONS, *,
                descending: bool = True) -> Slots | None:
    merged: Slots | None = None
    for slot in others:
        result = merge_slot(merged if merged is not None else slots, slot, horizons, descending=descending)
        if result is not None:
            merged = result
    return merged


# ---------------------------------------------------------------------------- writes


def _checked(value: int, *, field: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgument(f"{field} would leave the 64-bit integer range", field=field)
    return value


def stamp_after(slots: Slots, hlc: int) -> int:
    """``hlc``, or later than every clock in ``slots`` when one of them is ahead of it (a
    write must win over what it has seen, however far ahead a peer's clock stamped that)."""
    latest = hlc - 1
    for slot in slots:
        if slot.hlc > latest:
            latest = slot.hlc
        if slot.base is not None and slot.base.hlc > latest:
            latest = slot.base.hlc
    return latest + 1


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
    horizons: Horizons = NO_HORIZONS,
) -> Slot | None:
    """The slot the life ``origin`` writes for one submission, or None when the write changes
    nothing. ``hlc`` is its clock now (the slot may be stamped later, see ``stamp_after``)."""
    if slots:
        slots = settle(slots, horizons, descending=descending)
        current = merge(slots, descending=descending)
        hlc = stamp_after(slots, hlc)
    else:  # a first write, the common insert
        current = None
    now_ms = physical_ms(hlc)

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
    if not (kind is SlotKind.BEST and operator is Operator.BEST) and not (
            kind is SlotKind.INCR and operator in (Operator.INCR, Operator.DECR)):
        num_score = (current.num_score if current else 0) + 1
        return Slot(origin, SlotKind.SET, hlc, new_score, new_subscore, num_score, create_ms, new_username,
                    new_metadata)

    # A contribution: this life's own slot grows; once every earlier life of this node is
    # retired, it also takes in their fold slot (and says so in its cover).
    if not slots:
        if kind is SlotKind.BEST:
            return Slot(origin, SlotKind.BEST, hlc, new_score, new_subscore, 1, create_ms, new_username, new_metadata)
        return Slot(origin, SlotKind.INCR, hlc, new_score, new_subscore, 1, create_ms, new_username, new_metadata)
    base = current_base(slots)
    name, epoch = split_life(origin)
    own = next((s for s in slots if s.origin == origin and s.kind >= CONTRIBUTION and s.kind not in FOLDS
                and _base_order(s.base) == _base_order(base)), None)
    score0, subscore0, count0, create0, cover = (
        (own.score, own.subscore, own.num_score, min(own.create_ms, create_ms), own.cover) if own is not None
        else (0, 0, 0, create_ms, 0))
    if cover == 0 and epoch > 0 and horizons.get(name) >= epoch:
        # Every other slot of this node's name is an earlier, retired life's (a fold slot, or one
        # life's slot that had nothing to fold with): take in what it contributed.
        for earlier in slots:
            if (earlier.kind >= CONTRIBUTION and earlier is not own and life_name(earlier.origin) == name
                    and _base_order(earlier.base) == _base_order(base)):
                score0, subscore0 = score0 + earlier.score, subscore0 + earlier.subscore
                count0, create0 = count0 + earlier.num_score, min(create0, earlier.create_ms)
                cover = epoch + 1
    if kind is SlotKind.BEST:
        return Slot(origin, SlotKind.BEST, hlc, new_score, new_subscore, count0 + 1, create0,
                    new_username, new_metadata, base, cover)
    delta_score = new_score - (current.score if current else 0)
    delta_subscore = new_subscore - (current.subscore if current else 0)
    return Slot(origin, SlotKind.INCR, hlc, _clamp(score0 + delta_score), _clamp(subscore0 + delta_subscore),
                count0 + 1, create0, new_username, new_metadata, base, cover)


def tombstone(slots: Slots, *, origin: str, hlc: int) -> Slot:
    """The slot ``origin`` writes to delete a record: a base that holds no value, stamped
    later than every slot it deletes."""
    return Slot(origin, SlotKind.DELETE, stamp_after(slots, hlc), 0, 0, 0, 0, None, None)
