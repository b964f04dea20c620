"""The node's OpenAPI description, checked against the node itself.

schemathesis takes the description a live node process serves at ``GET /openapi.json``
(built in process by the same function, and checked to be identical) and sends every
operation a bounded number of generated requests, seeded so that CI sees the same ones every
run: bodies and parameters that follow the schema and, against the node without keys, ones
that break it. Each answer must not be a 5xx, must have a documented status code and content
type and must match its documented schema; requests that break the schema must be refused.
The node with keys gets the server key on some requests and the client key on others, so
that the documented 403s are checked too.

Path ids are steered towards seeded leaderboards so operations hit real data, and anything
a delete removes is put back before the next request.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis==4.32.5 (the test extra)")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from leaderboard_node.config import Settings  # noqa: E402
from leaderboard_node.server import NodeServer  # noqa: E402
from leaderboard_node.transport.openapi import build_spec  # noqa: E402

from ..harness import NodeProcess  # noqa: E402

SERVER_KEY = "openapi-server-" + secrets.token_hex(12)
CLIENT_KEY = "openapi-client-" + secrets.token_hex(12)
SEED_BOARDS = {"seed-board": {}, "seed-incr": {"operator": "incr", "reset_schedule": "0 0 * * *"},
               "seed-authoritative": {"authoritative": True}}
SEED_CUP = "seed-cup"
SEED_OWNERS = ["alice", "bob", "carol"]
# Per operation: the open node gets valid and invalid requests, the keyed one valid ones only
# (the handlers behind the keys are the same; it checks the documented 401/403 and security).
OPEN_EXAMPLES, KEYED_EXAMPLES = 20, 8
def no_server_error_but_a_documented_ack_timeout(ctx, response, case):
    """A 504 answers ``ack=replicated`` on a node with no peer to confirm: documented, not a fault."""
    if response.status_code == 504 and (case.query or {}).get("ack") == "replicated":
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error_but_a_documented_ack_timeout, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _seed(node: NodeProcess, headers: dict[str, str]) -> None:
    with node.client(api_key=SERVER_KEY if headers else None) as admin:
        for board, settings in SEED_BOARDS.items():
            admin.request_raw("POST", "/v1/leaderboards", json.dumps({"id": board, **settings}).encode())
        admin.request_raw("POST", "/v1/tournaments", json.dumps(
            {"id": SEED_CUP, "duration": 10 * 86400, "start_time": int(time.time()) - 60, "max_size": 1000}).encode())
        for owner in SEED_OWNERS:
            for board in [*SEED_BOARDS, SEED_CUP]:
                admin.request_raw("POST", f"/v1/leaderboards/{board}/records",
                                  json.dumps({"owner_id": owner, "score": len(owner)}).encode())


LIMITS = {"max_body_bytes": 65536, "max_metadata_bytes": 512, "max_batch_records": 20, "max_page_limit": 100}


def _config(*, examples: int, mode: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": 20261127,
        "generation": {"max-examples": examples, "mode": mode, "database": "none"},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    })


def _node(tmp_path_factory: Any, *, keyed: bool) -> Any:
    name = "openapi-keys" if keyed else "openapi-open"
    env = {"LEADERBOARD_AUTH__SERVER_KEY": SERVER_KEY, "LEADERBOARD_AUTH__CLIENT_KEY": CLIENT_KEY} if keyed else {}
    node = NodeProcess(name, tmp_path_factory.mktemp(name), settings={"limits": LIMITS}, env=env)
    node.start()
    headers = {"Authorization": f"Bearer {SERVER_KEY}"} if keyed else {}
    _seed(node, headers)
    return node, headers


@pytest.fixture(scope="module")
def open_node(tmp_path_factory):
    node, headers = _node(tmp_path_factory, keyed=False)
    yield node, headers
    node.terminate()
    assert not node.log_errors(), node.log_errors()[:3]


@pytest.fixture(scope="module")
def keyed_node(tmp_path_factory):
    node, headers = _node(tmp_path_factory, keyed=True)
    yield node, headers
    node.terminate()
    assert not node.log_errors(), node.log_errors()[:3]


# The schemas are built in process from the same function the node serves them with (the test
# below checks that the served one is identical): schemathesis' lazy fixture loader does not
# work with pytest 9.2 (it sets Node._nodeid, which pytest 9.2 no longer has).
def _schema(*, auth: bool, config: SchemathesisConfig) -> Any:
    spec = build_spec(Settings.model_validate({"limits": LIMITS}).limits, auth=auth)
    return schemathesis.openapi.from_dict(spec, config=config)


open_schema = _schema(auth=False, config=_config(examples=OPEN_EXAMPLES, mode="all"))
keyed_schema = _schema(auth=True, config=_config(examples=KEYED_EXAMPLES, mode="positive"))


def _steer(case: Any) -> None:
    """Point most generated path ids at seeded data; the rest stay as generated."""
    params = case.path_parameters or {}
    marker = sum(map(ord, json.dumps(case.body, default=str) if case.body is not None else "")) + len(str(params))
    if "id" in params and marker % 4:
        tournament = case.path.startswith("/v1/tournaments")
        params["id"] = SEED_CUP if tournament else list(SEED_BOARDS)[marker % len(SEED_BOARDS)]
    if "owner_id" in params and marker % 3:
        params["owner_id"] = SEED_OWNERS[marker % len(SEED_OWNERS)]


def _exercise(case: Any, node: NodeProcess, headers: dict[str, str]) -> None:
    if "negative" in str(getattr(getattr(case.meta, "generation", None), "mode", "")).lower():
        checks = [*CHECKS, negative_data_rejection]
    else:
        checks = CHECKS
        _steer(case)
    if headers and sum(map(ord, repr((case.body, case.query, case.path_parameters)))) % 3 == 0:
        # the client key, on a third of the requests: 403 on admin operations
        headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    response = case.call_and_validate(base_url=node.url, headers=headers, checks=checks, timeout=10)
    if case.method == "DELETE" and response.status_code == 200:
        _seed(node, headers)  # put back what the delete removed


@open_schema.parametrize()
def test_a_node_without_keys_answers_as_its_description_says(case, open_node):
    _exercise(case, *open_node)


@keyed_schema.parametrize()
def test_a_node_with_keys_answers_as_its_description_says(case, keyed_node):
    _exercise(case, *keyed_node)


# ------------------------------------------------------------------ spec and routes agree


def _routes() -> set[tuple[str, str]]:
    """Every (method, path) the node's client app serves, including what server.py adds."""
    server = NodeServer(Settings())
    return {(route.method.lower(), route.resource.canonical) for route in server.client_app.router.routes()
            if route.method != "HEAD" and route.resource is not None}


