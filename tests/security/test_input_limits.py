"""Every input of the client API is bounded; a refusal is a 4xx JSON error naming the field and
changes nothing stored; and the node keeps serving after hostile requests."""

from __future__ import annotations

import gzip
import json
import socket
import time
import uuid

import pytest

from ..harness import NodeProcess, board_with_a_record
from .conftest import unexpected_errors

LIMITS = {"max_body_bytes": 65536, "max_metadata_bytes": 256, "max_batch_records": 50, "max_owner_ids": 5,
          "max_query_bytes": 512, "body_timeout": 1.0, "max_page_limit": 100}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess("limits-node", tmp_path_factory.mktemp("limits"), settings={"limits": LIMITS})
    process.start()
    yield process
    process.terminate()
    assert not unexpected_errors(process), unexpected_errors(process)[:3]


@pytest.fixture
def client(node):
    with node.client() as c:
        yield c


@pytest.fixture
def board(client):
    return board_with_a_record(client, "lim")


def _refused(client, method: str, path: str, body: bytes | dict | None = None, *,
             headers: dict[str, str] | None = None) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    status, data = client.request_raw(method, path, raw, headers=headers)
    assert 400 <= status < 500, (status, data[:300])
    return status, json.loads(data)["error"]


def _raw_exchange(node: NodeProcess, payload: bytes, *, pause: float = 0.0, rest: bytes = b"") -> bytes:
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(payload)
        if pause:
            time.sleep(pause)
            try:
                sock.sendall(rest)
            except OSError:
                pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _refused_by_http(answer: bytes) -> bool:
    """aiohttp's own refusal of a malformed message: a 4xx, plain text (no handler ran)."""
    return answer.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))


def _still_serving(client, board: str) -> None:
    assert client.ready()
    assert client.digest(board)["count"] == 1


# ------------------------------------------------------------------------------- counts


def test_more_owner_ids_than_the_limit_are_refused(client, board):
    status, error = _refused(client, "GET", f"/v1/leaderboards/{board}/records?owner_ids=a,b,c&owner_ids=d,e,f")
    assert status == 400 and error["field"] == "owner_ids"


def test_a_query_string_longer_than_the_limit_gets_414_naming_the_query(client, board):
    status, error = _refused(client, "GET", f"/v1/leaderboards/{board}/records?cursor={'A' * 600}")
    assert status == 414 and error["code"] == "query_too_long" and error["field"] == "query"


def test_a_batch_larger_than_the_limit_is_refused_before_anything_is_written(client, board):
    before = client.digest(board)
    status, error = _refused(client, "POST", f"/v1/leaderboards/{board}/records/batch",
                             {"records": [{"owner_id": f"p{i}", "score": i} for i in range(51)]})
    assert status == 400 and error["field"] == "records"
    assert client.digest(board) == before


def test_a_page_limit_above_the_maximum_is_refused(client, board):
    status, error = _refused(client, "GET", f"/v1/leaderboards/{board}/records/around/keeper?limit=101")
    assert status == 400 and error["field"] == "limit"


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_metadata_holding_nan_or_infinity_is_refused_not_a_500(client, board, number):
    before = client.digest(board)
    body = b'{"owner_id": "p", "score": 1, "metadata": {"x": ' + number + b"}}"
    status, error = _refused(client, "POST", f"/v1/leaderboards/{board}/records", body)
    assert status == 400 and error["field"] == "metadata"
    batch = b'{"records": [{"owner_id": "p", "score": 1, "metadata": {"x": [' + number + b"]}}]}"
    status, error = _refused(client, "POST", f"/v1/leaderboards/{board}/records/batch", batch)
    assert status == 400 and error["field"] == "records[0].metadata"
    status, error = _refused(client, "POST", "/v1/leaderboards", b'{"id": "nan-meta", "metadata": {"x": ' + number + b"}}")
    assert status == 400 and error["field"] == "metadata"
    assert client.digest(board) == before


@pytest.mark.parametrize(("payload", "field"), [
    ({"id": "far", "duration": 60, "start_time": 253402300799, "reset_schedule": "0 0 * * *"}, "start_time"),
    ({"id": "far", "duration": 60, "start_time": 2**32}, "start_time"),
    ({"id": "far", "duration": 60, "end_time": 2**40}, "end_time"),
    ({"id": "far", "duration": 60, "reset_schedule": "0 0 * * * " * 50}, "reset_schedule"),
    ({"id": "far", "duration": 60, "title": "t" * 257}, "title"),
    ({"id": "far", "duration": 60, "description": "d" * 4097}, "description"),
    ({"id": "x" * 129, "duration": 60}, "id"),
])
def test_a_tournament_outside_the_bounds_is_refused_and_listings_keep_working(client, payload, field):
    status, error = _refused(client, "POST", "/v1/tournaments", payload)
    assert status == 400 and error["field"] == field, error
    assert client.request_raw("GET", "/v1/tournaments")[0] == 200
    assert client.request_raw("GET", "/v1/tournaments/far")[0] == 404


