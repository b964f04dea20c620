"""Lives, their retirement and the folding of what they wrote, on one record.

The simulation plays a small cluster that writes one record through every node, restarts
nodes without their data (a restarted node copies the record from a random peer, however
far behind), delivers every message late, twice or in any order, retires dead lives once
every replica holds all they wrote, and merges whole replicas as full syncs do. Throughout,
no replica counts an increment twice or loses one it has seen; at the end every replica
holds exactly what was acknowledged, and a record keeps a bounded number of slots however
many lives wrote it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaderboard_node.domain.lives import Horizons, life_epoch, life_id, life_name
from leaderboard_node.domain.records import (
    FOLDS,
    Operator,
    Slot,
    SlotKind,
    fold,
    merge,
    merge_slot,
    merge_slots,
    settle,
    tombstone,
    write,
)

NAMES = ("a", "b", "c")


@dataclass
class Replica:
    slots: tuple[Slot, ...] = ()
    horizons: Horizons = field(default_factory=Horizons)
    seen: set[int] = field(default_factory=set)  # messages applied, directly or through a full sync


@dataclass(frozen=True)
class Message:
    life: str
    index: int  # the life's n-th slot version: it includes every earlier one of that life
    slot: Slot
    delta: int  # incr: what the write added where it was made


@dataclass
class Cluster:
    operator: Operator
    rng: random.Random
    descending: bool = True
    epochs: dict[str, int] = field(default_factory=lambda: {name: 1 for name in NAMES})
    replicas: dict[str, Replica] = field(default_factory=lambda: {name: Replica() for name in NAMES})
    messages: list[Message] = field(default_factory=list)
    pending: list[tuple[str, int]] = field(default_factory=list)  # (to node, message), in flight
    clock: int = 0
    deletes: bool = False

    def life(self, name: str) -> str:
        return life_id(name, self.epochs[name])

    def value(self, replica: Replica) -> int | None:
        merged = merge(replica.slots, descending=self.descending)
        return None if merged is None else merged.score

    def _apply(self, replica: Replica, slot: Slot) -> None:
        merged = merge_slot(replica.slots, slot, replica.horizons, descending=self.descending)
        if merged is not None:
            replica.slots = merged

    def write(self, name: str) -> None:
        replica = self.replicas[name]
        self.clock += self.rng.choice((0, 1, 1, 2))  # equal clocks on two nodes happen
        amount = self.rng.randint(1, 9) if self.operator is Operator.INCR else self.rng.randint(0, 1000)
        before = self.value(replica) or 0
        slot = write(replica.slots, origin=self.life(name), hlc=self.clock << 16, leaderboard_operator=self.operator,
                     operator=self.operator, descending=self.descending, score=amount, subscore=0, username=None,
                     metadata=None, horizons=replica.horizons)
        if slot is None:
            return
        self._apply(replica, slot)
        index = 1 + sum(1 for m in self.messages if m.life == self.life(name))
        message = Message(self.life(name), index, slot, (self.value(replica) or 0) - before)
        if self.operator is Operator.INCR:
            assert message.delta == amount
        self.messages.append(message)
        replica.seen.add(len(self.messages) - 1)
        for other in NAMES:
            if other != name:
                self.pending.append((other, len(self.messages) - 1))
                if self.rng.random() < 0.2:
                    self.pending.append((other, len(self.messages) - 1))  # delivered twice

    def delete(self, name: str) -> None:
        replica = self.replicas[name]
        if merge(replica.slots, descending=self.descending) is None:
            return
        self.clock += 1
        slot = tombstone(replica.slots, origin=self.life(name), hlc=self.clock << 16)
        self._apply(replica, slot)
        index = 1 + sum(1 for m in self.messages if m.life == self.life(name))
        self.messages.append(Message(self.life(name), index, slot, 0))
        replica.seen.add(len(self.messages) - 1)
        self.pending += [(other, len(self.messages) - 1) for other in NAMES if other != name]

    def deliver(self) -> None:
        if not self.pending:
            return
        to, message = self.pending.pop(self.rng.randrange(len(self.pending)))
        self._apply(self.replicas[to], self.messages[message].slot)
        self.replicas[to].seen.add(message)

    def restart(self, name: str) -> None:
        """Without its data: a new life that full-syncs from a random peer (maybe far behind)."""
        self.epochs[name] += 1
        source = self.replicas[self.rng.choice([n for n in NAMES if n != name])]
        self.replicas[name] = Replica(slots=source.slots, seen=set(source.seen))

    def full_sync(self, to: str, source: str) -> None:
        replica, other = self.replicas[to], self.replicas[source]
        merged = merge_slots(replica.slots, other.slots, replica.horizons, descending=self.descending)
        if merged is not None:
            replica.slots = merged
        replica.seen |= other.seen

    def held(self, replica: Replica, life: str) -> int:
        """How far into ``life``'s slot versions ``replica`` is."""
        return max((self.messages[m].index for m in replica.seen if self.messages[m].life == life), default=0)

    def retire(self, at: str, name: str) -> None:
        """``at`` retires every dead life of ``name`` once none of its messages is in flight and
        every replica is equally far into each (its version vectors agree)."""
        dead = {m.life for m in self.messages if life_name(m.life) == name and life_epoch(m.life) < self.epochs[name]}
        if any(self.messages[m].life in dead for _, m in self.pending):
            return
        if all(len({self.held(replica, life) for replica in self.replicas.values()}) == 1 for life in dead):
            replica = self.replicas[at]
            if replica.horizons.advance(name, self.epochs[name]):
                replica.slots = settle(replica.slots, replica.horizons, descending=self.descending)

    def surviving(self) -> list[Message]:
        """Every write some replica still holds (a write whose every holder restarted from a peer
        that lacked it is lost, as it would be with every such node killed without its data)."""
        reach: dict[str, int] = {}
        for replica in self.replicas.values():
            for m in replica.seen:
                life = self.messages[m].life
                reach[life] = max(reach.get(life, 0), self.messages[m].index)
        return [m for m in self.messages if m.index <= reach.get(m.life, 0)]

    def check(self) -> None:
        """No replica holds more than was acknowledged, or less than it has seen."""
        if self.operator is not Operator.INCR or self.deletes:
            return
        everything = sum(m.delta for m in self.messages)
        for name, replica in self.replicas.items():
            lives = {self.messages[m].life for m in replica.seen}
            seen = sum(m.delta for m in self.messages if m.life in lives and m.index <= self.held(replica, m.life))
            assert seen <= (self.value(replica) or 0) <= everything, (name, replica.slots)


