"""Client API keys on a real node: every route family with no key, a wrong key and the right one.

The node reads its server and client keys from files. Reads and ordinary writes take the
client key; creating and deleting leaderboards and tournaments, deleting records and writing
to authoritative leaderboards take the server key, which is accepted everywhere. A refusal is
a JSON error naming ``authorization`` and changes nothing.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from leaderboard_client import LeaderboardClient
from leaderboard_node.config import AuthSettings, Settings, load_settings
from leaderboard_node.node import Node
from leaderboard_node.transport.auth import ApiKeys, Role
from leaderboard_node.transport.client_api import create_client_app

from ..harness import NodeProcess
from .conftest import CLIENT_KEY, SERVER_KEY, WRONG_KEY, write_secret

BOARD, AUTHORITATIVE, CUP = "sec-board", "sec-authoritative", "sec-cup"


@pytest.fixture(scope="module", autouse=True)
def seeded(keyed_node):
    with keyed_node.client(api_key=SERVER_KEY) as admin:
        admin.create_leaderboard(BOARD)
        admin.create_leaderboard(AUTHORITATIVE, authoritative=True)
        admin.create_tournament(CUP, duration=86400, start_time=int(time.time()) - 60)
        admin.write_record(BOARD, "keeper", 7)
        admin.write_record(AUTHORITATIVE, "keeper", 7)


@dataclass(frozen=True)
class Operation:
    """A request; ``prepare`` (given a server-key client) makes what it acts on and returns it."""

    name: str
    prepare: Callable[[LeaderboardClient], tuple[str, str, Any]]

    def __str__(self) -> str:
        return self.name


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _fixed(method: str, path: str, body: Any = None) -> Callable[[LeaderboardClient], tuple[str, str, Any]]:
    return lambda admin: (method, path, body)


def _new_board(admin: LeaderboardClient) -> tuple[str, str, Any]:
    board = _fresh("victim")
    admin.create_leaderboard(board)
    return "DELETE", f"/v1/leaderboards/{board}", None


def _new_cup(admin: LeaderboardClient) -> tuple[str, str, Any]:
    cup = _fresh("victim-cup")
    admin.create_tournament(cup, duration=60)
    return "DELETE", f"/v1/tournaments/{cup}", None


def _new_record(admin: LeaderboardClient) -> tuple[str, str, Any]:
    owner = _fresh("doomed")
    admin.write_record(BOARD, owner, 1)
    return "DELETE", f"/v1/leaderboards/{BOARD}/records/{owner}", None


CLIENT_OPERATIONS = [
    Operation("list leaderboards", _fixed("GET", "/v1/leaderboards")),
    Operation("get a leaderboard", _fixed("GET", f"/v1/leaderboards/{BOARD}")),
    Operation("list tournaments", _fixed("GET", "/v1/tournaments")),
    Operation("get a tournament", _fixed("GET", f"/v1/tournaments/{CUP}")),
    Operation("join a tournament", lambda admin: ("POST", f"/v1/tournaments/{CUP}/join", {"owner_id": _fresh("joiner")})),
    Operation("write a record", lambda admin: ("POST", f"/v1/leaderboards/{BOARD}/records",
                                               {"owner_id": _fresh("writer"), "score": 3})),
    Operation("put a record", lambda admin: ("PUT", f"/v1/leaderboards/{BOARD}/records/{_fresh('putter')}",
                                             {"score": 4})),
    Operation("write a batch", lambda admin: ("POST", f"/v1/leaderboards/{BOARD}/records/batch",
                                              {"records": [{"owner_id": _fresh("batcher"), "score": 5}]})),
    Operation("write a tournament record", lambda admin: ("POST", f"/v1/tournaments/{CUP}/records",
                                                          {"owner_id": _fresh("player"), "score": 6})),
    Operation("list records", _fixed("GET", f"/v1/leaderboards/{BOARD}/records?limit=5&owner_ids=keeper")),
    Operation("list tournament records", _fixed("GET", f"/v1/tournaments/{CUP}/records")),
    Operation("get a record", _fixed("GET", f"/v1/leaderboards/{BOARD}/records/keeper")),
    Operation("records around an owner", _fixed("GET", f"/v1/leaderboards/{BOARD}/records/around/keeper")),
    Operation("read an authoritative leaderboard", _fixed("GET", f"/v1/leaderboards/{AUTHORITATIVE}/records")),
    Operation("digest", _fixed("GET", f"/v1/leaderboards/{BOARD}/digest")),
    Operation("cluster status", _fixed("GET", "/v1/cluster")),
]
SERVER_OPERATIONS = [
    Operation("create a leaderboard", lambda admin: ("POST", "/v1/leaderboards", {"id": _fresh("new")})),
    Operation("delete a leaderboard", _new_board),
    Operation("create a tournament", lambda admin: ("POST", "/v1/tournaments", {"id": _fresh("new-cup"), "duration": 60})),
    Operation("delete a tournament", _new_cup),
    Operation("delete a record", _new_record),
    Operation("write to an authoritative leaderboard", lambda admin: (
        "POST", f"/v1/leaderboards/{AUTHORITATIVE}/records", {"owner_id": _fresh("cheater"), "score": 10**9})),
    Operation("put to an authoritative leaderboard", lambda admin: (
        "PUT", f"/v1/leaderboards/{AUTHORITATIVE}/records/{_fresh('cheater')}", {"score": 10**9})),
    Operation("batch to an authoritative leaderboard", lambda admin: (
        "POST", f"/v1/leaderboards/{AUTHORITATIVE}/records/batch", {"records": [{"owner_id": "cheater", "score": 1}]})),
]
OPEN_PATHS = ["/healthz", "/readyz", "/metrics", "/openapi.json"]


def _call(node: NodeProcess, operation: tuple[str, str, Any], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    import http.client

    method, path, body = operation
    host, port = node.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        raw = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=raw, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        data = response.read()
        parsed = json.loads(data) if response.getheader("Content-Type", "").startswith("application/json") else data
        return response.status, parsed, dict(response.getheaders())
    finally:
        conn.close()


def _state(admin: LeaderboardClient) -> Any:
    """Everything a refused request could have changed."""
    return (
        sorted(lb["id"] for lb in admin.list_leaderboards(limit=1000)["leaderboards"]),
        sorted(t["id"] for t in admin.list_tournaments(limit=1000)["tournaments"]),
        [admin.digest(board) for board in (BOARD, AUTHORITATIVE, CUP)],
        admin.get_leaderboard(AUTHORITATIVE),
        admin.request("GET", f"/v1/tournaments/{CUP}")["size"],
    )


ALL = CLIENT_OPERATIONS + SERVER_OPERATIONS


@pytest.mark.parametrize("operation", ALL, ids=str)
def test_a_request_without_a_key_is_refused_with_401_and_changes_nothing(keyed_node, admin, operation):
    request = operation.prepare(admin)
    before = _state(admin)
    status, body, headers = _call(keyed_node, request, {})
    assert status == 401, body
    assert body["error"]["code"] == "api_key_missing" and body["error"]["field"] == "authorization"
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert _state(admin) == before


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {WRONG_KEY}"},
    {"X-Api-Key": WRONG_KEY},
    {"Authorization": f"Bearer {SERVER_KEY[:-1]}"},
    {"Authorization": f"Basic {SERVER_KEY}"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {WRONG_KEY}", "X-Api-Key": SERVER_KEY},  # Authorization wins: no mixing
], ids=["wrong-bearer", "wrong-x-api-key", "truncated", "basic-scheme", "empty-bearer", "wrong-bearer-right-header"])
@pytest.mark.parametrize("operation", [CLIENT_OPERATIONS[5], CLIENT_OPERATIONS[9], SERVER_OPERATIONS[0],
                                       SERVER_OPERATIONS[1]], ids=str)
def test_a_wrong_key_is_refused_with_401_and_changes_nothing(keyed_node, admin, operation, headers):
    request = operation.prepare(admin)
    before = _state(admin)
    status, body, _ = _call(keyed_node, request, headers)
    assert status == 401, body
    assert body["error"]["code"] == "api_key_invalid" and body["error"]["field"] == "authorization"
    assert _state(admin) == before


@pytest.mark.parametrize("operation", CLIENT_OPERATIONS, ids=str)
def test_the_client_key_may_read_and_write(keyed_node, admin, operation):
    status, body, _ = _call(keyed_node, operation.prepare(admin), {"Authorization": f"Bearer {CLIENT_KEY}"})
    assert 200 <= status < 300, body


@pytest.mark.parametrize("operation", SERVER_OPERATIONS, ids=str)
def test_a_client_key_cannot_do_what_needs_the_server_key(keyed_node, admin, operation):
    request = operation.prepare(admin)
    before = _state(admin)
    status, body, _ = _call(keyed_node, request, {"Authorization": f"Bearer {CLIENT_KEY}"})
    assert status == 403, body
    assert body["error"]["code"] in ("server_key_required", "authoritative_leaderboard")
    assert _state(admin) == before


def test_a_client_key_cannot_delete_a_leaderboard(keyed_node, admin):
    status, body, _ = _call(keyed_node, ("DELETE", f"/v1/leaderboards/{BOARD}", None), {"X-Api-Key": CLIENT_KEY})
    assert (status, body["error"]["code"], body["error"]["field"]) == (403, "server_key_required", "authorization")
    assert admin.get_leaderboard(BOARD)["id"] == BOARD


def test_a_client_key_cannot_write_to_an_authoritative_leaderboard(keyed_node, admin):
    with keyed_node.client(api_key=CLIENT_KEY) as client:
        status, raw = client.request_raw("POST", f"/v1/leaderboards/{AUTHORITATIVE}/records",
                                         json.dumps({"owner_id": "keeper", "score": 10**12}).encode())
        assert status == 403 and json.loads(raw)["error"]["code"] == "authoritative_leaderboard"
        assert client.record(AUTHORITATIVE, "keeper")["score"] == 7  # and it may still read it


@pytest.mark.parametrize("operation", ALL, ids=str)
def test_the_server_key_is_accepted_everywhere(keyed_node, admin, operation):
    status, body, _ = _call(keyed_node, operation.prepare(admin), {"Authorization": f"Bearer {SERVER_KEY}"})
    assert 200 <= status < 300, body


def test_the_key_may_come_in_x_api_key(keyed_node, admin):
    status, body, _ = _call(keyed_node, ("POST", "/v1/leaderboards", {"id": _fresh("via-header")}),
                            {"X-Api-Key": SERVER_KEY})
    assert status == 201, body


def test_x_api_key_is_used_when_authorization_carries_another_scheme(keyed_node):
    """A proxy's Basic credentials in Authorization do not hide the key in X-Api-Key."""
    status, body, _ = _call(keyed_node, ("GET", "/v1/leaderboards", None),
                            {"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": CLIENT_KEY})
    assert status == 200, body


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_health_readiness_metrics_and_the_spec_need_no_key(keyed_node, path):
    status, _, _ = _call(keyed_node, ("GET", path, None), {})
    assert status == 200


