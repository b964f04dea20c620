"""What a refusal says: every field at once, unknown query parameters, ranges, ids, cursors,
repeated JSON keys. Each answer is a 4xx naming the field and changes nothing stored."""

from __future__ import annotations

import base64
import json

import pytest

from ..harness import board_with_a_record, fill_board


@pytest.fixture
def board(client):
    return board_with_a_record(client, "errs")


def _refused(client, method, path, body=None):
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    status, data = client.request_raw(method, path, raw)
    assert 400 <= status < 500, (status, data)
    return status, json.loads(data)


# ------------------------------------------------------------------ every field at once


def test_a_tournament_with_several_bad_fields_gets_every_one_in_one_answer(client):
    status, body = _refused(client, "POST", "/v1/tournaments", {"id": "cup-many", "max_size": -1, "category": 300})
    assert status == 400
    fields = [problem["field"] for problem in body["errors"]]
    assert sorted(fields) == ["category", "duration", "max_size"]
    assert body["error"] == body["errors"][0]
    assert any("required" in problem["message"] for problem in body["errors"] if problem["field"] == "duration")


def test_the_checks_after_parsing_are_reported_with_the_parsers(client):
    status, body = _refused(client, "POST", "/v1/tournaments", {
        "id": "bad id!", "reset_schedule": "every monday", "metadata": {"a": "x" * 300}, "max_size": "ten"})
    assert status == 400
    assert sorted(p["field"] for p in body["errors"]) == ["duration", "id", "max_size", "metadata", "reset_schedule"]


def test_a_parsed_leaderboard_with_several_bad_values_gets_them_all(client):
    status, body = _refused(client, "POST", "/v1/tournaments", {
        "id": "cup-late", "duration": 60, "start_time": 2000, "end_time": 1000, "reset_schedule": "61 * * * *"})
    assert status == 400
    assert sorted(p["field"] for p in body["errors"]) == ["end_time", "reset_schedule"]
    with pytest.raises(Exception):
        client.get_leaderboard("cup-late")


def test_a_single_error_is_both_error_and_the_only_entry_of_errors(client, board):
    status, body = _refused(client, "POST", f"/v1/leaderboards/{board}/records", {"owner_id": "p"})
    assert status == 400 and body["errors"] == [body["error"]] and body["error"]["field"] == "score"


def test_a_missing_duration_is_documented_as_required(client):
    spec = client.request("GET", "/openapi.json")
    assert "duration" in spec["components"]["schemas"]["TournamentCreate"]["required"]


# ------------------------------------------------------------- unknown query parameters


@pytest.mark.parametrize(("path", "name"), [
    ("/v1/leaderboards/{board}/records?limt=5", "limt"),
    ("/v1/leaderboards/{board}/records?limit=5&curser=x", "curser"),
    ("/v1/leaderboards/{board}/records/around/keeper?cursor=x", "cursor"),
    ("/v1/leaderboards/{board}?expiry=0", "expiry"),
    ("/v1/leaderboards?page=2", "page"),
    ("/v1/cluster?verbose=1", "verbose"),
    ("/v1/tournaments?category=1", "category"),
])
def test_an_unknown_query_parameter_is_refused_naming_it(client, board, path, name):
    status, body = _refused(client, "GET", path.format(board=board))
    assert status == 400 and body["error"]["field"] == name, body
    assert "unknown query parameter" in body["error"]["message"]


def test_the_refusal_lists_the_parameters_the_operation_takes(client, board):
    _, body = _refused(client, "GET", f"/v1/leaderboards/{board}/records?limt=5")
    assert "cursor, expiry, limit, owner_ids" in body["error"]["message"]


def test_an_unknown_query_parameter_on_a_write_changes_nothing(client, board):
    before = client.digest(board)
    status, body = _refused(client, "POST", f"/v1/leaderboards/{board}/records?ack=local&acks=all",
                            {"owner_id": "new", "score": 5})
    assert status == 400 and body["error"]["field"] == "acks"
    assert client.digest(board) == before


def test_known_parameters_still_work(client, board):
    page = client.request("GET", f"/v1/leaderboards/{board}/records", query={"limit": 1, "owner_ids": "keeper"})
    assert page["owner_records"][0]["owner_id"] == "keeper"


