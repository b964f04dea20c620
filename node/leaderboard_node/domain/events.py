"""Reset and end events: the final standings of a period, produced once and kept as data.

When a reset period of a leaderboard or tournament ends (or a tournament ends), one node
produces an ``Event`` holding the period's times, its ``rank_count`` and its top records as
they stand a *grace* after the end, and publishes it as a replicated change. Every node then
holds the same event, as data: nothing is recomputed per node, so a late write that reaches
one node and not yet another cannot make their standings differ.

**Identity and duplicates.** An event is about one (leaderboard id, incarnation, period end):
its *key*, from which its ``id`` (the idempotency key receivers deduplicate on) is derived.
Two nodes can produce an event for the same key (their views of who should differed for a
moment, during a failover); every node keeps both, shows the one with the smallest *order*
``(hlc, producing life, number)`` and hides the other, so all converge on the same one.

**Order and cursors.** Each producing life numbers its events 1, 2, 3, ... and its log carries
them in that order, so every node holds a prefix of each life's events (replication applies
each origin's entries in sequence; snapshots hold whole prefixes). A reader's cursor is a
vector: per producing life, the number of its last event the reader has been past. A page is
the next events not covered by the cursor, in event order; an event produced late (by a node
that was cut off, or after a failover) has a number beyond what the cursor holds for its life,
so the next page has it, on whichever node the reader asks: nothing is missed. What can happen
is a duplicate: the other event of a key that was produced twice, with the same ``id``.

**Delivery progress** is a cursor per webhook target, replicated as changes that only move it
forward (``advance``): a node that takes over delivery starts where the last deliverer's
progress reached it.

**Erasures.** An owner erased after an event was produced keeps its place in the standings
(owner id, score, rank: what a ledger of rewards needs) without its username and metadata
(``redact``): the event held here and one arriving later are redacted alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import zlib
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import NamedTuple

from .errors import CursorInvalid, InvalidArgument
from .leaderboards import Leaderboard, period_of
from .schedule import NEVER, Period

MAX_TOP = 1000  # records in one event's standings, at most
MAX_URL_LENGTH = 2048
CURSOR_FIELD = "after"
_CURSOR_VERSION = b"e1"
_CURSOR_INVALID = "the events cursor is invalid: it was not issued by this service, or it was altered"


class EventKind(StrEnum):
    LEADERBOARD_RESET = "leaderboard_reset"
    TOURNAMENT_RESET = "tournament_reset"
    TOURNAMENT_END = "tournament_end"


class Standing(NamedTuple):
    """One record of the final standings, as it stood when the event was produced."""

    rank: int  # 0 when the leaderboard's ranks were off
    owner_id: str
    username: str | None
    score: int
    subscore: int
    num_score: int
    max_num_score: int
    metadata: str | None  # JSON text
    create_ms: int
    update_ms: int


EventKey = tuple[str, str, int]  # (leaderboard id, incarnation, period end)


@dataclass(frozen=True, slots=True)
class Event:
    leaderboard_id: str
    incarnation: str
    kind: EventKind
    period_start: int
    period_end: int  # the bucket's expiry
    active_start: int
    active_end: int
    rank_count: int
    top_limit: int
    standings: tuple[Standing, ...]
    hlc: int  # when it was produced
    origin: str  # the producing life
    number: int  # 1, 2, 3, ... within the producing life

    @property
    def key(self) -> EventKey:
        return (self.leaderboard_id, self.incarnation, self.period_end)

    @property
    def order(self) -> tuple[int, str, int]:
        return (self.hlc, self.origin, self.number)

    @property
    def id(self) -> str:
        return event_id(self.key)


def event_id(key: EventKey) -> str:
    """The idempotency key of the event of ``key``: the same for every copy of it."""
    text = "\n".join((key[0], key[1], str(key[2]))).encode()
    return "evt_" + hashlib.blake2b(text, digest_size=12).hexdigest()


def event_kind(leaderboard: Leaderboard, period_end: int) -> EventKind:
    t = leaderboard.tournament
    if t is None:
        return EventKind.LEADERBOARD_RESET
    return EventKind.TOURNAMENT_END if t.end_time and period_end >= t.end_time else EventKind.TOURNAMENT_RESET


def periods_ending(leaderboard: Leaderboard, *, after: int, until: int, limit: int) -> list[Period]:
    """The periods of ``leaderboard`` that end in ``(after, until]``, oldest first, at most ``limit``.

    A leaderboard without a reset schedule never ends a period; a tournament's last period
    ends at its ``end_time`` and nothing follows it.
    """
    found: list[Period] = []
    moment = after
    t = leaderboard.tournament
    while len(found) < limit:
        period = period_of(leaderboard, moment)
        if period.expiry == NEVER or period.expiry > until:
            break
        if period.expiry > after:
            found.append(period)
        if period.expiry <= moment or (t is not None and t.end_time and period.expiry >= t.end_time):
            break
        moment = period.expiry  # the next period starts where this one ends
    return found


def check_webhook_url(text: str, *, field: str = "webhook_url") -> str:
    """A webhook URL as it is stored: absolute http or https with a host (pydantic's URL rules),
    without credentials (they would reach logs and every replica) or a fragment (never sent)."""
    from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

    if len(text) > MAX_URL_LENGTH:
        raise InvalidArgument(f"{field} is longer than {MAX_URL_LENGTH} characters", field=field)
    try:
        url = TypeAdapter(AnyHttpUrl).validate_python(text)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise InvalidArgument(f"{field} must be an absolute http:// or https:// URL with a host ({reason}): "
                              f"{text[:100]!r}", field=field) from None
    if url.username is not None or url.password is not None:
        raise InvalidArgument(f"{field} must not carry credentials (user:password@): deliveries are signed "
                              "instead (events.webhook_secret_file)", field=field)
    if url.fragment is not None:
        raise InvalidArgument(f"{field} must not have a #fragment (it is never sent)", field=field)
    return str(url)


# ------------------------------------------------------------------------------ cursors


Cursor = dict[str, int]  # producing life -> number of its last event read past


def encode_cursor(cursor: Cursor) -> str:
    body = _CURSOR_VERSION + json.dumps(sorted(cursor.items()), separators=(",", ":")).encode()
    raw = body + zlib.crc32(body).to_bytes(4, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CursorInvalid(_CURSOR_INVALID, field=CURSOR_FIELD) from None
    body, checksum = raw[:-4], raw[-4:]
    if len(raw) < 6 or not body.startswith(_CURSOR_VERSION) or zlib.crc32(body).to_bytes(4, "big") != checksum:
        raise CursorInvalid(_CURSOR_INVALID, field=CURSOR_FIELD)
    try:
        pairs = json.loads(body[len(_CURSOR_VERSION):])
        cursor = {str(life): int(number) for life, number in pairs}
    except (ValueError, TypeError):
        raise CursorInvalid(_CURSOR_INVALID, field=CURSOR_FIELD) from None
    return cursor


# --------------------------------------------------------------------------------- log


class EventLog:
    """Every event held (duplicates included), by producing life, and delivery progress."""

    def __init__(self) -> None:
        self._by_origin: dict[str, list[Event]] = {}  # each sorted by number
        self._kept: dict[EventKey, Event] = {}  # per key, the copy shown: the smallest order
        self._last: dict[str, int] = {}  # per producing life, its highest number held (kept by trim)
        self.progress: dict[str, Cursor] = {}  # webhook target -> what it has been delivered
        self.version = 0  # bumped whenever an event is added
        self.listeners: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return sum(len(events) for events in self._by_origin.values())

    def __iter__(self) -> Iterator[Event]:
        for events in list(self._by_origin.values()):
            yield from events

    def has(self, key: EventKey) -> bool:
        return key in self._kept

    def kept(self, key: EventKey) -> Event | None:
        return self._kept.get(key)

    def shown(self, event: Event) -> bool:
        return self._kept.get(event.key) is event

    def next_number(self, origin: str) -> int:
        """The number the life ``origin`` gives its next event (never one it gave before, even
        once its earlier events are trimmed)."""
        return self._last.get(origin, 0) + 1

    def origins(self) -> list[str]:
        return list(self._by_origin)

    def add(self, event: Event) -> bool:
        """Hold ``event``; False when it was held already (a copy of one life's event is the same)."""
        events = self._by_origin.setdefault(event.origin, [])
        index = bisect_right(events, event.number, key=lambda e: e.number)
        if index and events[index - 1].number == event.number:
            return False
        insort(events, event, key=lambda e: e.number)
        self._last[event.origin] = max(self._last.get(event.origin, 0), event.number)
        known = self._kept.get(event.key)
        if known is None or event.order < known.order:
            self._kept[event.key] = event
        self.version += 1
        for listener in self.listeners:
            listener()
        return True

    def replace(self, event: Event) -> None:
        """Put a changed copy (a redaction) where the event of the same life and number is."""
        events = self._by_origin[event.origin]
        index = bisect_right(events, event.number, key=lambda e: e.number) - 1
        old = events[index]
        events[index] = event
        if self._kept.get(event.key) is old:
            self._kept[event.key] = event

    def after(self, cursor: Cursor, *, limit: int, wanted: Callable[[Event], bool] = lambda event: True,
              ) -> tuple[list[Event], Cursor]:
        """Up to ``limit`` shown events beyond ``cursor`` that are ``wanted``, in event order, and
        the cursor past them (and past every hidden or unwanted event before the last one)."""
        advanced = dict(cursor)
        tails: list[Iterable[Event]] = []
        for origin, events in self._by_origin.items():
            start = bisect_right(events, cursor.get(origin, 0), key=lambda e: e.number)
            if start < len(events):
                tails.append(events[start:])
        found: list[Event] = []
        for event in heapq.merge(*tails, key=lambda e: e.order):
            if len(found) >= limit:
                break
            advanced[event.origin] = event.number
            if self.shown(event) and wanted(event):
                found.append(event)
        return found, advanced

    def advance(self, target: str, origin: str, number: int) -> bool:
        """Record that ``target`` was delivered everything of ``origin`` up to ``number``."""
        reached = self.progress.setdefault(target, {})
        if number <= reached.get(origin, 0):
            return False
        reached[origin] = number
        return True

    def trim(self, before: int) -> int:
        """Drop every event of a period that ended before ``before`` (Unix seconds); how many."""
        dropped = 0
        for origin in list(self._by_origin):
            events = self._by_origin[origin]
            kept = [event for event in events if event.period_end >= before]
            dropped += len(events) - len(kept)
            if not kept:
                # The last number of a life is remembered by progress and cursors, not here.
                del self._by_origin[origin]
            elif len(kept) != len(events):
                self._by_origin[origin] = kept
        for key in [key for key in self._kept if key[2] < before]:
            del self._kept[key]
        return dropped

    def redact(self, owner: str, hlc: int) -> int:
        """Drop the username and metadata of ``owner`` from events produced before ``hlc``."""
        changed = 0
        for event in list(self):
            redacted = redact_event(event, {owner: hlc})
            if redacted is not event:
                self.replace(redacted)
                changed += 1
        return changed


def redact_event(event: Event, erased: dict[str, int]) -> Event:
    """``event`` with the username and metadata of every owner erased after it was produced
    (``erased``: owner -> erasure clock) dropped; the event itself when there is none."""
    if not erased:
        return event
    standings = []
    changed = False
    for standing in event.standings:
        erasure = erased.get(standing.owner_id)
        if erasure is not None and event.hlc < erasure and (standing.username, standing.metadata) != (None, None):
            standing = standing._replace(username=None, metadata=None)
            changed = True
        standings.append(standing)
    return replace(event, standings=tuple(standings)) if changed else event
