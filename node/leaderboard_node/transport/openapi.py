"""The OpenAPI 3.1 description of the client API, served at ``GET /openapi.json``.

Request bodies are generated from the pydantic models that validate them (``schemas``), so
the published schemas cannot drift from validation; the query parameters listed here are
the ones each route takes (``query_parameters``), and the client API refuses any other; fields whose bounds come from settings
carry an ``x-limit`` marker there, replaced here by the node's configured bounds (id length,
batch size). Responses, parameters and status codes are written by hand below, in one place;
``tests/api/test_openapi.py`` runs schemathesis against a live node to check that answers
match them, and that every route of the node is described.

The spec describes one node as configured: the id length and batch size are its limits, and
security requirements appear only when API keys are configured (an open node documents no
401 or 403 it would never send).

Caveats: metadata size and depth and cron syntax cannot be expressed in JSON Schema; they are
described in prose and refused with a 400 naming the field.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import models_json_schema

from ..config import LimitSettings
from ..version import VERSION
from ..domain.records import INT64_MAX, INT64_MIN
from . import schemas
from .auth import FIELD as AUTH_FIELD

JSON = "application/json"
Schema = dict[str, Any]
_REF = "#/components/schemas/{model}"
_BODY_MODELS: tuple[type[Any], ...] = (
    schemas.LeaderboardCreate, schemas.TournamentCreate, schemas.RecordWrite, schemas.RecordWriteOwned,
    schemas.RecordBatch, schemas.Join, schemas.LeaderboardUpdate, schemas.AttemptsGrant,
)


def _ref(name: str) -> Schema:
    return {"$ref": _REF.format(model=name)}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], *, required: list[str] | None = None, closed: bool = True) -> Schema:
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required,
            "additionalProperties": not closed}


INT64: Schema = {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX}
NON_NEGATIVE: Schema = {"type": "integer", "minimum": 0}
TIME: Schema = {"type": "integer", "minimum": 0, "description": "Unix seconds (UTC); 0 means never."}


def _identifier(limits: LimitSettings) -> Schema:
    return {"type": "string", "pattern": schemas.ID_PATTERN.pattern, "minLength": 1,
            "maxLength": limits.max_id_length, "description": f"At most {limits.max_id_length} {schemas.ID_RULE}."}


def _resolve_limits(node: Any, limits: LimitSettings) -> Any:
    """Replace every ``x-limit`` marker of a generated schema with the configured bounds."""
    if isinstance(node, list):
        return [_resolve_limits(item, limits) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _resolve_limits(value, limits) for key, value in node.items() if key != "x-limit"}
    kind = node.get("x-limit")
    if kind == "identifier":
        out.update(_identifier(limits))
    elif kind == "batch":
        out["maxItems"] = limits.max_batch_records
    elif kind == "metadata":
        out["description"] = (f"A JSON object of at most {limits.max_metadata_bytes} bytes (compact UTF-8) "
                              f"nested at most {limits.max_metadata_depth} levels deep.")
    elif kind is not None:  # pragma: no cover - a marker this module does not know is a bug
        raise ValueError(f"unknown x-limit marker {kind!r}")
    return out


def request_schemas(limits: LimitSettings) -> dict[str, Schema]:
    """Component schemas of every request body, generated from the pydantic models."""
    _, top = models_json_schema([(model, "validation") for model in _BODY_MODELS], ref_template=_REF)
    return {name: _resolve_limits(schema, limits) for name, schema in top.get("$defs", {}).items()}


def response_schemas() -> dict[str, Schema]:
    """Component schemas of every response body, by hand (they mirror ``client_api.render_*``)."""
    leaderboard_fields: dict[str, Schema] = {
        "id": {"type": "string"},
        "sort_order": _ref("SortOrder"),
        "operator": _ref("Operator"),
        "reset_schedule": _nullable({"type": "string"}),
        "metadata": {"type": "object"},
        "authoritative": {"type": "boolean"},
        "enable_ranks": {"type": "boolean"},
        "ranks_active": {"type": "boolean", "description": "false when ranks are off or the id is blacklisted."},
        "event_top": {"type": "integer", "minimum": 1, "description": "Records in each of its events' standings."},
        "webhook_url": _nullable({"type": "string", "description": "Where its events are also delivered."}),
        "create_time": TIME,
        "prev_reset": TIME,
        "next_reset": TIME,
    }
    tournament_fields: dict[str, Schema] = {
        **leaderboard_fields,
        "title": {"type": "string"}, "description": {"type": "string"},
        "category": {"type": "integer", "minimum": 0, "maximum": 127},
        "start_time": TIME, "end_time": TIME, "duration": NON_NEGATIVE,
        "max_size": NON_NEGATIVE, "max_num_score": NON_NEGATIVE, "join_required": {"type": "boolean"},
        "start_active": TIME, "end_active": TIME, "active": {"type": "boolean"}, "size": NON_NEGATIVE,
    }
    record = _object({
        "leaderboard_id": {"type": "string"},
        "owner_id": {"type": "string"},
        "username": _nullable({"type": "string"}),
        "score": INT64,
        "subscore": INT64,
        "num_score": NON_NEGATIVE,
        "max_num_score": NON_NEGATIVE,
        "metadata": {"type": "object"},
        "create_time": TIME,
        "update_time": TIME,
        "expiry_time": TIME,
        "rank": {"type": "integer", "minimum": 0, "description": "1-based; 0 when ranks are off."},
    })
    problem = _object({
        "code": {"type": "string", "description": "Stable snake_case code, for programs."},
        "message": {"type": "string", "description": "For people."},
        "field": {"type": "string", "description": "The part of the request that was wrong."},
        "details": {"type": "object"},
    }, required=["code", "message"])
    error = _object({
        "error": {**problem, "description": "The first problem."},
        "errors": {"type": "array", "items": problem, "minItems": 1,
                   "description": "Every problem found in the request (a body with several bad fields)."},
    })
    return {
        "Error": error,
        "Leaderboard": _object(leaderboard_fields),
        "Tournament": _object(tournament_fields),
        "LeaderboardList": _object({"leaderboards": {"type": "array", "items": _ref("Leaderboard")},
                                    "cursor": _nullable({"type": "string"})}),
        "TournamentList": _object({"tournaments": {"type": "array", "items": _ref("Tournament")},
                                   "cursor": _nullable({"type": "string"})}),
        "Record": record,
        "RecordPage": _object({
            "records": {"type": "array", "items": _ref("Record")},
            "owner_records": {"type": "array", "items": _ref("Record")},
            "next_cursor": _nullable({"type": "string"}),
            "prev_cursor": _nullable({"type": "string"}),
            "rank_count": NON_NEGATIVE,
            "expiry_time": TIME,
        }),
        "ImportResult": _object({
            "imported": {"type": "integer", "description": "Records written."},
            "first_writes": {"type": "integer", "description": "Of them, first writes of owners that had no record, "
                                                               "made at once."},
            "refused": {"type": "array", "description": "Writes that broke a rule (a full tournament, an overflow): "
                                                        "the line and the error.",
                        "items": {"type": "object", "additionalProperties": True}},
        }, required=["imported", "first_writes", "refused"]),
        "BatchResult": _object({"records": {"type": "array", "items": {"oneOf": [_ref("Record"), _ref("Error")]},
                                            "description": "One result per record, in order: the record or its error."}}),
        "Deleted": _object({"deleted": {"type": "string"}}),
        "OwnerRecords": _object({"records": {"type": "array", "items": _ref("Record")},
                                 "next_cursor": _nullable({"type": "string"})}),
        "Erased": _object({"owner_id": {"type": "string"}, "records_erased": NON_NEGATIVE, "erase_time": TIME}),
        "Attempts": _object({"tournament_id": {"type": "string"}, "owner_id": {"type": "string"},
                             "max_num_score": NON_NEGATIVE, "extra_attempts": NON_NEGATIVE, "expiry_time": TIME}),
        "Event": _object({
            "id": {"type": "string", "description": "The idempotency key: the same for every copy of this event."},
            "kind": {"type": "string", "enum": ["leaderboard_reset", "tournament_reset", "tournament_end"]},
            "leaderboard_id": {"type": "string"}, "incarnation": {"type": "string"},
            "period_start": TIME, "period_end": TIME, "active_start": TIME, "active_end": TIME,
            "rank_count": NON_NEGATIVE, "top_limit": NON_NEGATIVE,
            "records": {"type": "array", "items": _ref("Record"), "description": "The final top records."},
            "produced_time": TIME, "producer": {"type": "string", "description": "The node life that produced it."},
        }),
        "EventPage": _object({"events": {"type": "array", "items": _ref("Event")},
                              "next_cursor": {"type": "string", "description": "Pass it as after= for what follows."}}),
        "Joined": _object({"tournament_id": {"type": "string"}, "owner_id": {"type": "string"},
                           "joined": {"type": "boolean", "description": "false when the owner had joined already."}}),
        "Digest": _object({"leaderboard_id": {"type": "string"}, "incarnation": {"type": "string"},
                           "expiry_time": TIME, "count": NON_NEGATIVE, "digest": {"type": "string"}}),
        "Health": _object({"status": {"type": "string", "enum": ["ok"]}}),
        "Readiness": _object({"ready": {"type": "boolean"},
                              "state": {"type": "string", "enum": ["starting", "syncing", "ready", "stopping"]}}),
        "Cluster": _object({
            "node": _object({"name": {"type": "string"}, "version": {"type": "string", "description": "The build."},
                             "state": {"type": "string"}, "ready": {"type": "boolean"},
                             "records": NON_NEGATIVE, "leaderboards": NON_NEGATIVE},
                            required=["name", "state", "ready"], closed=False),
            "members": {"type": "array", "items": {"type": "object"}},
        }, closed=False),
    }


# ----------------------------------------------------------------------------- operations

_ERRORS = {
    400: "The request is invalid, or carries a query parameter the operation does not take; `error.field` names "
         "the part that was wrong, `errors` lists every problem found.",
    401: "No API key, or a wrong one (`error.field` is `authorization`).",
    403: "The operation needs the server key, the leaderboard is authoritative, or the tournament must be joined.",
    404: "No such leaderboard, tournament, record or reset period.",
    408: "The request body did not arrive in time (`limits.body_timeout`).",
    409: "Conflict: the id exists with other settings, a tournament refuses the write (full, outside its window, "
         "out of attempts), or the leaderboard keeps no ranks (`ranks_disabled`).",
    413: "The request body is larger than `limits.max_body_bytes`.",
    414: "The query string is longer than `limits.max_query_bytes`.",
    503: "The node is not ready (starting or syncing), or cannot write its log; retry on another node or later.",
    504: "`ack=replicated`: no peer confirmed the write in time. It is applied and logged on this node and "
         "still replicates.",
}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, limits: LimitSettings, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": _identifier(limits), "description": description}


def _operation(
    operation_id: str, summary: str, ok: dict[int, tuple[str, str]], *, errors: tuple[int, ...],
    access: str, auth: bool, parameters: list[Schema] | None = None, body: str | None = None, tags: tuple[str, ...],
) -> Schema:
    """One operation; ``access`` is open, client or server (see ``auth``)."""
    responses: dict[str, Any] = {}
    for status, (description, schema) in ok.items():
        content = ({"text/plain": {"schema": {"type": "string"}}} if schema == "text" else
                   {JSON: {"schema": {"type": "object"} if schema == "object" else _ref(schema)}})
        responses[str(status)] = {"description": description, "content": content}
    codes = set(errors) | {400}  # every operation refuses query parameters it does not take
    if body is not None:
        codes |= {400, 408, 413}
    if access != "open":
        codes |= {414}
        if auth:
            codes |= {401} | ({403} if access == "server" else set())
    for status in sorted(codes):
        responses[str(status)] = {"description": _ERRORS[status], "content": {JSON: {"schema": _ref("Error")}}}
    operation: Schema = {"operationId": operation_id, "summary": summary, "tags": list(tags), "responses": responses,
                         "x-required-key": access if auth else "none"}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    if auth:
        operation["security"] = [] if access == "open" else [{"bearer": []}, {"apiKey": []}]
    return operation


def query_parameters(spec: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """(method, path) -> the names of the query parameters the operation takes."""
    return {(method, path): frozenset(p["name"] for p in operation.get("parameters", ()) if p["in"] == "query")
            for path, operations in spec["paths"].items() for method, operation in operations.items()}


def build_spec(limits: LimitSettings, *, auth: bool) -> dict[str, Any]:
    """The whole description, for a node with these limits and (when ``auth``) API keys."""
    ident = _path("id", limits, "Leaderboard or tournament id.")
    owner = _path("owner_id", limits, "Owner id.")
    page_limit = {"type": "integer", "minimum": 1, "maximum": limits.max_page_limit}
    expiry = _query("expiry", NON_NEGATIVE, "The reset period (its expiry time) to read; default: the current one.")
    listing = [_query("limit", page_limit, "Page size (default 100)."),
               _query("cursor", {"type": "string"}, "The `cursor` of the previous page.")]

    def op(*args: Any, **kwargs: Any) -> Schema:
        return _operation(*args, auth=auth, **kwargs)

    paths: dict[str, dict[str, Schema]] = {
        "/v1/leaderboards": {
            "post": op("createLeaderboard", "Create a leaderboard (idempotent)", {
                200: ("An identical leaderboard exists.", "Leaderboard"), 201: ("Created.", "Leaderboard")},
                errors=(409, 503), access="server", body="LeaderboardCreate", tags=("leaderboards",)),
            "get": op("listLeaderboards", "List leaderboards (tournaments are listed apart)",
                      {200: ("A page of leaderboards, in id order.", "LeaderboardList")}, errors=(400,),
                      access="client", parameters=listing, tags=("leaderboards",)),
        },
        "/v1/leaderboards/{id}": {
            "patch": op("updateLeaderboard", "Change live settings: ranks on or off, the events' top, the webhook",
                        {200: ("The definition as it stands.", "Leaderboard")}, errors=(400, 404, 503), access="server",
                        parameters=[ident], body="LeaderboardUpdate", tags=("leaderboards",)),
            "get": op("getLeaderboard", "One leaderboard", {200: ("The definition.", "Leaderboard")},
                      errors=(400, 404), access="client", parameters=[ident], tags=("leaderboards",)),
            "delete": op("deleteLeaderboard", "Delete a leaderboard with all its records",
                         {200: ("Deleted.", "Deleted")}, errors=(400, 404, 503), access="server",
                         parameters=[ident], tags=("leaderboards",)),
        },
        "/v1/tournaments": {
            "post": op("createTournament", "Create a tournament (idempotent)", {
                200: ("An identical tournament exists.", "Tournament"), 201: ("Created.", "Tournament")},
                errors=(409, 503), access="server", body="TournamentCreate", tags=("tournaments",)),
            "get": op("listTournaments", "List tournaments", {200: ("A page of tournaments.", "TournamentList")},
                      errors=(400,), access="client", tags=("tournaments",), parameters=[
                          _query("category_start", {"type": "integer", "minimum": 0, "maximum": 127}, "Lowest category."),
                          _query("category_end", {"type": "integer", "minimum": 0, "maximum": 127}, "Highest category."),
                          _query("start_time", {**NON_NEGATIVE, "maximum": INT64_MAX}, "Starting at or after."),
                          _query("end_time", {**NON_NEGATIVE, "maximum": INT64_MAX}, "Ending at or before (never-ending ones are left out)."),
                          *listing]),
        },
        "/v1/tournaments/{id}": {
            "patch": op("updateTournament", "Change live settings: ranks on or off, the events' top, the webhook",
                        {200: ("The definition as it stands.", "Tournament")}, errors=(400, 404, 503), access="server",
                        parameters=[ident], body="LeaderboardUpdate", tags=("tournaments",)),
            "get": op("getTournament", "One tournament", {200: ("The definition.", "Tournament")},
                      errors=(400, 404), access="client", parameters=[ident], tags=("tournaments",)),
            "delete": op("deleteTournament", "Delete a tournament with all its records", {200: ("Deleted.", "Deleted")},
                         errors=(400, 404, 503), access="server", parameters=[ident], tags=("tournaments",)),
        },
        "/v1/tournaments/{id}/attempts": {
            "post": op("grantAttempts", "Grant an owner score attempts beyond max_num_score (this period)",
                       {200: ("The owner's limit now.", "Attempts")}, errors=(404, 409, 503), access="server",
                       parameters=[ident], body="AttemptsGrant", tags=("tournaments",)),
        },
        "/v1/owners/{owner_id}/records": {
            "get": op("ownerRecords", "Every record of one owner, in every leaderboard, tournament and period kept",
                      {200: ("The owner's records, by leaderboard id and period.", "OwnerRecords")}, errors=(400,),
                      access="client", tags=("owners",), parameters=[
                          owner, _query("limit", page_limit, "Page size (default 100)."),
                          _query("cursor", {"type": "string"}, "The `next_cursor` of the previous page.")]),
        },
        "/v1/owners/{owner_id}": {
            "delete": op("eraseOwner", "Erase every record, join and attempt grant of one owner, everywhere",
                         {200: ("Erased.", "Erased")}, errors=(400, 503), access="server", parameters=[owner],
                         tags=("owners",)),
        },
        "/v1/events": {
            "get": op("listEvents", "Reset and end events with final standings, after a cursor; a long poll with wait",
                      {200: ("The next events, oldest first.", "EventPage")}, errors=(400,), access="client",
                      tags=("events",), parameters=[
                          _query("after", {"type": "string"}, "The `next_cursor` of the previous answer; none: "
                                 "from the oldest event kept."),
                          _query("limit", page_limit, "Most events in the answer (default 100)."),
                          _query("wait", {"type": "number", "minimum": 0, "maximum": 600},
                                 "Seconds to wait for an event when there is none yet (a long poll; at most the "
                                 "node's events.max_wait)."),
                          _query("leaderboard_id", {"type": "string"}, "Only this leaderboard's or tournament's.")]),
        },
        "/v1/tournaments/{id}/join": {
            "post": op("joinTournament", "Join a tournament", {200: ("Joined (or had joined).", "Joined")},
                       errors=(404, 409, 503), access="client", parameters=[ident], body="Join", tags=("tournaments",)),
        },
    }
    for prefix, tag, name in (("/v1/leaderboards", "records", "Leaderboard"), ("/v1/tournaments", "records", "Tournament")):
        base = f"{prefix}/{{id}}"
        write_errors = (403, 404, 409, 503, 504)
        acks = [_query("ack", {"type": "string", "enum": ["local", "replicated"]},
                       "`local` (default): answer once applied and logged here; `replicated`: also once a peer "
                       "has applied it (like Redis's WAIT)."),
                _query("ack_timeout", {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
                       "Seconds `ack=replicated` waits for a peer (default 5).")]
        paths[f"{base}/records"] = {
            "post": op(f"write{name}Record", "Write a record (the owner in the body)",
                       {200: ("The record as stored, with its rank.", "Record")}, errors=write_errors, access="client",
                       parameters=[ident, *acks], body="RecordWrite", tags=(tag,)),
            "get": op(f"list{name}Records", "A page of records in rank order",
                      {200: ("The page.", "RecordPage")}, errors=(400, 404, 409), access="client", tags=(tag,), parameters=[
                          ident, _query("limit", page_limit, "Page size (default 10)."),
                          _query("cursor", {"type": "string"}, "`next_cursor` or `prev_cursor` of another page."),
                          _query("owner_ids", {"type": "string"},
                                 f"Comma-separated owner ids (at most {limits.max_owner_ids}) whose records are "
                                 "returned in `owner_records`."),
                          expiry, _query("rank", {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
                                         "Start the page at this rank (not with `cursor`); its cursors go on from "
                                         "there.")]),
        }
        paths[f"{base}/records/batch"] = {
            "post": op(f"write{name}Batch", "Write many records; all are checked before any is written",
                       {200: ("One result per record.", "BatchResult")}, errors=(403, 404, 503, 504),
                       access="client", parameters=[ident, *acks], body="RecordBatch", tags=(tag,)),
        }
        paths[f"{base}/records/rank/{{rank}}"] = {
            "get": op(f"{name[0].lower()}{name[1:]}RecordAtRank", "The record at a rank (1-based)",
                      {200: ("The record.", "Record")}, errors=(400, 404, 409), access="client", tags=(tag,),
                      parameters=[ident, {"name": "rank", "in": "path", "required": True,
                                          "schema": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
                                          "description": "1-based rank."}, expiry]),
        }
        import_op = op(f"import{name}Records", "Import many records at once: JSON lines or CSV, first writes made at once",
                       {200: ("What was written, and what broke a rule.", "ImportResult")},
                       errors=(403, 404, 408, 413, 503, 504), access="server", parameters=[ident, *acks], tags=(tag,))
        import_op["requestBody"] = {"required": True, "content": {
            "application/x-ndjson": {"schema": {"type": "string", "description": (
                "One JSON object a line with the fields of a write: owner_id, score, and optionally subscore, "
                f"username, metadata; at most {limits.max_import_records} lines.")}},
            "text/csv": {"schema": {"type": "string", "description": (
                "A header line naming the columns (owner_id, score, and any of subscore, username, metadata), "
                "then one record a line; metadata a JSON object in its cell.")}},
        }}
        paths[f"{base}/records/import"] = {"post": import_op}
        paths[f"{base}/records/around/{{owner_id}}"] = {
            "get": op(f"around{name}Owner", "Records centred on an owner", {200: ("The page.", "RecordPage")},
                      errors=(400, 404), access="client", tags=(tag,),
                      parameters=[ident, owner, _query("limit", page_limit, "How many records (default 10)."), expiry]),
        }
        paths[f"{base}/records/{{owner_id}}"] = {
            "get": op(f"get{name}Record", "One record with its rank", {200: ("The record.", "Record")},
                      errors=(400, 404), access="client", parameters=[ident, owner, expiry], tags=(tag,)),
            "put": op(f"put{name}Record", "Write a record (the owner in the path)",
                      {200: ("The record as stored, with its rank.", "Record")}, errors=write_errors, access="client",
                      parameters=[ident, owner, *acks], body="RecordWriteOwned", tags=(tag,)),
            "delete": op(f"delete{name}Record", "Delete one record", {200: ("Deleted.", "Deleted")},
                         errors=(400, 404, 503), access="server", parameters=[ident, owner, expiry], tags=(tag,)),
        }
        paths[f"{base}/digest"] = {
            "get": op(f"digest{name}", "A content hash of one reset period, to compare replicas",
                      {200: ("The digest.", "Digest")}, errors=(400, 404), access="client",
                      parameters=[ident, expiry], tags=(tag,)),
        }
    paths["/v1/cluster"] = {"get": op("cluster", "This node, its version vector, members and replication lag",
                                      {200: ("The node's view of the cluster.", "Cluster")}, errors=(), access="client",
                                      tags=("operations",))}
    paths["/healthz"] = {"get": op("healthz", "Liveness", {200: ("Alive.", "Health")}, errors=(), access="open",
                                   tags=("operations",))}
    paths["/readyz"] = {"get": op("readyz", "Readiness: 200 only once synced", {
        200: ("Ready.", "Readiness"), 503: ("Not ready yet.", "Readiness")}, errors=(), access="open", tags=("operations",))}
    paths["/metrics"] = {"get": op("metrics", "Prometheus metrics", {200: ("Text exposition format.", "text")},
                                   errors=(), access="open", tags=("operations",))}
    paths["/openapi.json"] = {"get": op("openapi", "This description", {200: ("OpenAPI 3.1.", "object")},
                                        errors=(), access="open", tags=("operations",))}

    components: dict[str, Any] = {"schemas": {**request_schemas(limits), **response_schemas()}}
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "`Authorization: Bearer KEY`: the client key, or the server key (accepted "
                                  "everywhere, and needed for operations marked x-required-key: server)."},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "The same key, another header."},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leaderboard-cluster client API",
            "version": VERSION,
            "description": (
                "A replicated, in-memory leaderboard and tournament service. All times are Unix seconds (UTC); "
                "0 means never. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}` with a 4xx status. "
                + ("Every operation except health, readiness, metrics and this description needs an API key "
                   f"(error field `{AUTH_FIELD}`)." if auth else "This node has no API keys configured: it is open.")
            ),
        },
        "paths": copy.deepcopy(paths),
        "components": components,
    }
