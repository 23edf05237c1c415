"""Timer schedules: the Rate and Cron grammars, their fire times, and every way to get them wrong."""

from __future__ import annotations

import bisect
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from openfgs.cron import MAX_SCHEDULE_LENGTH, Schedule, ScheduleError, parse_schedule

ANCHOR = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def cron(schedule: str, zone: str = "UTC") -> Schedule:
    return parse_schedule("Cron", schedule, zone=zone, anchor=ANCHOR)


def fires(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        after = schedule.next_after(after)
        found.append(after)
    return found


# --- the documented examples ---------------------------------------------------------------------

# 2024-03-29 is a Friday.
DOCUMENTED = [
    (
        "0 0 12 * * *",
        utc(2024, 3, 29, 12, 0, 0),
        [utc(2024, 3, 30, 12), utc(2024, 3, 31, 12), utc(2024, 4, 1, 12)],
    ),
    (
        "0 26,29,33 * * * *",
        utc(2024, 3, 29, 10, 27, 0),
        [utc(2024, 3, 29, 10, 29), utc(2024, 3, 29, 10, 33), utc(2024, 3, 29, 11, 26)],
    ),
    (
        "0 0/5 12-14 ? * MON-FRI",
        utc(2024, 3, 29, 14, 54, 0),
        [utc(2024, 3, 29, 14, 55), utc(2024, 4, 1, 12, 0), utc(2024, 4, 1, 12, 5)],
    ),
    (
        "0 0 12 ? JAN,FEB,MAR,APR *",
        utc(2024, 4, 29, 13, 0, 0),
        [utc(2024, 4, 30, 12), utc(2025, 1, 1, 12), utc(2025, 1, 2, 12)],
    ),
    (
        "0 0/30 * * * ?",
        utc(2024, 3, 29, 23, 30, 0),
        [utc(2024, 3, 30, 0, 0), utc(2024, 3, 30, 0, 30), utc(2024, 3, 30, 1, 0)],
    ),
    (
        # 12:30 in Berlin is 11:30 UTC in winter (CET) and 10:30 UTC in summer (CEST).
        "CRON_TZ=Europe/Berlin 0 30 12 ? * MON-FRI",
        utc(2024, 3, 28, 12, 0, 0),
        [utc(2024, 3, 29, 11, 30), utc(2024, 4, 1, 10, 30), utc(2024, 4, 2, 10, 30)],
    ),
]


@pytest.mark.parametrize(("schedule", "after", "expected"), DOCUMENTED)
def test_documented_examples(schedule: str, after: datetime, expected: list[datetime]) -> None:
    assert fires(cron(schedule), after, 3) == expected


def test_fire_times_are_utc_and_strictly_after_the_moment() -> None:
    schedule = cron("0 0 12 * * *")
    noon = utc(2024, 3, 29, 12)
    assert schedule.next_after(noon) == utc(2024, 3, 30, 12)
    assert schedule.next_after(noon - timedelta(microseconds=1)) == noon
    assert schedule.next_after(noon).tzinfo is UTC
    # Any zone in: 13:00 in Berlin (CET) is noon UTC.
    assert schedule.next_after(datetime(2024, 3, 29, 12, 59, tzinfo=BERLIN)) == noon


# --- fields --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/2 * * * * *", utc(2024, 1, 1, 0, 0, 0), [utc(2024, 1, 1, 0, 0, s) for s in (2, 4, 6)]),
        ("*/2 * * * * *", utc(2024, 1, 1, 0, 0, 1, 500_000), [utc(2024, 1, 1, 0, 0, 2)]),
        ("* * * * * *", utc(2024, 12, 31, 23, 59, 59), [utc(2025, 1, 1, 0, 0, 0)]),
        ("15,45 * * * * *", utc(2024, 1, 1, 0, 0, 45), [utc(2024, 1, 1, 0, 1, 15)]),
        ("10/20 * * * * *", utc(2024, 1, 1), [utc(2024, 1, 1, 0, 0, s) for s in (10, 30, 50)]),
        (
            "5-20/5 0 0 * * *",
            utc(2024, 1, 1, 0, 0, 10),
            [utc(2024, 1, 1, 0, 0, s) for s in (15, 20)],
        ),
        ("*/25 1 * * * *", utc(2024, 1, 1), [utc(2024, 1, 1, 0, 1, s) for s in (0, 25, 50)]),
        ("0 0 0 * * *", utc(2024, 2, 28, 1), [utc(2024, 2, 29), utc(2024, 3, 1)]),
        ("0 0 0 31 * *", utc(2024, 1, 31, 1), [utc(2024, 3, 31), utc(2024, 5, 31)]),
        ("0 0 */6 * * *", utc(2024, 1, 1, 0, 0, 0), [utc(2024, 1, 1, h) for h in (6, 12, 18)]),
        # Five fields: the day-of-week is omitted, not the seconds.
        ("30 15 9 1 *", utc(2024, 1, 1), [utc(2024, 1, 1, 9, 15, 30), utc(2024, 2, 1, 9, 15, 30)]),
    ],
)
def test_field_schedules(schedule: str, after: datetime, expected: list[datetime]) -> None:
    assert fires(cron(schedule), after, len(expected)) == expected


