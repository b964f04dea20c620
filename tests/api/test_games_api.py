"""What games rely on, through the client API of one node: records by rank, ranks turned off and
on, extra attempts, owner-wide listing and erasure, events, and the refusals of each."""

from __future__ import annotations

import time
import uuid

import pytest

from leaderboard_client import ApiError


def _board(client, **settings) -> str:
    board = f"g-{uuid.uuid4().hex[:8]}"
    client.create_leaderboard(board, **settings)
    client.write_batch(board, [{"owner_id": f"p{i}", "score": i} for i in range(5)])  # p4 ranks first
    return board


def _refused(call, status: int, field: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert (caught.value.status, caught.value.field) == (status, field), caught.value
    return caught.value


def test_the_record_at_a_rank_and_a_page_from_a_rank_with_cursors_that_go_on(client):
    board = _board(client)
    assert client.record_at_rank(board, 2)["owner_id"] == "p3"
    page = client.records(board, rank=2, limit=2)
    assert [(r["owner_id"], r["rank"]) for r in page["records"]] == [("p3", 2), ("p2", 3)]
    following = client.records(board, cursor=page["next_cursor"], limit=2)
    assert [r["rank"] for r in following["records"]] == [4, 5]
    before = client.records(board, cursor=page["prev_cursor"], limit=2)
    assert [r["rank"] for r in before["records"]] == [1]
    _refused(lambda: client.record_at_rank(board, 6), 404, "rank")
    _refused(lambda: client.request("GET", f"/v1/leaderboards/{board}/records/rank/0"), 400, "rank")
    _refused(lambda: client.records(board, rank=2, cursor=page["next_cursor"]), 400, "rank")


def test_ranks_turned_off_and_on_again_on_a_live_leaderboard(client):
    board = _board(client)
    before = client.get_leaderboard(board)
    answer = client.set_ranks(board, False)
    assert (answer["enable_ranks"], answer["ranks_active"]) == (False, False)
    assert [r["rank"] for r in client.top(board)["records"]] == [0] * 5
    assert _refused(lambda: client.record_at_rank(board, 1), 409, "rank").code == "ranks_disabled"
    client.set_ranks(board, True)
    assert [r["rank"] for r in client.top(board)["records"]] == [1, 2, 3, 4, 5]
    assert client.create_leaderboard(board)["create_time"] == before["create_time"]  # the same incarnation


def test_live_settings_refuse_what_they_cannot_take_naming_the_field(client):
    board = _board(client)
    _refused(lambda: client.request("PATCH", f"/v1/leaderboards/{board}", {}), 400, "body")
    _refused(lambda: client.update_leaderboard(board, enable_ranks=None), 400, "enable_ranks")
    _refused(lambda: client.update_leaderboard(board, event_top=0), 400, "event_top")
    _refused(lambda: client.update_leaderboard(board, event_top=1001), 400, "event_top")
    _refused(lambda: client.update_leaderboard(board, sort_order="asc"), 400, "sort_order")
    for url in ("ftp://example.com/hook", "example.com/hook", "https://user:secret@example.com/hook",
                "https://example.com/hook#part", "https://" + "a" * 2050 + ".com/"):
        _refused(lambda: client.update_leaderboard(board, webhook_url=url), 400, "webhook_url")
    error = _refused(lambda: client.update_leaderboard(board, webhook_url="https://example.com/hook"), 400,
                     "webhook_url")
    assert "events.webhook_secret_file" in error.message  # this node signs nothing: it has no secret
    assert client.update_leaderboard(board, event_top=3)["event_top"] == 3
    assert client.update_leaderboard(board, event_top=None)["event_top"] == 100
    _refused(lambda: client.update_leaderboard("no-such-board", event_top=3), 404, "id")


def test_extra_attempts_raise_the_owners_own_limit(client):
    cup = f"cup-{uuid.uuid4().hex[:8]}"
    client.create_tournament(cup, duration=3600, max_num_score=1)
    assert client.write_record(cup, "p1", 1)["max_num_score"] == 1
    assert _refused(lambda: client.write_record(cup, "p1", 2), 409, "owner_id").code == \
        "tournament_max_num_score_reached"
    granted = client.grant_attempts(cup, "p1", 2)
    assert (granted["max_num_score"], granted["extra_attempts"]) == (3, 2)
    assert client.write_record(cup, "p1", 2)["max_num_score"] == 3
    assert client.record(cup, "p1")["num_score"] == 2
    _refused(lambda: client.grant_attempts(cup, "p1", 0), 400, "count")
    free = f"free-{uuid.uuid4().hex[:8]}"
    client.create_tournament(free, duration=3600)
    _refused(lambda: client.grant_attempts(free, "p1", 1), 400, "id")


def test_every_record_of_an_owner_and_its_erasure(client):
    first, second = _board(client), _board(client)
    owner = f"o-{uuid.uuid4().hex[:8]}"
    client.write_record(first, owner, 100)
    client.write_record(second, owner, 1)
    owned = client.owner_records(owner, limit=1)
    rest = client.owner_records(owner, cursor=owned["next_cursor"])
    assert sorted((r["leaderboard_id"], r["rank"]) for r in owned["records"] + rest["records"]) == sorted(
        [(first, 1), (second, 4)])
    erased = client.erase_owner(owner)
    assert (erased["owner_id"], erased["records_erased"]) == (owner, 2)
    assert client.owner_records(owner)["records"] == []
    _refused(lambda: client.record(first, owner), 404, "owner_id")
    assert client.write_record(first, owner, 5)["score"] == 5  # written after it: stands
    _refused(lambda: client.owner_records("bad id!"), 400, "owner_id")


def test_events_refuse_a_bad_cursor_or_wait_and_a_short_poll_returns_at_once(client):
    _refused(lambda: client.events(after="not-a-cursor"), 400, "after")
    _refused(lambda: client.events(wait=-1), 400, "wait")
    _refused(lambda: client.events(wait=3600), 400, "wait")
    _refused(lambda: client.events(leaderboard_id="bad id!"), 400, "leaderboard_id")
    started = time.monotonic()
    page = client.events(wait=0.2, leaderboard_id="nothing-ends-here")
    assert page["events"] == [] and page["next_cursor"] and time.monotonic() - started < 5