def _play(operator: Operator, seed: int, steps: int, *, deletes: bool = False) -> Cluster:
    rng = random.Random(seed)
    cluster = Cluster(operator, rng, deletes=deletes)
    for _ in range(steps):
        roll = rng.random()
        name = rng.choice(NAMES)
        if deletes and roll < 0.06:
            cluster.delete(name)
        elif roll < 0.4:
            cluster.write(name)
        elif roll < 0.75:
            cluster.deliver()
        elif roll < 0.82:
            cluster.restart(name)
        elif roll < 0.92:
            cluster.retire(name, rng.choice(NAMES))
        else:
            cluster.full_sync(name, rng.choice([n for n in NAMES if n != name]))
        cluster.check()
    while cluster.pending:  # the network heals
        cluster.deliver()
        cluster.check()
    for to in NAMES:  # anti-entropy
        for source in NAMES:
            if to != source:
                cluster.full_sync(to, source)
    for at in NAMES:
        for name in NAMES:
            cluster.retire(at, name)
    for to in NAMES:
        for source in NAMES:
            if to != source:
                cluster.full_sync(to, source)
    cluster.check()
    return cluster


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(20, 160))
def test_every_acknowledged_increment_counts_once_across_restarts_from_stale_peers(seed, steps):
    cluster = _play(Operator.INCR, seed, steps)
    values = {name: cluster.value(replica) for name, replica in cluster.replicas.items()}
    surviving = cluster.surviving()
    expected = sum(m.delta for m in surviving) if surviving else None
    assert set(values.values()) == {expected}, values


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(20, 160))
def test_the_best_acknowledged_score_survives_restarts_from_stale_peers(seed, steps):
    cluster = _play(Operator.BEST, seed, steps)
    values = {name: cluster.value(replica) for name, replica in cluster.replicas.items()}
    surviving = cluster.surviving()
    expected = max(m.slot.score for m in surviving) if surviving else None
    assert set(values.values()) == {expected}, values


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([Operator.INCR, Operator.BEST]), st.integers(0, 2**32), st.integers(20, 160))
def test_replicas_converge_with_deletes_among_the_writes(operator, seed, steps):
    cluster = _play(operator, seed, steps, deletes=True)
    values = {name: merge(replica.slots, descending=True) for name, replica in cluster.replicas.items()}
    assert len(set(values.values())) == 1, values


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([Operator.INCR, Operator.BEST]), st.integers(0, 2**32), st.integers(60, 200))
def test_a_record_keeps_at_most_a_fold_and_a_life_per_node_however_many_lives_wrote_it(operator, seed, steps):
    cluster = _play(operator, seed, steps)
    for replica in cluster.replicas.values():
        for name in NAMES:
            mine = [s for s in replica.slots if life_name(s.origin) == name]
            assert len(mine) <= 2, mine
            assert sum(1 for s in mine if s.kind in FOLDS) <= 1