def test_an_unknown_route_is_a_json_404_with_or_without_a_key(keyed_node):
    status, body, _ = _call(keyed_node, ("GET", "/v1/nothing-here", None), {})
    assert status == 404 and body["error"]["code"] == "not_found"


def test_keys_may_come_from_the_environment(tmp_path):
    node = NodeProcess("env-keys", tmp_path, env={
        "LEADERBOARD_AUTH__SERVER_KEY": SERVER_KEY, "LEADERBOARD_AUTH__CLIENT_KEY": CLIENT_KEY})
    node.start()
    try:
        with node.client(api_key=CLIENT_KEY) as client:
            assert client.request_raw("GET", "/v1/leaderboards")[0] == 200
            assert client.request_raw("POST", "/v1/leaderboards", b'{"id": "x"}')[0] == 403
        with node.client(api_key=SERVER_KEY) as admin:
            assert admin.request_raw("POST", "/v1/leaderboards", b'{"id": "x"}')[0] == 201
        with node.client() as anonymous:
            assert anonymous.request_raw("GET", "/v1/leaderboards")[0] == 401
        assert SERVER_KEY not in node.log_path.read_text() and CLIENT_KEY not in node.log_path.read_text()
    finally:
        node.terminate()


# ---------------------------------------------------------------- configuration (in process)


