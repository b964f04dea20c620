"""The leaderboard store: every leaderboard, tournament and record a node holds.

Local operations validate a request against the current state, apply it, and return the
changes they made (for replication); ``apply`` merges a change made elsewhere. Reads return
plain views. Time comes in as an argument (``now``, Unix seconds) and the hybrid logical
clock is injected, so the store does no I/O and tests can drive time.

Buckets are keyed by (leaderboard id, incarnation) and then by expiry. Records of an
incarnation whose definition has not arrived yet are kept (a change carries the sort order
needed to rank them) and become visible when it does; records of a dead incarnation are
dropped, now and when they arrive later.

**Owner erasures.** ``erase_owner`` makes one change, stamped after every slot, join and
attempt grant of the owner it has seen: every slot of the owner stamped before it is void, in
every bucket, now and when it arrives later. It works as a record delete would in each
bucket: the erasing life's tombstone slot (a base with no value) is merged into every bucket
that holds the owner, and into any bucket the owner's slots reach later, before they are
merged (and before a local write, so that what is written after the erasure is built on it).
Concurrent ``set`` writes stamped after it win over it, as over a delete; contributions made
on an older base are void. Joins and attempt grants stamped before it are dropped. An
erasure is kept for ``erasure_retention`` seconds, then forgotten: a write made before it that
arrives later still than that (a node cut off for longer, holding the only copy of it) would
count again.

**Live settings** (``enable_ranks``, ``event_top``, ``webhook_url``) change without making a new
incarnation: each is a last-writer-wins register per incarnation (``SettingPut``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

from . import records
from .changes import (
    AttemptsGrant,
    Change,
    DeliveryProgress,
    EventPut,
    LeaderboardKill,
    LeaderboardPut,
    OwnerErase,
    RecordSlotPut,
    RecordsImported,
    Setting,
    SettingPut,
    TournamentJoin,
)
from .clock import HybridLogicalClock, physical_ms
from .cursors import Cursor, decode_cursor
from .errors import (
    AuthoritativeLeaderboard,
    BucketExpired,
    CursorExpired,
    CursorInvalid,
    DomainError,
    InvalidArgument,
    LeaderboardExists,
    LeaderboardNotFound,
    NotATournament,
    RanksDisabled,
    RecordNotFound,
    TournamentFull,
    TournamentJoinRequired,
    TournamentMaxNumScore,
    TournamentNotFound,
    TournamentOutsideWindow,
)
from .events import Event, EventLog, Standing, event_kind, redact_event
from .leaderboards import Leaderboard, LeaderboardCache, RankBlacklist, period_of
from .lives import Horizons, life_epoch, life_name
from .rank_cache import Bucket, Record, digest_of, visible
from .record_codec import PREFIX_SIZE, first_write_elements, key_end, owner_key, sort_key
from .records import Operator, Slot, SlotKind, Slots
from .schedule import NEVER, Period


class RecordWrite(NamedTuple):
    """One record write as a client asked for it (ids and metadata already checked)."""

    owner: str
    score: int
    subscore: int = 0
    username: str | None = None
    metadata: str | None = None  # JSON text
    operator: Operator | None = None  # None: the leaderboard's own


def check_write(leaderboard: Leaderboard, write: RecordWrite) -> Operator:
    """The operator a write applies with; InvalidArgument when it cannot apply (a negative decr)."""
    effective = write.operator or leaderboard.operator
    if effective is Operator.DECR and (write.score < 0 or write.subscore < 0):
        raise InvalidArgument("decr takes a non-negative amount", field="score" if write.score < 0 else "subscore")
    return effective


class RecordView(NamedTuple):  # tuples: one is made per record written or read
    leaderboard_id: str
    owner_id: str
    username: str | None
    score: int
    subscore: int
    num_score: int
    max_num_score: int
    metadata: str | None
    create_ms: int
    update_ms: int
    expiry: int
    rank: int  # 0 when ranks are off for this leaderboard


# A RecordView from a tuple of its fields in order, without NamedTuple's Python-level
# __new__ (a page makes one per record)
_new_view = partial(tuple.__new__, RecordView)


def _cursors(leaderboard: Leaderboard, bucket: Bucket, page: list[bytes], start: int) -> tuple[str | None, str | None]:
    """The next and previous cursors of ``page``, the elements of ``bucket`` from index ``start``
    (None where the page reaches that end)."""
    if not page:
        return None, None
    forward = (Cursor(leaderboard.incarnation, bucket.expiry, True, sort_key(page[-1])).encode()
               if start + len(page) < len(bucket) else None)
    back = Cursor(leaderboard.incarnation, bucket.expiry, False, sort_key(page[0])).encode() if start > 0 else None
    return forward, back


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What a bulk import did: ``imported`` records written (``fresh`` of them first writes, made
    at once), and the writes that broke a rule (their position in the import, and the error)."""

    imported: int
    fresh: int
    refused: list[tuple[int, DomainError]]


def _granted(grants: dict[str, tuple[int, int]] | None) -> int:
    """Attempts granted to one owner in one period: the sum of every life's running total."""
    return sum(total for _, total in grants.values()) if grants else 0


@dataclass(frozen=True, slots=True)
class PageRows:
    """Records of a page as their bucket holds them: packed elements in rank order, and what
    their views share.

    A page is read once per request and is most of one, so its records are not turned into
    views unless asked (``views``): the client API renders the elements straight to JSON
    (``transport.page_json``).
    """

    leaderboard_id: str
    descending: bool
    expiry: int
    elements: list[bytes]
    first_rank: int  # the first element's rank in its bucket
    ranked: bool  # False: ranks are off, and every record's rank reads 0
    max_num_score: int  # the tournament's (0: unlimited, and for leaderboards)
    granted: dict[str, dict[str, tuple[int, int]]] | None  # attempts granted in the period, by owner

    def max_num_score_of(self, owner: str) -> int:
        """The owner's own limit: the tournament's plus what was granted to the owner."""
        return self.max_num_score + (_granted(self.granted.get(owner)) if self.granted else 0)

    def views(self) -> list[RecordView]:
        leaderboard_id, expiry, descending = self.leaderboard_id, self.expiry, self.descending
        views = []
        for rank, element in enumerate(self.elements, self.first_rank):
            owner, score, subscore, num_score, create_ms, update_ms, username, metadata = visible(element, descending)
            views.append(_new_view((leaderboard_id, owner, username, score, subscore, num_score,
                                    self.max_num_score_of(owner), metadata, create_ms, update_ms, expiry,
                                    rank if self.ranked else 0)))
        return views