@pytest.mark.parametrize(
    ("spelled", "numeric"),
    [
        ("0 0 0 1 jan-Mar *", "0 0 0 1 1-3 *"),
        ("0 0 0 1 DEC *", "0 0 0 1 12 *"),
        ("0 0 0 1 feb/3 *", "0 0 0 1 2/3 *"),
        ("0 0 0 ? * sun", "0 0 0 ? * 0"),
        ("0 0 0 ? * Mon-fri", "0 0 0 ? * 1-5"),
        ("0 0 0 ? * SAT,SUN", "0 0 0 ? * 0,6"),
        ("0 0 0 ? * TUE-6/2", "0 0 0 ? * 2,4,6"),
        ("0 0 0 * * ?", "0 0 0 * *"),
        ("0 0 0 ? * *", "0 0 0 * * *"),
        ("0 0 0 */1 * *", "0 0 0 * * *"),
        ("@yearly", "0 0 0 1 1 *"),
        ("@annually", "0 0 0 1 1 *"),
        ("@monthly", "0 0 0 1 * *"),
        ("@weekly", "0 0 0 * * 0"),
        ("@daily", "0 0 0 * * *"),
        ("@midnight", "0 0 0 * * *"),
        ("@hourly", "0 0 * * * *"),
        ("  0 0 12 * * *\t", "0 0 12 * * *"),
    ],
)
def test_spellings_of_the_same_schedule(spelled: str, numeric: str) -> None:
    after = utc(2024, 1, 1)
    assert fires(cron(spelled), after, 6) == fires(cron(numeric), after, 6)


def test_day_of_month_and_day_of_week_both_restricted_means_either() -> None:
    # The 13th, and every Friday (2024-09-06 is a Friday, 2024-09-13 one too).
    schedule = cron("0 0 0 13 * FRI")
    assert fires(schedule, utc(2024, 9, 1), 4) == [
        utc(2024, 9, 6),
        utc(2024, 9, 13),
        utc(2024, 9, 20),
        utc(2024, 9, 27),
    ]
    assert fires(schedule, utc(2024, 9, 28), 2) == [utc(2024, 10, 4), utc(2024, 10, 11)]
    # A step greater than one is a restriction too: the 1st, 3rd… and every Sunday.
    stepped = cron("0 0 0 */2 * 0")
    assert fires(stepped, utc(2024, 9, 1), 4) == [
        utc(2024, 9, 3),
        utc(2024, 9, 5),
        utc(2024, 9, 7),
        utc(2024, 9, 8),
    ]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # Either field a star (or "?"): both must match, which is the other one alone.
        ("0 0 0 * * FRI", [utc(2024, 9, 6), utc(2024, 9, 13)]),
        ("0 0 0 ? * FRI", [utc(2024, 9, 6), utc(2024, 9, 13)]),
        ("0 0 0 13 * *", [utc(2024, 9, 13), utc(2024, 10, 13)]),
        ("0 0 0 13 * ?", [utc(2024, 9, 13), utc(2024, 10, 13)]),
        ("0 0 0 13 *", [utc(2024, 9, 13), utc(2024, 10, 13)]),
        # A list holding a star keeps the star.
        ("0 0 0 13 * FRI,*", [utc(2024, 9, 13), utc(2024, 10, 13)]),
        ("0 0 0 13 * */1", [utc(2024, 9, 13), utc(2024, 10, 13)]),
    ],
)
def test_a_star_on_either_day_field_means_both(schedule: str, expected: list[datetime]) -> None:
    assert fires(cron(schedule), utc(2024, 9, 1), 2) == expected