# --------------------------------------------------------------------- single rules


def _incr(slots, origin, hlc, amount, horizons=None):
    slot = write(slots, origin=origin, hlc=hlc, leaderboard_operator=Operator.INCR, operator=Operator.INCR,
                 descending=True, score=amount, subscore=0, username=None, metadata=None,
                 horizons=horizons or Horizons())
    return slot


def test_a_new_life_starts_its_own_slot_instead_of_continuing_the_old_copy():
    old = _incr((), life_id("a", 1), 10, 5)  # a's first life: 5
    stale = (old,)
    newer = _incr(stale, life_id("a", 1), 20, 3)  # that life went on to 8, on another replica
    restarted = _incr(stale, life_id("a", 2), 30, 1)  # the next life started from the stale copy
    assert restarted.origin == life_id("a", 2) and restarted.score == 1
    everywhere = merge_slot(merge_slot(stale, newer), restarted)
    assert merge(everywhere, descending=True).score == 9


def test_retired_lives_fold_into_one_slot_that_the_current_life_absorbs():
    slots: tuple[Slot, ...] = ()
    for epoch in (1, 2, 3):
        slots = merge_slot(slots, _incr(slots, life_id("a", epoch), epoch * 10, epoch)) or slots
    slots = merge_slot(slots, _incr(slots, life_id("b", 1), 40, 100)) or slots
    horizons = Horizons()
    horizons.advance("a", 4)  # lives 1-3 of a retired; a's current life is 4
    folded = settle(slots, horizons, descending=True)
    mine = [s for s in folded if life_name(s.origin) == "a"]
    assert [(s.kind, s.score, s.cover) for s in mine] == [(SlotKind.FOLD_INCR, 6, 4)]
    assert merge(folded, descending=True) == merge(slots, descending=True)
    absorbed = _incr(folded, life_id("a", 4), 50, 1, horizons)
    assert (absorbed.score, absorbed.cover) == (7, 5)
    after = merge_slot(folded, absorbed, horizons)
    assert [s.origin for s in after] == [life_id("a", 4), life_id("b", 1)]
    assert merge(after, descending=True).score == 107
    # A replica that has not retired anything yet drops the raw slots the absorbing one covers.
    assert merge(merge_slot(slots, absorbed), descending=True).score == 107


def test_a_late_message_of_a_retired_life_changes_nothing():
    first = _incr((), life_id("a", 1), 10, 5)
    slots = (first,)
    horizons = Horizons()
    horizons.advance("a", 2)
    slots = settle(slots, horizons, descending=True)
    late_copy = first._replace(score=2, hlc=5)  # an older version, replayed by the network
    assert merge_slot(slots, late_copy, horizons) is None


def test_folding_keeps_the_winner_of_best_with_its_metadata_and_the_counts():
    slots = (
        Slot(life_id("a", 1), SlotKind.BEST, 10, 50, 0, 2, 100, "ann", '{"try": 1}'),
        Slot(life_id("a", 2), SlotKind.BEST, 20, 70, 0, 1, 200, "ann2", '{"try": 2}'),
        Slot(life_id("a", 3), SlotKind.BEST, 30, 60, 0, 4, 300, "ann3", '{"try": 3}'),
    )
    folded = fold(list(slots), cover=4, descending=True)
    assert (folded.kind, folded.score, folded.num_score, folded.create_ms) == (SlotKind.FOLD_BEST, 70, 7, 100)
    assert (folded.username, folded.metadata, folded.hlc) == ("ann2", '{"try": 2}', 30)
    assert merge((folded,), descending=True)[:3] == merge(slots, descending=True)[:3]