def test_a_node_without_keys_is_open_and_says_so(caplog):
    caplog.set_level(logging.WARNING, logger="leaderboard_node.auth")
    create_client_app(Node(Settings()))
    assert any(record.getMessage() == "client_api_open" for record in caplog.records)


def test_a_node_with_keys_does_not_warn(caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="leaderboard_node.auth")
    settings = load_settings(environ={"LEADERBOARD_AUTH__SERVER_KEY": SERVER_KEY})
    create_client_app(Node(settings))
    assert not any(record.getMessage() == "client_api_open" for record in caplog.records)


def test_keys_from_files_are_stripped_and_compared_exactly(tmp_path):
    keys = ApiKeys.load(AuthSettings(server_key_file=write_secret(tmp_path, "s", SERVER_KEY),
                                     client_key_file=write_secret(tmp_path, "c", CLIENT_KEY)))
    assert keys.role_of(SERVER_KEY) is Role.SERVER and keys.role_of(CLIENT_KEY) is Role.CLIENT
    assert keys.role_of(SERVER_KEY + " ") is None and keys.role_of(SERVER_KEY.upper()) is None
    assert keys.role_of("") is None


@pytest.mark.parametrize(("settings", "message"), [
    (lambda d: AuthSettings(server_key=SecretStr("short")), "at least 16"),
    (lambda d: AuthSettings(server_key=SecretStr(SERVER_KEY), client_key=SecretStr(SERVER_KEY)), "must differ"),
    (lambda d: AuthSettings(server_key=SecretStr(SERVER_KEY), server_key_file=write_secret(d, "s", SERVER_KEY)),
     "both set"),
    (lambda d: AuthSettings(client_key=SecretStr(CLIENT_KEY)), "without a server key"),
    (lambda d: AuthSettings(server_key=SecretStr(SERVER_KEY + " with space")), "visible ASCII"),
    (lambda d: AuthSettings(server_key_file=d / "missing"), "No such file"),
    (lambda d: AuthSettings(server_key_file=write_secret(d, "empty", "")), "at least 16"),
], ids=["short", "same-keys", "two-sources", "client-only", "whitespace", "missing-file", "empty-file"])
def test_a_bad_key_configuration_stops_the_node_without_printing_the_key(tmp_path, settings, message):
    with pytest.raises((ValueError, OSError)) as raised:
        ApiKeys.load(settings(tmp_path))
    assert message in str(raised.value)
    assert SERVER_KEY not in str(raised.value) and CLIENT_KEY not in str(raised.value)


def test_a_key_that_yaml_reads_as_a_number_is_refused():
    with pytest.raises(ValueError, match="must be a string"):
        load_settings(environ={"LEADERBOARD_AUTH__SERVER_KEY": "1234567890123456789"})
    quoted = load_settings(environ={"LEADERBOARD_AUTH__SERVER_KEY": '"1234567890123456789"'})
    assert quoted.auth.server_key is not None
    assert quoted.auth.server_key.get_secret_value() == "1234567890123456789"
    assert "1234567890123456789" not in repr(quoted)