def test_leap_day_is_found_quickly() -> None:
    schedule = cron("0 0 0 29 2 *")
    started = time.perf_counter()
    assert fires(schedule, utc(2024, 3, 1), 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    "schedule",
    ["0 0 0 30 2 *", "0 0 0 31 4,6,9,11 *", "* * * 31 2 ?", "0 0 0 30 FEB ?", "*/5 * * 31 11 *"],
)
def test_a_schedule_that_never_fires_says_so_quickly(schedule: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ScheduleError, match="never fires"):
        cron(schedule).next_after(utc(2024, 1, 1))
    assert time.perf_counter() - started < 0.1


def test_the_horizon_is_five_years() -> None:
    # The next leap day after March 2097 is in 2104 (2100 is no leap year).
    with pytest.raises(ScheduleError, match="never fires"):
        cron("0 0 0 29 2 *").next_after(utc(2097, 3, 1))
    assert cron("0 0 0 29 2 *").next_after(utc(2099, 3, 1)) == utc(2104, 2, 29)


def test_the_end_of_the_calendar_is_beyond_the_horizon() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        cron("0 0 0 1 1 *").next_after(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    with pytest.raises(ScheduleError, match="never fires"):
        parse_schedule("Rate", "30d", anchor=utc(9999, 12, 1)).next_after(utc(9999, 12, 31))


# --- zones and daylight saving time --------------------------------------------------------------


def test_the_zone_argument_applies_without_a_prefix() -> None:
    after = utc(2024, 7, 1)
    assert cron("0 0 12 * * *", zone="Asia/Shanghai").next_after(after) == utc(2024, 7, 1, 4)
    assert cron("0 0 12 * * *", zone="Europe/Berlin").next_after(after) == utc(2024, 7, 1, 10)
    assert cron("0 0 12 * * *").next_after(after) == utc(2024, 7, 1, 12)


@pytest.mark.parametrize("prefix", ["CRON_TZ=", "TZ="])
def test_a_prefix_overrides_the_zone_argument(prefix: str) -> None:
    schedule = cron(f"{prefix}America/New_York 0 0 12 * * *", zone="Asia/Shanghai")
    assert schedule.next_after(utc(2024, 7, 1)) == utc(2024, 7, 1, 16)
    assert schedule.next_after(utc(2024, 12, 1)) == utc(2024, 12, 1, 17)
    assert cron(f"{prefix}Europe/Berlin   @daily").next_after(utc(2024, 7, 1)) == utc(
        2024, 7, 1, 22
    )


# Europe/Berlin 2024: 2024-03-31 02:00 CET jumps to 03:00 CEST (01:00 UTC); 2024-10-27 03:00
# CEST falls back to 02:00 CET (01:00 UTC), so 02:00-02:59 happens twice.


def test_a_wall_time_in_the_spring_forward_gap_is_skipped() -> None:
    daily = cron("0 30 2 * * *", zone="Europe/Berlin")
    assert fires(daily, utc(2024, 3, 29, 12), 3) == [
        utc(2024, 3, 30, 1, 30),  # 02:30 CET
        utc(2024, 4, 1, 0, 30),  # 02:30 CEST; 2024-03-31 02:30 does not exist
        utc(2024, 4, 2, 0, 30),
    ]
    hourly = cron("0 30 * * * *", zone="Europe/Berlin")
    assert fires(hourly, utc(2024, 3, 31, 0), 2) == [
        utc(2024, 3, 31, 0, 30),  # 01:30 CET
        utc(2024, 3, 31, 1, 30),  # 03:30 CEST
    ]
    every_two_seconds = cron("*/2 * * * * *", zone="Europe/Berlin")
    assert fires(every_two_seconds, utc(2024, 3, 31, 0, 59, 57), 2) == [
        utc(2024, 3, 31, 0, 59, 58),  # 01:59:58 CET
        utc(2024, 3, 31, 1, 0, 0),  # 03:00:00 CEST
    ]
    # Inside the gap's hour only: the next day.
    assert cron("*/10 * 2 * * *", zone="Europe/Berlin").next_after(utc(2024, 3, 31)) == utc(
        2024, 4, 1, 0, 0, 0
    )


def test_a_repeated_wall_time_fires_once_at_its_first_occurrence() -> None:
    daily = cron("0 30 2 * * *", zone="Europe/Berlin")
    assert fires(daily, utc(2024, 10, 26, 12), 2) == [
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST; not again at 02:30 CET
        utc(2024, 10, 28, 1, 30),  # 02:30 CET
    ]
    hourly = cron("0 30 * * * *", zone="Europe/Berlin")
    assert fires(hourly, utc(2024, 10, 26, 23, 0), 4) == [
        utc(2024, 10, 26, 23, 30),  # 01:30 CEST
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 2, 30),  # 03:30 CET
        utc(2024, 10, 27, 3, 30),
    ]


