from __future__ import annotations

import pytest

from leaderboard_node.domain.errors import InvalidArgument
from leaderboard_node.domain.schedule import (
    leaderboard_period,
    next_reset,
    prev_reset,
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
