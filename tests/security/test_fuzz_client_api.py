"""Fuzzing the client API in process with hypothesis (bounded, derandomized).

Random JSON bodies (shaped like the real ones, or not at all), random query strings and
random path segments go to the real handlers through an aiohttp test server. Whatever
arrives, the answer is never a 5xx, always a JSON body (an error naming its field when it
is a refusal), and a refused request leaves every leaderboard, record and join as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from leaderboard_node.config import LimitSettings, Settings
from leaderboard_node.domain.leaderboards import Leaderboard, TournamentSettings
from leaderboard_node.domain.records import Operator
from leaderboard_node.node import Node, NodeState
from leaderboard_node.transport.auth import ApiKeys
from leaderboard_node.transport.client_api import create_client_app

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
SERVER_KEY, CLIENT_KEY = "fuzz-server-key-0123456789", "fuzz-client-key-0123456789"
BOARDS = ["fz-board", "fz-incr", "fz-decr", "fz-auth", "fz-asc"]
CUP = "fz-cup"
OWNERS = ["alice", "bob", "carol", "joined"]
FIELDS_OPTIONAL = {"not_found", "method_not_allowed", "node_not_ready"}


class Api:
    """A node's client app on a test server, driven from synchronous hypothesis tests."""

    def __init__(self, *, keys: ApiKeys | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        limits = LimitSettings(max_body_bytes=65536, max_metadata_bytes=512, max_batch_records=20, max_page_limit=50,
                               max_owner_ids=5, max_query_bytes=1024, body_timeout=2.0)
        self.node = Node(Settings(limits=limits))
        self.node.set_state(NodeState.READY)
        self._seed()
        self.server = TestServer(create_client_app(self.node, keys=keys))
        self.loop.run_until_complete(self.server.start_server())
        self.session = self.loop.run_until_complete(self._session())
        self.base = str(self.server.make_url("/")).rstrip("/")
        self.failures: list[logging.LogRecord] = []
        self._handler = logging.Handler(logging.ERROR)
        self._handler.emit = self.failures.append  # type: ignore[method-assign]
        logging.getLogger("leaderboard_node.client_api").addHandler(self._handler)

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def _seed(self) -> None:
        store, now = self.node.store, self.node.seconds()
        for board, operator, extra in (("fz-board", Operator.BEST, {"reset_schedule": "0 0 * * *"}),
                                       ("fz-incr", Operator.INCR, {}), ("fz-decr", Operator.DECR, {}),
                                       ("fz-auth", Operator.SET, {"authoritative": True}), ("fz-asc", Operator.BEST, {})):
            store.create_leaderboard(Leaderboard(board, operator=operator, **extra))
        store.create_leaderboard(Leaderboard(CUP, tournament=TournamentSettings(
            start_time=now - 60, duration=86400, max_size=6, max_num_score=3, join_required=False)))
        for index, owner in enumerate(OWNERS[:3]):
            for board in BOARDS + [CUP]:
                store.write_record(board, owner, score=10 * index, subscore=index, metadata='{"k":1}', now=now)
        store.join_tournament(CUP, "joined", now=now)

    def request(self, method: str, raw_path: str, body: bytes | None,
                headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        async def go() -> tuple[int, str, bytes]:
            async with self.session.request(method, URL(self.base + raw_path, encoded=True), data=body,
                                            headers={"Content-Type": "application/json", **(headers or {})},
                                            allow_redirects=False) as response:
                return response.status, response.headers.get("Content-Type", ""), await response.read()

        return self.loop.run_until_complete(go())

    def fingerprint(self) -> Any:
        store, now = self.node.store, self.node.seconds()
        definitions = sorted((lb.id, lb.incarnation) for lb in store.leaderboards.definitions())
        digests = [(lid, inc, bucket.expiry, bucket.digest) for lid, inc, bucket in store.buckets()]
        joins = sorted((lid, inc, expiry, tuple(sorted(owners))) for lid, inc, expiry, owners in store.joins())
        return definitions, sorted(digests), joins, store.record_count(), now // 3600

    def close(self) -> None:
        logging.getLogger("leaderboard_node.client_api").removeHandler(self._handler)
        self.loop.run_until_complete(self.session.close())
        self.loop.run_until_complete(self.server.close())
        self.loop.close()


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    instance = Api()
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def keyed_api() -> Iterator[Api]:
    instance = Api(keys=ApiKeys.of(server=SERVER_KEY, client=CLIENT_KEY))
    yield instance
    instance.close()


# ------------------------------------------------------------------------- strategies

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 0, -1, "", "0 0 * * *", "desc", "asc", "incr", "decr", "set", "best"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
ids = st.one_of(st.sampled_from(BOARDS + [CUP, "missing", "x" * 129, "a/b", "é", " ", "..", "%", "a b"]),
                st.text(max_size=12))
owners = st.one_of(st.sampled_from(OWNERS + ["new-owner", "x" * 200, "", "a,b"]), st.text(max_size=12))
FIELDS = ["id", "owner_id", "score", "subscore", "username", "metadata", "operator", "sort_order", "reset_schedule",
          "authoritative", "enable_ranks", "title", "description", "category", "start_time", "end_time", "duration",
          "max_size", "max_num_score", "join_required", "records"]


@st.composite
def record_like(draw: Any) -> dict[str, Any]:
    """Mostly a valid record write, with one field replaced by anything now and then."""
    out: dict[str, Any] = {"owner_id": draw(st.sampled_from(OWNERS + ["new-owner"])),
                           "score": draw(st.integers(-5, 100))}
    for field in draw(st.lists(st.sampled_from(["subscore", "username", "metadata", "operator", "owner_id", "score",
                                                "extra"]), max_size=2, unique=True)):
        out[field] = draw(json_values)
    return out


@st.composite
def shaped_objects(draw: Any) -> dict[str, Any]:
    """An object with the API's field names and values that are right, wrong or strange."""
    fields = draw(st.lists(st.sampled_from(FIELDS), max_size=7, unique=True))
    out: dict[str, Any] = {}
    for field in fields:
        if field in ("id", "owner_id"):
            out[field] = draw(st.one_of(ids, owners, json_values))
        elif field == "records":
            out[field] = draw(st.lists(record_like() | json_values, max_size=4))
        else:
            out[field] = draw(json_values)
    return out


bodies = st.one_of(
    st.none(),
    shaped_objects().map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda o: json.dumps(o).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"{", b"[]", b"null", b'{"metadata": NaN}', b'{"score": Infinity, "owner_id": "a"}',
                     b'{"owner_id": "a", "score": 1e400}', b"\xff\xfe", b'{"a":' * 300 + b"1" + b"}" * 300]),
)
QUERY_KEYS = ["limit", "cursor", "owner_ids", "expiry", "category_start", "category_end", "start_time", "end_time",
              "unknown"]