def test_a_moment_in_the_second_pass_of_a_repeated_hour_waits_for_its_end() -> None:
    every_minute = cron("0 * * * * *", zone="Europe/Berlin")
    second_pass = utc(2024, 10, 27, 1, 10, 0)  # 02:10 CET, the second 02:10 of the night
    assert every_minute.next_after(second_pass) == utc(2024, 10, 27, 2, 0)  # 03:00 CET
    # The same moment given in Berlin time (fold=1) is the same instant.
    assert every_minute.next_after(second_pass.astimezone(BERLIN)) == utc(2024, 10, 27, 2, 0)
    # In the first pass every minute fires.
    assert every_minute.next_after(utc(2024, 10, 27, 0, 10, 30)) == utc(2024, 10, 27, 0, 11)
    daily = cron("0 15 2 * * *", zone="Europe/Berlin")
    assert daily.next_after(second_pass) == utc(2024, 10, 28, 1, 15)


# --- @every and Rate -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "period"),
    [
        ("1.5h", timedelta(minutes=90)),
        ("2h30m", timedelta(minutes=150)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("500ms", timedelta(seconds=1)),  # below one second rounds up
        ("1ns", timedelta(seconds=1)),
        ("1.9s", timedelta(seconds=1)),  # sub-second parts are dropped
        ("1h0m0.5s", timedelta(hours=1)),
        ("2000000us", timedelta(seconds=2)),
        ("3000000µs", timedelta(seconds=3)),  # micro sign
        ("4000000μs", timedelta(seconds=4)),  # Greek mu
        ("1500ms", timedelta(seconds=1)),
        (".5m", timedelta(seconds=30)),
        ("1.m", timedelta(minutes=1)),
        ("+5m", timedelta(minutes=5)),
        ("0.000001h", timedelta(seconds=1)),
        ("1h1h", timedelta(hours=2)),
        ("43800h", timedelta(hours=43800)),
    ],
)
def test_every_takes_go_durations(duration: str, period: timedelta) -> None:
    schedule = cron(f"@every {duration}")
    assert fires(schedule, ANCHOR, 3) == [ANCHOR + k * period for k in (1, 2, 3)]


@pytest.mark.parametrize(
    ("schedule_type", "schedule", "period"),
    [
        ("Rate", "3m", timedelta(minutes=3)),
        ("Rate", "1m", timedelta(minutes=1)),
        ("Rate", "60m", timedelta(minutes=60)),
        ("Rate", "1h", timedelta(hours=1)),
        ("Rate", "24h", timedelta(hours=24)),
        ("Rate", "1d", timedelta(days=1)),
        ("Rate", "30d", timedelta(days=30)),
        ("Rate", "05m", timedelta(minutes=5)),
        ("Cron", "@every 2h30m", timedelta(minutes=150)),
        ("Cron", "CRON_TZ=Asia/Tokyo @every 1h", timedelta(hours=1)),
    ],
)
def test_intervals_count_from_the_anchor(
    schedule_type: str, schedule: str, period: timedelta
) -> None:
    anchor = datetime(2024, 5, 17, 9, 41, 7, 250_000, tzinfo=BERLIN)
    start = anchor.astimezone(UTC)
    parsed = parse_schedule(schedule_type, schedule, zone="Asia/Shanghai", anchor=anchor)
    # Before the anchor and at it: the first fire is one period after it.
    assert parsed.next_after(start - timedelta(days=3)) == start + period
    assert parsed.next_after(start) == start + period
    # On a fire time: the next one; between two: the later one.
    assert parsed.next_after(start + 7 * period) == start + 8 * period
    assert parsed.next_after(start + 7 * period - timedelta(microseconds=1)) == start + 7 * period
    assert parsed.next_after(start + 7 * period + period / 3) == start + 8 * period
    # Far later, in another zone: still on the anchor's grid, in UTC.
    later = datetime(2026, 2, 3, 4, 5, 6, tzinfo=ZoneInfo("America/Los_Angeles"))
    fire = parsed.next_after(later)
    assert fire.tzinfo is UTC
    assert (fire - start) % period == timedelta(0)
    assert later < fire <= later + period


