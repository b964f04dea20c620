"""The client port's HTTP server (``transport.http_server``) on real node processes: what a
client of the API relies on below the handlers. Raw sockets, so that each test controls the
bytes and their timing: pipelining, chunked and compressed bodies, ``Expect: 100-continue``,
HEAD, slow and cut-short requests, the HTTP-level limits and deadlines, idle connections,
per-route metrics, graceful stop and TLS.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import shutil
import signal
import socket
import ssl
import time
import zlib
from dataclasses import dataclass

import pytest

from leaderboard_node.config import Settings
from leaderboard_node.server import NodeServer
from leaderboard_node.transport.http_server import PIPELINE_DEPTH, Router

from ..harness import NodeProcess

SERVER_KEY = "http-server-key-0123456789abcdef"
CLIENT_KEY = "http-client-key-0123456789abcdef"
BOARD = "http-board"
LIMITS = {"body_timeout": 1.0, "header_timeout": 1.0, "idle_timeout": 1.5, "max_body_bytes": 65536,
          "max_header_bytes": 2048, "max_headers": 16}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess("http-node", tmp_path_factory.mktemp("http-node"), settings={"limits": LIMITS},
                          env={"LEADERBOARD_AUTH__SERVER_KEY": SERVER_KEY, "LEADERBOARD_AUTH__CLIENT_KEY": CLIENT_KEY})
    process.start()
    with process.client(api_key=SERVER_KEY) as admin:
        admin.create_leaderboard(BOARD)
        admin.write_record(BOARD, "keeper", 7)
    yield process
    process.terminate()
    assert not process.log_errors(), process.log_errors()[:3]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):  # type: ignore[no-untyped-def]
        return json.loads(self.body)


class Raw:
    """One raw connection to a node: bytes out, answers read back by hand (so HEAD and
    interim answers are read as a client that knows them would)."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0, context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        self.sock = context.wrap_socket(sock, server_hostname=host) if context is not None else sock
        self.buffer = b""

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"the node closed the connection; unread: {self.buffer[:200]!r}")
        self.buffer += chunk

    def answer(self, *, head: bool = False) -> Answer:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = 0 if head or status < 200 or status in (204, 304) else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(status, headers, body)

    def closed_within(self, seconds: float) -> bool:
        """True once the node closes the connection (EOF or reset) within ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (TimeoutError, socket.timeout):
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True

    def nothing_within(self, seconds: float) -> bool:
        """True when no byte arrives (and the connection stays open) for ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            return not self.sock.recv(1, socket.MSG_PEEK)
        except (TimeoutError, socket.timeout):
            return True


def message(method: str, path: str, body: bytes | dict | None = None, *, key: str | None = SERVER_KEY,
            headers: dict[str, str] | None = None, length: bool = True) -> bytes:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if data is not None and length:
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (data if data is not None and length else b"")


def _raw(node: NodeProcess, **kwargs) -> Raw:  # type: ignore[no-untyped-def]
    return Raw(node.host, node.port, **kwargs)


def _score(node: NodeProcess, owner: str) -> int | None:
    with _raw(node) as conn:
        conn.send(message("GET", f"/v1/leaderboards/{BOARD}/records/{owner}"))
        answer = conn.answer()
    return answer.json()["score"] if answer.status == 200 else None


# ------------------------------------------------------------------------ keep-alive


def test_requests_pipelined_in_one_write_are_answered_in_order(node):
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", {"owner_id": "piped", "score": 11})
                  + message("GET", f"/v1/leaderboards/{BOARD}/records/piped")
                  + message("GET", "/v1/nowhere")
                  + message("GET", "/healthz"))
        answers = [conn.answer() for _ in range(4)]
        assert [a.status for a in answers] == [200, 200, 404, 200]
        assert answers[0].json()["score"] == 11 and answers[1].json()["score"] == 11
        assert answers[2].json()["error"]["code"] == "not_found"
        assert all("connection" not in a.headers for a in answers)
        conn.send(message("GET", "/readyz"))  # and the connection stays usable
        assert conn.answer().json()["ready"] is True