query_values = st.one_of(st.sampled_from(["", "0", "1", "-1", "10", "51", "99999999999999999999999", "1e3", " 5",
                                          "true", "alice,bob", ",,,", "AQEAAAAAAAAAAAADYWJj", "A" * 1100]),
                         st.integers(-(2**65), 2**65).map(str), st.text(max_size=20))
queries = st.lists(st.tuples(st.sampled_from(QUERY_KEYS), query_values), max_size=5).map(
    lambda pairs: "&".join(f"{quote(k)}={quote(v, safe=',')}" for k, v in pairs))


@st.composite
def requests(draw: Any) -> tuple[str, str, bytes | None]:
    prefix = draw(st.sampled_from(["/v1/leaderboards", "/v1/tournaments"]))
    board, owner = quote(draw(ids), safe=""), quote(draw(owners), safe="")
    method, path = draw(st.sampled_from([
        ("POST", prefix), ("GET", prefix), ("GET", f"{prefix}/{board}"), ("DELETE", f"{prefix}/{board}"),
        ("POST", f"/v1/tournaments/{board}/join"), ("POST", f"{prefix}/{board}/records"),
        ("GET", f"{prefix}/{board}/records"), ("POST", f"{prefix}/{board}/records/batch"),
        ("GET", f"{prefix}/{board}/records/around/{owner}"), ("GET", f"{prefix}/{board}/records/{owner}"),
        ("PUT", f"{prefix}/{board}/records/{owner}"), ("DELETE", f"{prefix}/{board}/records/{owner}"),
        ("GET", f"{prefix}/{board}/digest"), ("PATCH", f"{prefix}/{board}"), ("GET", "/healthz"),
        ("GET", "/openapi.json"),
    ]))
    query = draw(queries)
    return method, f"{path}?{query}" if query else path, draw(bodies)