def test_intervals_ignore_daylight_saving_time() -> None:
    hourly = parse_schedule("Rate", "1h", anchor=datetime(2024, 3, 31, 1, 30, tzinfo=BERLIN))
    assert fires(hourly, utc(2024, 3, 31, 0, 30), 2) == [
        utc(2024, 3, 31, 1, 30),
        utc(2024, 3, 31, 2, 30),
    ]


# --- invalid input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("", "5 or 6 fields"),
        ("   ", "5 or 6 fields"),
        ("0 0 *", "5 or 6 fields"),
        ("0 0 12 * * * 2024", "5 or 6 fields"),
        ("60 * * * * *", "60 is out of range 0-59"),
        ("* 60 * * * *", "out of range 0-59"),
        ("* * 24 * * *", "out of range 0-23"),
        ("* * * 0 * *", "out of range 1-31"),
        ("* * * 32 * *", "out of range 1-31"),
        ("* * * * 0 *", "out of range 1-12"),
        ("* * * * 13 *", "out of range 1-12"),
        ("* * * * * 7", "7 is out of range 0-6"),
        ("* * * * * 0-7", "out of range 0-6"),
        ("* * * * * 99999999999999999999999", "out of range 0-6"),
        ("5-1 * * * * *", "runs backwards"),
        ("* * * * DEC-JAN *", "runs backwards"),
        ("*/0 * * * * *", "step must be positive"),
        ("1-5/0 * * * * *", "step must be positive"),
        ("*/ * * * * *", "not a number"),
        ("*/x * * * * *", "not a number"),
        ("1/2/3 * * * * *", "not a number"),
        ("1-2-3 * * * * *", "more than one '-'"),
        ("1,,2 * * * * *", "empty list item"),
        (",1 * * * * *", "empty list item"),
        ("1, * * * * *", "empty list item"),
        ("- * * * * *", "not a number"),
        ("1- * * * * *", "not a number"),
        ("-1 * * * * *", "not a number"),
        ("+5 * * * * *", "not a number"),
        ("1.5 * * * * *", "not a number"),
        ("٣ * * * * *", "not a number"),
        ("1_0 * * * * *", "not a number"),
        ("? * * * * *", "'?' is allowed only in day-of-month and day-of-week"),
        ("* * * * ? *", "'?' is allowed only"),
        ("* * * ?/2 * *", "'?' takes no step"),
        ("*-5 * * * * *", "stand alone"),
        ("** * * * * *", "stand alone"),
        ("* * * * * JAN", "not a number or a name (SUN-SAT)"),  # names in their own field only
        ("* * * * MON *", "not a number or a name (JAN-DEC)"),
        ("* * * MON * *", "not a number"),
        ("* * * * JANUARY *", "not a number or a name (JAN-DEC)"),
        ("* * * * * MONDAY", "not a number or a name"),
        ("* * * L * *", "L, W and # are not supported"),
        ("* * * LW * *", "L, W and # are not supported"),
        ("* * * 15W * *", "L, W and # are not supported"),
        ("* * * ? * 5L", "L, W and # are not supported"),
        ("* * * ? * MON#2", "L, W and # are not supported"),
        ("* * * ? * 1#1", "L, W and # are not supported"),
        ("CRON_TZ=Mars/Olympus 0 0 12 * * *", "unknown time zone 'Mars/Olympus'"),
        ("TZ=europe/berlin 0 0 12 * * *", "unknown time zone"),
        ("CRON_TZ= 0 0 12 * * *", "unknown time zone"),
        ("CRON_TZ=../../etc/passwd 0 0 12 * * *", "unknown time zone"),
        ("CRON_TZ=/etc/localtime 0 0 12 * * *", "unknown time zone"),
        ("CRON_TZ=leapseconds 0 0 12 * * *", "unknown time zone"),
        ("CRON_TZ=Europe 0 0 12 * * *", "unknown time zone"),
        ("CRON_TZ=Europe/Berlin", "must be followed by"),
        ("CRON_TZ=Europe/Berlin ", "must be followed by"),
        ("cron_tz=Europe/Berlin 0 0 12 * * *", "5 or 6 fields"),
        ("@every", "one duration"),
        ("@every 1h 30m", "one duration"),
        ("@every 0", "positive"),
        ("@every 0s", "positive"),
        ("@every -0", "positive"),
        ("@every -5m", "positive"),
        ("@every 0.0000000001s", "positive"),
        ("@every 5", "missing a unit"),
        ("@every 1h30", "missing a unit"),
        ("@every 5x", "unknown unit 'x'"),
        ("@every 5M", "unknown unit 'M'"),
        ("@every 1d", "unknown unit 'd'"),
        ("@every h", "unit without a number"),
        ("@every .s", "unit without a number"),
        ("@every 1..5s", "missing a unit"),
        ("@every +", "needs a duration"),
        ("@every --5m", "unit without a number"),
        ("@every 43800h1s", "longer than 5 years"),
        ("@every 99999999999999999999999999h", "longer than 5 years"),
        ("@every5m", "unknown descriptor"),
        ("@reboot", "unknown descriptor"),
        ("@DAILY", "unknown descriptor"),
        ("@daily 0", "unknown descriptor"),
        ("@", "unknown descriptor"),
        ("0 0 12 * * * @daily", "5 or 6 fields"),
    ],
)
def test_invalid_cron_schedules_are_refused(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(message)):
        cron(schedule)