def test_a_pipeline_deeper_than_the_servers_is_paused_and_answered_whole(node):
    count = PIPELINE_DEPTH * 8
    with node.client(api_key=SERVER_KEY) as admin:
        admin.create_leaderboard("deep")
        for i in range(3):
            admin.write_record("deep", f"p{i}", i)
    with _raw(node) as conn:
        conn.send(b"".join(message("GET", f"/v1/leaderboards/deep/records/around/p1?limit={i % 3 + 1}")
                           for i in range(count)))
        answers = [conn.answer() for _ in range(count)]
    assert [a.status for a in answers] == [200] * count
    assert [len(a.json()["records"]) for a in answers[:3]] == [1, 2, 3]  # in order


def test_a_large_body_pipelined_with_small_requests_is_read_whole(node):
    records = [{"owner_id": f"bulk-{i}", "score": i} for i in range(600)]
    body = json.dumps({"records": records}).encode()
    assert 16 * 1024 < len(body) < LIMITS["max_body_bytes"]
    with _raw(node) as conn:
        conn.send(message("GET", "/healthz") + message("POST", f"/v1/leaderboards/{BOARD}/records/batch", body)
                  + message("GET", f"/v1/leaderboards/{BOARD}/records/bulk-599"))
        first, batch, last = conn.answer(), conn.answer(), conn.answer()
    assert first.status == 200 and batch.status == 200 and len(batch.json()["records"]) == 600
    assert last.json()["score"] == 599


def test_head_answers_the_get_headers_without_a_body_and_keeps_the_connection(node):
    path = f"/v1/leaderboards/{BOARD}/records/keeper"
    with _raw(node) as conn:
        conn.send(message("GET", path))
        got = conn.answer()
        conn.send(message("HEAD", path))
        head = conn.answer(head=True)
        assert head.status == 200 and head.headers["content-length"] == str(len(got.body))
        assert head.headers["content-type"] == "application/json"
        assert conn.nothing_within(0.3), "HEAD answered with a body"
        conn.send(message("GET", "/healthz"))
        assert conn.answer().json() == {"status": "ok"}


def test_a_method_a_route_does_not_take_gets_405_naming_the_allowed_ones(node):
    with _raw(node) as conn:
        conn.send(message("PATCH", f"/v1/leaderboards/{BOARD}/records/keeper", b"{}"))
        answer = conn.answer()
    assert answer.status == 405 and answer.json()["error"]["code"] == "method_not_allowed"
    assert set(answer.headers["allow"].split(",")) == {"DELETE", "GET", "HEAD", "PUT"}


def test_an_idle_connection_is_closed_after_the_idle_timeout(node):
    with _raw(node) as used, _raw(node) as silent:
        used.send(message("GET", "/healthz"))
        assert used.answer().status == 200
        started = time.monotonic()
        assert used.closed_within(5) and silent.closed_within(5)
        assert LIMITS["idle_timeout"] - 0.3 <= time.monotonic() - started <= LIMITS["idle_timeout"] + 2


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(node):
    with _raw(node) as conn:
        conn.send(message("GET", f"/v1/leaderboards/{BOARD}/records/keeper"))
        conn.sock.shutdown(socket.SHUT_WR)
        answer = conn.answer()
        assert answer.status == 200 and answer.json()["score"] == 7
        assert conn.closed_within(3)


def test_a_client_that_stops_sending_mid_body_gets_a_400_naming_the_body(node):
    body = json.dumps({"owner_id": "cut", "score": 3}).encode()
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", body, length=False,
                          headers={"Content-Length": str(len(body))}) + body[:5])
        time.sleep(0.2)  # the handler waits for the rest of the body, which will not come
        conn.sock.shutdown(socket.SHUT_WR)
        answer = conn.answer()
        assert answer.status == 400 and answer.json()["error"]["field"] == "body"
        assert answer.headers.get("connection") == "close"
        assert conn.closed_within(3)
    assert _score(node, "cut") is None


