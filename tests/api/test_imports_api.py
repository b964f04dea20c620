"""POST /v1/leaderboards/{id}/records/import: JSON lines and CSV, checked whole, answered with
what was written."""

from __future__ import annotations

import uuid

import orjson
import pytest

from leaderboard_client import ApiError


def _board(client, operator: str = "best") -> str:
    board = f"imp-{uuid.uuid4().hex[:8]}"
    client.create_leaderboard(board, operator=operator)
    return board


def test_json_lines_are_imported_with_ranks_usernames_and_metadata(client):
    board = _board(client)
    lines = b"\n".join(orjson.dumps({"owner_id": f"p{i}", "score": i, "username": f"u{i}", "metadata": {"i": i}})
                       for i in range(300)) + b"\n"
    answer = client.import_records(board, lines)
    assert answer == {"imported": 300, "first_writes": 300, "refused": []}
    top = client.records(board, limit=3)
    assert [(r["owner_id"], r["rank"], r["username"], r["metadata"]) for r in top["records"]] == [
        ("p299", 1, "u299", {"i": 299}), ("p298", 2, "u298", {"i": 298}), ("p297", 3, "u297", {"i": 297})]
    assert top["rank_count"] == 300


def test_csv_with_a_header_is_imported_and_existing_owners_follow_the_leaderboards_operator(client):
    board = _board(client, "incr")
    client.write_record(board, "a", 5)
    answer = client.import_records(board, "owner_id,score,subscore,metadata\na,2,0,\nb,3,1,\"{\"\"k\"\": 1}\"\n",
                                   format="csv")
    assert answer == {"imported": 2, "first_writes": 1, "refused": []}
    assert (client.record(board, "a")["score"], client.record(board, "b")["metadata"]) == (7, {"k": 1})


def test_every_wrong_line_is_named_and_nothing_is_written(client):
    board = _board(client)
    lines = "\n".join([
        '{"owner_id": "ok", "score": 1}',
        '{"owner_id": "bad id!", "score": 1}',
        '{"owner_id": "p", "score": 1.5}',
        'not json',
        '{"owner_id": "p", "score": 1, "score": 2}',
        '{"owner_id": "p", "score": 1, "extra": true}',
    ])
    with pytest.raises(ApiError) as refused:
        client.import_records(board, lines)
    assert refused.value.status == 400
    fields = [problem["field"] for problem in refused.value.body["errors"]]
    assert fields == ["lines[2].owner_id", "lines[3].score", "lines[4]", "lines[5].score", "lines[6].extra"]
    assert client.records(board, limit=1)["rank_count"] == 0


def test_a_key_given_twice_is_found_among_colons_in_ids_and_text(client):
    board = _board(client)
    good = b'{"owner_id": "team:red", "score": 1, "username": "a: b"}\n{"owner_id" : "c", "score": 2}\n'
    assert client.import_records(board, good)["imported"] == 2
    with pytest.raises(ApiError) as refused:
        client.import_records(board, good + b'{"owner_id": "d", "score": 3, "metadata": {"k": {"x": 1, "x" : 2}}}\n')
    assert [problem["field"] for problem in refused.value.body["errors"]] == ["lines[3].x"]


@pytest.mark.parametrize(("content_type", "field"), [("application/json", "content-type"), (None, "content-type")])
def test_a_body_that_is_neither_json_lines_nor_csv_is_refused(client, content_type, field):
    board = _board(client)
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, body = client.request_raw("POST", f"/v1/leaderboards/{board}/records/import", b'{"owner_id": "p"}', headers)
    assert status == 400 and orjson.loads(body)["error"]["field"] == field


def test_a_csv_header_naming_unknown_columns_is_refused(client):
    board = _board(client)
    with pytest.raises(ApiError) as refused:
        client.import_records(board, "owner,score\np,1\n", format="csv")
    assert refused.value.body["error"]["field"] == "lines[1]"


@pytest.mark.parametrize("body", ["owner_id,score\np\x00,1\n", "owner_id,score\n\"p,1\n", "owner_id,sc\rore\np,1\n"])
def test_text_that_is_no_csv_is_refused_naming_where_it_stops(client, body):
    board = _board(client)
    with pytest.raises(ApiError) as refused:
        client.import_records(board, body, format="csv")
    assert refused.value.status == 400 and refused.value.body["error"]["field"].startswith("lines[")
