"""What each operation of the client API sends, written once for both clients.

``Operations`` builds the method, path, query and body of every call; a client supplies
``request_raw`` (send it, give back the status and the body) and ``_then`` (reshape what
``request_raw`` gives). The blocking ``LeaderboardClient`` returns answers, the asyncio
``AsyncLeaderboardClient`` awaitables of them; everything else is here, once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

import orjson

R = TypeVar("R")


class ApiError(Exception):
    """A 4xx or 5xx answer: ``status``, and the body's ``code``, ``field`` and ``message``."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code: str = error.get("code", "http_error")
        self.field: str | None = error.get("field")
        self.message: str = error.get("message", str(body))
        self.body = body
        super().__init__(f"{status} {self.code}: {self.message}" + (f" (field {self.field})" if self.field else ""))


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")
# every digit "0", "-" kept, the rest " ": a number's digits become a run of zeros
_DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else b if b == 45 else 32 for b in range(256))
_LONG_NUMBERS = (b"0" * 20, b"-" + b"0" * 19)  # beyond uint64 / below int64 (and some within)


def segment(text: str) -> str:
    """``text`` as one path segment (percent-encoded where it must be)."""
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe="")


def target(path: str, query: dict[str, Any] | None) -> str:
    """``path`` with the query's set values appended."""
    if not query:
        return path
    parts = []
    for name, value in query.items():
        if value is None:
            continue
        # integers (limits, expiries) need no encoding; urlencode is most of a read's own cost
        parts.append(f"{name}={value}" if type(value) is int else urlencode({name: value}, doseq=True))
    return f"{path}?{'&'.join(parts)}" if parts else path


def encode(payload: Any) -> bytes | None:
    if payload is None:
        return None
    try:
        data = orjson.dumps(payload)
    except TypeError:  # an integer beyond 64 bits: the node will say which field is out of range
        return json.dumps(payload).encode()
    if b"null" in data:
        # orjson writes NaN and infinities as null, which would store a value nobody sent: the
        # standard library sends them as they are, and the node refuses them naming the field
        return json.dumps(payload).encode()
    return data


def _has_long_number(raw: bytes) -> bool:
    digits = raw.translate(_DIGITS_AS_ZERO)
    return _LONG_NUMBERS[0] in digits or _LONG_NUMBERS[1] in digits


def decode(status: int, raw: bytes) -> Any:
    """The answer's JSON; ``ApiError`` for a 4xx or 5xx (a body that is not JSON kept as text)."""
    try:
        # orjson reads integers beyond 64 bits (only metadata holds them) as floats: a body with
        # 20 digits in a row, or a minus and 19, goes to the exact, slower parser (found by a
        # translate and a substring search: a regular expression cost 5x orjson's parse)
        data = None if not raw else json.loads(raw) if _has_long_number(raw) else orjson.loads(raw)
    except (json.JSONDecodeError, orjson.JSONDecodeError, UnicodeDecodeError):
        data = raw.decode(errors="replace")
    if status >= 400:
        raise ApiError(status, data)
    return data


def _board(leaderboard_id: str) -> str:
    return f"/v1/leaderboards/{segment(leaderboard_id)}"


