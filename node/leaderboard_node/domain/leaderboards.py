"""The leaderboard cache: definitions of leaderboards and tournaments.

Each definition has an *incarnation*: its generation (one more than any earlier incarnation
of the same id this node knew of) and a hash of its settings. Two nodes that create the same
leaderboard with the same settings at the same moment create the same incarnation, so they
agree without coordination; a delete marks an incarnation dead for good, and a leaderboard
re-created under the same id is a new incarnation whose records start empty everywhere.

When two live incarnations of one id exist (two nodes created it with different settings
concurrently), every node picks the same winner: the highest (generation, create clock,
origin). Records of the losing incarnation stay invisible.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from functools import lru_cache

from .errors import InvalidArgument
from .records import Operator, SortOrder, SlotKind, contribution_kind
from .schedule import Period, leaderboard_period, tournament_period, validate_cron

MAX_UNIX_TIME = 2**32 - 1  # 2106-02-07, as Nakama bounds tournament times
MAX_CATEGORY = 127


@dataclass(frozen=True, slots=True)
class TournamentSettings:
    title: str = ""
    description: str = ""
    category: int = 0
    start_time: int = 0
    end_time: int = 0
    duration: int = 0
    max_size: int = 0
    max_num_score: int = 0
    join_required: bool = False


@dataclass(frozen=True, slots=True)
class Leaderboard:
    id: str
    sort_order: SortOrder = SortOrder.DESC
    operator: Operator = Operator.BEST
    reset_schedule: str | None = None
    metadata: str = "{}"
    authoritative: bool = False
    enable_ranks: bool = True
    tournament: TournamentSettings | None = None
    generation: int = 1
    create_hlc: int = 0
    origin: str = ""
    incarnation: str = field(init=False, compare=False, repr=False)
    descending: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Both are read on every write: computed once (the dataclass is frozen).
        digest = hashlib.blake2b(json.dumps(self.settings(), sort_keys=True).encode(), digest_size=6)
        object.__setattr__(self, "incarnation", f"{self.generation}.{digest.hexdigest()}")
        object.__setattr__(self, "descending", self.sort_order is SortOrder.DESC)

    @property
    def is_tournament(self) -> bool:
        return self.tournament is not None

    @property
    def slot_kind(self) -> SlotKind:
        return contribution_kind(self.operator)

    def settings(self) -> dict[str, object]:
        """Everything a user chose, and nothing the cluster assigned."""
        data: dict[str, object] = {
            "id": self.id,
            "sort_order": self.sort_order.value,
            "operator": self.operator.value,
            "reset_schedule": self.reset_schedule,
            "metadata": self.metadata,
            "authoritative": self.authoritative,
            "enable_ranks": self.enable_ranks,
        }
        if self.tournament is not None:
            t = self.tournament
            data["tournament"] = [t.title, t.description, t.category, t.start_time, t.end_time,
                                  t.duration, t.max_size, t.max_num_score, t.join_required]
        return data

    def same_settings(self, other: Leaderboard) -> bool:
        return self.settings() == other.settings()

    @property
    def order(self) -> tuple[int, int, str]:
        return (self.generation, self.create_hlc, self.origin)


def period_of(leaderboard: Leaderboard, now: int) -> Period:
    """The reset period of a leaderboard or tournament that contains ``now``."""
    t = leaderboard.tournament
    if t is None:
        return leaderboard_period(leaderboard.reset_schedule, now)
    return tournament_period(reset_schedule=leaderboard.reset_schedule, start_time=t.start_time,
                             end_time=t.end_time, duration=t.duration, now=now)


def validate_definition(leaderboard: Leaderboard, *, now: int) -> None:
    """Refuse a definition that could not be served, wherever it comes from (a client or a peer).

    A stored definition whose reset periods fail to compute would turn every read of it, and
    every listing it appears in, into an error on every node it replicates to.
    """
    if leaderboard.reset_schedule is not None:
        validate_cron(leaderboard.reset_schedule)
    t = leaderboard.tournament
    if t is not None:
        for name, value in (("start_time", t.start_time), ("end_time", t.end_time), ("duration", t.duration)):
            if not 0 <= value <= MAX_UNIX_TIME:
                raise InvalidArgument(f"{name} must be between 0 and {MAX_UNIX_TIME}", field=name)
        if not 0 <= t.category <= MAX_CATEGORY:
            raise InvalidArgument(f"category must be between 0 and {MAX_CATEGORY}", field="category")
        if t.end_time and t.end_time <= t.start_time:
            raise InvalidArgument("end_time must be after start_time", field="end_time")
    moments = {now} | ({t.start_time, max(t.start_time, t.end_time - 1)} if t is not None else set())
    for moment in moments:
        try:
            period_of(leaderboard, moment)
        except (ArithmeticError, ValueError, OverflowError, OSError) as exc:  # croniter raises ValueErrors
            name = "reset_schedule" if leaderboard.reset_schedule is not None else "start_time"
            raise InvalidArgument(f"the reset periods of this definition cannot be computed: {exc}",
                                  field=name) from None


@dataclass(slots=True)
class _Entry:
    """Everything known about one leaderboard id."""

    incarnations: dict[str, Leaderboard] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    max_generation: int = 0

    def winner(self) -> Leaderboard | None:
        live = [lb for inc, lb in self.incarnations.items() if inc not in self.dead]
        return max(live, key=lambda lb: lb.order) if live else None


class LeaderboardCache:
    """Definitions by id; converges whatever order puts and deletes arrive in."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._live: dict[str, Leaderboard] = {}

    def __len__(self) -> int:
        return len(self._live)

    def get(self, leaderboard_id: str) -> Leaderboard | None:
        return self._live.get(leaderboard_id)

    def all(self) -> list[Leaderboard]:
        return sorted(self._live.values(), key=lambda lb: lb.id)

    def live(self) -> list[Leaderboard]:
        """Every visible definition, in no particular order (``all`` sorts them)."""
        return list(self._live.values())

    def next_generation(self, leaderboard_id: str) -> int:
        entry = self._entries.get(leaderboard_id)
        return 1 if entry is None else entry.max_generation + 1

    def is_dead(self, leaderboard_id: str, incarnation: str) -> bool:
        entry = self._entries.get(leaderboard_id)
        return entry is not None and incarnation in entry.dead

    def incarnation(self, leaderboard_id: str, incarnation: str) -> Leaderboard | None:
        entry = self._entries.get(leaderboard_id)
        if entry is None or incarnation in entry.dead:
            return None
        return entry.incarnations.get(incarnation)

    def put(self, leaderboard: Leaderboard) -> bool:
        """Merge a definition; True when it changed what this cache knows."""
        entry = self._entries.setdefault(leaderboard.id, _Entry())
        incarnation = leaderboard.incarnation
        entry.max_generation = max(entry.max_generation, leaderboard.generation)
        known = entry.incarnations.get(incarnation)
        if known is not None:
            if (known.create_hlc, known.origin) <= (leaderboard.create_hlc, leaderboard.origin):
                return False
            leaderboard = replace(known, create_hlc=leaderboard.create_hlc, origin=leaderboard.origin)
        entry.incarnations[incarnation] = leaderboard
        self._refresh(leaderboard.id, entry)
        return True

    def kill(self, leaderboard_id: str, incarnations: list[str], generation: int) -> list[str]:
        """Mark incarnations dead; returns the ones that were not dead before."""
        entry = self._entries.setdefault(leaderboard_id, _Entry())
        entry.max_generation = max(entry.max_generation, generation)
        newly = [inc for inc in incarnations if inc not in entry.dead]
        entry.dead.update(newly)
        for inc in newly:
            entry.incarnations.pop(inc, None)
        self._refresh(leaderboard_id, entry)
        return newly

    def live_incarnations(self, leaderboard_id: str) -> list[str]:
        entry = self._entries.get(leaderboard_id)
        return [] if entry is None else [i for i in entry.incarnations if i not in entry.dead]

    def tombstones(self) -> dict[str, tuple[int, list[str]]]:
        return {lid: (e.max_generation, sorted(e.dead)) for lid, e in self._entries.items() if e.dead}

    def definitions(self) -> list[Leaderboard]:
        """Every live incarnation (winners and losers), for snapshots."""
        return [lb for e in self._entries.values() for inc, lb in e.incarnations.items() if inc not in e.dead]

    def _refresh(self, leaderboard_id: str, entry: _Entry) -> None:
        winner = entry.winner()
        if winner is None:
            self._live.pop(leaderboard_id, None)
        else:
            self._live[leaderboard_id] = winner


@dataclass(frozen=True, slots=True)
class RankBlacklist:
    """Leaderboards whose records carry no rank: exact ids or glob patterns (``*`` for all)."""

    patterns: tuple[str, ...] = ()

    def matches(self, leaderboard_id: str) -> bool:
        return bool(self.patterns) and _blacklisted(self.patterns, leaderboard_id)


@lru_cache(maxsize=4096)  # asked once per record read: match each leaderboard id once
def _blacklisted(patterns: tuple[str, ...], leaderboard_id: str) -> bool:
    return any(fnmatchcase(leaderboard_id, pattern) for pattern in patterns)
