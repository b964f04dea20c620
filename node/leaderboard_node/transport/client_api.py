"""The client REST API (JSON over HTTP: handlers on an aiohttp Application, served by ``http_server``).

Handlers parse and check input (``schemas``), call the store through the ``Node``, hand the
changes to replication, and render views as JSON. Every error is a JSON body of the form
``{"error": {"code", "message", "field"}}`` with a 4xx status; an unexpected exception is
logged and answered with 500 without leaking details.

Who may call what is decided by ``auth`` (API keys; routes marked ``requires(...)``); every
input is bounded (``LimitSettings``: body size and read time, query length, batch size,
metadata size and depth, ids, page limits, owner_ids) and a refusal never changes stored
data. ``GET /openapi.json`` describes all of it (``openapi``), and is also where each route's
query parameters are declared: a parameter the route does not take is refused with a 400
naming it, as an unknown body field is, rather than ignored (``?limt=5`` is a typo, not a
request for the default page).

A request with several bad fields gets all of them in one answer (``errors``), the first
also as ``error``: every field error pydantic finds, and for a new leaderboard or tournament
the checks that follow it (id characters, cron, metadata bounds, end after start) too.

All times are Unix seconds (UTC); 0 means never.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..domain.changes import Change, Setting
from ..domain.errors import (
    DomainError,
    InvalidArgument,
    LogUnavailable,
    ReplicationTimeout,
)
from ..domain.events import Event, check_webhook_url, decode_cursor, encode_cursor
from ..domain.leaderboards import Leaderboard, TournamentSettings, validate_definition
from ..domain.store import RecordView, RecordWrite, check_write
from ..node import Node, NodeState
from . import openapi, schemas
from .imports import ImportErrors, parse_import
from .auth import Access, ApiKeys, auth_middleware, is_server, requires, warn_if_open
from .schemas import Limits, int_param
from .json_body import error_body, error_json, json_response, json_text_response, refuse_duplicate_keys
from .page_json import metadata_object, page_body, render_record

log = logging.getLogger("leaderboard_node.client_api")

NODE_KEY = web.AppKey("node", Node)
QUERY_KEY = web.AppKey("query_parameters", dict)  # route -> the query parameters it takes
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return json_response(error_body([body]), status=status)


def validation_problems(exc: ValidationError) -> list[dict[str, Any]]:
    """Every field error of a pydantic validation, as error objects naming the field."""
    problems = []
    for error in exc.errors():
        field = _field_of(tuple(error["loc"]))
        problems.append({"code": "invalid_argument", "message": f"{field}: {error['msg']}", "field": field})
    return problems


class InvalidArguments(DomainError):
    """Several field errors found in one request; ``error`` is the first."""

    status = 400
    code = "invalid_argument"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(problems[0]["message"], field=problems[0].get("field"))
        self.problems = problems


def _field_of(loc: tuple[Any, ...], prefix: str = "") -> str:
    parts: list[str] = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1 if parts else 0:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts) or "body"


class BodyTimeout(DomainError):
    status = 408
    code = "body_timeout"


class QueryTooLong(DomainError):
    status = 414
    code = "query_too_long"


def _check_query(request: web.Request) -> None:
    """The bound on the query string, and that the route takes every parameter it carries."""
    raw = request.rel_url.raw_query_string
    if not raw:
        return
    limit = request.app[NODE_KEY].settings.limits.max_query_bytes
    if len(raw) > limit:  # as sent, percent-encoded
        raise QueryTooLong(f"the query string is longer than {limit} bytes", field="query")
    takes = request.app[QUERY_KEY].get(request.match_info.route)
    if takes is None:  # no route matched: the 404 or 405 says more than the parameters would
        return
    for name in request.query:
        if name not in takes:
            known = ", ".join(sorted(takes)) if takes else "no query parameters"
            raise InvalidArgument(f"unknown query parameter {name!r}; this operation takes {known}", field=name)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as JSON answers that name the field, and the bounds checked before any handler
    (or the key check) runs; the body's are checked as it is read. One middleware, not two:
    each layer costs every request a coroutine."""
    try:
        _check_query(request)
        return await handler(request)
    except InvalidArguments as exc:
        return json_response(error_body(exc.problems), status=exc.status)
    except DomainError as exc:
        return json_response(error_json(exc), status=exc.status)
    except ValidationError as exc:
        return json_response(error_body(validation_problems(exc)), status=400)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "body_too_large",
                              f"the request body is larger than {request.app[NODE_KEY].settings.limits.max_body_bytes} bytes",
                              "body")
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
            response = error_response(exc.status, code, exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        raise
    except Exception:
        log.exception("request_failed", extra={"method": request.method, "path": request.path})
        return error_response(500, "internal", "the node failed to handle this request")


async def _read_body(request: web.Request) -> bytes:
    timeout = _node(request).settings.limits.body_timeout
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} seconds", field="body") from None
    if not raw:
        raise InvalidArgument("the request needs a JSON body", field="body")
    return raw