# ----------------------------------------------------------------------------- bodies


def test_a_chunked_request_body_is_read_whole(node):
    body = json.dumps({"owner_id": "chunky", "score": 23}).encode()
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", headers={"Transfer-Encoding": "chunked",
                                                                                 "Content-Type": "application/json"}))
        for piece in (body[:7], body[7:19], body[19:]):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.05)
        conn.send(b"0\r\n\r\n")
        answer = conn.answer()
    assert answer.status == 200 and answer.json()["score"] == 23
    assert _score(node, "chunky") == 23


def test_a_chunked_body_that_stalls_gets_408_and_the_connection_closed(node):
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", headers={"Transfer-Encoding": "chunked"})
                  + b"5\r\n{\"own\r\n")
        started = time.monotonic()
        answer = conn.answer()
        assert answer.status == 408 and answer.json()["error"] == {
            "code": "body_timeout", "message": "the request body did not arrive within 1 seconds", "field": "body"}
        assert time.monotonic() - started < LIMITS["body_timeout"] + 2
        assert answer.headers["connection"] == "close"
        conn.send(b"0\r\n\r\n")  # the rest arrives late: read and dropped, then the connection closes
        assert conn.closed_within(3)
    assert _score(node, "keeper") == 7


def test_expect_100_continue_gets_the_interim_answer_when_the_body_is_wanted(node):
    body = json.dumps({"owner_id": "patient", "score": 5}).encode()
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", body, length=False,
                          headers={"Expect": "100-continue", "Content-Length": str(len(body))}))
        interim = conn.answer()
        assert interim.status == 100
        conn.send(body)
        answer = conn.answer()
        assert answer.status == 200 and answer.json()["score"] == 5
        conn.send(message("GET", "/healthz"))  # kept alive
        assert conn.answer().status == 200


def test_a_request_refused_before_its_body_is_not_asked_for_it(node):
    body = json.dumps({"owner_id": "nobody", "score": 5}).encode()
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", body, key=None, length=False,
                          headers={"Expect": "100-continue", "Content-Length": str(len(body))}))
        answer = conn.answer()
        assert answer.status == 401 and answer.json()["error"]["field"] == "authorization"
        assert answer.headers["connection"] == "close"  # the body may or may not follow: start afresh
    assert _score(node, "nobody") is None


def test_a_declared_body_over_the_limit_gets_413_at_once_and_the_connection_closed(node):
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records/batch", length=False,
                          headers={"Content-Length": str(LIMITS["max_body_bytes"] * 100)}) + b'{"records": [')
        answer = conn.answer()
        assert answer.status == 413 and answer.json()["error"]["code"] == "body_too_large"
        assert answer.headers["connection"] == "close"
        assert conn.closed_within(LIMITS["body_timeout"] + 12)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "zstd"])
def test_a_compressed_body_is_read(node, encoding):
    import zstandard

    owner = f"packed-{encoding}"
    body = json.dumps({"owner_id": owner, "score": 31}).encode()
    packed = {"gzip": gzip.compress, "deflate": zlib.compress, "zstd": zstandard.ZstdCompressor().compress,
              "raw-deflate": lambda b: (lambda c: c.compress(b) + c.flush())(zlib.compressobj(wbits=-15))}[encoding](body)
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", packed,
                          headers={"Content-Encoding": encoding.replace("raw-", "")}))
        assert conn.answer().json()["score"] == 31


@pytest.mark.parametrize(("encoding", "status", "field"), [
    ("gzip", 400, "body"),  # not gzip at all
    ("br", 415, "content-encoding"),
])
def test_a_body_the_node_cannot_decode_is_refused_naming_it(node, encoding, status, field):
    with _raw(node) as conn:
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", b'{"owner_id": "x", "score": 1}',
                          headers={"Content-Encoding": encoding}))
        answer = conn.answer()
    assert answer.status == status and answer.json()["error"]["field"] == field
    assert _score(node, "x") is None


