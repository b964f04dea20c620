"""Reset schedules and tournament windows (times are Unix seconds, UTC).

Each reset period of a leaderboard is its own bucket of records, keyed by the period's
expiry: the time of the next reset (0 when the leaderboard never resets). A tournament adds
a start, an optional end and an active ``duration`` after each period's start; writes are
accepted only inside the active part, while the whole period stays readable.

Periods of a tournament: the first starts at ``start_time`` and each later one at a reset of
the schedule; the last ends at ``end_time``. Cron expressions have 5 fields (minute, hour,
day of month, month, day of week) and are evaluated in UTC with croniter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from croniter import croniter
from croniter.croniter import CroniterError

from .errors import InvalidArgument

NEVER = 0


def validate_cron(expression: str, *, field: str = "reset_schedule") -> str:
    text = " ".join(expression.split())
    if len(text.split(" ")) != 5:
        raise InvalidArgument("a reset schedule is a 5-field cron expression", field=field)
    try:
        if not croniter.is_valid(text):
            raise InvalidArgument(f"invalid cron expression {expression!r}", field=field)
        croniter(text, 0).get_next(float)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"invalid cron expression {expression!r}: {exc}", field=field) from None
    return text


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


# The reset interval last computed for each expression: the answer for every moment inside it.
# croniter costs about 200 us per step and a period takes two, while every read and write of a
# scheduled leaderboard asks for the current one (a period is a week, a request a millisecond).
_intervals: dict[str, tuple[int, int]] = {}
_MAX_INTERVALS = 4096


def reset_interval(expression: str, now: int) -> tuple[int, int]:
    """(the last reset at or before ``now``, the first reset strictly after it)."""
    known = _intervals.get(expression)
    if known is not None and known[0] <= now < known[1]:
        return known
    following = int(croniter(expression, _utc(now)).get_next(float))
    interval = (int(croniter(expression, _utc(following)).get_prev(float)), following)
    if len(_intervals) >= _MAX_INTERVALS:
        _intervals.clear()
    _intervals[expression] = interval
    return interval


def next_reset(expression: str, now: int) -> int:
    """The first reset strictly after ``now``."""
    return reset_interval(expression, now)[1]


def prev_reset(expression: str, now: int) -> int:
    """The last reset at or before ``now``."""
    return reset_interval(expression, now)[0]


@dataclass(frozen=True, slots=True)
class Period:
    """One reset period as seen at some moment."""

    start: int  # when the period began (0 when unknown or never reset)
    expiry: int  # the bucket key: when the period ends (0 = never)
    active_start: int  # writes accepted from here ...
    active_end: int  # ... until here (0 = no end)

    def is_active(self, now: int) -> bool:
        return self.active_start <= now and (self.active_end == NEVER or now < self.active_end)


def leaderboard_period(reset_schedule: str | None, now: int) -> Period:
    if reset_schedule is None:
        return Period(start=NEVER, expiry=NEVER, active_start=NEVER, active_end=NEVER)
    start, expiry = reset_interval(reset_schedule, now)
    return Period(start=start, expiry=expiry, active_start=start, active_end=expiry)


def tournament_period(
    *, reset_schedule: str | None, start_time: int, end_time: int, duration: int, now: int
) -> Period:
    """The tournament period that contains ``now`` (or the first one, before the start).

    After ``end_time`` the last period is returned: readable, never active.
    """
    at = min(max(now, start_time), end_time - 1) if end_time else max(now, start_time)
    if reset_schedule is None:
        start, expiry = start_time, end_time
    else:
        previous, expiry = reset_interval(reset_schedule, at)
        start = max(start_time, previous)
        if end_time and expiry > end_time:
            expiry = end_time
    active_end = start + duration if duration else expiry
    if expiry and (active_end == NEVER or active_end > expiry):
        active_end = expiry
    if end_time and now >= end_time:
        active_end = min(active_end, end_time) if active_end else end_time
    return Period(start=start, expiry=expiry, active_start=start, active_end=active_end)
