"""``AsyncLeaderboardClient`` against a real node process: the same answers as the blocking
client, many callers over a few connections, and connections that die under it."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from leaderboard_client import ApiError, AsyncLeaderboardClient

from ..harness import NodeProcess, free_port, loopback_host


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess("async-client-node", tmp_path_factory.mktemp("async-client-node"))
    process.start()
    yield process
    process.terminate()


def _board() -> str:
    return f"async-{uuid.uuid4().hex[:8]}"


async def test_every_read_answers_as_the_blocking_client_does(node):
    board = _board()
    async with AsyncLeaderboardClient(node.url, connections=2) as client:
        await client.create_leaderboard(board, sort_order="desc", operator="best")
        for i in range(12):
            await client.write_record(board, f"p{i:02d}", score=i * 10, metadata={"level": i})
        owner = str(uuid.UUID(int=7))
        await client.write_batch(board, [{"owner_id": owner, "score": 55}])
        answers = [await client.around(board, "p05", limit=5), await client.record(board, owner),
                   await client.records(board, limit=3), await client.top(board, limit=4),
                   await client.get_leaderboard(board), await client.digest(board)]
        assert await client.ready() is True
    with node.client() as blocking:
        expected = [blocking.around(board, "p05", limit=5), blocking.record(board, owner),
                    blocking.records(board, limit=3), blocking.top(board, limit=4),
                    blocking.get_leaderboard(board), blocking.digest(board)]
    assert answers == expected
    assert [r["owner_id"] for r in answers[0]["records"]] == ["p06", owner, "p05", "p04", "p03"]
    assert answers[1]["rank"] == 7 and answers[1]["score"] == 55


async def test_a_refusal_is_an_api_error_naming_the_field(node):
    async with AsyncLeaderboardClient(node.url, connections=1) as client:
        with pytest.raises(ApiError) as missing:
            await client.around("no-such-board", "p1")
        assert missing.value.status == 404 and missing.value.code == "leaderboard_not_found"
        board = _board()
        await client.create_leaderboard(board)
        with pytest.raises(ApiError) as bad:
            await client.write_record(board, "p1", score=1 << 70)
        assert bad.value.status == 400 and bad.value.field == "score"
        # The connection that carried the refusals still serves.
        assert (await client.write_record(board, "p1", score=3))["score"] == 3


async def test_metadata_integers_beyond_64_bits_come_back_exact(node):
    board = _board()
    huge = 123456789012345678901234567890
    async with AsyncLeaderboardClient(node.url) as client:
        await client.create_leaderboard(board)
        await client.write_record(board, "p1", score=1, metadata={"huge": huge})
        assert (await client.record(board, "p1"))["metadata"] == {"huge": huge}


async def test_many_callers_share_a_few_connections_and_each_gets_its_own_answer(node):
    board = _board()
    async with AsyncLeaderboardClient(node.url, connections=4) as client:
        await client.create_leaderboard(board)
        await client.write_batch(board, [{"owner_id": f"p{i:03d}", "score": i} for i in range(200)])
        owners = [f"p{i:03d}" for i in range(0, 200, 2)]
        answers = await asyncio.gather(*(client.record(board, owner) for owner in owners))
        assert [a["owner_id"] for a in answers] == owners
        assert [a["score"] for a in answers] == list(range(0, 200, 2))
        assert len(client._open) <= 4


async def test_a_node_restarted_under_an_idle_connection_is_reached_again(tmp_path):
    node = NodeProcess("async-restart", tmp_path).start()
    try:
        board = _board()
        async with AsyncLeaderboardClient(node.url, connections=1) as client:
            await client.create_leaderboard(board)
            node.kill()
            node.start()  # same port; the client's idle connection is dead
            with pytest.raises(ApiError) as gone:  # an in-memory node without a data directory forgot it
                await client.get_leaderboard(board)
            assert gone.value.status == 404
            await client.create_leaderboard(board)
            assert (await client.write_record(board, "p1", score=9))["score"] == 9
    finally:
        node.terminate()


async def test_a_server_that_never_answers_times_out_and_its_connection_is_dropped():
    host = loopback_host()
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    port = free_port(host)
    server = await asyncio.start_server(silent, host, port)
    try:
        async with AsyncLeaderboardClient(f"http://{host}:{port}", connections=1, timeout=0.3) as client:
            with pytest.raises(TimeoutError):
                await client.around("b", "p1")
            assert not client._idle and not client._open
            with pytest.raises(TimeoutError):  # the next request opens a fresh connection
                await client.around("b", "p1")
            assert len(accepted) == 2
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_closes_mid_answer_is_an_error_not_a_retry():
    host = loopback_host()
    requests = 0

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await reader.readuntil(b"\r\n\r\n")
        requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"rec")
        await writer.drain()
        writer.close()

    port = free_port(host)
    server = await asyncio.start_server(half, host, port)
    try:
        async with AsyncLeaderboardClient(f"http://{host}:{port}", connections=1) as client:
            with pytest.raises(ConnectionError, match="middle of an answer"):
                await client.write_record("b", "p1", score=1)
        assert requests == 1  # a write whose answer was cut short is not sent twice
    finally:
        server.close()
        await server.wait_closed()


async def test_a_closed_client_refuses_requests(node):
    client = AsyncLeaderboardClient(node.url)
    await client.ready()
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.ready()


async def test_a_refused_oversized_body_leaves_the_client_usable(tmp_path):
    node = NodeProcess("async-limits", tmp_path, settings={"limits": {"max_body_bytes": 4096}}).start()
    try:
        board = _board()
        async with AsyncLeaderboardClient(node.url, connections=1) as client:
            await client.create_leaderboard(board)
            with pytest.raises(ApiError) as too_big:
                await client.write_batch(board, [{"owner_id": f"p{i}", "score": i} for i in range(500)])
            assert too_big.value.status == 413 and too_big.value.field == "body"
            assert (await client.write_record(board, "p1", score=4))["score"] == 4
            assert (await client.record(board, "p1"))["rank"] == 1
    finally:
        node.terminate()


async def _serve(answer):  # type: ignore[no-untyped-def]
    """A one-off server on loopback: ``answer(request_head, writer)`` per request received."""
    host = loopback_host()
    port = free_port(host)
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head)
                await answer(head, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    return server, f"http://{host}:{port}", seen


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_an_interim_100_continue_is_not_taken_for_the_answer():
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b'{"n": 1}'))

    server, url, _ = await _serve(answer)
    try:
        async with AsyncLeaderboardClient(url, connections=1) as client:
            assert await client.request("GET", "/x") == {"n": 1}
            assert await client.request("GET", "/y") == {"n": 1}
    finally:
        server.close()
        await server.wait_closed()


async def test_bytes_after_an_answer_close_the_connection_instead_of_answering_the_next_request():
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        n = b"2" if b"/second" in head else b"1"
        extra = b"HTTP/1.1 500 X\r\nContent-Length: 30\r\n\r\n" if b"/first" in head else b""
        writer.write(_ok(b'{"n": %s}' % n) + extra)

    server, url, seen = await _serve(answer)
    try:
        async with AsyncLeaderboardClient(url, connections=1) as client:
            assert await client.request("GET", "/first") == {"n": 1}
            await asyncio.sleep(0.05)
            assert await client.request("GET", "/second") == {"n": 2}  # on a new connection
    finally:
        server.close()
        await server.wait_closed()


async def test_the_host_header_names_host_and_port_only():
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(_ok(b"{}"))

    server, url, seen = await _serve(answer)
    try:
        host_port = url.split("://")[1]
        async with AsyncLeaderboardClient(url.replace("://", "://user:secret@"), connections=1) as client:
            await client.request("GET", "/x")
        assert f"Host: {host_port}\r\n".encode() in seen[0] and b"secret" not in seen[0]
    finally:
        server.close()
        await server.wait_closed()


async def test_closing_the_client_ends_requests_in_flight_and_keeps_no_connection():
    release = asyncio.Event()

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(_ok(b"{}"))

    server, url, _ = await _serve(answer)
    try:
        client = AsyncLeaderboardClient(url, connections=1)
        first = asyncio.create_task(client.request("GET", "/a"))
        second = asyncio.create_task(client.request("GET", "/b"))  # waits for the one connection
        await asyncio.sleep(0.1)
        await client.close()
        release.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert all(isinstance(r, (ConnectionError, RuntimeError)) for r in results), results
        assert not client._open and not client._idle
    finally:
        server.close()
        await server.wait_closed()


async def test_head_requests_are_refused_up_front(node):
    async with AsyncLeaderboardClient(node.url) as client:
        with pytest.raises(ValueError, match="HEAD"):
            await client.request_raw("HEAD", "/healthz")
