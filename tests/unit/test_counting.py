"""Which hours of a window may be remembered, and what is remembered of them."""

from __future__ import annotations

from openfgs.counting import HOUR_MS, SETTLE_MS, SettledHours, runs
from openfgs.models import Status

DAY_MS = 24 * HOUR_MS
NOW = 1_000 * HOUR_MS + 30 * 60_000  # half past hour 1000
RETENTION = 7 * DAY_MS


def test_whole_hours_are_inside_the_window_and_settled() -> None:
    hours = SettledHours(RETENTION)
    assert hours.whole_hours(990 * HOUR_MS, NOW, NOW) == range(990, 1000)
    assert hours.whole_hours(990 * HOUR_MS + 1, NOW, NOW) == range(991, 1000)
    assert hours.whole_hours(990 * HOUR_MS, 995 * HOUR_MS - 1, NOW) == range(990, 995)
    assert hours.whole_hours(990 * HOUR_MS, 995 * HOUR_MS - 2, NOW) == range(990, 994)
    # The hour that just ended is not settled yet.
    just_after = 1_000 * HOUR_MS + SETTLE_MS - 1
    assert hours.whole_hours(990 * HOUR_MS, just_after, just_after) == range(990, 999)
    assert hours.whole_hours(NOW - 1, NOW, NOW) == range(1000, 1000)


def test_hours_retention_may_purge_are_not_whole_hours() -> None:
    hours = SettledHours(RETENTION)
    oldest = -(-(NOW - RETENTION) // HOUR_MS)
    assert hours.whole_hours(0, NOW, NOW).start == oldest
    assert oldest * HOUR_MS >= NOW - RETENTION


def test_only_hours_without_waiting_or_running_records_are_remembered() -> None:
    hours = SettledHours(RETENTION)
    counted = hours.learn(
        "f",
        range(10, 14),
        [
            (10, Status.SUCCESS, 3),
            (11, Status.SUCCESS, 2),
            (11, Status.WAIT, 1),
            (12, Status.RUNNING, 1),
        ],
    )
    assert counted == {
        10: {Status.SUCCESS: 3},
        11: {Status.SUCCESS: 2, Status.WAIT: 1},
        12: {Status.RUNNING: 1},
        13: {},
    }
    assert hours.missing("f", range(10, 14)) == [11, 12]
    assert hours.missing("g", range(10, 11)) == [10]
    assert hours.total("f", range(10, 14), (), {11: counted[11], 12: counted[12]}) == 7
    assert hours.total("f", range(10, 14), (Status.SUCCESS,), counted) == 5
    assert hours.total("f", range(10, 11), (Status.WAIT, Status.RUNNING), {}) == 0


def test_remembered_hours_are_bounded() -> None:
    hours = SettledHours(RETENTION, max_hours=3)
    hours.learn("f", range(0, 5), [])
    assert hours.missing("f", range(0, 5)) == [0, 1]
    assert hours.total("f", range(2, 5), (), {}) == 0
    assert hours.total("f", range(0, 5), (), {}) is None  # forgotten: the caller counts


def test_runs_of_consecutive_hours() -> None:
    assert runs([]) == []
    assert runs([1, 2, 3, 7, 9, 10]) == [range(1, 4), range(7, 8), range(9, 11)]
