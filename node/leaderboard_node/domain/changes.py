"""Changes: what a local operation did, in a form any node can merge.

Every local operation returns the changes it made; replication ships them to peers, whose
``LeaderboardStore.apply`` merges them. Each change is idempotent and commutes with every
other change, so duplicates and reordering leave replicas equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .leaderboards import Leaderboard
from .records import Slot


@dataclass(frozen=True, slots=True)
class LeaderboardPut:
    leaderboard: Leaderboard


@dataclass(frozen=True, slots=True)
class LeaderboardKill:
    leaderboard_id: str
    incarnations: tuple[str, ...]
    generation: int


class RecordSlotPut(NamedTuple):  # a tuple: made and taken apart for every record write on every node
    leaderboard_id: str
    incarnation: str
    expiry: int
    owner: str
    slot: Slot
    descending: bool  # lets a node order records of a definition it has not received yet


class RecordsImported(NamedTuple):
    """First writes of many owners at once (a bulk import), as packed records (``record_codec``)
    in this process's node-name table; each is exactly what ``records.write`` stores for an
    owner with no record, so a node that already holds one of them merges it as any slot."""

    leaderboard_id: str
    incarnation: str
    expiry: int
    descending: bool
    elements: list[bytes]
    digest: int  # the sum of their hashes (their share of the bucket's digest)


@dataclass(frozen=True, slots=True)
class TournamentJoin:
    leaderboard_id: str
    incarnation: str
    expiry: int
    owner: str


Change = LeaderboardPut | LeaderboardKill | RecordSlotPut | RecordsImported | TournamentJoin