def test_a_client_that_closes_mid_request_changes_nothing_and_logs_no_error(node):
    body = json.dumps({"owner_id": "quitter", "score": 99}).encode()
    with _raw(node) as conn:  # mid-body: the handler is waiting for the rest
        conn.send(message("POST", f"/v1/leaderboards/{BOARD}/records", body, length=False,
                          headers={"Content-Length": str(len(body))}) + body[:10])
        time.sleep(0.2)
    with _raw(node) as conn:  # mid-headers
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: te")
        time.sleep(0.1)
    with _raw(node) as conn:  # pipelined requests, then gone before the answers
        conn.send(message("GET", "/healthz") * 20)
    time.sleep(0.3)
    assert _score(node, "quitter") is None
    assert not node.log_errors(), node.log_errors()[:3]


# ---------------------------------------------------------------------- limits and HTTP


def test_a_request_line_over_the_limit_gets_414_naming_the_url(node):
    with _raw(node) as conn:
        conn.send(message("GET", "/healthz?" + "a" * (LIMITS["max_header_bytes"] + 10)))
        answer = conn.answer()
        assert answer.status == 414 and answer.json()["error"] == {
            "code": "url_too_long", "message": "the request line is longer than 2048 bytes", "field": "url"}
        assert conn.closed_within(3)


@pytest.mark.parametrize(("headers", "code"), [
    ({f"X-Filler-{i}": "y" for i in range(LIMITS["max_headers"])}, "too_many_headers"),
    ({"X-Big": "b" * LIMITS["max_header_bytes"]}, "header_too_large"),
])
def test_too_many_headers_or_a_long_header_line_get_431_naming_the_headers(node, headers, code):
    with _raw(node) as conn:
        conn.send(message("GET", "/healthz", headers=headers))
        answer = conn.answer()
        assert answer.status == 431 and answer.json()["error"]["code"] == code
        assert answer.json()["error"]["field"] == "headers"
        assert conn.closed_within(3)
    with _raw(node) as conn:  # one fewer, one shorter: served
        fewer = dict(list(headers.items())[:-3]) if len(headers) > 1 else {"X-Big": "b" * 1000}  # + Host, key
        conn.send(message("GET", "/healthz", headers=fewer))
        assert conn.answer().status == 200


def test_headers_that_never_end_are_refused_before_they_fill_memory(node):
    with _raw(node) as conn:
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        try:
            for _ in range(200):  # 200 x 8 KiB of one header line that never ends
                conn.send(b"e" * 8192)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = conn.answer()
    assert answer.status == 431 and answer.json()["error"]["field"] == "headers"


@pytest.mark.parametrize(("data", "reason"), [
    (b"GET /healthz HTTP/1.1\r\n\r\n", "Host header"),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host header appears more than once"),
    (b"BREW /healthz HTTP/1.1\r\nHost: a\r\n\r\n", "not valid HTTP/1.1"),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "not valid HTTP/1.1"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "TLS on a plain HTTP port"),
])
def test_malformed_http_gets_a_json_400_and_the_connection_closed(node, data, reason):
    with _raw(node) as conn:
        conn.send(data)
        answer = conn.answer()
        assert answer.status == 400 and reason in answer.json()["error"]["message"], answer
        assert answer.headers["connection"] == "close" and conn.closed_within(3)


def test_headers_in_pieces_within_the_deadline_are_served(node):
    with _raw(node) as conn:
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"\r\n"):
            conn.send(piece)
            time.sleep(LIMITS["header_timeout"] / 10)  # 0.3 s in all, well within the deadline
        assert conn.answer().status == 200


def test_the_header_deadline_holds_for_each_request_of_a_kept_alive_connection(node):
    with _raw(node) as conn:
        conn.send(message("GET", "/healthz"))
        assert conn.answer().status == 200
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # then nothing: the headers never end
        started = time.monotonic()
        answer = conn.answer()
        assert answer.status == 408 and answer.json()["error"]["code"] == "header_timeout"
        assert time.monotonic() - started < LIMITS["header_timeout"] + 1.5
        assert conn.closed_within(3)


