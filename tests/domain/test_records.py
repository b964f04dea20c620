"""Write rules of one record, and merges of slots written on different nodes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from leaderboard_node.domain import records
from leaderboard_node.domain.records import Operator, Slot, merge, merge_slots, tombstone, write


def _write(slots, origin, hlc, op, score, subscore=0, *, board=None, descending=True, metadata=None):
    slot = write(slots, origin=origin, hlc=hlc, leaderboard_operator=board or op, operator=op,
                 descending=descending, score=score, subscore=subscore, username=None, metadata=metadata)
    return slot


def _apply(slots, slot):
    merged = records.merge_slot(slots, slot)
    return slots if merged is None else merged


def test_best_keeps_the_better_pair_as_a_pair():
    slots = ()
    slots = _apply(slots, _write(slots, "a", 1, Operator.BEST, 10, 1))
    assert _write(slots, "a", 2, Operator.BEST, 10, 0) is None  # worse subscore: no change at all
    slots = _apply(slots, _write(slots, "a", 3, Operator.BEST, 10, 5))
    value = merge(slots, descending=True)
    assert (value.score, value.subscore, value.num_score) == (10, 5, 2)


def test_best_ascending_keeps_the_lower_pair():
    slots = ()
    slots = _apply(slots, _write(slots, "a", 1, Operator.BEST, 10, 1, descending=False))
    slots = _apply(slots, _write(slots, "a", 2, Operator.BEST, 3, 9, descending=False))
    assert _write(slots, "a", 3, Operator.BEST, 4, 0, descending=False) is None
    assert merge(slots, descending=False)[:2] == (3, 9)


def test_decr_floors_at_zero_and_a_repeat_at_zero_is_a_no_op():
    slots = ()
    slots = _apply(slots, _write(slots, "a", 1, Operator.INCR, 5, board=Operator.DECR))
    slots = _apply(slots, _write(slots, "a", 2, Operator.DECR, 9))
    assert merge(slots, descending=True)[:3] == (0, 0, 2)
    assert _write(slots, "a", 3, Operator.DECR, 1) is None


def test_incr_by_zero_and_set_to_the_same_value_change_nothing():
    slots = _apply((), _write((), "a", 1, Operator.INCR, 5))
    assert _write(slots, "a", 2, Operator.INCR, 0) is None
    set_slots = _apply((), _write((), "a", 1, Operator.SET, 5))
    assert _write(set_slots, "a", 2, Operator.SET, 5) is None


def test_concurrent_increments_on_two_nodes_add_up():
    a = _write((), "a", 10, Operator.INCR, 3)
    b = _write((), "b", 10, Operator.INCR, 4)  # same clock: the old design's "equal generations"
    one = _apply(_apply((), a), b)
    other = _apply(_apply((), b), a)
    assert merge(one, descending=True) == merge(other, descending=True)
    assert merge(one, descending=True)[:3] == (7, 0, 2)


def test_concurrent_best_writes_keep_the_best_pair_everywhere():
    a = _write((), "a", 10, Operator.BEST, 50, 1)
    b = _write((), "b", 10, Operator.BEST, 50, 2)
    assert merge(_apply(_apply((), a), b), descending=True)[:2] == (50, 2)
    assert merge(_apply(_apply((), b), a), descending=True)[:2] == (50, 2)


def test_concurrent_sets_keep_the_latest_clock_and_break_ties_by_node():
    a = _write((), "a", 10, Operator.SET, 1)
    b = _write((), "b", 10, Operator.SET, 2)
    c = _write((), "c", 9, Operator.SET, 3)
    for order in ((a, b, c), (c, b, a), (b, c, a)):
        slots = ()
        for slot in order:
            slots = _apply(slots, slot)
        assert merge(slots, descending=True).score == 2


def test_a_delete_wins_over_the_writes_it_saw_and_not_over_later_ones():
    slots = _apply((), _write((), "a", 1, Operator.INCR, 5))
    slots = _apply(slots, _write(slots, "b", 2, Operator.INCR, 5))
    deleted = _apply(slots, tombstone(slots, origin="a", hlc=3))
    assert merge(deleted, descending=True) is None
    later = _apply(deleted, _write(deleted, "b", 4, Operator.INCR, 1))
    assert merge(later, descending=True)[:3] == (1, 0, 1)


def test_a_late_slot_from_before_a_delete_does_not_resurrect_the_record():
    old = _write((), "b", 1, Operator.INCR, 5)
    deleted = _apply((), tombstone((), origin="a", hlc=2))
    # b's write made on the empty record arrives after the delete: it built on nothing newer.
    assert merge(_apply(deleted, old), descending=True) is None


def test_an_override_replicates_as_a_set_of_the_result():
    slots = _apply((), _write((), "a", 1, Operator.BEST, 100))
    slot = _write(slots, "a", 2, Operator.SET, 10, board=Operator.BEST)
    assert slot.kind is records.SlotKind.SET
    assert merge(_apply(slots, slot), descending=True)[:3] == (10, 0, 2)


def test_an_increment_on_top_of_a_set_keeps_the_set_as_its_base():
    slots = _apply((), _write((), "a", 1, Operator.SET, 100, board=Operator.INCR))
    slots = _apply(slots, _write(slots, "a", 2, Operator.INCR, 5))
    slots = _apply(slots, _write(slots, "b", 3, Operator.INCR, 1))
    assert merge(slots, descending=True)[:3] == (106, 0, 3)


slot_strategy = st.builds(
    lambda origin, hlc, kind, score: Slot(origin, kind, hlc, score, 0, 1, 0, None, None, None),
    st.sampled_from("abc"), st.integers(1, 20), st.sampled_from([records.SlotKind.SET, records.SlotKind.INCR]),
    st.integers(-10, 10),
)


@settings(max_examples=200)
@given(st.lists(slot_strategy, max_size=8), st.lists(slot_strategy, max_size=8))
def test_merging_slots_is_commutative_and_idempotent(left, right):
    def fold(items):
        slots = ()
        for slot in items:
            slots = _apply(slots, slot)
        return slots

    a, b = fold(left), fold(right)
    ab = merge_slots(a, b) or a
    ba = merge_slots(b, a) or b
    # Equal clocks from one origin never happen in practice (one writer per slot); skip them.
    clocks = {}
    for slot in left + right:
        if clocks.setdefault((slot.origin, slot.hlc), slot) != slot:
            return
    assert merge(ab, descending=True) == merge(ba, descending=True)
    assert (merge_slots(ab, ab) or ab) == ab
