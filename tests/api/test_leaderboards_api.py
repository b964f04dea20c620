from __future__ import annotations

import uuid

import pytest

from leaderboard_client import ApiError


def _id() -> str:
    return f"lb-{uuid.uuid4().hex[:8]}"


def test_creating_a_leaderboard_answers_201_then_200_for_an_identical_one(client):
    board = _id()
    status, _ = client.request_raw("POST", "/v1/leaderboards", f'{{"id": "{board}"}}'.encode())
    assert status == 201
    status, _ = client.request_raw("POST", "/v1/leaderboards", f'{{"id": "{board}"}}'.encode())
    assert status == 200


def test_creating_a_leaderboard_with_other_settings_answers_409(client):
    board = _id()
    client.create_leaderboard(board)
    with pytest.raises(ApiError) as raised:
        client.create_leaderboard(board, operator="set")
    assert raised.value.status == 409 and raised.value.field == "id"


def test_a_leaderboard_shows_its_settings_and_reset_times(client):
    board = _id()
    created = client.create_leaderboard(board, sort_order="asc", operator="incr", reset_schedule="0 0 * * 1",
                                        metadata={"season": 3}, authoritative=False)
    fetched = client.get_leaderboard(board)
    assert fetched == created
    assert fetched["sort_order"] == "asc" and fetched["operator"] == "incr"
    assert fetched["metadata"] == {"season": 3}
    assert fetched["prev_reset"] < fetched["next_reset"] and fetched["next_reset"] - fetched["prev_reset"] == 7 * 86400


def test_listing_leaderboards_pages_with_a_cursor(client):
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    for i in range(5):
        client.create_leaderboard(f"{prefix}-{i}")
    seen, cursor = [], None
    while True:
        page = client.list_leaderboards(limit=2, cursor=cursor)
        seen += [lb["id"] for lb in page["leaderboards"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert [s for s in seen if s.startswith(prefix)] == [f"{prefix}-{i}" for i in range(5)]


def test_deleting_and_recreating_a_leaderboard_shows_none_of_the_old_records(client):
    board = _id()
    client.create_leaderboard(board)
    client.write_record(board, "p1", 10)
    client.delete_leaderboard(board)
    with pytest.raises(ApiError) as raised:
        client.records(board)
    assert raised.value.status == 404 and raised.value.code == "leaderboard_not_found"
    client.create_leaderboard(board)
    assert client.records(board)["records"] == []


def test_a_tournament_accepts_scores_only_in_its_window_and_for_members(client):
    tournament = _id()
    client.create_tournament(tournament, duration=3600, join_required=True, max_size=2, category=5)
    with pytest.raises(ApiError) as raised:
        client.write_record(tournament, "p1", 5)
    assert raised.value.status == 403 and raised.value.code == "tournament_join_required"
    client.join_tournament(tournament, "p1")
    client.join_tournament(tournament, "p2")
    with pytest.raises(ApiError) as full:
        client.join_tournament(tournament, "p3")
    assert full.value.code == "tournament_full"
    assert client.write_record(tournament, "p1", 5)["rank"] == 1
    listed = client.list_tournaments(category_start=5, category_end=5)["tournaments"]
    assert [t["id"] for t in listed if t["id"] == tournament] == [tournament]
    assert client.get_leaderboard(tournament)["size"] == 2


def test_a_tournament_that_has_not_started_refuses_scores(client):
    tournament = _id()
    client.create_tournament(tournament, duration=60, start_time=4_000_000_000)
    with pytest.raises(ApiError) as raised:
        client.write_record(tournament, "p1", 5)
    assert raised.value.code == "tournament_outside_active_window" and raised.value.status == 409


def test_a_tournament_refuses_scores_beyond_max_num_score(client):
    tournament = _id()
    client.create_tournament(tournament, duration=3600, max_num_score=1)
    client.write_record(tournament, "p1", 5)
    with pytest.raises(ApiError) as raised:
        client.write_record(tournament, "p1", 6)
    assert raised.value.code == "tournament_max_num_score_reached"


def test_tournament_records_use_the_same_paths_under_tournaments(client):
    tournament = _id()
    client.create_tournament(tournament, duration=3600)
    client.write_record(tournament, "p1", 5)
    body = client.request("GET", f"/v1/tournaments/{tournament}/records")
    assert [r["owner_id"] for r in body["records"]] == ["p1"]