class Operations(Generic[R]):
    """The client API's operations; ``R`` is what a call returns (an answer or an awaitable)."""

    def request_raw(self, method: str, path: str, body: bytes | None = None,
                    headers: dict[str, str] | None = None, *, timeout: float | None = None) -> R:
        """Send one request; (status, body bytes), whatever the status. ``timeout``: seconds for
        this request instead of the client's (a long poll waits longer)."""
        raise NotImplementedError

    def _then(self, result: R, reshape: Callable[[Any], Any]) -> R:
        """``reshape`` applied to what ``result`` holds (or will)."""
        raise NotImplementedError

    def request(self, method: str, path: str, payload: Any = None, *, query: dict[str, Any] | None = None,
                timeout: float | None = None) -> R:
        """The decoded JSON answer; ``ApiError`` for a 4xx or 5xx."""
        return self._then(self.request_raw(method, target(path, query), encode(payload), timeout=timeout),
                          lambda answer: decode(*answer))

    # -------------------------------------------------------------------- leaderboards

    def create_leaderboard(self, leaderboard_id: str, **settings: Any) -> R:
        """Create a leaderboard: its definition as stored (201 created, or 200 when an identical
        one exists; ``ApiError`` 409 when the id exists with other settings).

        ``settings`` are the body's fields: ``sort_order`` (``desc``/``asc``), ``operator``
        (``best``/``set``/``incr``/``decr``), ``reset_schedule`` (a 5-field cron in UTC),
        ``metadata``, ``authoritative``, ``enable_ranks``. Needs the server key.
        """
        return self.request("POST", "/v1/leaderboards", {"id": leaderboard_id, **settings})

    def create_tournament(self, tournament_id: str, **settings: Any) -> R:
        """Create a tournament: a leaderboard's settings plus ``duration`` (required: seconds
        active after each reset), ``title``, ``description``, ``category``, ``start_time``,
        ``end_time``, ``max_size``, ``max_num_score``, ``join_required``. Needs the server key."""
        return self.request("POST", "/v1/tournaments", {"id": tournament_id, **settings})

    def get_leaderboard(self, leaderboard_id: str) -> R:
        """One leaderboard's (or tournament's) definition with ``prev_reset`` and ``next_reset``."""
        return self.request("GET", _board(leaderboard_id))

    def list_leaderboards(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        """A page of leaderboards in id order: ``{"leaderboards": [...], "cursor"}``; pass
        ``cursor`` on to get the next page (None after the last)."""
        return self.request("GET", "/v1/leaderboards", query={"limit": limit, "cursor": cursor})

    def list_tournaments(self, **filters: Any) -> R:
        """A page of tournaments: ``{"tournaments": [...], "cursor"}``. ``filters``:
        ``category_start``, ``category_end``, ``start_time``, ``end_time``, ``limit``, ``cursor``."""
        return self.request("GET", "/v1/tournaments", query=filters)

    def update_leaderboard(self, leaderboard_id: str, **settings: Any) -> R:
        """Change live settings of a leaderboard or tournament (its records stay): ``enable_ranks``
        (turn ranks off and on), ``event_top`` (records in its events' standings), ``webhook_url``
        (where its events are also delivered; None removes it). The definition as it stands.
        Needs the server key."""
        return self.request("PATCH", _board(leaderboard_id), settings)

    def set_ranks(self, leaderboard_id: str, enabled: bool) -> R:
        """Turn ranks on or off for a live leaderboard or tournament (``update_leaderboard``)."""
        return self.update_leaderboard(leaderboard_id, enable_ranks=enabled)

    def delete_leaderboard(self, leaderboard_id: str) -> R:
        """Delete a leaderboard (or tournament) with all its records. Needs the server key."""
        return self.request("DELETE", _board(leaderboard_id))

    def join_tournament(self, tournament_id: str, owner_id: str) -> R:
        """Join a tournament: ``{"joined": False}`` when the owner had joined already;
        ``ApiError`` 409 when it is full."""
        return self.request("POST", f"/v1/tournaments/{segment(tournament_id)}/join", {"owner_id": owner_id})

    def grant_attempts(self, tournament_id: str, owner_id: str, count: int = 1) -> R:
        """Grant an owner ``count`` score attempts beyond the tournament's ``max_num_score`` in the
        current period (Nakama's add-attempt): ``{"max_num_score"}`` is the owner's limit now.
        Needs the server key."""
        return self.request("POST", f"/v1/tournaments/{segment(tournament_id)}/attempts",
                            {"owner_id": owner_id, "count": count})

    # ------------------------------------------------------------------------- records

    def write_record(self, leaderboard_id: str, owner_id: str, score: int, **fields: Any) -> R:
        """Write one record; the record as stored, with its rank. ``fields``: ``subscore``,
        ``username``, ``metadata``, ``operator`` (overrides the leaderboard's for this write)."""
        return self.request("POST", f"{_board(leaderboard_id)}/records", {"owner_id": owner_id, "score": score, **fields})

    def write_batch(self, leaderboard_id: str, records: Iterable[dict[str, Any]]) -> R:
        """Write many records at once (each a ``write_record`` body with its ``owner_id``): all
        are checked before any is written; ``{"records": [...]}`` holds each one's result."""
        return self.request("POST", f"{_board(leaderboard_id)}/records/batch", {"records": list(records)})

    def import_records(self, leaderboard_id: str, data: bytes | str, *, format: str = "jsonl",
                       ack: str | None = None) -> R:
        """Import many records at once (the server key): ``data`` is JSON lines (one object a line
        with ``owner_id``, ``score`` and optionally ``subscore``, ``username``, ``metadata``) or,
        with ``format="csv"``, CSV with a header line naming those columns. Every line is checked
        before any is written; owners with no record are written at once, the others as ordinary
        writes. Returns ``{"imported", "first_writes", "refused"}``; a body is bounded by the
        node's ``limits.max_body_bytes`` and ``limits.max_import_records``: send a big file in parts."""
        content_type = {"jsonl": "application/x-ndjson", "csv": "text/csv"}.get(format)
        if content_type is None:
            raise ValueError(f"format is jsonl or csv, not {format!r}")
        raw = data.encode() if isinstance(data, str) else data
        return self._then(self.request_raw("POST", target(f"{_board(leaderboard_id)}/records/import", {"ack": ack}),
                                           raw, {"Content-Type": content_type}),
                          lambda answer: decode(*answer))

    def records(self, leaderboard_id: str, *, limit: int | None = None, cursor: str | None = None,
                owner_ids: Iterable[str] | None = None, expiry: int | None = None, rank: int | None = None) -> R:
        """A page of records in rank order: ``records``, ``owner_records`` (those of
        ``owner_ids``, wherever they rank), ``next_cursor``, ``prev_cursor`` (pass either back as
        ``cursor``), ``rank_count``. ``expiry`` reads a past reset period; ``rank`` starts the
        page at that rank (its cursors go on from there)."""
        owners = ",".join(owner_ids) if owner_ids else None
        return self.request("GET", f"{_board(leaderboard_id)}/records",
                            query={"limit": limit, "cursor": cursor, "owner_ids": owners, "expiry": expiry,
                                   "rank": rank})

    def record_at_rank(self, leaderboard_id: str, rank: int, *, expiry: int | None = None) -> R:
        """The record at ``rank`` (1-based); ``ApiError`` 404 when there are fewer records, 409
        ``ranks_disabled`` when the leaderboard keeps no ranks."""
        return self.request("GET", f"{_board(leaderboard_id)}/records/rank/{int(rank)}", query={"expiry": expiry})

    def top(self, leaderboard_id: str, *, limit: int = 10, expiry: int | None = None) -> R:
        """The first page: ``records(leaderboard_id, limit=limit)``, a page like ``records()``
        and ``around()`` return (its records are ``page["records"]``)."""
        return self.records(leaderboard_id, limit=limit, expiry=expiry)

    def record(self, leaderboard_id: str, owner_id: str, *, expiry: int | None = None) -> R:
        """One owner's record with its rank (``ApiError`` 404 ``record_not_found`` without one)."""
        return self.request("GET", f"{_board(leaderboard_id)}/records/{segment(owner_id)}",
                            query={"expiry": expiry})

    def around(self, leaderboard_id: str, owner_id: str, *, limit: int = 10, expiry: int | None = None) -> R:
        """A page of ``limit`` records centred on the owner (filled from the other side at
        either end), shaped as ``records()`` returns it."""
        return self.request("GET", f"{_board(leaderboard_id)}/records/around/{segment(owner_id)}",
                            query={"limit": limit, "expiry": expiry})

    def delete_record(self, leaderboard_id: str, owner_id: str) -> R:
        """Delete one owner's record. Needs the server key."""
        return self.request("DELETE", f"{_board(leaderboard_id)}/records/{segment(owner_id)}")

    def digest(self, leaderboard_id: str, *, expiry: int | None = None) -> R:
        """A content hash of one reset period (``count``, ``digest``): equal on every node that
        holds the same records."""
        return self.request("GET", f"{_board(leaderboard_id)}/digest", query={"expiry": expiry})

    # -------------------------------------------------------------------------- owners

    def owner_records(self, owner_id: str, *, limit: int | None = None, cursor: str | None = None) -> R:
        """Every record of one owner in every leaderboard, tournament and period kept, with its
        rank: ``{"records": [...], "next_cursor"}``."""
        return self.request("GET", f"/v1/owners/{segment(owner_id)}/records", query={"limit": limit, "cursor": cursor})

    def erase_owner(self, owner_id: str) -> R:
        """Erase every record, join and attempt grant of one owner, everywhere (account deletion):
        ``{"records_erased", "erase_time"}``. A write made before it cannot bring a record back.
        Needs the server key."""
        return self.request("DELETE", f"/v1/owners/{segment(owner_id)}")

    # -------------------------------------------------------------------------- events

    def events(self, *, after: str | None = None, limit: int | None = None, wait: float | None = None,
               leaderboard_id: str | None = None) -> R:
        """Reset and end events with their final standings, oldest first: ``{"events": [...],
        "next_cursor"}``. Pass ``next_cursor`` back as ``after`` for what follows; ``wait``
        (seconds) long-polls until an event comes when there is none yet."""
        return self.request("GET", "/v1/events", query={"after": after, "limit": limit, "wait": wait,
                                                         "leaderboard_id": leaderboard_id},
                            timeout=None if not wait else wait + 10)

    # ------------------------------------------------------------------------- cluster

    def cluster(self) -> R:
        """This node (name, version, state, records), its version vector, and its members
        with their state and replication lag."""
        return self.request("GET", "/v1/cluster")

    def ready(self) -> R:
        """True when the node answers /readyz with 200 (it holds a full copy and takes writes)."""
        return self._then(self.request_raw("GET", "/readyz"), lambda answer: answer[0] == 200)
