"""Request bodies and query parameters of the client API, as pydantic models.

Strict types throughout: a score is a JSON integer within 64 bits (never a float, a string
or a boolean). Limits that depend on settings (metadata size and depth, id length, page
size, batch size) are checked by ``Limits`` after parsing, so the error names the field
either way. Fields bounded that way carry an ``x-limit`` marker in their JSON schema, which
``openapi`` replaces with the configured bounds: the published spec and the validation come
from these models and cannot drift apart.

Times are bounded to 32-bit Unix seconds (up to 2106, as Nakama's): a reset schedule
evaluated near year 9999 overflows ``datetime``, and a definition that cannot be rendered
would break every listing it appears in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ..config import LimitSettings
from ..domain.errors import InvalidArgument
from ..domain.events import MAX_TOP as MAX_EVENT_TOP
from ..domain.events import MAX_URL_LENGTH
from ..domain.records import INT64_MAX, INT64_MIN, Operator, SortOrder

Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
MAX_UNIX_TIME = 2**32 - 1  # 2106-02-07
UnixTime = Annotated[StrictInt, Field(ge=0, le=MAX_UNIX_TIME)]
MAX_CRON_LENGTH = 256
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+\-]+$")
ID_RULE = "ASCII letters (A-Z, a-z), digits and _ . : @ + -"
_INTEGER = re.compile(r"-?[0-9]+")
_INT64_DIGITS = 19  # the most digits an int64 has; more is out of range whatever they are


def _limited(kind: str) -> Any:
    """A marker for ``openapi``: the bounds of this field come from ``LimitSettings``."""
    return Field(json_schema_extra={"x-limit": kind})


Identifier = Annotated[StrictStr, _limited("identifier")]
Metadata = Annotated[dict[str, Any], _limited("metadata")]
Username = Annotated[StrictStr, Field(max_length=128)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LeaderboardCreate(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "weekly-kills", "sort_order": "desc", "operator": "best", "reset_schedule": "0 0 * * 1",
         "metadata": {"season": 3}},
    ]})

    id: Identifier
    sort_order: SortOrder = SortOrder.DESC
    operator: Operator = Operator.BEST
    reset_schedule: Annotated[StrictStr, Field(max_length=MAX_CRON_LENGTH)] | None = None
    metadata: Metadata | None = None
    authoritative: StrictBool = False
    enable_ranks: StrictBool = True


class TournamentCreate(LeaderboardCreate):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "daily-cup", "title": "Daily cup", "category": 1, "reset_schedule": "0 12 * * *", "duration": 3600,
         "max_size": 1000, "max_num_score": 3},
    ]})

    title: Annotated[StrictStr, Field(max_length=256)] = ""
    description: Annotated[StrictStr, Field(max_length=4096)] = ""
    category: Annotated[StrictInt, Field(ge=0, le=127)] = 0
    start_time: UnixTime | None = None
    end_time: UnixTime = 0
    duration: Annotated[StrictInt, Field(ge=1, le=10 * 365 * 86400)]
    max_size: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] = 0
    max_num_score: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] = 0
    join_required: StrictBool = False


class RecordWrite(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"owner_id": "player-42", "score": 1200, "subscore": 7, "username": "ace", "metadata": {"weapon": "bow"}},
    ]})

    owner_id: Identifier
    username: Username | None = None
    score: Int64
    subscore: Int64 = 0
    metadata: Metadata | None = None
    operator: Operator | None = None


class RecordWriteOwned(_Body):
    """A write whose owner comes from the path."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"score": 5, "operator": "incr"}]})

    username: Username | None = None
    score: Int64
    subscore: Int64 = 0
    metadata: Metadata | None = None
    operator: Operator | None = None


class RecordBatch(_Body):
    records: Annotated[list[RecordWrite], Field(min_length=1), _limited("batch")]


