from __future__ import annotations

from datetime import datetime, timezone

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from leaderboard_node.domain.errors import InvalidArgument
from leaderboard_node.domain.schedule import (
    leaderboard_period,
    next_reset,
    prev_reset,
    reset_interval,
    tournament_period,
    validate_cron,
)

NOW = 1_700_000_000  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize("bad", ["", "* * * *", "* * * * * *", "61 * * * *", "a b c d e", "*/0 * * * *"])
def test_invalid_cron_expressions_are_refused_with_the_field_named(bad):
    with pytest.raises(InvalidArgument) as raised:
        validate_cron(bad)
    assert raised.value.field == "reset_schedule"


def test_a_reset_exactly_now_starts_the_current_period():
    at_midnight = 1_700_006_400  # 2023-11-15 00:00:00 UTC
    assert prev_reset("0 0 * * *", at_midnight) == at_midnight
    assert next_reset("0 0 * * *", at_midnight) == at_midnight + 86400


def test_a_leaderboard_without_a_schedule_has_one_bucket_forever():
    period = leaderboard_period(None, NOW)
    assert (period.expiry, period.start) == (0, 0)


def test_a_daily_leaderboard_period_runs_midnight_to_midnight():
    period = leaderboard_period("0 0 * * *", NOW)
    assert (period.start, period.expiry) == (1_699_920_000, 1_700_006_400)


def test_a_one_off_tournament_is_active_for_its_duration_and_expires_at_its_end():
    period = tournament_period(reset_schedule=None, start_time=NOW, end_time=NOW + 7200, duration=3600, now=NOW + 10)
    assert (period.active_start, period.active_end, period.expiry) == (NOW, NOW + 3600, NOW + 7200)
    assert period.is_active(NOW + 10) and not period.is_active(NOW + 3600)


def test_a_tournament_period_never_runs_past_its_end():
    period = tournament_period(reset_schedule="0 0 * * *", start_time=NOW - 86400 * 3, end_time=NOW + 60,
                               duration=86400, now=NOW)
    assert period.expiry == NOW + 60 and period.active_end == NOW + 60
    after = tournament_period(reset_schedule="0 0 * * *", start_time=NOW - 86400 * 3, end_time=NOW + 60,
                              duration=86400, now=NOW + 1000)
    assert not after.is_active(NOW + 1000)


def _uncached(expression: str, now: int) -> tuple[int, int]:
    following = int(croniter(expression, datetime.fromtimestamp(now, tz=timezone.utc)).get_next(float))
    return int(croniter(expression, datetime.fromtimestamp(following, tz=timezone.utc)).get_prev(float)), following


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["0 0 * * 1", "*/5 * * * *", "0 12 1 * *", "30 2 * * *"]),
                          st.integers(NOW - 40 * 86400, NOW + 40 * 86400) | st.sampled_from([NOW, NOW + 1])),
                min_size=1, max_size=20))
def test_remembered_reset_intervals_answer_as_croniter_does_in_any_order_of_questions(questions):
    for expression, now in questions:
        previous, following = reset_interval(expression, now)
        assert (previous, following) == _uncached(expression, now)
        assert previous <= now < following
        assert (prev_reset(expression, now), next_reset(expression, now)) == (previous, following)


def test_a_period_asked_for_at_its_last_second_and_at_its_end_changes_at_the_reset():
    weekly = "0 0 * * 1"
    start, end = reset_interval(weekly, NOW)
    assert leaderboard_period(weekly, end - 1).expiry == end
    assert leaderboard_period(weekly, end).start == end  # the reset itself begins the next period
    assert leaderboard_period(weekly, start).start == start
    assert leaderboard_period(weekly, start - 1).expiry == start
