"""Random writes through the store, then every rank, page and around-owner result must equal
what the reference model computes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaderboard_node.domain.errors import RecordNotFound
from leaderboard_node.domain.records import Operator, SortOrder

from .conftest import leaderboard, make_store
from .reference import ReferenceBoard

NOW = 1_700_000_000
owners = st.sampled_from([f"p{i:02d}" for i in range(12)] + ["A", "a", "a0", "Z"])
scores = st.integers(min_value=-5, max_value=5) | st.integers(min_value=-(1 << 40), max_value=1 << 40)
operators = st.sampled_from(["best", "set", "incr", "decr"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), owners, operators, scores, st.integers(-3, 3)),
        st.tuples(st.just("delete"), owners, st.just(""), st.just(0), st.just(0)),
    ),
    max_size=60,
)


def _run(sort_order: str, board_operator: str, steps: list[tuple[str, str, str, int, int]]):
    store = make_store()
    store.create_leaderboard(leaderboard("lb", sort_order=SortOrder(sort_order), operator=Operator(board_operator)))
    ref = ReferenceBoard(descending=sort_order == "desc")
    for kind, owner, operator, score, subscore in steps:
        if kind == "delete":
            if owner in ref.records:
                store.delete_record("lb", owner, now=NOW)
                ref.delete(owner)
            continue
        if operator == "decr":
            score, subscore = abs(score), abs(subscore)
        view, _ = store.write_record("lb", owner, score=score, subscore=subscore, operator=Operator(operator), now=NOW)
        ref.write(owner, operator, score, subscore)
        expected = ref.records[owner]
        assert (view.score, view.subscore, view.num_score) == expected
        assert view.rank == [o for o, *_ in ref.ordered()].index(owner) + 1
    return store, ref


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sort_order=st.sampled_from(["desc", "asc"]), board_operator=operators, steps=ops,
       limit=st.integers(1, 7))
def test_pages_ranks_and_around_equal_the_reference(sort_order, board_operator, steps, limit):
    store, ref = _run(sort_order, board_operator, steps)
    expected = ref.ordered()

    # Forward through every page, then back again: ranks agree with the reference.
    seen, cursor, pages = [], None, []
    while True:
        page = store.list_records("lb", limit=limit, now=NOW, cursor=cursor)
        pages.append(page)
        seen.extend((v.owner_id, v.score, v.subscore, v.num_score, v.rank) for v in page.records)
        assert page.rank_count == len(expected)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [(o, s, ss, n, i + 1) for i, (o, s, ss, n) in enumerate(expected)]
    back = pages[-1]
    for earlier in reversed(pages[:-1]):
        back = store.list_records("lb", limit=limit, now=NOW, cursor=back.prev_cursor)
        assert [v.owner_id for v in back.records] == [v.owner_id for v in earlier.records]
    assert back.prev_cursor is None

    # Owner lookups and around-owner agree with the same ranks.
    for rank, (owner, *_rest) in enumerate(expected, start=1):
        assert store.get_record("lb", owner, now=NOW).rank == rank
        around = store.around_owner("lb", owner, limit=limit, now=NOW)
        assert [v.owner_id for v in around.records] == ref.around(owner, limit)
        assert [v.rank for v in around.records] == [
            [o for o, *_ in expected].index(v.owner_id) + 1 for v in around.records]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sort_order=st.sampled_from(["desc", "asc"]), board_operator=operators, steps=ops,
       limit=st.integers(1, 7), rank=st.integers(1, 20))
def test_the_record_at_a_rank_and_a_page_from_a_rank_equal_the_reference(sort_order, board_operator, steps, limit,
                                                                        rank):
    store, ref = _run(sort_order, board_operator, steps)
    expected = [(o, s, ss, n, i + 1) for i, (o, s, ss, n) in enumerate(ref.ordered())]

    def row(view):
        return (view.owner_id, view.score, view.subscore, view.num_score, view.rank)

    if rank <= len(expected):
        assert row(store.record_at_rank("lb", rank, now=NOW)) == expected[rank - 1]
    else:
        with pytest.raises(RecordNotFound):
            store.record_at_rank("lb", rank, now=NOW)
    page = store.list_records("lb", limit=limit, now=NOW, rank=rank)
    assert [row(v) for v in page.records] == expected[rank - 1:rank - 1 + limit]
    assert page.rank_count == len(expected)
    # its cursors continue from there, forward to the end and back to the first record
    seen, forward = [row(v) for v in page.records], page
    while forward.next_cursor:
        forward = store.list_records("lb", limit=limit, now=NOW, cursor=forward.next_cursor)
        seen += [row(v) for v in forward.records]
    assert seen == expected[rank - 1:]
    if rank > len(expected):  # past the last record: an empty page, nowhere to go on from
        assert (page.records, page.next_cursor, page.prev_cursor) == ([], None, None)
        return
    before, back = [], page
    while back.prev_cursor:
        back = store.list_records("lb", limit=limit, now=NOW, cursor=back.prev_cursor)
        before = [row(v) for v in back.records] + before
    assert before == expected[:rank - 1]


@settings(max_examples=60, deadline=None)
@given(steps=ops, order=st.randoms(use_true_random=False))
def test_replicas_converge_whatever_the_delivery_order(steps, order):
    """Every change applied to a second store, shuffled and duplicated: same records, same digest."""
    store = make_store("n1")
    changes = list(store.create_leaderboard(leaderboard("lb", operator=Operator.INCR))[2])
    for kind, owner, operator, score, subscore in steps:
        if kind == "delete":
            if store.list_records("lb", limit=100, now=NOW, owner_ids=[owner]).owner_records:
                changes += store.delete_record("lb", owner, now=NOW)
            continue
        score, subscore = (abs(score), abs(subscore)) if operator == "decr" else (score, subscore)
        changes += store.write_record("lb", owner, score=score, subscore=subscore, operator=Operator(operator),
                                      now=NOW)[1]
    delivered = changes + order.sample(changes, k=len(changes) // 2)
    order.shuffle(delivered)
    replica = make_store("n2")
    for change in delivered:
        replica.apply(change)
    assert replica.digest("lb", now=NOW) == store.digest("lb", now=NOW)
    mine = store.list_records("lb", limit=100, now=NOW).records
    theirs = replica.list_records("lb", limit=100, now=NOW).records
    assert mine == theirs