def test_a_delete_voids_what_retired_lives_contributed_and_the_fold_is_dropped():
    slots: tuple[Slot, ...] = ()
    for epoch in (1, 2):
        slots = merge_slot(slots, _incr(slots, life_id("a", epoch), epoch * 10, 5)) or slots
    deleted = merge_slot(slots, tombstone(slots, origin=life_id("b", 1), hlc=30))
    horizons = Horizons()
    horizons.advance("a", 3)
    settled = settle(deleted, horizons, descending=True)
    assert [s.kind for s in settled] == [SlotKind.DELETE]
    assert merge(settled, descending=True) is None


@pytest.mark.parametrize("kind", [SlotKind.SET, SlotKind.DELETE])
def test_a_write_is_stamped_after_a_slot_a_fast_clock_stamped_in_the_future(kind):
    future = Slot(life_id("b", 1), SlotKind.SET, 10_000 << 16, 5, 0, 1, 0, None, None)
    if kind is SlotKind.SET:
        slot = write((future,), origin=life_id("a", 1), hlc=100 << 16, leaderboard_operator=Operator.SET,
                     operator=Operator.SET, descending=True, score=9, subscore=0, username=None, metadata=None)
    else:
        slot = tombstone((future,), origin=life_id("a", 1), hlc=100 << 16)
    assert slot.hlc > future.hlc
    merged = merge_slot((future,), slot)
    assert merge(merged, descending=True) == (None if kind is SlotKind.DELETE else merge((slot,), descending=True))


def test_fold_slots_and_covers_survive_packing_and_the_full_sync_check():
    from leaderboard_node.domain import record_codec

    base_set = Slot(life_id("b", 1), SlotKind.SET, 5 << 16, 10, 0, 1, 5, None, None)
    contributions = (
        Slot(life_id("a", 9), SlotKind.FOLD_INCR, 40 << 16, 7, 1, 3, 6, "ann", None, base_set.as_base(), 9),
        Slot(life_id("a", 9), SlotKind.INCR, 50 << 16, 2, 0, 1, 6, "ann", '{"x": 1}', base_set.as_base(), 10),
    )
    slots = tuple(sorted((base_set,) + contributions, key=lambda s: (s.origin, s.kind)))
    value = merge(slots, descending=True)
    packed = record_codec.encode_slots(slots, score=value.score, subscore=value.subscore)
    assert record_codec.decode_slots(packed, 0, score=value.score, subscore=value.subscore) == slots
    element = (record_codec.sort_prefix(value.score, value.subscore, descending=True) + b"owner" + b"\x00" + packed)
    record_codec.check_slots(element, record_codec.key_end(element), origins=record_codec.origin_table(),
                             descending=True)


def test_a_bucket_sweep_folds_retired_lives_without_moving_a_rank_or_the_digest():
    from leaderboard_node.domain.rank_cache import Bucket

    horizons = Horizons()
    bucket = Bucket(descending=True, expiry=0, horizons=horizons)
    for i in range(50):
        owner = f"p{i:02d}"
        for epoch in (1, 2):
            record = bucket.get(owner)
            slots = record.slots if record is not None else ()
            bucket.apply_slot(owner, _incr(slots, life_id("a", epoch), 10 * epoch + i, i + epoch))
        bucket.apply_slot(f"solo{i}", Slot(life_id("b", 1), SlotKind.SET, 5 << 16, i, 0, 1, 0, None, None))
    before = [(r.owner, r.value) for r in bucket]
    digest = bucket.digest
    horizons.advance("a", 3)
    after, rounds = None, 0
    while True:
        after = bucket.settle_lives(after, 7)
        rounds += 1
        if after is None:
            break
    assert rounds > 5
    assert [(r.owner, r.value) for r in bucket] == before and bucket.digest == digest
    for record in bucket:
        if record.owner.startswith("p"):
            assert [s.kind for s in record.slots] == [SlotKind.FOLD_INCR]