def test_every_route_of_the_node_is_described_and_nothing_else():
    spec = build_spec(Settings().limits, auth=False)
    described = {(method, path) for path, operations in spec["paths"].items() for method in operations}
    assert described == _routes()


@pytest.mark.parametrize("which", ["open_node", "keyed_node"])
def test_the_served_description_is_the_one_tested(request, which):
    node, headers = request.getfixturevalue(which)
    with node.client() as anonymous:  # no key needed
        status, raw = anonymous.request_raw("GET", "/openapi.json")
    assert status == 200
    built = build_spec(Settings.model_validate({"limits": LIMITS}).limits, auth=bool(headers))
    assert json.loads(raw) == json.loads(json.dumps(built))


def test_request_schemas_come_from_the_validating_models_with_the_configured_limits():
    spec = build_spec(Settings.model_validate({"limits": {"max_id_length": 64, "max_batch_records": 7}}).limits,
                      auth=True)
    schemas = spec["components"]["schemas"]
    assert schemas["RecordWrite"]["properties"]["owner_id"]["maxLength"] == 64
    assert schemas["RecordWrite"]["properties"]["score"]["maximum"] == 2**63 - 1
    assert schemas["RecordBatch"]["properties"]["records"]["maxItems"] == 7
    assert schemas["TournamentCreate"]["required"] == ["id", "duration"]
    assert "x-limit" not in json.dumps(spec)


def test_security_is_declared_only_where_a_key_is_needed():
    spec = build_spec(Settings().limits, auth=True)
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert spec["paths"]["/v1/leaderboards"]["post"]["x-required-key"] == "server"
    assert "403" in spec["paths"]["/v1/leaderboards"]["post"]["responses"]
    assert spec["paths"]["/v1/leaderboards"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "403" not in spec["paths"]["/v1/leaderboards"]["get"]["responses"]
    open_spec = build_spec(Settings().limits, auth=False)
    assert "401" not in open_spec["paths"]["/v1/leaderboards"]["post"]["responses"]
    assert all("security" not in op for ops in open_spec["paths"].values() for op in ops.values())


def test_building_the_description_is_fast():
    started = time.perf_counter()
    build_spec(Settings().limits, auth=True)
    assert time.perf_counter() - started < 0.5
