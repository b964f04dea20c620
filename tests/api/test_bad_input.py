"""Bad input gets a 4xx JSON error that names the field, and changes nothing stored."""

from __future__ import annotations

import json

import pytest

from leaderboard_client import ApiError

from ..harness import board_with_a_record


@pytest.fixture
def board(client):
    return board_with_a_record(client, "lb")


def _error(client, method, path, body=None):
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    status, data = client.request_raw(method, path, raw)
    assert 400 <= status < 500, (status, data)
    return status, json.loads(data)["error"]


@pytest.mark.parametrize(("payload", "field"), [
    ({"owner_id": "p", "score": 1.5}, "score"),
    ({"owner_id": "p", "score": True}, "score"),
    ({"owner_id": "p", "score": "7"}, "score"),
    ({"owner_id": "p", "score": 2 ** 63}, "score"),
    ({"owner_id": "p", "score": -(2 ** 63) - 1}, "score"),
    ({"owner_id": "p", "score": 1, "subscore": 1e3}, "subscore"),
    ({"owner_id": "p"}, "score"),
    ({"score": 1}, "owner_id"),
    ({"owner_id": "", "score": 1}, "owner_id"),
    ({"owner_id": "a/b", "score": 1}, "owner_id"),
    ({"owner_id": "x" * 200, "score": 1}, "owner_id"),
    ({"owner_id": "p", "score": 1, "operator": "max"}, "operator"),
    ({"owner_id": "p", "score": 1, "metadata": [1]}, "metadata"),
    ({"owner_id": "p", "score": 1, "metadata": {"a": "x" * 300}}, "metadata"),
    ({"owner_id": "p", "score": 1, "metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}},
     "metadata"),
    ({"owner_id": "p", "score": 1, "unknown": 1}, "unknown"),
    ({"owner_id": "p", "score": 3, "operator": "decr", "subscore": -1}, "subscore"),
])
def test_a_bad_record_write_names_the_field_and_changes_nothing(client, board, payload, field):
    before = client.digest(board)
    status, error = _error(client, "POST", f"/v1/leaderboards/{board}/records", payload)
    assert status == 400 and error["field"] == field, error
    assert client.digest(board) == before


def test_malformed_json_is_refused(client, board):
    status, error = _error(client, "POST", f"/v1/leaderboards/{board}/records", b"{not json")
    assert status == 400 and error["field"] == "body"


def test_a_body_that_is_not_an_object_is_refused(client, board):
    status, error = _error(client, "POST", f"/v1/leaderboards/{board}/records", b"[1, 2]")
    assert status == 400 and error["field"] == "body"


def test_an_oversized_body_gets_413_with_a_json_body(client, board):
    status, error = _error(client, "POST", f"/v1/leaderboards/{board}/records/batch",
                           {"records": [{"owner_id": f"p{i}", "score": i} for i in range(5000)]})
    assert status == 413 and error["code"] == "body_too_large"
    assert client.digest(board)["count"] == 1


def test_a_batch_with_one_bad_record_changes_nothing(client, board):
    before = client.digest(board)
    status, error = _error(client, "POST", f"/v1/leaderboards/{board}/records/batch",
                           {"records": [{"owner_id": "ok", "score": 1}, {"owner_id": "bad", "score": 0.5}]})
    assert error["field"] == "records[1].score"
    assert client.digest(board) == before


def test_an_unknown_leaderboard_answers_404(client):
    with pytest.raises(ApiError) as raised:
        client.write_record("no-such-board", "p", 1)
    assert raised.value.status == 404 and raised.value.code == "leaderboard_not_found"


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=100000", "limit"), ("limit=ten", "limit"),
    ("cursor=garbage", "cursor"), ("expiry=-1", "expiry"), ("expiry=soon", "expiry"),
])
def test_bad_query_parameters_name_the_field(client, board, query, field):
    status, error = _error(client, "GET", f"/v1/leaderboards/{board}/records?{query}")
    assert status == 400 and error["field"] == field


@pytest.mark.parametrize(("payload", "field"), [
    ({"id": "x y"}, "id"),
    ({"id": "ok", "reset_schedule": "every monday"}, "reset_schedule"),
    ({"id": "ok", "reset_schedule": "61 * * * *"}, "reset_schedule"),
    ({"id": "ok", "sort_order": "up"}, "sort_order"),
    ({"id": "ok", "authoritative": "yes"}, "authoritative"),
])
def test_a_bad_leaderboard_is_refused_with_the_field_named(client, payload, field):
    status, error = _error(client, "POST", "/v1/leaderboards", payload)
    assert status == 400 and error["field"] == field


@pytest.mark.parametrize(("payload", "field"), [
    ({"id": "t1"}, "duration"),
    ({"id": "t1", "duration": 10, "category": 128}, "category"),
    ({"id": "t1", "duration": 10, "start_time": 2000, "end_time": 1000}, "end_time"),
])
def test_a_bad_tournament_is_refused_with_the_field_named(client, payload, field):
    status, error = _error(client, "POST", "/v1/tournaments", payload)
    assert status == 400 and error["field"] == field


def test_an_unknown_path_answers_a_json_404(client):
    status, error = _error(client, "GET", "/v1/nothing-here")
    assert status == 404 and error["code"] == "not_found"