@dataclass(frozen=True, slots=True)
class RecordPage:
    rows: PageRows | None  # None: no records on this page
    owners: list[PageRows]  # the records of the owners asked for (around-owner: the owner), one each
    next_cursor: str | None
    prev_cursor: str | None
    rank_count: int
    expiry: int

    @property
    def records(self) -> list[RecordView]:
        return [] if self.rows is None else self.rows.views()

    @property
    def owner_records(self) -> list[RecordView]:
        return [rows.views()[0] for rows in self.owners]


@dataclass(frozen=True, slots=True)
class BucketDigest:
    leaderboard_id: str
    incarnation: str
    expiry: int
    count: int
    digest: str


BucketKey = tuple[str, str]  # (leaderboard id, incarnation)
PeriodKey = tuple[str, str, int]  # (leaderboard id, incarnation, expiry)


@dataclass(frozen=True, slots=True)
class OwnerPage:
    records: list[RecordView]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AttemptsView:
    leaderboard_id: str
    owner_id: str
    expiry: int
    max_num_score: int  # the owner's own limit in this period: the tournament's plus what was granted
    extra_attempts: int


def _erasure_slot(erasure: OwnerErase) -> Slot:
    return Slot(erasure.origin, SlotKind.DELETE, erasure.hlc, 0, 0, 0, 0, None, None)


def _owner_cursor(leaderboard_id: str, expiry: int) -> str:
    import base64

    return base64.urlsafe_b64encode(f"{expiry}/{leaderboard_id}".encode()).rstrip(b"=").decode()


def _read_owner_cursor(text: str) -> tuple[str, int]:
    import base64
    import binascii

    try:
        expiry, _, leaderboard_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().partition("/")
        return leaderboard_id, int(expiry)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CursorInvalid("the cursor is invalid: it was not issued by this service", field="cursor") from None