# ----------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(("query", "field", "text"), [
    ("limit=99999999999999999999999", "limit", "limit must be between 1 and 1000"),
    ("limit=0", "limit", "limit must be between 1 and 1000"),
    ("limit=ten", "limit", "limit must be an integer between 1 and 1000"),
    ("expiry=-1", "expiry", "expiry must be between 0 and"),
    ("expiry=" + "9" * 5000, "expiry", "expiry must be between 0 and"),
])
def test_a_number_out_of_range_says_the_range(client, board, query, field, text):
    status, body = _refused(client, "GET", f"/v1/leaderboards/{board}/records?{query}")
    assert status in (400, 414)
    if status == 400:
        assert body["error"]["field"] == field and text in body["error"]["message"], body


def test_a_huge_limit_within_the_query_bound_says_the_range(client, board):
    status, body = _refused(client, "GET", f"/v1/leaderboards/{board}/records?limit={'9' * 300}")
    assert status == 400 and "between 1 and 1000" in body["error"]["message"]


# -------------------------------------------------------------------------------- ids


def test_an_id_outside_ascii_says_ascii_letters(client):
    status, body = _refused(client, "POST", "/v1/leaderboards", {"id": "météo"})
    assert status == 400 and body["error"]["field"] == "id"
    assert "ASCII letters" in body["error"]["message"]


# ---------------------------------------------------------------------------- cursors


def _tamper(cursor: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("where", ["incarnation", "key", "expiry", "truncated"])
def test_a_tampered_cursor_is_invalid_not_another_leaderboards(client, where):
    board = "cursor-tamper-" + where
    fill_board(client, board, 30)
    cursor = client.records(board, limit=5)["next_cursor"]
    if where == "truncated":
        bad = cursor[:-6]
    else:
        bad = _tamper(cursor, {"incarnation": 13, "key": -8, "expiry": 5}[where])
    status, body = _refused(client, "GET", f"/v1/leaderboards/{board}/records?cursor={bad}")
    assert status == 400 and body["error"]["code"] == "cursor_invalid" and body["error"]["field"] == "cursor"
    assert "invalid" in body["error"]["message"] and "another leaderboard" not in body["error"]["message"]


def test_a_cursor_of_another_leaderboard_still_says_so(client):
    fill_board(client, "cursor-a", 20)
    fill_board(client, "cursor-b", 20)
    cursor = client.records("cursor-a", limit=5)["next_cursor"]
    _, body = _refused(client, "GET", f"/v1/leaderboards/cursor-b/records?cursor={cursor}")
    assert "another leaderboard" in body["error"]["message"]


def test_an_untampered_cursor_pages_on(client):
    fill_board(client, "cursor-ok", 12)
    first = client.records("cursor-ok", limit=5)
    second = client.records("cursor-ok", limit=5, cursor=first["next_cursor"])
    back = client.records("cursor-ok", limit=5, cursor=second["prev_cursor"])
    assert [r["rank"] for r in second["records"]] == [6, 7, 8, 9, 10]
    assert back["records"] == first["records"]


# ------------------------------------------------------------------- repeated JSON keys


@pytest.mark.parametrize(("body", "field"), [
    (b'{"owner_id": "p", "score": 1, "score": 999}', "score"),
    (b'{"owner_id": "p", "score": 1, "metadata": {"a": 1, "a": 2}}', "metadata.a"),
])
def test_a_repeated_key_is_refused_naming_it(client, board, body, field):
    before = client.digest(board)
    status, answer = _refused(client, "POST", f"/v1/leaderboards/{board}/records", body)
    assert status == 400 and answer["error"]["field"] == field, answer
    assert "more than once" in answer["error"]["message"]
    assert client.digest(board) == before


def test_a_repeated_key_in_a_batch_names_the_record(client, board):
    body = b'{"records": [{"owner_id": "a", "score": 1}, {"owner_id": "b", "score": 2, "owner_id": "c"}]}'
    status, answer = _refused(client, "POST", f"/v1/leaderboards/{board}/records/batch", body)
    assert status == 400 and answer["error"]["field"] == "records[1].owner_id", answer


def test_a_repeated_key_in_a_definition_is_refused(client):
    status, answer = _refused(client, "POST", "/v1/leaderboards", b'{"id": "dup-def", "id": "other"}')
    assert status == 400 and answer["error"]["field"] == "id"