# ------------------------------------------------------------------------------ checks


def _check(api: Api, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None) -> int:
    before = api.fingerprint()
    status, content_type, raw = api.request(method, path, body, headers)
    assert status < 500, (status, raw[:300])
    assert content_type.startswith("application/json"), (status, content_type, raw[:200])
    answer = json.loads(raw)
    if status >= 400:
        error = answer["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
        assert "field" in error or error["code"] in FIELDS_OPTIONAL, error
        assert api.fingerprint() == before, f"a refused {method} {path} changed the store"
    return status


@FUZZ
@given(requests())
def test_random_requests_never_get_a_5xx_and_refusals_change_nothing(api, request):
    _check(api, *request)


@settings(FUZZ, max_examples=100)
@given(st.sampled_from(BOARDS + [CUP]), st.lists(record_like(), min_size=1, max_size=12))
def test_random_batches_are_checked_before_anything_is_written(api, board, records):
    before = api.fingerprint()
    status = _check(api, "POST", f"/v1/leaderboards/{board}/records/batch", json.dumps({"records": records}).encode())
    if status >= 400:
        assert api.fingerprint() == before


@FUZZ
@given(st.sampled_from(BOARDS + [CUP]), st.sampled_from(OWNERS), json_values)
def test_random_metadata_is_stored_as_given_or_refused(api, board, owner, metadata):
    payload = {"owner_id": owner, "score": 1, "operator": "set", "metadata": metadata}
    status = _check(api, "PUT", f"/v1/leaderboards/{board}/records/{owner}",
                    json.dumps({k: v for k, v in payload.items() if k != "owner_id"}).encode())
    if status == 200 and metadata is not None:  # null means "not given": the record keeps its metadata
        stored = api.request("GET", f"/v1/leaderboards/{board}/records/{owner}", None)[2]
        assert json.loads(stored)["metadata"] == metadata


@FUZZ
@given(st.one_of(
    st.text(max_size=40).map(lambda t: {"Authorization": t}),
    st.text(max_size=40).map(lambda t: {"Authorization": f"Bearer {t}"}),
    st.text(max_size=40).map(lambda t: {"X-Api-Key": t}),
    st.sampled_from([{}, {"Authorization": f"Bearer {CLIENT_KEY}"}, {"Authorization": f"bearer  {SERVER_KEY} "},
                     {"X-Api-Key": CLIENT_KEY}, {"Authorization": f"Bearer {CLIENT_KEY}{CLIENT_KEY}"}]),
), requests())
def test_random_credentials_never_get_a_5xx_and_refusals_change_nothing(keyed_api, headers, request):
    latin1 = {k: v for k, v in headers.items() if all(" " <= c <= "~" for c in v)}  # what HTTP headers can carry
    method, path, body = request
    _check(keyed_api, method, path, body, latin1)


def test_the_fuzzed_nodes_logged_no_unexpected_exception_and_still_serve(api, keyed_api):
    """The errors middleware logs every exception it turns into a 500: none, over all the runs above."""
    for instance in (api, keyed_api):
        assert not instance.failures, [record.getMessage() for record in instance.failures[:3]]
    assert api.request("GET", "/v1/leaderboards/fz-board/records", None)[0] == 200
