"""Pages rendered from packed records (``page_json``) against the obvious rendering of views.

The obvious rendering (each view through ``render_record``, the page as a dict, orjson or the
standard library for wide integers) is the reference: the fast one must give the same bytes
for every shape of record, after rewrites, grants and toggles, with its cache warm or cold.
"""

from __future__ import annotations

import json
import uuid

import orjson

from leaderboard_node.domain.changes import Setting
from leaderboard_node.domain.leaderboards import SortOrder, TournamentSettings
from leaderboard_node.domain.records import Operator
from leaderboard_node.domain.store import RecordWrite
from leaderboard_node.transport import page_json
from leaderboard_node.transport.page_json import page_body, render_record

from ..domain.conftest import leaderboard, make_store

NOW = 1_700_000_000


def _reference(page) -> bytes:
    body = {
        "records": [render_record(v) for v in page.records],
        "owner_records": [render_record(v) for v in page.owner_records],
        "next_cursor": page.next_cursor,
        "prev_cursor": page.prev_cursor,
        "rank_count": page.rank_count,
        "expiry_time": page.expiry,
    }
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _same_both_ways(page) -> bytes:
    cold = page_body(page)
    assert cold == _reference(page)
    assert page_body(page) == cold  # warm: from the kept renderings
    return cold


def test_a_page_of_every_shape_of_record_renders_as_its_views_do():
    store = make_store()
    store.create_leaderboard(leaderboard("mixed", operator=Operator.INCR))
    store.write_record("mixed", str(uuid.UUID(int=7)), score=5, now=NOW)  # a UUID owner, packed as 16 bytes
    store.write_record("mixed", "text-owner", score=5, subscore=2, username="Zoë \"the\" ☃", now=NOW)
    store.write_record("mixed", "meta", score=-3, metadata='{"a": [1, 2.5, null], "b": "\\u0000"}', now=NOW)
    store.write_record("mixed", "wide", score=1, metadata='{"big": 123456789012345678901234567890}', now=NOW)
    store.write_record("mixed", "text-owner", score=4, now=NOW + 1)  # incr: a record of two writes
    page = store.list_records("mixed", limit=10, now=NOW, owner_ids=["meta", "nobody"])
    body = json.loads(_same_both_ways(page))
    assert [r["owner_id"] for r in body["records"]] == ["text-owner", str(uuid.UUID(int=7)), "wide", "meta"]
    assert body["records"][2]["metadata"] == {"big": 123456789012345678901234567890}


def test_ascending_boards_pages_in_the_middle_and_around_an_owner_render_as_their_views_do():
    store = make_store()
    store.create_leaderboard(leaderboard("asc", sort_order=SortOrder.ASC))
    for i in range(30):
        store.write_record("asc", f"p{i:02}", score=i % 7, subscore=-i, now=NOW)
    first = store.list_records("asc", limit=10, now=NOW)
    _same_both_ways(first)
    middle = store.list_records("asc", limit=10, now=NOW, cursor=first.next_cursor)
    assert json.loads(_same_both_ways(middle))["records"][0]["rank"] == 11
    _same_both_ways(store.list_records("asc", limit=5, now=NOW, rank=26))
    around = store.around_owner("asc", "p13", limit=5, now=NOW)
    assert [r["owner_id"] for r in json.loads(_same_both_ways(around))["owner_records"]] == ["p13"]
    _same_both_ways(store.around_owner("asc", "nobody", limit=5, now=NOW))
    _same_both_ways(store.list_records("asc", limit=0, now=NOW))


def test_a_rewritten_record_is_rendered_anew_and_ranks_follow_the_toggle():
    store = make_store()
    store.create_leaderboard(leaderboard("lb"))
    store.write_record("lb", "p1", score=1, now=NOW)
    store.write_record("lb", "p2", score=2, now=NOW)
    _same_both_ways(store.list_records("lb", limit=10, now=NOW))
    store.write_record("lb", "p1", score=3, username="new", now=NOW)
    body = json.loads(_same_both_ways(store.list_records("lb", limit=10, now=NOW)))
    assert (body["records"][0]["owner_id"], body["records"][0]["score"], body["records"][0]["username"]) == (
        "p1", 3, "new")
    store.update_settings("lb", {Setting.ENABLE_RANKS: False})
    body = json.loads(_same_both_ways(store.list_records("lb", limit=10, now=NOW)))
    assert [r["rank"] for r in body["records"]] == [0, 0]


def test_attempts_granted_show_in_a_kept_rendering_of_the_same_record():
    store = make_store()
    store.create_leaderboard(leaderboard("t", tournament=TournamentSettings(start_time=NOW - 10, duration=600,
                                                                          max_num_score=3)))
    store.write_record("t", "p1", score=1, now=NOW)
    store.write_record("t", "p2", score=2, now=NOW)
    before = json.loads(_same_both_ways(store.list_records("t", limit=10, now=NOW)))
    store.grant_attempts("t", "p1", 2, now=NOW)  # the record's element does not change
    after = json.loads(_same_both_ways(store.list_records("t", limit=10, now=NOW)))
    assert [r["max_num_score"] for r in before["records"]] == [3, 3]
    assert [r["max_num_score"] for r in after["records"]] == [3, 5]


def test_the_top_of_each_board_is_kept_and_the_cache_stays_bounded():
    store = make_store()
    page_json._kept_record_json.cache_clear()
    boards = page_json.CACHED_RECORDS // page_json.CACHED_RANKS + 1
    for board in range(boards):
        store.create_leaderboard(leaderboard(f"b{board}"))
        store.write_records(f"b{board}", [RecordWrite(f"p{i}", i) for i in range(page_json.CACHED_RANKS)],
                            now=NOW)
    for board in range(boards):
        _same_both_ways(store.list_records(f"b{board}", limit=page_json.CACHED_RANKS, now=NOW))
    assert page_json.cache_info().currsize == page_json.CACHED_RECORDS


def test_records_below_the_top_are_rendered_afresh():
    store = make_store()
    page_json._kept_record_json.cache_clear()
    store.create_leaderboard(leaderboard("deep"))
    store.write_records("deep", [RecordWrite(f"p{i}", i) for i in range(3 * page_json.CACHED_RANKS)], now=NOW)
    cursor = None
    while True:
        page = store.list_records("deep", limit=700, now=NOW, cursor=cursor)
        _same_both_ways(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    _same_both_ways(store.around_owner("deep", "p5", limit=50, now=NOW))
    assert page_json.cache_info().currsize == page_json.CACHED_RANKS