async def _parse(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await _read_body(request)
    body = model.model_validate_json(raw)
    refuse_duplicate_keys(raw)
    return body


def _node(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def _limits(request: web.Request) -> Limits:
    return Limits(_node(request).settings.limits)


def render_event(event: Event) -> dict[str, Any]:
    """An event as ``GET /v1/events`` lists it and webhooks receive it."""
    return {
        "id": event.id,
        "kind": event.kind.value,
        "leaderboard_id": event.leaderboard_id,
        "incarnation": event.incarnation,
        "period_start": event.period_start,
        "period_end": event.period_end,
        "active_start": event.active_start,
        "active_end": event.active_end,
        "rank_count": event.rank_count,
        "top_limit": event.top_limit,
        "records": [render_record(RecordView(event.leaderboard_id, s.owner_id, s.username, s.score, s.subscore,
                                             s.num_score, s.max_num_score, s.metadata, s.create_ms, s.update_ms,
                                             event.period_end, s.rank)) for s in event.standings],
        "produced_time": (event.hlc >> 16) // 1000,
        "producer": event.origin,
    }


def render_leaderboard(node: Node, leaderboard: Leaderboard) -> dict[str, Any]:
    now = node.seconds()
    period = node.store.period(leaderboard, now)
    top = node.store.setting(leaderboard, Setting.EVENT_TOP)
    body: dict[str, Any] = {
        "id": leaderboard.id,
        "sort_order": leaderboard.sort_order.value,
        "operator": leaderboard.operator.value,
        "reset_schedule": leaderboard.reset_schedule,
        "metadata": metadata_object(leaderboard.metadata),
        "authoritative": leaderboard.authoritative,
        "enable_ranks": node.store.ranks_on(leaderboard),
        "ranks_active": node.store.ranks_enabled(leaderboard),
        "event_top": top if top is not None else node.settings.events.top,
        "webhook_url": node.store.setting(leaderboard, Setting.WEBHOOK_URL),
        "create_time": (leaderboard.create_hlc >> 16) // 1000,
        "prev_reset": period.start,
        "next_reset": period.expiry,
    }
    t = leaderboard.tournament
    if t is not None:
        body.update({
            "title": t.title, "description": t.description, "category": t.category,
            "start_time": t.start_time, "end_time": t.end_time, "duration": t.duration,
            "max_size": t.max_size, "max_num_score": t.max_num_score, "join_required": t.join_required,
            "start_active": period.active_start, "end_active": period.active_end,
            "active": period.is_active(now), "size": node.store.size(leaderboard, period.expiry),
        })
    return body


# ------------------------------------------------------------------------- leaderboards


def _start_time(request: web.Request, leaderboard_id: Any, start_time: Any) -> Any:
    """``start_time``, or when it is left out: the existing tournament's (a retry matches what it
    created), else now."""
    if start_time is not None:
        return start_time
    existing = _node(request).store.leaderboards.get(leaderboard_id) if isinstance(leaderboard_id, str) else None
    known = existing.tournament if existing is not None else None
    return known.start_time if known is not None else _node(request).seconds()


def _definition_problems(request: web.Request, values: dict[str, Any], *, skip: Collection[str] = ()
                         ) -> tuple[list[InvalidArgument], dict[str, Any]]:
    """The checks of a definition that follow parsing, each on its own field, all of them run.

    ``values`` are the parsed body's, or the raw body's when parsing failed (then a field of
    the wrong type, or one in ``skip``, is left to the parser's error). Returns the problems
    and the checked values (the normalized cron, the metadata as stored text).
    """
    from ..domain.schedule import validate_cron

    limits = _limits(request)
    problems: list[InvalidArgument] = []
    checked: dict[str, Any] = {}
    checks = (("id", str, lambda v: limits.identifier(v, field="id")),
              ("reset_schedule", str, validate_cron),
              ("metadata", dict, limits.metadata))
    for name, kind, check in checks:
        value = values.get(name)
        if name in skip or not isinstance(value, kind):
            continue
        try:
            checked[name] = check(value)
        except InvalidArgument as exc:
            problems.append(exc)
    end = values.get("end_time")
    if "end_time" not in skip and "start_time" not in skip and type(end) is int and end:
        start = _start_time(request, values.get("id"), values.get("start_time"))
        if type(start) is int and end <= start:
            problems.append(InvalidArgument("end_time must be after start_time", field="end_time"))
    return problems, checked


def _raise_all(problems: list[dict[str, Any]]) -> None:
    if len(problems) == 1:
        raise InvalidArgument(problems[0]["message"], field=problems[0].get("field"))
    if problems:
        raise InvalidArguments(problems)


def _definition(request: web.Request, body: schemas.LeaderboardCreate, *, tournament: bool) -> Leaderboard:
    problems, checked = _definition_problems(request, body.model_dump())
    _raise_all([exc.to_json()["error"] for exc in problems])
    settings: TournamentSettings | None = None
    if tournament:
        assert isinstance(body, schemas.TournamentCreate)
        settings = TournamentSettings(
            title=body.title, description=body.description, category=body.category,
            start_time=_start_time(request, body.id, body.start_time), end_time=body.end_time,
            duration=body.duration, max_size=body.max_size, max_num_score=body.max_num_score,
            join_required=body.join_required,
        )
    definition = Leaderboard(
        id=body.id, sort_order=body.sort_order, operator=body.operator, reset_schedule=checked.get("reset_schedule"),
        metadata=checked.get("metadata") or "{}", authoritative=body.authoritative,
        enable_ranks=body.enable_ranks, tournament=settings,
    )
    validate_definition(definition, now=_node(request).seconds())
    return definition


async def _parse_definition(request: web.Request, *, tournament: bool) -> schemas.LeaderboardCreate:
    """The body of a new leaderboard or tournament; every problem of a refused one at once."""
    raw = await _read_body(request)
    try:
        body = (schemas.TournamentCreate if tournament else schemas.LeaderboardCreate).model_validate_json(raw)
    except ValidationError as exc:
        problems = validation_problems(exc)
        try:
            values = json.loads(raw)
        except ValueError:
            values = None
        if isinstance(values, dict):  # the later checks too, on the fields the parser did not refuse
            flagged = {problem["field"].split(".")[0].split("[")[0] for problem in problems}
            later, _ = _definition_problems(request, values, skip=flagged)
            problems += [exc.to_json()["error"] for exc in later]
        _raise_all(problems)
        raise  # pragma: no cover - a ValidationError has at least one problem
    refuse_duplicate_keys(raw)
    return body


@requires(Access.SERVER)
async def create_leaderboard(request: web.Request, *, tournament: bool = False) -> web.Response:
    node = _node(request)
    node.require_ready()
    body = await _parse_definition(request, tournament=tournament)
    definition = _definition(request, body, tournament=tournament)
    leaderboard, created, changes = node.store.create_leaderboard(definition)
    await _commit(node, changes)
    return json_response(render_leaderboard(node, leaderboard), status=201 if created else 200)


@requires(Access.SERVER)
async def create_tournament(request: web.Request) -> web.Response:
    return await create_leaderboard(request, tournament=True)


def _paginate(items: list[Leaderboard], request: web.Request) -> tuple[list[Leaderboard], str | None]:
    limit = _limits(request).page_limit(request.query.get("limit"), default=100)
    after = request.query.get("cursor") or ""
    remaining = [lb for lb in items if lb.id > after]
    page = remaining[:limit]
    return page, (page[-1].id if len(remaining) > limit else None)


async def list_leaderboards(request: web.Request) -> web.Response:
    node = _node(request)
    page, cursor = _paginate(node.store.list_leaderboards(tournaments=False), request)
    return json_response({"leaderboards": [render_leaderboard(node, lb) for lb in page], "cursor": cursor})


async def list_tournaments(request: web.Request) -> web.Response:
    node = _node(request)
    query = request.query
    category_start = int_param(query.get("category_start", "0"), field="category_start", low=0, high=127)
    category_end = int_param(query.get("category_end", "127"), field="category_end", low=0, high=127)
    start_time = int_param(query["start_time"], field="start_time", low=0) if "start_time" in query else None
    end_time = int_param(query["end_time"], field="end_time", low=0) if "end_time" in query else None
    found = []
    for lb in node.store.list_leaderboards(tournaments=True):
        t = lb.tournament
        assert t is not None
        if not category_start <= t.category <= category_end:
            continue
        if start_time is not None and t.start_time < start_time:
            continue
        if end_time is not None and (t.end_time == 0 or t.end_time > end_time):
            continue
        found.append(lb)
    page, cursor = _paginate(found, request)
    return json_response({"tournaments": [render_leaderboard(node, lb) for lb in page], "cursor": cursor})


def _id(request: web.Request) -> str:
    return _limits(request).identifier(request.match_info["id"], field="id")


def _owner(request: web.Request) -> str:
    return _limits(request).identifier(request.match_info["owner_id"], field="owner_id")


async def get_leaderboard(request: web.Request, *, tournament: bool = False) -> web.Response:
    node = _node(request)
    leaderboard = node.store.leaderboard(_id(request), tournament=tournament)
    return json_response(render_leaderboard(node, leaderboard))


async def get_tournament(request: web.Request) -> web.Response:
    return await get_leaderboard(request, tournament=True)


@requires(Access.SERVER)
async def delete_leaderboard(request: web.Request, *, tournament: bool = False) -> web.Response:
    node = _node(request)
    node.require_ready()
    changes = node.store.delete_leaderboard(_id(request), tournament=tournament)
    await _commit(node, changes)
    return json_response({"deleted": request.match_info["id"]})


@requires(Access.SERVER)
async def delete_tournament(request: web.Request) -> web.Response:
    return await delete_leaderboard(request, tournament=True)


@requires(Access.SERVER)
async def update_leaderboard(request: web.Request, *, tournament: bool = False) -> web.Response:
    """Change live settings (ranks on or off, the events' top N, the board's webhook)."""
    node = _node(request)
    node.require_ready()
    leaderboard_id = _id(request)
    body = await _parse(request, schemas.LeaderboardUpdate)
    given = body.model_fields_set
    if not given:
        raise InvalidArgument("nothing to change: give enable_ranks, event_top or webhook_url", field="body")
    if "enable_ranks" in given and body.enable_ranks is None:
        raise InvalidArgument("enable_ranks must be true or false", field="enable_ranks")
    values: dict[Setting, bool | int | str | None] = {}
    if "enable_ranks" in given:
        values[Setting.ENABLE_RANKS] = body.enable_ranks
    if "event_top" in given:
        values[Setting.EVENT_TOP] = body.event_top
    if "webhook_url" in given:
        url = body.webhook_url
        if url is not None:
            url = check_webhook_url(url)
            if node.settings.events.secret() is None:
                raise InvalidArgument("this cluster has no webhook signing secret (events.webhook_secret_file): "
                                      "deliveries are signed, configure one first", field="webhook_url")
        values[Setting.WEBHOOK_URL] = url
    leaderboard, changes = node.store.update_settings(leaderboard_id, values, tournament=tournament)
    await _commit(node, changes)
    return json_response(render_leaderboard(node, leaderboard))


@requires(Access.SERVER)
async def update_tournament(request: web.Request) -> web.Response:
    return await update_leaderboard(request, tournament=True)


@requires(Access.SERVER)
async def grant_attempts(request: web.Request) -> web.Response:
    """Grant an owner score attempts beyond the tournament's max_num_score (this period)."""
    node = _node(request)
    node.require_ready()
    body = await _parse(request, schemas.AttemptsGrant)
    owner = _limits(request).identifier(body.owner_id, field="owner_id")
    view, changes = node.store.grant_attempts(_id(request), owner, body.count, now=node.seconds())
    await _commit(node, changes)
    return json_response({"tournament_id": view.leaderboard_id, "owner_id": view.owner_id,
                          "max_num_score": view.max_num_score, "extra_attempts": view.extra_attempts,
                          "expiry_time": view.expiry})


async def join_tournament(request: web.Request) -> web.Response:
    node = _node(request)
    node.require_ready()
    body = await _parse(request, schemas.Join)
    owner = _limits(request).identifier(body.owner_id, field="owner_id")
    joined, changes = node.store.join_tournament(_id(request), owner, now=node.seconds())
    await _commit(node, changes)
    return json_response({"tournament_id": request.match_info["id"], "owner_id": owner, "joined": joined})


# ------------------------------------------------------------------------------ records


def _record_write(limits: Limits, owner: str, body: Any, *, field_prefix: str = "") -> RecordWrite:
    """A write as the store takes it, its owner id and metadata checked."""
    return RecordWrite(limits.identifier(owner, field=f"{field_prefix}owner_id"), body.score, body.subscore,
                       body.username, limits.metadata(body.metadata, field=f"{field_prefix}metadata"), body.operator)


def _ack_mode(request: web.Request) -> tuple[bool, float]:
    mode = request.query.get("ack", "local")
    if mode not in ("local", "replicated"):
        raise InvalidArgument("ack must be local or replicated", field="ack")
    raw = request.query.get("ack_timeout")
    timeout = 5.0
    if raw not in (None, ""):
        try:
            timeout = float(raw)
        except ValueError:
            raise InvalidArgument("ack_timeout must be a number of seconds", field="ack_timeout") from None
        if not 0 < timeout <= 60:
            raise InvalidArgument("ack_timeout must be more than 0 and at most 60 seconds", field="ack_timeout")
    return mode == "replicated", timeout


async def _commit(node: Node, changes: list[Change], *, replicated: bool = False, timeout: float = 5.0) -> None:
    """Log and replicate the changes, and return once they are as safe as the request asked.

    The changes are applied already: an error here (a full disk, no peer confirming in time)
    says what is not guaranteed, never that the write did not happen.
    """
    try:
        seq = node.publish(changes)
    except OSError as exc:
        raise LogUnavailable(f"the write is applied but could not be logged: {exc}", field="body") from None
    try:
        await node.acknowledge(seq, replicated=replicated, timeout=timeout)
    except TimeoutError:
        raise ReplicationTimeout(
            f"no peer confirmed the write within {timeout} s; it is applied and logged here and still replicates",
            field="ack") from None
    except OSError as exc:
        raise LogUnavailable(f"the write is applied but the log could not be forced to disk: {exc}",
                             field="body") from None


async def write_record(request: web.Request) -> web.Response:
    node = _node(request)
    node.require_ready()
    leaderboard_id = _id(request)
    if "owner_id" in request.match_info:
        body = await _parse(request, schemas.RecordWriteOwned)
        owner = request.match_info["owner_id"]
    else:
        body = await _parse(request, schemas.RecordWrite)
        owner = body.owner_id
    write = _record_write(_limits(request), owner, body)
    replicated, timeout = _ack_mode(request)
    view, changes = node.store.write(leaderboard_id, write, now=node.seconds(), server=is_server(request))
    await _commit(node, changes, replicated=replicated, timeout=timeout)
    return json_response(render_record(view))


async def write_batch(request: web.Request) -> web.Response:
    node = _node(request)
    node.require_ready()
    leaderboard_id = _id(request)
    limits = _limits(request)
    batch = await _parse(request, schemas.RecordBatch)
    limits.batch(len(batch.records))
    leaderboard = node.store.leaderboard(leaderboard_id)
    writes = []
    for index, item in enumerate(batch.records):  # check everything before changing anything
        write = _record_write(limits, item.owner_id, item, field_prefix=f"records[{index}].")
        try:
            check_write(leaderboard, write)
        except InvalidArgument as exc:  # refuse the batch, naming the record
            raise InvalidArgument(exc.message, field=f"records[{index}].{exc.field}") from None
        writes.append(write)
    replicated, timeout = _ack_mode(request)
    results, changes = node.store.write_records(leaderboard_id, writes, now=node.seconds(), server=is_server(request))
    await _commit(node, changes, replicated=replicated, timeout=timeout)  # one log entry batch for the request
    return json_response({"records": [render_record(r) if isinstance(r, RecordView) else error_json(r)
                                          for r in results]})


@requires(Access.SERVER)
async def import_records(request: web.Request) -> web.Response:
    """A bulk import (``imports``): the writes of a JSON-lines or CSV body, first writes made at once."""
    node = _node(request)
    node.require_ready()
    leaderboard_id = _id(request)
    limits = _limits(request)
    raw = await _read_body(request)
    try:
        writes, lines = parse_import(raw, request.headers.get("Content-Type", ""), limits,
                                     max_records=limits.settings.max_import_records)
    except ImportErrors as exc:
        raise InvalidArguments(exc.problems) from None
    replicated, timeout = _ack_mode(request)
    result, changes = node.store.import_records(leaderboard_id, writes, now=node.seconds(), server=True)
    await _commit(node, changes, replicated=replicated, timeout=timeout)
    return json_response({"imported": result.imported, "first_writes": result.fresh,
                          "refused": [{"line": lines[position], **error_json(error)["error"]}
                                      for position, error in result.refused]})


def _expiry(request: web.Request) -> int | None:
    raw = request.query.get("expiry")
    return None if raw in (None, "") else int_param(raw, field="expiry", low=0)


def _rank(raw: str | None) -> int | None:
    return None if raw in (None, "") else int_param(raw, field="rank", low=1)


async def list_records(request: web.Request) -> web.Response:
    node = _node(request)
    limits = _limits(request)
    leaderboard_id = _id(request)
    owner_ids = limits.owner_ids(request.query.getall("owner_ids", []))
    page = node.store.list_records(
        leaderboard_id, limit=limits.page_limit(request.query.get("limit")), now=node.seconds(),
        cursor=request.query.get("cursor") or None, owner_ids=owner_ids, expiry=_expiry(request),
        rank=_rank(request.query.get("rank")),
    )
    return json_text_response(page_body(page))


async def record_at_rank(request: web.Request) -> web.Response:
    node = _node(request)
    rank = _rank(request.match_info["rank"])
    assert rank is not None
    view = node.store.record_at_rank(_id(request), rank, now=node.seconds(), expiry=_expiry(request))
    return json_response(render_record(view))


# ------------------------------------------------------------------------------- owners


async def owner_records(request: web.Request) -> web.Response:
    """Every record of one owner, in every leaderboard and tournament and every period kept."""
    node = _node(request)
    page = node.store.owner_records(_owner(request), limit=_limits(request).page_limit(request.query.get("limit"),
                                                                                       default=100),
                                    cursor=request.query.get("cursor") or None)
    return json_response({"records": [render_record(v) for v in page.records], "next_cursor": page.next_cursor})


@requires(Access.SERVER)
async def erase_owner(request: web.Request) -> web.Response:
    """Erase every record, join and attempt grant of one owner (account deletion)."""
    node = _node(request)
    node.require_ready()
    owner = _owner(request)
    erased, hlc, changes = node.store.erase_owner(owner)
    await _commit(node, changes)
    return json_response({"owner_id": owner, "records_erased": erased, "erase_time": (hlc >> 16) // 1000})


# ------------------------------------------------------------------------------- events


async def list_events(request: web.Request) -> web.Response:
    """The next reset and end events after ``after``; with ``wait``, a long poll."""
    node = _node(request)
    query = request.query
    raw = query.get("after")
    cursor = decode_cursor(raw) if raw else {}
    limit = _limits(request).page_limit(query.get("limit"), default=100)
    board = query.get("leaderboard_id") or None
    if board is not None:
        _limits(request).identifier(board, field="leaderboard_id")
    wait = 0.0
    if query.get("wait") not in (None, ""):
        bound = node.settings.events.max_wait
        try:
            wait = float(query["wait"])
        except ValueError:
            raise InvalidArgument(f"wait must be a number of seconds between 0 and {bound:g}", field="wait") from None
        if not 0 <= wait <= bound:
            raise InvalidArgument(f"wait must be between 0 and {bound:g} seconds", field="wait")
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        events, cursor = node.store.list_events(cursor, limit=limit, leaderboard_id=board)
        remaining = deadline - asyncio.get_running_loop().time()
        if events or remaining <= 0:
            break
        if not await node.wait_for_event(remaining) and node.state is NodeState.STOPPING:
            break
    return json_response({"events": [render_event(event) for event in events], "next_cursor": encode_cursor(cursor)})


async def get_record(request: web.Request) -> web.Response:
    node = _node(request)
    view = node.store.get_record(_id(request), _owner(request), now=node.seconds(), expiry=_expiry(request))
    return json_response(render_record(view))


async def around_owner(request: web.Request) -> web.Response:
    node = _node(request)
    limits = _limits(request)
    page = node.store.around_owner(_id(request), _owner(request), limit=limits.page_limit(request.query.get("limit")),
                                   now=node.seconds(), expiry=_expiry(request))
    return json_text_response(page_body(page))


@requires(Access.SERVER)
async def delete_record(request: web.Request) -> web.Response:
    node = _node(request)
    node.require_ready()
    changes = node.store.delete_record(_id(request), _owner(request), now=node.seconds(), expiry=_expiry(request),
                                       server=is_server(request))
    await _commit(node, changes)
    return json_response({"deleted": request.match_info["owner_id"]})


async def digest(request: web.Request) -> web.Response:
    node = _node(request)
    result = node.store.digest(_id(request), now=node.seconds(), expiry=_expiry(request))
    return json_response({
        "leaderboard_id": result.leaderboard_id, "incarnation": result.incarnation,
        "expiry_time": result.expiry, "count": result.count, "digest": result.digest,
    })


# ------------------------------------------------------------------------------- health


@requires(Access.OPEN)
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@requires(Access.OPEN)
async def readyz(request: web.Request) -> web.Response:
    node = _node(request)
    if node.ready:
        return json_response({"ready": True, "state": node.state.value})
    return json_response({"ready": False, "state": node.state.value, "reason": node.not_ready_reason}, status=503)


def add_record_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(f"{prefix}/{{id}}/records", write_record)
    router.add_get(f"{prefix}/{{id}}/records", list_records)
    router.add_post(f"{prefix}/{{id}}/records/batch", write_batch)
    router.add_post(f"{prefix}/{{id}}/records/import", import_records)
    router.add_get(f"{prefix}/{{id}}/records/around/{{owner_id}}", around_owner)
    router.add_get(f"{prefix}/{{id}}/records/rank/{{rank}}", record_at_rank)
    router.add_get(f"{prefix}/{{id}}/records/{{owner_id}}", get_record)
    router.add_put(f"{prefix}/{{id}}/records/{{owner_id}}", write_record)
    router.add_delete(f"{prefix}/{{id}}/records/{{owner_id}}", delete_record)
    router.add_get(f"{prefix}/{{id}}/digest", digest)


def create_client_app(node: Node, *, extra_routes: Callable[[web.Application], None] | None = None,
                      keys: ApiKeys | None = None) -> web.Application:
    """The client API of ``node``; API keys come from ``node.settings.auth`` unless ``keys`` is given.

    Reads the key files (a missing or unreadable file fails here, at start) and logs a warning
    when no key is configured and the API is therefore open.
    """
    keys = ApiKeys.load(node.settings.auth) if keys is None else keys
    warn_if_open(keys, node=node.name)
    spec = json.dumps(openapi.build_spec(node.settings.limits, auth=keys.enabled)).encode()

    @requires(Access.OPEN)
    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    app = web.Application(middlewares=[guard_middleware, auth_middleware(keys)],
                           client_max_size=node.settings.limits.max_body_bytes)
    app[NODE_KEY] = node
    router = app.router
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/openapi.json", openapi_json)
    router.add_post("/v1/leaderboards", create_leaderboard)
    router.add_get("/v1/leaderboards", list_leaderboards)
    router.add_get("/v1/leaderboards/{id}", get_leaderboard)
    router.add_delete("/v1/leaderboards/{id}", delete_leaderboard)
    router.add_patch("/v1/leaderboards/{id}", update_leaderboard)
    router.add_post("/v1/tournaments", create_tournament)
    router.add_get("/v1/tournaments", list_tournaments)
    router.add_get("/v1/tournaments/{id}", get_tournament)
    router.add_delete("/v1/tournaments/{id}", delete_tournament)
    router.add_patch("/v1/tournaments/{id}", update_tournament)
    router.add_post("/v1/tournaments/{id}/join", join_tournament)
    router.add_post("/v1/tournaments/{id}/attempts", grant_attempts)
    router.add_get("/v1/owners/{owner_id}/records", owner_records)
    router.add_delete("/v1/owners/{owner_id}", erase_owner)
    router.add_get("/v1/events", list_events)
    add_record_routes(router, "/v1/leaderboards")
    add_record_routes(router, "/v1/tournaments")
    if extra_routes is not None:
        extra_routes(app)
    takes = openapi.query_parameters(json.loads(spec))
    app[QUERY_KEY] = {route: takes.get(("get" if route.method == "HEAD" else route.method.lower(),
                                        route.resource.canonical), frozenset())
                      for route in router.routes() if route.resource is not None}
    return app