def test_requests_are_counted_per_route_and_status(node):
    def count(route: str, status: int) -> float:
        with _raw(node) as conn:
            conn.send(message("GET", "/metrics"))
            text = conn.answer().body.decode()
        found = re.search(rf'leaderboard_http_requests_total\{{route="{re.escape(route)}",status="{status}"\}} (\S+)',
                          text)
        return float(found.group(1)) if found else 0.0

    record, before = "/v1/leaderboards/{id}/records/{owner_id}", {}
    for key in ((record, 200), (record, 404), ("unmatched", 404)):
        before[key] = count(*key)
    with _raw(node) as conn:
        conn.send(message("GET", f"/v1/leaderboards/{BOARD}/records/keeper")
                  + message("HEAD", f"/v1/leaderboards/{BOARD}/records/keeper")
                  + message("GET", f"/v1/leaderboards/{BOARD}/records/ghost") + message("GET", "/v1/nowhere"))
        conn.answer(), conn.answer(head=True), conn.answer(), conn.answer()
    assert count(record, 200) == before[(record, 200)] + 2
    assert count(record, 404) == before[(record, 404)] + 1
    assert count("unmatched", 404) == before[("unmatched", 404)] + 1


# ---------------------------------------------------------------------------- stopping


def test_stopping_finishes_the_request_in_flight_and_closes_idle_connections(tmp_path):
    node = NodeProcess("stopping", tmp_path, settings={"limits": {"body_timeout": 10.0}}).start()
    try:
        with node.client() as admin:
            admin.create_leaderboard(BOARD)
        body = json.dumps({"owner_id": "last-word", "score": 42}).encode()
        with _raw(node) as idle, _raw(node) as busy:
            idle.send(message("GET", "/healthz", key=None))
            assert idle.answer().status == 200
            busy.send(message("POST", f"/v1/leaderboards/{BOARD}/records", key=None, length=False,
                              headers={"Content-Length": str(len(body))}) + body[:9])
            time.sleep(0.3)  # the handler has begun and waits for the rest of the body
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
            assert idle.closed_within(5), "an idle connection outlived the stop"
            time.sleep(0.3)
            busy.send(body[9:])
            answer = busy.answer()
            assert answer.status == 200 and answer.json()["score"] == 42
            assert answer.headers["connection"] == "close" and busy.closed_within(5)
        assert node.process.wait(timeout=15) == 0
    finally:
        node.terminate()
    assert not node.log_errors(), node.log_errors()[:3]


def test_stopping_answers_a_long_poll_at_once_rather_than_after_its_wait(tmp_path):
    node = NodeProcess("stopping-poll", tmp_path).start()
    try:
        with _raw(node) as poll:
            poll.send(message("GET", "/v1/events?wait=60", key=None))
            time.sleep(0.5)  # the handler waits for an event
            assert node.process is not None
            stopped_at = time.monotonic()
            node.process.send_signal(signal.SIGTERM)
            answer = poll.answer()
            assert answer.status == 200 and answer.json()["events"] == []
            assert node.process.wait(timeout=15) == 0
            assert time.monotonic() - stopped_at < 10, "the stop waited for the long poll"
    finally:
        node.terminate()
    assert not node.log_errors(), node.log_errors()[:3]


# --------------------------------------------------------------------------------- TLS


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_over_tls_requests_pipeline_and_a_silent_handshake_is_cut_at_the_header_deadline(tmp_path):
    from ..security.test_tls import _self_signed

    node = NodeProcess("http-tls", tmp_path)
    cert, key = _self_signed(tmp_path, "http-tls", san=f"IP:{node.host}")
    node.settings = {"tls": {"cert_file": str(cert), "key_file": str(key)}, "limits": {"header_timeout": 1.0}}
    node.ssl_context = ssl.create_default_context(cafile=str(cert))
    try:
        node.start()
        with Raw(node.host, node.port, context=ssl.create_default_context(cafile=str(cert))) as conn:
            conn.send(message("GET", "/healthz", key=None) + message("GET", "/readyz", key=None))
            assert [conn.answer().status, conn.answer().status] == [200, 200]
        with socket.create_connection((node.host, node.port), timeout=5) as silent:  # no ClientHello
            started = time.monotonic()
            silent.settimeout(5)
            try:
                assert silent.recv(1) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < 3
    finally:
        node.terminate()