@pytest.mark.parametrize(
    "schedule",
    ["", "3", "m", "0m", "61m", "0h", "25h", "0d", "31d", "3 m", " 3m", "3m ", "+3m", "-3m",
     "3.5m", "3s", "3M", "3H", "1w", "٣m", "1_0m", "3mm", "m3", "3m\n", "@every 3m", "0 0 12 * * *",
     "99999999999999999999m"],
)  # fmt: skip
def test_invalid_rates_are_refused(schedule: str) -> None:
    with pytest.raises(ScheduleError, match="Rate"):
        parse_schedule("Rate", schedule, anchor=ANCHOR)


@pytest.mark.parametrize("schedule_type", ["rate", "CRON", "Timer", "", "Rate "])
def test_unknown_schedule_types_are_refused(schedule_type: str) -> None:
    with pytest.raises(ScheduleError, match="schedule_type must be Rate or Cron"):
        parse_schedule(schedule_type, "3m", anchor=ANCHOR)


def test_an_unknown_zone_argument_is_refused() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Nowhere/Town'"):
        cron("0 0 12 * * *", zone="Nowhere/Town")


def test_a_schedule_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ScheduleError, match="must be a string"):
        parse_schedule("Rate", 3, anchor=ANCHOR)  # type: ignore[arg-type]


def test_a_long_schedule_is_refused_quickly() -> None:
    started = time.perf_counter()
    for schedule in ["1," * 5_000 + "1 * * * * *", "@every " + "1h" * 5_000, "9" * 10_000 + "m"]:
        for schedule_type in ("Cron", "Rate"):
            with pytest.raises(ScheduleError, match=f"longer than {MAX_SCHEDULE_LENGTH}"):
                parse_schedule(schedule_type, schedule, anchor=ANCHOR)
    assert time.perf_counter() - started < 0.1
    # Just within the limit is parsed.
    at_the_limit = ",".join(["1"] * 120) + " * * * * *"
    assert len(at_the_limit) <= MAX_SCHEDULE_LENGTH
    assert cron(at_the_limit).next_after(utc(2024, 1, 1)) == utc(2024, 1, 1, 0, 0, 1)


def test_naive_datetimes_are_a_caller_error_not_a_schedule_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware") as raised:
        parse_schedule("Rate", "3m", anchor=datetime(2024, 1, 1))
    assert not isinstance(raised.value, ScheduleError)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron("0 0 12 * * *").next_after(datetime(2024, 1, 1))


# --- against a second-by-second reference --------------------------------------------------------

WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
NAMES = {name: number for number, name in enumerate(WEEKDAYS)}
NAMES |= {name: number for number, name in enumerate(MONTHS, start=1)}
BOUNDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


def reference_number(text: str) -> int:
    return NAMES[text.lower()] if text.lower() in NAMES else int(text)


def reference_values(text: str, low: int, high: int) -> tuple[set[int], bool]:
    """The values a field allows, and whether it is a star, spelled out the simple way."""
    values: set[int] = set()
    star = False
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span in ("*", "?"):
            first, last = low, high
            star = star or step == 1
        elif "-" in span:
            first, last = (reference_number(end) for end in span.split("-"))
        else:
            first = reference_number(span)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values, star