class LeaderboardStore:
    def __init__(
        self,
        *,
        node: str,
        clock: HybridLogicalClock,
        blacklist: RankBlacklist = RankBlacklist(),
        retention: int = 86400,
        erasure_retention: int = 7 * 86400,
    ) -> None:
        self.node = node  # the life id this node writes under (lives.life_id)
        self.clock = clock
        self.horizons = Horizons()
        self.blacklist = blacklist
        self.retention = retention
        self.erasure_retention = erasure_retention
        self.leaderboards = LeaderboardCache()
        self._buckets: dict[BucketKey, dict[int, Bucket]] = {}
        self._unsettled: set[Bucket] = set()  # buckets built at once whose digest is not settled yet
        self._joins: dict[PeriodKey, dict[str, int]] = {}  # owner -> when it joined (hlc)
        self._erasures: dict[str, OwnerErase] = {}  # per owner, the latest erasure held
        # Extra attempts: per tournament period and owner, each granting life's (hlc, running total)
        self._attempts: dict[PeriodKey, dict[str, dict[str, tuple[int, int]]]] = {}
        self._settings: dict[BucketKey, dict[Setting, SettingPut]] = {}
        self.events = EventLog()
        self.late_writes = 0  # record changes applied to a period whose event was produced already
        # Buckets still to settle since lives were last retired, and where in each the sweep is
        self._unfolded: dict[Bucket, bytes | None] = {}
        # Owner lookups by outcome (exported as a metric): hit (ranked), miss (no record), off (no ranks)
        self.rank_lookups = {"hit": 0, "miss": 0, "off": 0}
        # Record writes taken on this node by outcome (exported as a metric): changed (the record
        # took the write), unchanged (accepted, nothing to change: a `best` no better than the
        # record), refused (a rule broken: a full tournament, no attempts left, a negative decr)
        self.record_writes = {"changed": 0, "unchanged": 0, "refused": 0}

    # ---------------------------------------------------------------- definitions

    def period(self, leaderboard: Leaderboard, now: int) -> Period:
        return period_of(leaderboard, now)

    def ranks_enabled(self, leaderboard: Leaderboard) -> bool:
        return self.ranks_on(leaderboard) and not self.blacklist.matches(leaderboard.id)

    def ranks_on(self, leaderboard: Leaderboard) -> bool:
        """``enable_ranks`` as it stands: the last toggle, else the creation setting."""
        toggled = self.setting(leaderboard, Setting.ENABLE_RANKS)
        return leaderboard.enable_ranks if toggled is None else bool(toggled)

    def setting(self, leaderboard: Leaderboard, name: Setting) -> bool | int | str | None:
        """The live setting's value; None when it was never set (or set back to its default)."""
        if not self._settings:
            return None
        put = self._settings.get((leaderboard.id, leaderboard.incarnation), {}).get(name)
        return None if put is None else put.value

    def update_settings(self, leaderboard_id: str, values: dict[Setting, bool | int | str | None], *,
                        tournament: bool = False) -> tuple[Leaderboard, list[Change]]:
        """Change live settings of a definition (its incarnation stays: records stay). Each value
        is stamped after the one it replaces, so it wins over what this node has seen."""
        leaderboard = self.leaderboard(leaderboard_id, tournament=tournament)
        held = self._settings.get((leaderboard.id, leaderboard.incarnation), {})
        changes: list[Change] = []
        for name, value in values.items():
            hlc = self.clock.now()
            known = held.get(name)
            if known is not None and known.hlc >= hlc:
                hlc = known.hlc + 1
            change = SettingPut(leaderboard.id, leaderboard.incarnation, name, value, hlc, self.node)
            self.apply(change)
            changes.append(change)
        return leaderboard, changes

    def settings_of(self, leaderboard: Leaderboard) -> dict[Setting, SettingPut]:
        return dict(self._settings.get((leaderboard.id, leaderboard.incarnation), {}))

    def create_leaderboard(self, request: Leaderboard) -> tuple[Leaderboard, bool, list[Change]]:
        """Create a leaderboard or tournament; (definition, created, changes).

        An identical existing definition is returned as it is (not created); a different one
        with the same id is a conflict.
        """
        existing = self.leaderboards.get(request.id)
        if existing is not None:
            if existing.same_settings(replace(request, generation=existing.generation)):
                return existing, False, []
            raise LeaderboardExists(f"leaderboard {request.id!r} exists with other settings", field="id")
        created = replace(request, generation=self.leaderboards.next_generation(request.id),
                          create_hlc=self.clock.now(), origin=self.node)
        change = LeaderboardPut(created)
        self.apply(change)
        return created, True, [change]

    def delete_leaderboard(self, leaderboard_id: str, *, tournament: bool = False) -> list[Change]:
        leaderboard = self.leaderboard(leaderboard_id, tournament=tournament)
        change = LeaderboardKill(
            leaderboard.id, tuple(sorted(self.leaderboards.live_incarnations(leaderboard.id))),
            self.leaderboards.next_generation(leaderboard.id) - 1,
        )
        self.apply(change)
        return [change]

    def list_leaderboards(self, *, tournaments: bool) -> list[Leaderboard]:
        return [lb for lb in self.leaderboards.all() if lb.is_tournament == tournaments]

    def leaderboard(self, leaderboard_id: str, *, tournament: bool = False) -> Leaderboard:
        leaderboard = self.leaderboards.get(leaderboard_id)
        if leaderboard is None:
            error = TournamentNotFound if tournament else LeaderboardNotFound
            raise error(f"no {'tournament' if tournament else 'leaderboard'} {leaderboard_id!r}", field="id")
        if tournament and not leaderboard.is_tournament:
            raise NotATournament(f"{leaderboard_id!r} is a leaderboard, not a tournament", field="id")
        return leaderboard

    # ---------------------------------------------------------------- writes

    def write_record(
        self,
        leaderboard_id: str,
        owner: str,
        *,
        score: int,
        subscore: int = 0,
        username: str | None = None,
        metadata: str | None = None,
        operator: Operator | None = None,
        now: int,
        server: bool = True,
    ) -> tuple[RecordView, list[Change]]:
        return self.write(leaderboard_id, RecordWrite(owner, score, subscore, username, metadata, operator), now=now,
                          server=server)

    def write(self, leaderboard_id: str, write: RecordWrite, *, now: int,
              server: bool = True) -> tuple[RecordView, list[Change]]:
        """One write (``write_records`` of one), its error raised."""
        (result,), changes = self.write_records(leaderboard_id, [write], now=now, server=server)
        if isinstance(result, DomainError):
            raise result
        return result, changes

    def write_records(self, leaderboard_id: str, writes: Iterable[RecordWrite], *, now: int,
                      server: bool = True) -> tuple[list[RecordView | DomainError], list[Change]]:
        """Writes to one leaderboard in the reset period of ``now``, each on its own: a write
        that breaks a rule (a full tournament, a negative ``decr``) leaves its error in place of
        its record and the others still happen. An unknown leaderboard, or an authoritative one
        written without the server key, refuses them all."""
        leaderboard = self.leaderboard(leaderboard_id)
        if leaderboard.authoritative and not server:
            raise AuthoritativeLeaderboard(
                f"{leaderboard_id!r} is authoritative: only the server key may write to it", field="id")
        period = self.period(leaderboard, now)
        bucket = self._bucket(leaderboard, period.expiry, create=False)  # made by the first write that lands
        results: list[RecordView | DomainError] = []
        changes: list[Change] = []
        refused = 0
        for write in writes:
            try:
                view, bucket = self._write(leaderboard, period, bucket, write, now, changes)
                results.append(view)
            except DomainError as exc:
                results.append(exc)
                refused += 1
        counts = self.record_writes
        counts["changed"] += len(changes)  # one change per write that changed its record
        counts["unchanged"] += len(results) - len(changes) - refused
        counts["refused"] += refused
        return results, changes

    def import_records(self, leaderboard_id: str, writes: list[RecordWrite], *, now: int,
                       server: bool = True) -> tuple[ImportResult, list[Change]]:
        """Many writes to one leaderboard, with the rules of single writes, made fast for owners
        that have no record yet (the bulk of an import into a new board).

        A write of an owner this period holds nothing of (no record, no tombstone, not earlier
        in this import), with the leaderboard's own operator, is a first write: all of them are
        packed at once (``record_codec.first_write_elements``), inserted at once and replicated
        as one change. Every other write (an owner with a record, a per-write operator, any
        tournament write, with its window and limits) is an ordinary write, made after them in
        the import's order.
        """
        leaderboard = self.leaderboard(leaderboard_id)
        if leaderboard.authoritative and not server:
            raise AuthoritativeLeaderboard(
                f"{leaderboard_id!r} is authoritative: only the server key may write to it", field="id")
        if leaderboard.tournament is not None:
            results, changes = self.write_records(leaderboard_id, writes, now=now, server=server)
            refused = [(i, r) for i, r in enumerate(results) if isinstance(r, DomainError)]
            return ImportResult(len(writes) - len(refused), 0, refused), changes
        period = self.period(leaderboard, now)
        bucket = self._bucket(leaderboard, period.expiry, create=False)
        fresh: list[tuple[bytes, int, int, str | None, str | None]] = []
        ordinary: list[tuple[int, RecordWrite]] = []
        seen: set[str] = set()
        decrements = leaderboard.operator is Operator.DECR
        own = leaderboard.operator
        erasures = self._erasures
        keys = [owner_key(write.owner) for write in writes]
        held = bucket.held(keys) if bucket is not None else ()
        for position, (write, key) in enumerate(zip(writes, keys)):
            if decrements:
                check_write(leaderboard, write)
            owner = write.owner
            if (owner in seen or (write.operator is not None and write.operator is not own)
                    or (erasures and owner in erasures) or key in held):
                ordinary.append((position, write))
            else:
                seen.add(owner)
                fresh.append((key, 0, 0, write.username, write.metadata) if decrements
                             else (key, write.score, write.subscore, write.username, write.metadata))
        changes: list[Change] = []
        if fresh:
            elements = first_write_elements(
                fresh,
                origin=self.node, hlc=self.clock.now(), kind=records.contribution_kind(leaderboard.operator),
                descending=leaderboard.descending)
            elements.sort()  # sorted once here, every peer merges them as one run
            digest = digest_of(elements, descending=leaderboard.descending)
            if bucket is None:
                bucket = self._bucket_at(leaderboard.id, leaderboard.incarnation, period.expiry,
                                         descending=leaderboard.descending)
            bucket.insert_new(elements, digest=digest)
            changes.append(RecordsImported(leaderboard.id, leaderboard.incarnation, period.expiry,
                                           leaderboard.descending, elements, digest))
            self.record_writes["changed"] += len(fresh)
        refused: list[tuple[int, DomainError]] = []
        if ordinary:
            results, more = self.write_records(leaderboard_id, [w for _, w in ordinary], now=now, server=server)
            changes += more
            refused = [(position, r) for (position, _), r in zip(ordinary, results) if isinstance(r, DomainError)]
        return ImportResult(len(writes) - len(refused), len(fresh), refused), changes

    def _write(self, leaderboard: Leaderboard, period: Period, bucket: Bucket | None, write: RecordWrite, now: int,
               changes: list[Change]) -> tuple[RecordView, Bucket]:
        owner, score, subscore = write.owner, write.score, write.subscore
        effective = check_write(leaderboard, write)
        record = bucket.get(owner) if bucket is not None else None
        if leaderboard.tournament is not None:
            self._check_tournament_write(leaderboard, period, record, owner, now)
        if record is None and self._erasures and owner in self._erasures:
            # The owner's first slot here since it was erased: built on the erasure, as a write
            # after a delete is (elsewhere, the erasure is merged before this slot is).
            bucket = self._bucket(leaderboard, period.expiry, create=True)
            assert bucket is not None
            bucket.apply_slot(owner, _erasure_slot(self._erasures[owner]), current=None)
        slot = records.write(
            record.slots if record is not None else bucket.tombstone(owner) if bucket is not None else (),
            origin=self.node, hlc=self.clock.now(), leaderboard_operator=leaderboard.operator, operator=effective,
            descending=leaderboard.descending, score=score, subscore=subscore, username=write.username,
            metadata=write.metadata, horizons=self.horizons,
        )
        if slot is not None:
            if bucket is None:
                bucket = self._bucket_at(leaderboard.id, leaderboard.incarnation, period.expiry,
                                         descending=leaderboard.descending)
            changes.append(RecordSlotPut(leaderboard.id, leaderboard.incarnation, period.expiry, owner, slot,
                                         leaderboard.descending))
            if bucket.apply_slot(owner, slot, current=record):
                record = bucket.last_stored
        if record is None or bucket is None:  # pragma: no cover - a write always leaves a record
            raise RecordNotFound(f"no record of {owner!r}", field="owner_id")
        return self._view(leaderboard, bucket, record), bucket

    def _check_tournament_write(
        self, leaderboard: Leaderboard, period: Period, record: Record | None, owner: str, now: int
    ) -> None:
        t = leaderboard.tournament
        assert t is not None
        if not period.is_active(now):
            raise TournamentOutsideWindow(
                f"tournament {leaderboard.id!r} accepts scores from {period.active_start} until "
                f"{period.active_end or 'its end'} (Unix seconds); now is {now}",
                field="id", active_start=period.active_start, active_end=period.active_end,
            )
        joined = self._joins.get((leaderboard.id, leaderboard.incarnation, period.expiry), {})
        if t.join_required and owner not in joined:
            raise TournamentJoinRequired(f"{owner!r} must join tournament {leaderboard.id!r} first",
                                         field="owner_id")
        if record is not None and t.max_num_score:
            limit = self.max_num_score(leaderboard, period.expiry, owner)
            if record.value.num_score >= limit:
                raise TournamentMaxNumScore(
                    f"{owner!r} has used all {limit} score attempts in this period", field="owner_id",
                    max_num_score=limit)
        if record is None and owner not in joined and t.max_size and self.size(leaderboard, period.expiry) >= t.max_size:
            raise TournamentFull(f"tournament {leaderboard.id!r} is full ({t.max_size})", field="id")

    def max_num_score(self, leaderboard: Leaderboard, expiry: int, owner: str) -> int:
        """The owner's own limit of score changes in a period (0: unlimited): the tournament's
        ``max_num_score`` plus the attempts granted to the owner (``grant_attempts``)."""
        t = leaderboard.tournament
        if t is None or not t.max_num_score:
            return 0
        return t.max_num_score + self.extra_attempts(leaderboard, expiry, owner)

    def extra_attempts(self, leaderboard: Leaderboard, expiry: int, owner: str) -> int:
        if not self._attempts:
            return 0
        return _granted(self._attempts.get((leaderboard.id, leaderboard.incarnation, expiry), {}).get(owner))

    def grant_attempts(self, tournament_id: str, owner: str, count: int, *, now: int
                       ) -> tuple[AttemptsView, list[Change]]:
        """Grant ``owner`` ``count`` score attempts beyond the tournament's ``max_num_score`` in
        the current period (Nakama's add-attempt). Grants made on different nodes add up: each
        life keeps a running total of its own grants, and the limit is the sum of all of them."""
        leaderboard = self.leaderboard(tournament_id, tournament=True)
        t = leaderboard.tournament
        assert t is not None
        if not t.max_num_score:
            raise InvalidArgument(f"tournament {tournament_id!r} has no max_num_score: its owners have unlimited "
                                  "attempts already", field="id")
        if t.end_time and now >= t.end_time:
            raise TournamentOutsideWindow(f"tournament {tournament_id!r} has ended", field="id")
        period = self.period(leaderboard, now)
        key = (leaderboard.id, leaderboard.incarnation, period.expiry)
        own = self._attempts.get(key, {}).get(owner, {}).get(self.node)
        hlc = self.clock.now()
        erasure = self._erasures.get(owner)
        floor = max(own[0] if own else 0, erasure.hlc if erasure else 0)
        if hlc <= floor:
            hlc = floor + 1
        change = AttemptsGrant(leaderboard.id, leaderboard.incarnation, period.expiry, owner, self.node, hlc,
                               (own[1] if own else 0) + count)
        self.apply(change)
        extra = self.extra_attempts(leaderboard, period.expiry, owner)
        return AttemptsView(leaderboard.id, owner, period.expiry, t.max_num_score + extra, extra), [change]

    def size(self, leaderboard: Leaderboard, expiry: int) -> int:
        joined = self._joins.get((leaderboard.id, leaderboard.incarnation, expiry), {})
        bucket = self._bucket(leaderboard, expiry, create=False)
        if bucket is None:
            return len(joined)
        return len(bucket) + sum(1 for owner in joined if bucket.get(owner) is None)

    def join_tournament(self, tournament_id: str, owner: str, *, now: int) -> tuple[bool, list[Change]]:
        """(newly joined, changes). Joining twice is fine; joining a full tournament is not."""
        leaderboard = self.leaderboard(tournament_id, tournament=True)
        period = self.period(leaderboard, now)
        t = leaderboard.tournament
        assert t is not None
        if t.end_time and now >= t.end_time:
            raise TournamentOutsideWindow(f"tournament {tournament_id!r} has ended", field="id")
        joined = self._joins.get((leaderboard.id, leaderboard.incarnation, period.expiry), {})
        if owner in joined:
            return False, []
        if t.max_size and self.size(leaderboard, period.expiry) >= t.max_size:
            bucket = self._bucket(leaderboard, period.expiry, create=False)
            if bucket is None or bucket.get(owner) is None:
                raise TournamentFull(f"tournament {tournament_id!r} is full ({t.max_size})", field="id")
        hlc = self.clock.now()
        erasure = self._erasures.get(owner)
        if erasure is not None and hlc <= erasure.hlc:
            hlc = erasure.hlc + 1
        change = TournamentJoin(leaderboard.id, leaderboard.incarnation, period.expiry, owner, hlc)
        self.apply(change)
        return True, [change]

    def delete_record(self, leaderboard_id: str, owner: str, *, now: int, expiry: int | None = None,
                      server: bool = True) -> list[Change]:
        leaderboard = self.leaderboard(leaderboard_id)
        if leaderboard.authoritative and not server:
            raise AuthoritativeLeaderboard(
                f"{leaderboard_id!r} is authoritative: only the server key may delete its records", field="id")
        bucket = self._read_bucket(leaderboard, expiry, now)
        record = bucket.get(owner) if bucket is not None else None
        if bucket is None or record is None:
            raise RecordNotFound(f"{owner!r} has no record in {leaderboard_id!r}", field="owner_id")
        change = RecordSlotPut(leaderboard.id, leaderboard.incarnation, bucket.expiry, owner,
                               records.tombstone(record.slots, origin=self.node, hlc=self.clock.now()),
                               leaderboard.descending)
        self.apply(change)
        return [change]

    # ---------------------------------------------------------------- owners

    def _owner_buckets(self, owner: str) -> Iterator[tuple[str, str, Bucket]]:
        """Every bucket (of any incarnation, dead ones aside) that holds slots of ``owner``."""
        for leaderboard_id, incarnation, bucket in self.buckets():
            if bucket.holds(owner):
                yield leaderboard_id, incarnation, bucket

    def erase_owner(self, owner: str) -> tuple[int, int, list[Change]]:
        """Erase every record, join and attempt grant of ``owner``, in every leaderboard and
        tournament and every period held: (records erased, the erasure's clock, changes)."""
        hlc = self.clock.now()
        erased = 0
        for leaderboard_id, incarnation, bucket in self._owner_buckets(owner):
            record = bucket.get(owner)
            hlc = records.stamp_after(record.slots if record is not None else bucket.tombstone(owner), hlc)
            live = self.leaderboards.get(leaderboard_id)
            if record is not None and live is not None and live.incarnation == incarnation:
                erased += 1
        for joined in self._joins.values():
            if joined.get(owner, -1) >= hlc:
                hlc = joined[owner] + 1
        for granted in self._attempts.values():
            for grant_hlc, _ in granted.get(owner, {}).values():
                hlc = max(hlc, grant_hlc + 1)
        known = self._erasures.get(owner)
        if known is not None and known.hlc >= hlc:
            hlc = known.hlc + 1
        change = OwnerErase(owner, hlc, self.node)
        self.apply(change)
        return erased, hlc, [change]

    def owner_records(self, owner: str, *, limit: int, cursor: str | None = None) -> OwnerPage:
        """Every record of ``owner`` held, in every leaderboard and tournament and every period
        still kept, by leaderboard id and then period (``expiry``), with its rank."""
        after = _read_owner_cursor(cursor) if cursor else None
        found: list[tuple[tuple[str, int], Leaderboard, Bucket, Record]] = []
        for leaderboard_id, incarnation, bucket in self._owner_buckets(owner):
            leaderboard = self.leaderboards.get(leaderboard_id)
            if leaderboard is None or leaderboard.incarnation != incarnation:
                continue
            position = (leaderboard_id, bucket.expiry)
            if after is not None and position <= after:
                continue
            record = bucket.get(owner)
            if record is not None:
                found.append((position, leaderboard, bucket, record))
        found.sort(key=lambda item: item[0])
        page = found[:limit]
        views = [self._view(leaderboard, bucket, record) for _, leaderboard, bucket, record in page]
        next_cursor = _owner_cursor(*page[-1][0]) if len(found) > limit else None
        return OwnerPage(views, next_cursor)

    # ---------------------------------------------------------------- ranks

    def _require_ranks(self, leaderboard: Leaderboard) -> None:
        if not self.ranks_enabled(leaderboard):
            raise RanksDisabled(f"{leaderboard.id!r} keeps no ranks (enable_ranks is off, or its id is in the rank "
                                "blacklist)", field="rank")

    def record_at_rank(self, leaderboard_id: str, rank: int, *, now: int, expiry: int | None = None) -> RecordView:
        """The record at ``rank`` (1-based), found by position in the rank cache: O(log n)."""
        leaderboard = self.leaderboard(leaderboard_id)
        self._require_ranks(leaderboard)
        bucket = self._read_bucket(leaderboard, expiry, now)
        count = len(bucket) if bucket is not None else 0
        if bucket is None or rank > count:
            raise RecordNotFound(f"{leaderboard_id!r} has {count} records: none at rank {rank}", field="rank")
        return self._rows(leaderboard, bucket, bucket.elements(rank - 1, rank), rank).views()[0]

    # ---------------------------------------------------------------- events

    def produce_event(self, leaderboard: Leaderboard, period: Period, *, top: int) -> list[Change]:
        """The event of a period that has ended: its top ``top`` records as they stand now."""
        bucket = self.bucket(leaderboard.id, leaderboard.incarnation, period.expiry)
        standings: tuple[Standing, ...] = ()
        count = 0 if bucket is None else len(bucket)
        if bucket is not None and count:
            views = self._rows(leaderboard, bucket, bucket.elements(0, min(top, count)), 1).views()
            standings = tuple(Standing(v.rank, v.owner_id, v.username, v.score, v.subscore, v.num_score,
                                       v.max_num_score, v.metadata, v.create_ms, v.update_ms) for v in views)
        event = Event(leaderboard.id, leaderboard.incarnation, event_kind(leaderboard, period.expiry), period.start,
                      period.expiry, period.active_start, period.active_end, count, top, standings,
                      self.clock.now(), self.node, self.events.next_number(self.node))
        change = EventPut(event)
        self.apply(change)
        return [change]

    def list_events(self, cursor: dict[str, int], *, limit: int, leaderboard_id: str | None = None
                    ) -> tuple[list[Event], dict[str, int]]:
        """The next shown events beyond ``cursor`` (of one leaderboard, when given) and the cursor
        past them (see ``events``). A retired life's place is left out of the cursor once none
        of its events is held: nothing of it can arrive any more."""
        if leaderboard_id is None:
            events, advanced = self.events.after(cursor, limit=limit)
        else:
            events, advanced = self.events.after(cursor, limit=limit,
                                                 wanted=lambda event: event.leaderboard_id == leaderboard_id)
        held = set(self.events.origins())
        for life in [life for life in advanced if life not in held
                     and life_epoch(life) < self.horizons.get(life_name(life))]:
            del advanced[life]
        return events, advanced

    def record_delivery(self, target: str, event: Event) -> list[Change]:
        change = DeliveryProgress(target, event.origin, event.number)
        return [change] if self.apply(change) else []

    def trim_events(self, before: int) -> int:
        """Drop events of periods that ended before ``before`` (Unix seconds)."""
        return self.events.trim(before)

    def _erased_after(self, event: Event) -> dict[str, int]:
        return {s.owner_id: erasure.hlc for s in event.standings
                if (erasure := self._erasures.get(s.owner_id)) is not None and erasure.hlc > event.hlc}

    # ---------------------------------------------------------------- replication

    def apply(self, change: Change) -> bool:
        """Merge a change (local or from a peer); True when it changed anything."""
        if isinstance(change, RecordSlotPut):
            self.clock.observe(change.slot.hlc)
            if self.leaderboards.is_dead(change.leaderboard_id, change.incarnation):
                return False
            bucket = self._bucket_at(change.leaderboard_id, change.incarnation, change.expiry,
                                     descending=change.descending)
            if self._erasures:
                erasure = self._erasures.get(change.owner)
                if erasure is not None:  # merged first: what was stamped before it is void on arrival
                    bucket.apply_slot(change.owner, _erasure_slot(erasure))
            changed = bucket.apply_slot(change.owner, change.slot)
            if changed and change.expiry and self.events.has((change.leaderboard_id, change.incarnation,
                                                               change.expiry)):
                self.late_writes += 1
            return changed
        if isinstance(change, RecordsImported):
            return self._apply_import(change)
        if isinstance(change, LeaderboardPut):
            self.clock.observe(change.leaderboard.create_hlc)
            if self.leaderboards.is_dead(change.leaderboard.id, change.leaderboard.incarnation):
                return False
            return self.leaderboards.put(change.leaderboard)
        if isinstance(change, LeaderboardKill):
            killed = self.leaderboards.kill(change.leaderboard_id, list(change.incarnations), change.generation)
            for incarnation in killed:
                for bucket in self._buckets.pop((change.leaderboard_id, incarnation), {}).values():
                    self._unsettled.discard(bucket)
                    self._unfolded.pop(bucket, None)
                for key in [k for k in self._joins if k[:2] == (change.leaderboard_id, incarnation)]:
                    del self._joins[key]
                for key in [k for k in self._attempts if k[:2] == (change.leaderboard_id, incarnation)]:
                    del self._attempts[key]
                self._settings.pop((change.leaderboard_id, incarnation), None)
            return bool(killed)
        if isinstance(change, TournamentJoin):
            if self._comes_to_nothing(change):
                return False
            joined = self._joins.setdefault((change.leaderboard_id, change.incarnation, change.expiry), {})
            if joined.get(change.owner, -1) >= change.hlc:
                return False
            joined[change.owner] = change.hlc
            return True
        if isinstance(change, OwnerErase):
            return self._apply_erasure(change)
        if isinstance(change, AttemptsGrant):
            if self._comes_to_nothing(change):
                return False
            grants = self._attempts.setdefault((change.leaderboard_id, change.incarnation, change.expiry), {}
                                               ).setdefault(change.owner, {})
            known = grants.get(change.origin)
            if known is not None and known[0] >= change.hlc:
                return False
            grants[change.origin] = (change.hlc, change.total)
            return True
        if isinstance(change, SettingPut):
            self.clock.observe(change.hlc)
            if self.leaderboards.is_dead(change.leaderboard_id, change.incarnation):
                return False
            held = self._settings.setdefault((change.leaderboard_id, change.incarnation), {})
            known = held.get(change.name)
            if known is not None and known.order >= change.order:
                return False
            held[change.name] = change
            return True
        if isinstance(change, EventPut):
            self.clock.observe(change.event.hlc)
            event = change.event
            if self._erasures:
                event = redact_event(event, self._erased_after(event))
            return self.events.add(event)
        if isinstance(change, DeliveryProgress):
            return self.events.advance(change.target, change.origin, change.number)
        raise TypeError(f"not a change: {change!r}")  # pragma: no cover

    def _comes_to_nothing(self, change: TournamentJoin | AttemptsGrant) -> bool:
        """Observe an owner's join or grant's clock; True when it changes nothing: its
        leaderboard incarnation is deleted, or the owner was erased after it was made."""
        self.clock.observe(change.hlc)
        if self.leaderboards.is_dead(change.leaderboard_id, change.incarnation):
            return True
        erasure = self._erasures.get(change.owner)
        return erasure is not None and change.hlc < erasure.hlc

    def _apply_import(self, change: RecordsImported) -> bool:
        """First writes made elsewhere: inserted at once where this node holds nothing of their
        owners, merged as slots where it does (it took writes of them meanwhile)."""
        if self.leaderboards.is_dead(change.leaderboard_id, change.incarnation) or not change.elements:
            return False
        bucket = self._bucket_at(change.leaderboard_id, change.incarnation, change.expiry,
                                 descending=change.descending)
        fresh, held = [], []
        keys = [element[PREFIX_SIZE:key_end(element)] for element in change.elements]
        taken = bucket.held(keys)  # owners this node took writes of meanwhile: merged as slots
        if self._erasures:
            taken |= {owner_key(owner) for owner in self._erasures}.intersection(keys)
        for element, key in zip(change.elements, keys):
            if key in taken:
                held.append(element)
            else:
                taken.add(key)  # owners repeated within an import are merged, not inserted twice
                fresh.append(element)
        if held:
            bucket.insert_new(fresh, digest=change.digest - digest_of(held, descending=change.descending))
            for element in held:  # as any slot arrives: an erasure first, late writes counted
                record = bucket.decode(element)
                for slot in record.slots:
                    self.apply(RecordSlotPut(change.leaderboard_id, change.incarnation, change.expiry, record.owner,
                                             slot, change.descending))
        else:
            bucket.insert_new(fresh, digest=change.digest)
        return True
    def _apply_erasure(self, change: OwnerErase) -> bool:
        self.clock.observe(change.hlc)
        owner = change.owner
        known = self._erasures.get(owner)
        if known is None or (known.hlc, known.origin) < (change.hlc, change.origin):
            self._erasures[owner] = change
        slot = _erasure_slot(change)
        changed = False
        for _, _, bucket in list(self._owner_buckets(owner)):
            changed |= bucket.apply_slot(owner, slot)
        for joined in self._joins.values():
            if joined.get(owner, change.hlc) < change.hlc:
                del joined[owner]
                changed = True
        for granted in self._attempts.values():
            grants = granted.get(owner)
            if grants:
                for origin in [o for o, (hlc, _) in grants.items() if hlc < change.hlc]:
                    del grants[origin]
                    changed = True
                if not grants:
                    del granted[owner]
        changed |= self.events.redact(owner, change.hlc) > 0
        return changed

    def erasures(self) -> list[OwnerErase]:
        return list(self._erasures.values())

    def attempt_grants(self) -> Iterator[AttemptsGrant]:
        for (leaderboard_id, incarnation, expiry), granted in list(self._attempts.items()):
            for owner, grants in granted.items():
                for origin, (hlc, total) in grants.items():
                    yield AttemptsGrant(leaderboard_id, incarnation, expiry, owner, origin, hlc, total)

    def setting_puts(self) -> Iterator[SettingPut]:
        for held in list(self._settings.values()):
            yield from held.values()

    def install_bucket(self, leaderboard_id: str, incarnation: str, bucket: Bucket) -> None:
        """Put a bucket built elsewhere (a full sync) in place, merging what is already here
        into it. A bucket held here with at least half as many records is merged the other way,
        a slice at a time, by ``merge_synced`` instead."""
        if self.leaderboards.is_dead(leaderboard_id, incarnation):
            return
        bucket.horizons = self.horizons
        by_expiry = self._buckets.setdefault((leaderboard_id, incarnation), {})
        existing = by_expiry.get(bucket.expiry)
        if existing is not None:
            bucket.absorb(existing)
            self._unsettled.discard(existing)
            self._unfolded.pop(existing, None)
        by_expiry[bucket.expiry] = bucket
        if not bucket.digest_settled:
            self._unsettled.add(bucket)
        if self.horizons:  # built from another node's records: fold what lives retired here wrote
            self._unfolded[bucket] = None
        self._erase_in(bucket)

    def merge_synced(self, leaderboard_id: str, incarnation: str, expiry: int, elements: list[bytes],
                     tombstones: list[tuple[str, Slots]], *, slice_records: int) -> Iterator[None] | None:
        """Merge a synced bucket's records (packed and checked) and tombstones into the bucket of
        the same period this store holds, ``slice_records`` records per step of the returned
        generator: a running node repairing from a full sync goes on serving between steps
        (building the copy at once, ``install_bucket``, pauses it about 3 s per million records).

        None when this store holds no such bucket, or fewer than half as many records: then
        building the copy at once is faster (merging a record not held costs about 20 us, one
        packed the same on both sides about 1 us). Writes between steps are merged as always:
        merges commute, so the order does not matter. The merge stops if the bucket goes away
        meanwhile (its leaderboard deleted, its period trimmed).
        """
        if self.leaderboards.is_dead(leaderboard_id, incarnation):
            return None
        held = self._buckets.get((leaderboard_id, incarnation), {}).get(expiry)
        if held is None or 2 * len(held) < len(elements):
            return None
        return self._merge_slices((leaderboard_id, incarnation), held, elements, tombstones, slice_records)

    def _merge_slices(self, key: tuple[str, str], held: Bucket, elements: list[bytes],
                      tombstones: list[tuple[str, Slots]], slice_records: int) -> Iterator[None]:
        for start in range(0, len(elements), slice_records):
            if self._buckets.get(key, {}).get(held.expiry) is not held:
                return
            held.absorb_elements(elements[start:start + slice_records])
            yield
        if self._buckets.get(key, {}).get(held.expiry) is held:
            for owner, slots in tombstones:
                held.apply_slots(owner, slots)
            self._erase_in(held)

    def _erase_in(self, bucket: Bucket) -> None:
        """Merge every erasure held into a bucket built elsewhere (a sender may not have had them)."""
        for owner, erasure in self._erasures.items():
            if bucket.holds(owner):
                bucket.apply_slot(owner, _erasure_slot(erasure))

    def settle_digests(self, budget: int) -> bool:
        """Hash up to ``budget`` records whose bucket was built at once (``Bucket.settle``);
        True while some bucket's digest is still unsettled."""
        bucket = next(iter(self._unsettled), None)
        if bucket is not None and bucket.settle(budget) == 0:
            self._unsettled.discard(bucket)
        return bool(self._unsettled)

    def retire(self, name: str, horizon: int) -> bool:
        """Every life of node ``name`` below the epoch ``horizon`` is retired (``lives``): fold
        what they wrote, in every record as it is next merged and in the background
        (``settle_lives``). True when this retired lives not retired before."""
        if not self.horizons.advance(name, horizon):
            return False
        for _, _, bucket in self.buckets():
            self._unfolded[bucket] = None
        return True

    def settle_lives(self, budget: int) -> bool:
        """Settle up to ``budget`` records of buckets not settled since lives were last retired;
        True while some remain."""
        for bucket, after in self._unfolded.items():
            resume = bucket.settle_lives(after, budget)
            if resume is None:
                del self._unfolded[bucket]
            else:
                self._unfolded[bucket] = resume
            break
        return bool(self._unfolded)

    def digests_settled(self) -> bool:
        # Only a bucket built at once (install_bucket) starts unsettled; each is kept here until
        # settled or dropped, so asking costs nothing however many buckets there are.
        return not self._unsettled

    def bucket(self, leaderboard_id: str, incarnation: str, expiry: int) -> Bucket | None:
        return self._buckets.get((leaderboard_id, incarnation), {}).get(expiry)

    def buckets(self) -> Iterator[tuple[str, str, Bucket]]:
        """Every bucket of a live incarnation: (leaderboard id, incarnation, bucket)."""
        for (leaderboard_id, incarnation), by_expiry in list(self._buckets.items()):
            for bucket in list(by_expiry.values()):
                yield leaderboard_id, incarnation, bucket

    def joins(self) -> Iterator[tuple[str, str, int, dict[str, int]]]:
        """Every join held: (leaderboard id, incarnation, expiry, owner -> when it joined)."""
        for (leaderboard_id, incarnation, expiry), owners in list(self._joins.items()):
            yield leaderboard_id, incarnation, expiry, dict(owners)

    def record_count(self) -> int:
        return sum(len(bucket) for _, _, bucket in self.buckets())

    def packed_bytes(self) -> int:
        """The bytes of every record as the rank cache packs it (see ``record_codec``)."""
        return sum(bucket.packed_bytes for _, _, bucket in self.buckets())

    def trim(self, now: int) -> int:
        """Drop buckets whose period ended more than the retention ago; returns how many."""
        horizon = now - self.retention
        dropped = 0
        for key, by_expiry in list(self._buckets.items()):
            for expiry in [e for e in by_expiry if e != NEVER and e < horizon]:
                bucket = by_expiry.pop(expiry)
                self._unsettled.discard(bucket)
                self._unfolded.pop(bucket, None)
                self._joins.pop((key[0], key[1], expiry), None)
                dropped += 1
            if not by_expiry:
                del self._buckets[key]
        for key in [k for k in self._joins if k[2] != NEVER and k[2] < horizon]:
            del self._joins[key]
        for key in [k for k in self._attempts if k[2] != NEVER and k[2] < horizon]:
            del self._attempts[key]
        forget = (now - self.erasure_retention) * 1000
        for owner in [o for o, e in self._erasures.items() if physical_ms(e.hlc) < forget]:
            del self._erasures[owner]
        return dropped

    # ---------------------------------------------------------------- reads

    def _bucket_at(self, leaderboard_id: str, incarnation: str, expiry: int, *, descending: bool) -> Bucket:
        """The bucket, created empty when it does not exist yet."""
        by_expiry = self._buckets.setdefault((leaderboard_id, incarnation), {})
        bucket = by_expiry.get(expiry)
        if bucket is None:
            bucket = by_expiry[expiry] = Bucket(descending=descending, expiry=expiry, horizons=self.horizons)
        return bucket

    def _bucket(self, leaderboard: Leaderboard, expiry: int, *, create: bool) -> Bucket | None:
        if create:
            return self._bucket_at(leaderboard.id, leaderboard.incarnation, expiry,
                                   descending=leaderboard.descending)
        return self.bucket(leaderboard.id, leaderboard.incarnation, expiry)

    def _read_bucket(self, leaderboard: Leaderboard, expiry: int | None, now: int) -> Bucket | None:
        if expiry is None:
            expiry = self.period(leaderboard, now).expiry
        elif expiry != NEVER and expiry < now - self.retention:
            raise BucketExpired(f"the reset period that ended at {expiry} is no longer kept", field="expiry")
        return self._bucket(leaderboard, expiry, create=False)

    def _view(self, leaderboard: Leaderboard, bucket: Bucket, record: Record, rank: int | None = None) -> RecordView:
        value = record.value
        if not self.ranks_enabled(leaderboard):
            rank = 0
        elif rank is None:
            rank = bucket.rank_of(record.element)
        limit = self.max_num_score(leaderboard, bucket.expiry, record.owner) if leaderboard.tournament else 0
        return _new_view((leaderboard.id, record.owner, value.username, value.score, value.subscore,
                          value.num_score, limit, value.metadata, value.create_ms,
                          value.update_ms, bucket.expiry, rank))

    def _rows(self, leaderboard: Leaderboard, bucket: Bucket, elements: list[bytes], first_rank: int) -> PageRows:
        """Consecutive elements of ``bucket``, the first at rank ``first_rank``, with what their
        views share looked up once."""
        t = leaderboard.tournament
        max_num_score = t.max_num_score if t else 0
        granted = (self._attempts.get((leaderboard.id, leaderboard.incarnation, bucket.expiry)) if max_num_score
                   and self._attempts else None)
        return PageRows(leaderboard.id, bucket.descending, bucket.expiry, elements, first_rank,
                        self.ranks_enabled(leaderboard), max_num_score, granted)

    def get_record(self, leaderboard_id: str, owner: str, *, now: int, expiry: int | None = None) -> RecordView:
        leaderboard = self.leaderboard(leaderboard_id)
        bucket = self._read_bucket(leaderboard, expiry, now)
        record = bucket.get(owner) if bucket is not None else None
        self._count_lookup(leaderboard, record is not None)
        if bucket is None or record is None:
            raise RecordNotFound(f"{owner!r} has no record in {leaderboard_id!r}", field="owner_id")
        return self._view(leaderboard, bucket, record)

    def list_records(
        self,
        leaderboard_id: str,
        *,
        limit: int,
        now: int,
        cursor: str | None = None,
        owner_ids: Iterable[str] = (),
        expiry: int | None = None,
        rank: int | None = None,
    ) -> RecordPage:
        """A page in rank order: the first, the one a cursor continues to, or (``rank``) the one
        that starts at that rank, found by position in O(log n); its cursors continue from it."""
        leaderboard = self.leaderboard(leaderboard_id)
        position: Cursor | None = None
        if rank is not None:
            if cursor:
                raise InvalidArgument("rank and cursor cannot be combined: a cursor already says where to go on",
                                      field="rank")
            self._require_ranks(leaderboard)
        if cursor:
            position = decode_cursor(cursor)
            if position.incarnation != leaderboard.incarnation:
                raise CursorInvalid("the cursor belongs to another leaderboard", field="cursor")
            if expiry is None and position.expiry != self.period(leaderboard, now).expiry:
                raise CursorExpired("the reset period this cursor belongs to has ended; start from the first page",
                                    field="cursor")
            if expiry is not None and position.expiry != expiry:
                raise CursorInvalid("the cursor belongs to another reset period than expiry=", field="cursor")
            expiry = position.expiry
        bucket = self._read_bucket(leaderboard, expiry, now)
        bucket_expiry = bucket.expiry if bucket is not None else (
            expiry if expiry is not None else self.period(leaderboard, now).expiry)
        owners = [self._owner_rows(leaderboard, bucket, owner) for owner in dict.fromkeys(owner_ids)]
        owner_records = [rows for rows in owners if rows is not None]
        if bucket is None or len(bucket) == 0 or limit == 0:
            return RecordPage(None, owner_records, None, None, 0 if bucket is None else len(bucket), bucket_expiry)
        total = len(bucket)
        if rank is not None:
            start = min(rank - 1, total)
        elif position is None:
            start = 0
        elif position.forward:
            start = bucket.index_after(position.key)
        else:
            start = max(0, bucket.index_before(position.key) - limit)
        stop = min(total, start + limit) if position is None or position.forward else bucket.index_before(position.key)
        page = bucket.elements(start, stop)
        return RecordPage(self._rows(leaderboard, bucket, page, start + 1), owner_records,
                          *_cursors(leaderboard, bucket, page, start), total, bucket.expiry)

    def _count_lookup(self, leaderboard: Leaderboard, found: bool) -> None:
        outcome = "miss" if not found else "hit" if self.ranks_enabled(leaderboard) else "off"
        self.rank_lookups[outcome] += 1

    def _owner_rows(self, leaderboard: Leaderboard, bucket: Bucket | None, owner: str) -> PageRows | None:
        element = bucket.element_of(owner) if bucket is not None else None
        self._count_lookup(leaderboard, element is not None)
        if bucket is None or element is None:
            return None
        return self._rows(leaderboard, bucket, [element], bucket.rank_of(element))

    def around_owner(self, leaderboard_id: str, owner: str, *, limit: int, now: int,
                     expiry: int | None = None) -> RecordPage:
        leaderboard = self.leaderboard(leaderboard_id)
        bucket = self._read_bucket(leaderboard, expiry, now)
        bucket_expiry = bucket.expiry if bucket is not None else self.period(leaderboard, now).expiry
        if bucket is None:
            return RecordPage(None, [], None, None, 0, bucket_expiry)
        start, page, index = bucket.around(owner, limit)
        self._count_lookup(leaderboard, bool(page))
        if not page:
            return RecordPage(None, [], None, None, len(bucket), bucket.expiry)
        owner_rows = self._rows(leaderboard, bucket, [page[index - start]], index + 1)
        return RecordPage(self._rows(leaderboard, bucket, page, start + 1), [owner_rows],
                          *_cursors(leaderboard, bucket, page, start), len(bucket), bucket.expiry)

    def digest(self, leaderboard_id: str, *, now: int, expiry: int | None = None) -> BucketDigest:
        leaderboard = self.leaderboard(leaderboard_id)
        bucket = self._read_bucket(leaderboard, expiry, now)
        if bucket is None:
            resolved = expiry if expiry is not None else self.period(leaderboard, now).expiry
            return BucketDigest(leaderboard.id, leaderboard.incarnation, resolved, 0, f"{0:032x}")
        return BucketDigest(leaderboard.id, leaderboard.incarnation, bucket.expiry, len(bucket), bucket.digest)