# ----------------------------------------------------------------------------- routing


async def test_every_route_resolves_as_aiohttps_router_resolves_it():
    """The compiled router against aiohttp's own, on the node's real client app: the same
    route and match for every route's path, the same 404/405 (and allowed methods) elsewhere."""
    from aiohttp.test_utils import make_mocked_request
    from yarl import URL

    app = NodeServer(Settings()).client_app
    router = Router(app)
    segments = ["bench", "a%2Fb", "a%20b", "around", "batch", "records", "x.y:z@w+v-u_t"]
    paths = {"/", "/v1", "/v1/", "/v1/leaderboards/", "/healthz/", "/nowhere",
             "/v1/leaderboards/a/records/around/b/c", "/v1/leaderboards/a/records/"}
    for route in app.router.routes():
        canonical = route.resource.canonical
        for segment in segments:
            paths.add(re.sub(r"\{[^}]+\}", segment, canonical))
    assert len(paths) > 50
    for path in sorted(paths):
        for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"):
            expected = await app.router.resolve(make_mocked_request(method, path, app=app))
            got = router.resolve(method, URL.build(path=path, encoded=True).path_safe)
            if expected.http_exception is None:
                assert isinstance(got, tuple), (method, path, got)
                assert got[0] is expected.route and got[2] == dict(expected), (method, path)
            else:
                assert got == set(getattr(expected.http_exception, "allowed_methods", set())), (method, path)
    await asyncio.sleep(0)


async def test_routes_middlewares_and_signals_added_to_the_app_are_served():
    """Whatever the client app registers is served: here a route and a middleware added after
    ``create_client_app`` (as a new feature would add them), and the app's signals."""
    from aiohttp import web

    from leaderboard_node.node import Node
    from leaderboard_node.transport.client_api import create_client_app
    from leaderboard_node.transport.http_server import HttpServer
    from leaderboard_node.transport.json_body import json_response

    from ..harness import free_port

    events: list[str] = []
    app = create_client_app(Node(Settings()))

    async def extra(request: web.Request) -> web.Response:
        return json_response({"thing": request.match_info["thing"], "route": request.match_info.route.resource.canonical,
                              "remote": request.remote, "tagged": request["tag"]})

    @web.middleware
    async def tag(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        request["tag"] = "yes"
        response = await handler(request)
        response.headers["X-Tagged"] = "1"
        return response

    app.router.add_get("/v1/extra/{thing}", extra)
    app.middlewares.append(tag)
    app.on_startup.append(lambda app: _note(events, "startup"))
    app.on_cleanup.append(lambda app: _note(events, "cleanup"))
    server = HttpServer(app, limits=Settings().limits)
    port = free_port("127.0.0.1")
    await server.start("127.0.0.1", port)
    try:
        assert events == ["startup"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/extra/a%20b HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/extra/a/b HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await _read_answer(reader)
        second = await _read_answer(reader)
        writer.close()
    finally:
        await server.stop()
    assert events == ["startup", "cleanup"]
    assert first[0] == 200 and b"x-tagged: 1" in first[1].lower()
    assert json.loads(first[2]) == {"thing": "a b", "route": "/v1/extra/{thing}", "remote": "127.0.0.1", "tagged": "yes"}
    assert second[0] == 404 and json.loads(second[2])["error"]["code"] == "not_found"


async def _note(events: list[str], event: str) -> None:
    events.append(event)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    return int(head.split()[1]), head, await asyncio.wait_for(reader.readexactly(length), 5)
