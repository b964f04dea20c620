from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from leaderboard_client import ApiError


@pytest.fixture
def board(client):
    board = f"lb-{uuid.uuid4().hex[:8]}"
    client.create_leaderboard(board)
    return board


def test_a_write_returns_the_record_with_its_rank(client, board):
    client.write_record(board, "p1", 10)
    record = client.write_record(board, "p2", 20, subscore=3, username="Ann", metadata={"lvl": 4})
    assert record["rank"] == 1 and record["num_score"] == 1 and record["metadata"] == {"lvl": 4}
    assert record["username"] == "Ann" and record["subscore"] == 3
    assert client.record(board, "p1")["rank"] == 2


def test_a_no_op_write_returns_the_right_rank_and_counts_nothing(client, board):
    client.write_record(board, "p1", 10)
    client.write_record(board, "p2", 20)
    again = client.write_record(board, "p1", 5)  # best: worse, so nothing changes
    assert (again["score"], again["rank"], again["num_score"]) == (10, 2, 1)


def test_a_per_write_operator_override_applies(client, board):
    client.write_record(board, "p1", 10)
    assert client.write_record(board, "p1", 3, operator="set")["score"] == 3
    assert client.write_record(board, "p1", 4, operator="incr")["score"] == 7
    assert client.write_record(board, "p1", 100, operator="decr")["score"] == 0


def test_a_batch_write_applies_every_record(client, board):
    result = client.write_batch(board, [{"owner_id": f"p{i}", "score": i} for i in range(50)])
    assert len(result["records"]) == 50
    top = client.top(board, limit=3)
    assert [(r["owner_id"], r["rank"]) for r in top["records"]] == [("p49", 1), ("p48", 2), ("p47", 3)]
    assert top["rank_count"] == 50 and top["next_cursor"] is not None


def test_listing_pages_forward_and_back_with_owner_records(client, board):
    client.write_batch(board, [{"owner_id": f"p{i:02d}", "score": i} for i in range(25)])
    first = client.records(board, limit=10, owner_ids=["p00", "p24", "nobody"])
    assert first["rank_count"] == 25 and first["prev_cursor"] is None
    assert [(r["owner_id"], r["rank"]) for r in first["owner_records"]] == [("p00", 25), ("p24", 1)]
    second = client.records(board, limit=10, cursor=first["next_cursor"])
    assert [r["rank"] for r in second["records"]] == list(range(11, 21))
    back = client.records(board, limit=10, cursor=second["prev_cursor"])
    assert back["records"] == first["records"]


def test_around_owner_includes_rank_one_when_in_range(client, board):
    client.write_batch(board, [{"owner_id": f"p{i}", "score": 100 - i} for i in range(8)])
    around = client.around(board, "p1", limit=5)
    assert [r["rank"] for r in around["records"]] == [1, 2, 3, 4, 5]
    assert client.around(board, "p7", limit=3)["records"][-1]["owner_id"] == "p7"


def test_a_missing_record_answers_404(client, board):
    with pytest.raises(ApiError) as raised:
        client.record(board, "nobody")
    assert raised.value.status == 404 and raised.value.code == "record_not_found"


def test_deleting_a_record_removes_it_from_ranks(client, board):
    client.write_record(board, "p1", 10)
    client.write_record(board, "p2", 5)
    client.delete_record(board, "p1")
    assert client.record(board, "p2")["rank"] == 1
    with pytest.raises(ApiError):
        client.record(board, "p1")


def test_the_digest_changes_with_content_and_counts_records(client, board):
    empty = client.digest(board)
    client.write_record(board, "p1", 10)
    one = client.digest(board)
    assert one["count"] == 1 and one["digest"] != empty["digest"]
    client.write_record(board, "p1", 3)  # best: no change
    assert client.digest(board) == one


def test_health_readiness_metrics_and_cluster_endpoints_answer(client, node):
    assert client.request("GET", "/healthz") == {"status": "ok"}
    assert client.ready()
    client.request_raw("GET", "/v1/leaderboards/none/records/nobody")
    status, body = client.request_raw("GET", "/metrics")
    assert status == 200 and b"leaderboard_http_requests_total" in body
    assert b'leaderboard_rank_cache_lookups_total{outcome="hit"}' in body
    assert client.cluster()["node"]["name"] == node.name


def _records_written(client) -> dict[str, float]:
    _, body = client.request_raw("GET", "/metrics")
    return {sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "leaderboard_records_written" for sample in family.samples}


def test_record_writes_are_counted_by_outcome(client, board):
    before = _records_written(client)
    client.write_record(board, "p1", 10)  # changed
    client.write_record(board, "p1", 5)  # best, no better: unchanged
    client.write_batch(board, [{"owner_id": "p2", "score": 1}, {"owner_id": "p1", "score": 11}])  # 2 changed
    client.import_records(board, '{"owner_id": "p3", "score": 1}\n{"owner_id": "p4", "score": 2}\n')  # 2 changed
    cup = f"cup-{uuid.uuid4().hex[:8]}"
    client.create_tournament(cup, duration=3600, max_num_score=1)
    client.write_record(cup, "p1", 1)  # changed
    with pytest.raises(ApiError):
        client.write_record(cup, "p1", 2)  # no attempts left: refused
    after = _records_written(client)
    assert {outcome: after[outcome] - before.get(outcome, 0.0) for outcome in after} == {
        "changed": 6.0, "unchanged": 1.0, "refused": 1.0}