def test_a_username_longer_than_128_characters_is_refused(client, board):
    status, error = _refused(client, "POST", f"/v1/leaderboards/{board}/records",
                             {"owner_id": "p", "score": 1, "username": "u" * 129})
    assert status == 400 and error["field"] == "username"


def test_a_decr_leaderboard_refuses_a_batch_with_a_negative_amount_before_writing_any(client):
    board = f"decr-{uuid.uuid4().hex[:8]}"
    client.create_leaderboard(board, operator="decr")
    status, error = _refused(client, "POST", f"/v1/leaderboards/{board}/records/batch",
                             {"records": [{"owner_id": "a", "score": 1}, {"owner_id": "b", "score": -1}]})
    assert status == 400 and error["field"] == "records[1].score"
    assert client.digest(board)["count"] == 0


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"owner_id": "p", "score": 1, "metadata": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
    b'{"owner_id": "p", "score": ' + b"9" * 50_000 + b"}",
], ids=["deep-array", "deep-metadata", "huge-integer"])
def test_pathological_json_is_refused_quickly(client, board, body):
    started = time.monotonic()
    status, error = _refused(client, "POST", f"/v1/leaderboards/{board}/records", body)
    assert status in (400, 413) and error["field"] in ("body", "metadata", "score")
    assert time.monotonic() - started < 2
    _still_serving(client, board)


# ------------------------------------------------------------------------------- HTTP


def test_a_body_that_expands_beyond_the_limit_when_decompressed_gets_413(client, board):
    bomb = gzip.compress(b'{"owner_id": "p", "score": 1, "username": "' + b"a" * 5_000_000 + b'"}')
    assert len(bomb) < 65536
    status, error = _refused(client, "POST", f"/v1/leaderboards/{board}/records", bomb,
                             headers={"Content-Encoding": "gzip"})
    assert status == 413 and error["field"] == "body"
    _still_serving(client, board)


def test_a_body_that_arrives_too_slowly_gets_408(node, client, board):
    head = (f"POST /v1/leaderboards/{board}/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100\r\n\r\n").encode()
    answer = _raw_exchange(node, head + b'{"owner_id": ', pause=1.6, rest=b'"p", "score": 1}')
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 408 " in status_line, answer[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["field"] == "body"
    _still_serving(client, board)


def test_a_request_with_too_many_headers_is_refused_and_the_node_keeps_serving(node, client, board):
    headers = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(300))
    answer = _raw_exchange(node, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert _refused_by_http(answer), answer[:200]
    _still_serving(client, board)


def test_a_huge_header_line_is_refused_and_the_node_keeps_serving(node, client, board):
    answer = _raw_exchange(node, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
    assert _refused_by_http(answer) or answer == b"", answer[:200]
    _still_serving(client, board)


def test_a_huge_request_line_is_refused_and_the_node_keeps_serving(node, client, board):
    answer = _raw_exchange(node, b"GET /healthz?" + b"a=1&" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _refused_by_http(answer) or answer == b"", answer[:200]
    _still_serving(client, board)


def test_headers_that_trickle_in_get_a_408_and_the_connection_closed(tmp_path):
    import socket
    import time as clock

    from ..harness import NodeProcess

    node = NodeProcess("slow-headers", tmp_path, settings={"limits": {"header_timeout": 1.0}}).start()
    try:
        for port in (node.port, node.peer_port):
            with socket.create_connection((node.host, port), timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                started = clock.monotonic()
                answer = b""
                try:
                    for i in range(20):  # a header line a second, as a slow-loris client sends them
                        sock.sendall(f"X-Slow-{i}: y\r\n".encode())
                        clock.sleep(0.25)
                        sock.settimeout(0.01)
                        try:
                            chunk = sock.recv(4096)
                        except TimeoutError:
                            continue
                        if not chunk:
                            break
                        answer += chunk
                except (BrokenPipeError, ConnectionResetError):
                    pass
                assert answer.startswith(b"HTTP/1.1 408"), answer
                assert b"header_timeout" in answer
                assert clock.monotonic() - started < 4
        with node.client() as client:  # and ordinary requests still pass
            assert client.ready()
    finally:
        node.terminate()