def reference_matcher(schedule: str, zone: ZoneInfo) -> Callable[[datetime], bool]:
    """Whether an instant's wall time in ``zone`` matches the fields, at its first occurrence."""
    fields = schedule.split()
    fields += ["*"] * (6 - len(fields))
    (seconds, _), (minutes, _), (hours, _), (days, day_star), (months, _), (weekdays, week_star) = (
        reference_values(text, *bounds) for text, bounds in zip(fields, BOUNDS, strict=True)
    )

    def matches(moment: datetime) -> bool:
        wall = moment.astimezone(zone)
        in_month = wall.day in days
        in_week = wall.isoweekday() % 7 in weekdays
        day_ok = (in_month and in_week) if (day_star or week_star) else (in_month or in_week)
        return (
            wall.fold == 0
            and wall.second in seconds
            and wall.minute in minutes
            and wall.hour in hours
            and wall.month in months
            and day_ok
        )

    return matches


def reference_fires(
    schedule: str, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """Every second in [start, end) that fires, found by trying each one."""
    matches = reference_matcher(schedule, zone)
    seconds = (start + timedelta(seconds=n) for n in range(int((end - start).total_seconds())))
    return [moment for moment in seconds if matches(moment)]


CROSS_CHECKED = [
    ("UTC", "*/7 * * * * *", utc(2024, 1, 1, 0)),
    ("UTC", "0 26,29,33 * * * *", utc(2024, 1, 1, 0)),
    ("UTC", "0 0/5 12-14 ? * MON-FRI", utc(2024, 3, 29, 0)),
    ("UTC", "0 0/5 12-14 ? * MON-FRI", utc(2024, 3, 30, 0)),
    ("UTC", "0 0 12 ? JAN,FEB,MAR,APR *", utc(2024, 4, 30, 0)),
    ("UTC", "10-20/3 7 */5 1,15 * SUN", utc(2024, 9, 14, 12)),
    ("UTC", "10-20/3 7 */5 1,15 * SUN", utc(2024, 9, 1, 0)),
    ("UTC", "0 0 * 1-7 * MON", utc(2024, 9, 8, 12)),
    ("Asia/Shanghai", "0 */20 9-17 * * *", utc(2024, 2, 28, 12)),
    ("Europe/Berlin", "0 */15 * * * *", utc(2024, 3, 30, 20)),
    ("Europe/Berlin", "*/20 * 2 * * *", utc(2024, 3, 30, 20)),
    ("Europe/Berlin", "*/20 * 2 * * *", utc(2024, 10, 26, 20)),
    ("Europe/Berlin", "0 30 2 * * *", utc(2024, 10, 26, 20)),
    ("Europe/Berlin", "*/9 59 1,2 * * *", utc(2024, 10, 26, 20)),
    ("Europe/Berlin", "0 0 3 * * *", utc(2024, 3, 30, 20)),
    # Midnight did not exist in Sao Paulo on 2018-11-04 (00:00 became 01:00).
    ("America/Sao_Paulo", "0 0 0,1 * * *", utc(2018, 11, 3, 12)),
    # Lord Howe Island moves its clocks by half an hour.
    ("Australia/Lord_Howe", "0 */10 1,2 * * *", utc(2024, 4, 6, 12)),
    ("Australia/Lord_Howe", "0 */10 1,2 * * *", utc(2024, 10, 5, 12)),
]


@pytest.mark.parametrize(("zone", "schedule", "start"), CROSS_CHECKED)
def test_next_after_agrees_with_a_second_by_second_reference(
    zone: str, schedule: str, start: datetime
) -> None:
    # Fires over two days, so that a moment late on the first has its next fire known.
    end = start + timedelta(days=2)
    expected = reference_fires(schedule, ZoneInfo(zone), start, end)
    parsed = cron(schedule, zone=zone)
    chained = []
    moment = start - timedelta(seconds=1)
    while (moment := parsed.next_after(moment)) < end:
        chained.append(moment)
    assert chained == expected
    # From moments in between, too (the second passes of repeated hours among them).
    rng = random.Random(schedule)
    for _ in range(300):
        moment = start + timedelta(seconds=rng.uniform(0, 86_400))
        index = bisect.bisect_right(expected, moment)
        if index < len(expected):
            assert parsed.next_after(moment) == expected[index], moment


# --- random input --------------------------------------------------------------------------------

# fmt: off
FIELD_TOKENS = [
    "0", "1", "2", "5", "6", "7", "9", "12", "13", "23", "24", "29", "30", "31", "32", "59", "60",
    "99", "00", "007", "*", "?", "/", "-", ",", "L", "W", "#", ".", "+", "_",
    "JAN", "feb", "Dec", "MON", "sun", "SAT", "JANUARY", "MONDAY", "FOO",
]
OTHER_TOKENS = [
    "@every", "@daily", "@hourly", "@yearly", "@weekly", "@monthly", "@midnight", "@annually",
    "@reboot", "@", "=", "CRON_TZ=", "TZ=", "Europe/Berlin", "Asia/Shanghai", "UTC", "Mars/Base",
    "../etc", "1.5h", "2h30m", "500ms", "3m", "1h", "30d", "1d", "ns", "us", "µs", "μs", "ms", "s",
    "m", "h", "d", ".5", "1.", "-5m", "0s", " ", " ", " ", "\t", "",
]
# fmt: on


def random_part(rng: random.Random, low: int, high: int) -> str:
    """A list item, mostly well-formed for a field of ``low``-``high``, now and then not."""
    a, b = sorted(rng.randint(low, high) for _ in range(2))
    step = rng.choice((1, 2, 3, 7, 15))
    if rng.random() < 0.04:
        junk = "".join(rng.choice(FIELD_TOKENS) for _ in range(rng.randint(1, 3)))
        return rng.choice((junk, f"{b + 1}-{a}", "*/0", "?", f"{high + 1}", f"{a}-{b}-{a}"))
    forms = ["*", f"{a}", f"{a}-{b}", f"*/{step}", f"{a}/{step}", f"{a}-{b}/{step}"]
    if high == 31 or high == 6:
        forms.append("?")
    if high == 12:
        forms.append(rng.choice(MONTHS).upper() + rng.choice(("", "-dec", "/2")))
    if high == 6:
        forms.append(rng.choice(WEEKDAYS) + rng.choice(("", "-Sat", "/2")))
    return rng.choice(forms)


def random_schedule(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.7:  # fields, now and then a wrong one
        count = rng.choice((4, 5, 5, 6, 6, 6, 7))
        fields = [
            ",".join(random_part(rng, *BOUNDS[index % 6]) for _ in range(rng.choice((1, 1, 2, 3))))
            for index in range(count)
        ]
        prefix = rng.choice(["", "", "", "CRON_TZ=Europe/Berlin ", "TZ=UTC ", "TZ=Nope "])
        return prefix + " ".join(fields)
    if roll < 0.8:
        terms = rng.choices(
            ["1", "2.5", ".5", "1.", "30", "-", "+", "h", "m", "s", "ms", "µs", "x"],
            k=rng.randint(0, 5),
        )
        return "@every " + "".join(terms)
    return "".join(rng.choice(FIELD_TOKENS + OTHER_TOKENS) for _ in range(rng.randint(0, 12)))


def test_random_schedules_parse_or_raise_schedule_error_only() -> None:
    rng = random.Random(20241027)
    # The first and the second pass over Berlin's repeated hour.
    moments = [utc(2024, 10, 27, 0, 59, 30), utc(2024, 10, 27, 1, 29, 30)]
    outcomes = {"valid": 0, "invalid": 0, "checked": 0}
    for _ in range(4_000):
        schedule = random_schedule(rng)
        for schedule_type in ("Cron", "Rate"):
            try:
                parsed = parse_schedule(
                    schedule_type, schedule, zone="Europe/Berlin", anchor=ANCHOR
                )
            except ScheduleError as error:
                assert str(error)
                outcomes["invalid"] += 1
                continue
            outcomes["valid"] += 1
            for moment in moments:
                try:
                    fire = parsed.next_after(moment)
                except ScheduleError as error:
                    assert "never fires" in str(error)
                    continue
                assert fire > moment
                assert fire.tzinfo is UTC
                if schedule_type == "Cron" and "@" not in schedule:
                    zone, fields = BERLIN, schedule
                    if "TZ=" in schedule:
                        prefix, fields = schedule.split(maxsplit=1)
                        zone = ZoneInfo(prefix.partition("=")[2])
                    assert reference_matcher(fields, zone)(fire), (schedule, moment)
                    outcomes["checked"] += 1
    # The generator reaches both sides.
    assert outcomes["valid"] > 200
    assert outcomes["invalid"] > 2_000
    assert outcomes["checked"] > 1_000
