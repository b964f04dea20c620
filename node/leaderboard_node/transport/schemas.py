"""Request bodies and query parameters of the client API, as pydantic models.

Strict types throughout: a score is a JSON integer within 64 bits (never a float, a string
or a boolean). Limits that depend on settings (metadata size and depth, id length, page
size) are checked by ``Limits`` after parsing, so the error names the field either way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ..config import LimitSettings
from ..domain.errors import InvalidArgument
from ..domain.records import INT64_MAX, INT64_MIN, Operator, SortOrder

Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
UnixTime = Annotated[StrictInt, Field(ge=0, le=253402300799)]  # up to 9999-12-31
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+\-]+$")
ID_RULE = "letters, digits and _ . : @ + -"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LeaderboardCreate(_Body):
    id: StrictStr
    sort_order: SortOrder = SortOrder.DESC
    operator: Operator = Operator.BEST
    reset_schedule: StrictStr | None = None
    metadata: dict[str, Any] | None = None
    authoritative: StrictBool = False
    enable_ranks: StrictBool = True


class TournamentCreate(LeaderboardCreate):
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
    owner_id: StrictStr
    username: Annotated[StrictStr, Field(max_length=128)] | None = None
    score: Int64
    subscore: Int64 = 0
    metadata: dict[str, Any] | None = None
    operator: Operator | None = None


class RecordWriteOwned(_Body):
    """A write whose owner comes from the path."""

    username: Annotated[StrictStr, Field(max_length=128)] | None = None
    score: Int64
    subscore: Int64 = 0
    metadata: dict[str, Any] | None = None
    operator: Operator | None = None


class RecordBatch(_Body):
    records: Annotated[list[RecordWrite], Field(min_length=1)]


class Join(_Body):
    owner_id: StrictStr


@dataclass(frozen=True, slots=True)
class Limits:
    settings: LimitSettings

    def identifier(self, value: str, *, field: str) -> str:
        if not value:
            raise InvalidArgument(f"{field} must not be empty", field=field)
        if len(value) > self.settings.max_id_length:
            raise InvalidArgument(f"{field} is longer than {self.settings.max_id_length} characters", field=field)
        if not ID_PATTERN.match(value):
            raise InvalidArgument(f"{field} may hold only {ID_RULE}", field=field)
        return value

    def metadata(self, value: dict[str, Any] | None, *, field: str = "metadata") -> str | None:
        if value is None:
            return None
        depth = _depth(value)
        if depth > self.settings.max_metadata_depth:
            raise InvalidArgument(f"{field} nests {depth} levels deep; at most {self.settings.max_metadata_depth}",
                                  field=field)
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if len(text.encode()) > self.settings.max_metadata_bytes:
            raise InvalidArgument(f"{field} is larger than {self.settings.max_metadata_bytes} bytes as JSON",
                                  field=field)
        return text

    def page_limit(self, raw: str | None, *, default: int = 10, field: str = "limit") -> int:
        if raw is None or raw == "":
            return default
        value = int_param(raw, field=field)
        if not 1 <= value <= self.settings.max_page_limit:
            raise InvalidArgument(f"{field} must be between 1 and {self.settings.max_page_limit}", field=field)
        return value


def _depth(value: Any, level: int = 1) -> int:
    if isinstance(value, dict):
        return max([level] + [_depth(v, level + 1) for v in value.values()])
    if isinstance(value, list):
        return max([level] + [_depth(v, level + 1) for v in value])
    return level - 1 if level > 1 else level


def int_param(raw: str, *, field: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    text = raw.strip()
    if not re.fullmatch(r"-?\d{1,20}", text):
        raise InvalidArgument(f"{field} must be an integer", field=field)
    value = int(text)
    if not low <= value <= high:
        raise InvalidArgument(f"{field} must be between {low} and {high}", field=field)
    return value


def bool_param(raw: str, *, field: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"{field} must be true or false", field=field)