class LeaderboardUpdate(_Body):
    """Live settings of an existing leaderboard or tournament: they change neither its
    incarnation nor its records. Fields left out stay as they are; ``null`` sets one back to its
    default (``event_top``: the node's ``events.top``; ``webhook_url``: none)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"enable_ranks": False}, {"event_top": 10, "webhook_url": "https://game.example.com/hooks/leaderboard"},
    ]})

    enable_ranks: StrictBool | None = None
    event_top: Annotated[StrictInt, Field(ge=1, le=MAX_EVENT_TOP)] | None = None
    webhook_url: Annotated[StrictStr, Field(max_length=MAX_URL_LENGTH)] | None = None


class AttemptsGrant(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"owner_id": "player-42", "count": 1}]})

    owner_id: Identifier
    count: Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class Join(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"owner_id": "player-42"}]})

    owner_id: Identifier


@dataclass(frozen=True, slots=True)
class Limits:
    settings: LimitSettings

    def identifier(self, value: str, *, field: str) -> str:
        if not value:
            raise InvalidArgument(f"{field} must not be empty", field=field)
        if len(value) > self.settings.max_id_length:
            raise InvalidArgument(f"{field} is longer than {self.settings.max_id_length} characters", field=field)
        if not ID_PATTERN.fullmatch(value):  # match() lets "$" pass before a trailing newline
            raise InvalidArgument(f"{field} may hold only {ID_RULE}", field=field)
        return value

    def metadata(self, value: dict[str, Any] | None, *, field: str = "metadata") -> str | None:
        if value is None:
            return None
        depth = _depth(value)
        if depth > self.settings.max_metadata_depth:
            raise InvalidArgument(f"{field} nests {depth} levels deep; at most {self.settings.max_metadata_depth}",
                                  field=field)
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN or Infinity: the JSON parser takes them, JSON cannot carry them
            raise InvalidArgument(f"{field} holds a number JSON cannot carry (NaN or infinity)", field=field) from None
        if len(text.encode()) > self.settings.max_metadata_bytes:
            raise InvalidArgument(f"{field} is larger than {self.settings.max_metadata_bytes} bytes as JSON",
                                  field=field)
        return text

    def batch(self, count: int, *, field: str = "records") -> None:
        if count > self.settings.max_batch_records:
            raise InvalidArgument(f"a batch holds at most {self.settings.max_batch_records} records", field=field)

    def owner_ids(self, raw: list[str], *, field: str = "owner_ids") -> list[str]:
        """Comma-separated owner ids, from one or more ``owner_ids=`` parameters."""
        owners = [owner for value in raw for owner in value.split(",") if owner]
        if len(owners) > self.settings.max_owner_ids:
            raise InvalidArgument(f"at most {self.settings.max_owner_ids} owner_ids", field=field)
        for owner in owners:
            self.identifier(owner, field=field)
        return owners

    def page_limit(self, raw: str | None, *, default: int = 10, field: str = "limit") -> int:
        if raw is None or raw == "":
            return default
        return int_param(raw, field=field, low=1, high=self.settings.max_page_limit)


def _depth(value: Any, level: int = 1) -> int:
    if isinstance(value, dict):
        return max([level] + [_depth(v, level + 1) for v in value.values()])
    if isinstance(value, list):
        return max([level] + [_depth(v, level + 1) for v in value])
    return level - 1 if level > 1 else level


def int_param(raw: str, *, field: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """A query parameter as an integer within ``low``..``high``; the error says which range.

    ASCII digits only (``int()`` would take other scripts' digits too), and a number too long
    for 64 bits is out of range without being converted (a long run of digits costs
    ``int()`` time, and beyond 4300 of them it refuses).
    """
    text = raw.strip()
    if not _INTEGER.fullmatch(text):
        raise InvalidArgument(f"{field} must be an integer between {low} and {high}", field=field)
    if len(text.lstrip("-").lstrip("0")) > _INT64_DIGITS or not low <= int(text) <= high:
        raise InvalidArgument(f"{field} must be between {low} and {high}", field=field)
    return int(text)


def bool_param(raw: str, *, field: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"{field} must be true or false", field=field)
