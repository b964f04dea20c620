"""The leaderboard store: every leaderboard, tournament and record a node holds.

Local operations validate a request against the current state, apply it, and return the
changes they made (for replication); ``apply`` merges a change made elsewhere. Reads return
plain views. Time comes in as an argument (``now``, Unix seconds) and the hybrid logical
clock is injected, so the store does no I/O and tests can drive time.

Buckets are keyed by (leaderboard id, incarnation) and then by expiry. Records of an
incarnation whose definition has not arrived yet are kept (a change carries the sort order
needed to rank them) and become visible when it does; records of a dead incarnation are
dropped, now and when they arrive later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

from . import records
from .changes import Change, LeaderboardKill, LeaderboardPut, RecordSlotPut, RecordsImported, TournamentJoin
from .clock import HybridLogicalClock
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
    RecordNotFound,
    TournamentFull,
    TournamentJoinRequired,
    TournamentMaxNumScore,
    TournamentNotFound,
    TournamentOutsideWindow,
)
from .leaderboards import Leaderboard, LeaderboardCache, RankBlacklist, period_of
from .lives import Horizons
from .rank_cache import Bucket, Record, digest_of
from .record_codec import first_write_elements, sort_key
from .records import Operator
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


@dataclass(frozen=True, slots=True)
class RecordPage:
    records: list[RecordView]
    owner_records: list[RecordView]
    next_cursor: str | None
    prev_cursor: str | None
    rank_count: int
    expiry: int


@dataclass(frozen=True, slots=True)
class BucketDigest:
    leaderboard_id: str
    incarnation: str
    expiry: int
    count: int
    digest: str


BucketKey = tuple[str, str]  # (leaderboard id, incarnation)


class LeaderboardStore:
    def __init__(
        self,
        *,
        node: str,
        clock: HybridLogicalClock,
        blacklist: RankBlacklist = RankBlacklist(),
        retention: int = 86400,
    ) -> None:
        self.node = node  # the life id this node writes under (lives.life_id)
        self.clock = clock
        self.horizons = Horizons()
        self.blacklist = blacklist
        self.retention = retention
        self.leaderboards = LeaderboardCache()
        self._buckets: dict[BucketKey, dict[int, Bucket]] = {}
        self._unsettled: set[Bucket] = set()  # buckets built at once whose digest is not settled yet
        self._joins: dict[tuple[str, str, int], set[str]] = {}
        # Buckets still to settle since lives were last retired, and where in each the sweep is
        self._unfolded: dict[Bucket, bytes | None] = {}
        # Owner lookups by outcome (exported as a metric): hit (ranked), miss (no record), off (no ranks)
        self.rank_lookups = {"hit": 0, "miss": 0, "off": 0}

    # ---------------------------------------------------------------- definitions

    def period(self, leaderboard: Leaderboard, now: int) -> Period:
        return period_of(leaderboard, now)

    def ranks_enabled(self, leaderboard: Leaderboard) -> bool:
        return leaderboard.enable_ranks and not self.blacklist.matches(leaderboard.id)

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
        for write in writes:
            try:
                view, bucket = self._write(leaderboard, period, bucket, write, now, changes)
                results.append(view)
            except DomainError as exc:
                results.append(exc)
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
        fresh: list[RecordWrite] = []
        ordinary: list[tuple[int, RecordWrite]] = []
        seen: set[str] = set()
        decrements = leaderboard.operator is Operator.DECR
        for position, write in enumerate(writes):
            check_write(leaderboard, write)
            if (write.owner in seen or (write.operator is not None and write.operator is not leaderboard.operator)
                    or (bucket is not None and (bucket.get(write.owner) is not None or bucket.tombstone(write.owner)))):
                ordinary.append((position, write))
            else:
                seen.add(write.owner)
                fresh.append(write)
        changes: list[Change] = []
        if fresh:
            elements = first_write_elements(
                [(w.owner, 0 if decrements else w.score, 0 if decrements else w.subscore, w.username, w.metadata)
                 for w in fresh],
                origin=self.node, hlc=self.clock.now(), kind=records.contribution_kind(leaderboard.operator),
                descending=leaderboard.descending)
            digest = digest_of(elements, descending=leaderboard.descending)
            if bucket is None:
                bucket = self._bucket_at(leaderboard.id, leaderboard.incarnation, period.expiry,
                                         descending=leaderboard.descending)
            bucket.insert_new(elements, digest=digest)
            changes.append(RecordsImported(leaderboard.id, leaderboard.incarnation, period.expiry,
                                           leaderboard.descending, elements, digest))
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
        joined = self._joins.get((leaderboard.id, leaderboard.incarnation, period.expiry), set())
        if t.join_required and owner not in joined:
            raise TournamentJoinRequired(f"{owner!r} must join tournament {leaderboard.id!r} first",
                                         field="owner_id")
        if record is not None and t.max_num_score and record.value.num_score >= t.max_num_score:
            raise TournamentMaxNumScore(
                f"{owner!r} has used all {t.max_num_score} score attempts in this period", field="owner_id")
        if record is None and owner not in joined and t.max_size and self.size(leaderboard, period.expiry) >= t.max_size:
            raise TournamentFull(f"tournament {leaderboard.id!r} is full ({t.max_size})", field="id")

    def size(self, leaderboard: Leaderboard, expiry: int) -> int:
        joined = self._joins.get((leaderboard.id, leaderboard.incarnation, expiry), set())
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
        joined = self._joins.get((leaderboard.id, leaderboard.incarnation, period.expiry), set())
        if owner in joined:
            return False, []
        if t.max_size and self.size(leaderboard, period.expiry) >= t.max_size:
            bucket = self._bucket(leaderboard, period.expiry, create=False)
            if bucket is None or bucket.get(owner) is None:
                raise TournamentFull(f"tournament {tournament_id!r} is full ({t.max_size})", field="id")
        change = TournamentJoin(leaderboard.id, leaderboard.incarnation, period.expiry, owner)
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

    # ---------------------------------------------------------------- replication

    def apply(self, change: Change) -> bool:
        """Merge a change (local or from a peer); True when it changed anything."""
        if isinstance(change, RecordSlotPut):
            self.clock.observe(change.slot.hlc)
            if self.leaderboards.is_dead(change.leaderboard_id, change.incarnation):
                return False
            bucket = self._bucket_at(change.leaderboard_id, change.incarnation, change.expiry,
                                     descending=change.descending)
            return bucket.apply_slot(change.owner, change.slot)
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
            return bool(killed)
        if isinstance(change, TournamentJoin):
            if self.leaderboards.is_dead(change.leaderboard_id, change.incarnation):
                return False
            joined = self._joins.setdefault((change.leaderboard_id, change.incarnation, change.expiry), set())
            if change.owner in joined:
                return False
            joined.add(change.owner)
            return True
        raise TypeError(f"not a change: {change!r}")  # pragma: no cover

    def _apply_import(self, change: RecordsImported) -> bool:
        """First writes made elsewhere: inserted at once where this node holds nothing of their
        owners, merged as slots where it does (it took writes of them meanwhile)."""
        if self.leaderboards.is_dead(change.leaderboard_id, change.incarnation) or not change.elements:
            return False
        bucket = self._bucket_at(change.leaderboard_id, change.incarnation, change.expiry,
                                 descending=change.descending)
        fresh, held = [], []
        keys: set[bytes] = set()
        for element in change.elements:
            key = sort_key(element)[16:]  # owners repeated within an import are merged, not inserted twice
            if key in keys or bucket.holds(element):
                held.append(element)
            else:
                keys.add(key)
                fresh.append(element)
        if held:
            bucket.insert_new(fresh, digest=change.digest - digest_of(held, descending=change.descending))
            for element in held:
                record = bucket.decode(element)
                bucket.apply_slots(record.owner, record.slots)
        else:
            bucket.insert_new(fresh, digest=change.digest)
        return True

    def install_bucket(self, leaderboard_id: str, incarnation: str, bucket: Bucket) -> None:
        """Put a bucket built elsewhere (a full sync) in place, merging what is already here."""
        if self.leaderboards.is_dead(leaderboard_id, incarnation):
            return
        bucket.horizons = self.horizons
        by_expiry = self._buckets.setdefault((leaderboard_id, incarnation), {})
        existing = by_expiry.get(bucket.expiry)
        if existing is not None and len(existing) > len(bucket):
            existing.absorb(bucket)
            return
        if existing is not None:
            bucket.absorb(existing)
            self._unsettled.discard(existing)
            self._unfolded.pop(existing, None)
        by_expiry[bucket.expiry] = bucket
        if not bucket.digest_settled:
            self._unsettled.add(bucket)
        if self.horizons:  # built from another node's records: fold what lives retired here wrote
            self._unfolded[bucket] = None

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

    def joins(self) -> Iterator[tuple[str, str, int, frozenset[str]]]:
        for (leaderboard_id, incarnation, expiry), owners in list(self._joins.items()):
            yield leaderboard_id, incarnation, expiry, frozenset(owners)

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
            rank = bucket.rank(record)
        t = leaderboard.tournament
        return _new_view((leaderboard.id, record.owner, value.username, value.score, value.subscore,
                          value.num_score, t.max_num_score if t else 0, value.metadata, value.create_ms,
                          value.update_ms, bucket.expiry, rank))

    def _views(self, leaderboard: Leaderboard, bucket: Bucket, elements: list[bytes], first_rank: int,
               ) -> list[RecordView]:
        """Views of consecutive elements of ``bucket``, the first at rank ``first_rank``.

        A page is read once per request and is most of one: this is ``_view`` for many records,
        with what they share looked up once.
        """
        ranked = self.ranks_enabled(leaderboard)
        t = leaderboard.tournament
        max_num_score = t.max_num_score if t else 0
        leaderboard_id, expiry, visible = leaderboard.id, bucket.expiry, bucket.visible
        views = []
        for rank, element in enumerate(elements, first_rank):
            owner, score, subscore, num_score, create_ms, update_ms, username, metadata = visible(element)
            views.append(_new_view((leaderboard_id, owner, username, score, subscore, num_score, max_num_score,
                                    metadata, create_ms, update_ms, expiry, rank if ranked else 0)))
        return views

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
    ) -> RecordPage:
        leaderboard = self.leaderboard(leaderboard_id)
        position: Cursor | None = None
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
        owners = [self._owner_view(leaderboard, bucket, owner) for owner in dict.fromkeys(owner_ids)]
        owner_records = [view for view in owners if view is not None]
        if bucket is None or len(bucket) == 0 or limit == 0:
            return RecordPage([], owner_records, None, None, 0 if bucket is None else len(bucket), bucket_expiry)
        total = len(bucket)
        if position is None:
            start = 0
        elif position.forward:
            start = bucket.index_after(position.key)
        else:
            start = max(0, bucket.index_before(position.key) - limit)
        stop = min(total, start + limit) if position is None or position.forward else bucket.index_before(position.key)
        page = bucket.elements(start, stop)
        views = self._views(leaderboard, bucket, page, start + 1)
        return RecordPage(views, owner_records, *_cursors(leaderboard, bucket, page, start), total, bucket.expiry)

    def _count_lookup(self, leaderboard: Leaderboard, found: bool) -> None:
        outcome = "miss" if not found else "hit" if self.ranks_enabled(leaderboard) else "off"
        self.rank_lookups[outcome] += 1

    def _owner_view(self, leaderboard: Leaderboard, bucket: Bucket | None, owner: str) -> RecordView | None:
        record = bucket.get(owner) if bucket is not None else None
        self._count_lookup(leaderboard, record is not None)
        return None if bucket is None or record is None else self._view(leaderboard, bucket, record)

    def around_owner(self, leaderboard_id: str, owner: str, *, limit: int, now: int,
                     expiry: int | None = None) -> RecordPage:
        leaderboard = self.leaderboard(leaderboard_id)
        bucket = self._read_bucket(leaderboard, expiry, now)
        bucket_expiry = bucket.expiry if bucket is not None else self.period(leaderboard, now).expiry
        if bucket is None:
            return RecordPage([], [], None, None, 0, bucket_expiry)
        start, page = bucket.around(owner, limit)
        views = self._views(leaderboard, bucket, page, start + 1)
        owner_view = next((view for view in views if view.owner_id == owner), None)  # the page is centred on it
        self._count_lookup(leaderboard, owner_view is not None)
        return RecordPage(views, [owner_view] if owner_view else [], *_cursors(leaderboard, bucket, page, start),
                          len(bucket), bucket.expiry)

    def digest(self, leaderboard_id: str, *, now: int, expiry: int | None = None) -> BucketDigest:
        leaderboard = self.leaderboard(leaderboard_id)
        bucket = self._read_bucket(leaderboard, expiry, now)
        if bucket is None:
            resolved = expiry if expiry is not None else self.period(leaderboard, now).expiry
            return BucketDigest(leaderboard.id, leaderboard.incarnation, resolved, 0, f"{0:032x}")
        return BucketDigest(leaderboard.id, leaderboard.incarnation, bucket.expiry, len(bucket), bucket.digest)
