"""Changes: what a local operation did, in a form any node can merge.

Every local operation returns the changes it made; replication ships them to peers, whose
``LeaderboardStore.apply`` merges them. Each change is idempotent and commutes with every
other change, so duplicates and reordering leave replicas equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from .events import Event
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
    hlc: int = 0  # when it joined (0: a build before erasures stamped joins); an erasure voids earlier joins


@dataclass(frozen=True, slots=True)
class OwnerErase:
    """Every record, join and attempt grant of ``owner`` stamped before ``hlc`` is void, in every
    bucket, now and when it arrives later (see ``LeaderboardStore.erase_owner``)."""

    owner: str
    hlc: int
    origin: str  # the erasing life: the tombstone slots it leaves are its own


@dataclass(frozen=True, slots=True)
class AttemptsGrant:
    """The life ``origin``'s running total of extra attempts granted to ``owner`` in one tournament
    period: a per-life counter, like an ``incr`` slot (the grants of every life add up)."""

    leaderboard_id: str
    incarnation: str
    expiry: int
    owner: str
    origin: str
    hlc: int
    total: int


class Setting(StrEnum):
    """Settings of a definition that may change while it lives (they are not part of its
    incarnation): each is a last-writer-wins register by (hlc, origin)."""

    ENABLE_RANKS = "enable_ranks"
    EVENT_TOP = "event_top"
    WEBHOOK_URL = "webhook_url"


@dataclass(frozen=True, slots=True)
class SettingPut:
    leaderboard_id: str
    incarnation: str
    name: Setting
    value: bool | int | str | None  # None: back to the default (webhook_url: none)
    hlc: int
    origin: str

    @property
    def order(self) -> tuple[int, str]:
        return (self.hlc, self.origin)


@dataclass(frozen=True, slots=True)
class EventPut:
    event: Event


@dataclass(frozen=True, slots=True)
class DeliveryProgress:
    """Webhook ``target`` has been delivered every event of ``origin`` up to ``number``."""

    target: str
    origin: str
    number: int


Change = (LeaderboardPut | LeaderboardKill | RecordSlotPut | RecordsImported | TournamentJoin | OwnerErase
          | AttemptsGrant | SettingPut | EventPut | DeliveryProgress)
