"""Timer schedules: parse a TIMER trigger's ``Rate`` or ``Cron`` schedule, find its fire times.

``Rate`` is FunctionGraph's ``<N>m|h|d``. ``Cron`` is the robfig/cron v3 grammar FunctionGraph's
scheduler uses: an optional ``CRON_TZ=``/``TZ=`` zone prefix, then ``@every <Go duration>``, a
robfig descriptor (``@daily`` …) or the fields ``second minute hour day-of-month month
[day-of-week]``. ``Rate`` and ``@every`` fire at ``anchor + k * period`` (k ≥ 1), the anchor
being the trigger's activation (robfig counts ``@every`` from each run instead, which drifts);
field schedules fire at wall-clock times of their zone.

Where robfig is laxer than its documented grammar — empty list items (``1,,2``), signs
(``+5``), ``?`` outside day-of-month/day-of-week or with a step (``?/2``), text after ``*``
(``*-5``), ``@every`` of zero or less (robfig makes it one second) — the schedule is refused
here, so a typo is a 400 rather than a surprise. Day-of-week is 0-6 (7 is out of range, as in
robfig). Descriptors are case-sensitive, as in robfig.

Daylight saving time, for field schedules:

- A wall time that does not exist (a spring-forward gap) never fires; the schedule goes on with
  its next matching wall time after the gap. robfig/cron steps through absolute time, so it
  never reaches such a wall time either (02:30 every day is skipped on the day clocks jump from
  02:00 to 03:00).
- A wall time that happens twice (fall-back) fires once, at its first occurrence. Here robfig
  fires at both occurrences, since stepping minute by minute through the repeated hour meets
  every wall time again; firing a daily 02:30 job twice in one night is what this rule avoids.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_SCHEDULE_LENGTH = 256
HORIZON_YEARS = 5  # next_after gives up when no fire time falls within this many years

_SECOND = timedelta(seconds=1)
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
# A longer @every could not fire within the horizon after its first period.
_MAX_PERIOD = timedelta(days=365 * HORIZON_YEARS)


class ScheduleError(ValueError):
    """A schedule that cannot be parsed or never fires; the message says what is wrong (for a
    400 FSS.1109)."""


class Schedule(Protocol):
    """When a timer fires."""

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (aware, any zone), in UTC.

        Raises ScheduleError when the schedule never fires within ``HORIZON_YEARS``."""
        ...


def parse_schedule(
    schedule_type: str, schedule: str, *, zone: str = "UTC", anchor: datetime
) -> Schedule:
    """Parse a TIMER trigger's ``schedule_type`` (``Rate`` or ``Cron``) and ``schedule``.

    ``zone`` (the region's IANA time zone) applies to Cron fields without a ``CRON_TZ=`` prefix;
    ``anchor`` (aware, the trigger's activation) is where ``Rate`` and ``@every`` count from.
    Raises ScheduleError for anything but a valid schedule."""
    start = _utc(anchor, "anchor")
    if not isinstance(schedule, str):
        raise ScheduleError("schedule must be a string")
    if len(schedule) > MAX_SCHEDULE_LENGTH:
        raise ScheduleError(f"schedule is longer than {MAX_SCHEDULE_LENGTH} characters")
    if schedule_type == "Rate":
        return _Interval(start, _parse_rate(schedule))
    if schedule_type == "Cron":
        return _parse_cron(schedule, zone, start)
    raise ScheduleError(f"schedule_type must be Rate or Cron, got {schedule_type!r}")


def _utc(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        # A caller's mistake, not a client's: deliberately not a ScheduleError.
        raise ValueError(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _never_fires(moment: datetime) -> ScheduleError:
    return ScheduleError(f"schedule never fires within {HORIZON_YEARS} years after {moment}")


# --- Rate and @every ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Interval:
    """Fires every ``period`` counted from ``anchor`` (UTC), first at ``anchor + period``."""

    anchor: datetime
    period: timedelta

    def next_after(self, moment: datetime) -> datetime:
        instant = _utc(moment, "moment")
        steps = 1 if instant < self.anchor else (instant - self.anchor) // self.period + 1
        try:
            fire = self.anchor + steps * self.period
        except OverflowError:
            raise _never_fires(moment) from None
        if fire.year > instant.year + HORIZON_YEARS:
            raise _never_fires(moment)
        return fire


_RATE = re.compile(r"([0-9]+)([mhd])")
_RATE_UNITS = {"m": (60, _MINUTE), "h": (24, _HOUR), "d": (30, _DAY)}


def _parse_rate(text: str) -> timedelta:
    match = _RATE.fullmatch(text)
    if match is None:
        raise ScheduleError(
            f"Rate schedule must be a whole number followed by m, h or d (like 3m), got {text!r}"
        )
    count, unit = int(match[1]), match[2]
    most, length = _RATE_UNITS[unit]
    if not 1 <= count <= most:
        raise ScheduleError(f"Rate {text!r} is out of range: {unit} takes 1 to {most}")
    return count * length


_NANOSECONDS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# One term of a Go duration: digits, an optional fraction, a unit. The three character classes
# are disjoint, so matching is linear.
_DURATION_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def _parse_every(text: str) -> timedelta:
    """A Go ``time.ParseDuration`` string as robfig's ``Every`` uses it: below one second
    rounds up to one second, sub-second parts are dropped."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body:
        raise ScheduleError(f"@every needs a duration like 30m, 1.5h or 2h30m, got {text!r}")
    nanoseconds = 0
    position = 0 if body != "0" else len(body)  # Go accepts a bare 0, without a unit
    while position < len(body):
        match = _DURATION_TERM.match(body, position)
        assert match is not None  # every group may be empty
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise ScheduleError(f"@every duration {text!r} has a unit without a number")
        if unit not in _NANOSECONDS:
            detail = "is missing a unit" if not unit else f"has an unknown unit {unit!r}"
            raise ScheduleError(
                f"@every duration {text!r} {detail} (units: ns, us, µs, ms, s, m, h)"
            )
        scale = _NANOSECONDS[unit]
        nanoseconds += int(whole or "0") * scale
        if fraction:
            nanoseconds += int(fraction) * scale // 10 ** len(fraction)
        position = match.end()
    if text.startswith("-") or nanoseconds == 0:
        raise ScheduleError(f"@every needs a positive duration, got {text!r}")
    seconds = max(1, nanoseconds // 1_000_000_000)
    if seconds > _MAX_PERIOD.total_seconds():
        raise ScheduleError(
            f"@every {text} is longer than {HORIZON_YEARS} years ({_MAX_PERIOD.days * 24}h)"
        )
    return timedelta(seconds=seconds)


# --- Cron fields -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """One position of a cron expression: its range and the names it accepts (the first name
    stands for ``low``)."""

    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    blank: bool = False  # accepts "?"


_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31, blank=True),
    _Field("month", 1, 12, _MONTH_NAMES),
    _Field("day-of-week", 0, 6, _WEEKDAY_NAMES, blank=True),
)
_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_NUMBER = re.compile(r"[0-9]+")
# Quartz's L (last), W (weekday) and # (nth weekday): "L", "5L", "15W", "LW", "MON#2".
_QUARTZ_ONLY = re.compile(r"#|(?<![A-Z])[0-9]*L?W?(?<=[LW])(?![A-Z])", re.IGNORECASE)


@dataclass(frozen=True)
class _Values:
    """The values one field allows. ``star`` is robfig's star bit: the field was ``*`` or ``?``
    (not ``*/S`` with S > 1), which makes day-of-month and day-of-week combine with AND."""

    allowed: frozenset[int]
    ordered: tuple[int, ...]
    star: bool

    def first_from(self, value: int) -> int | None:
        """The smallest allowed value ≥ ``value``, if any."""
        index = bisect.bisect_left(self.ordered, value)
        return self.ordered[index] if index < len(self.ordered) else None


def _parse_cron(text: str, zone_name: str, anchor: datetime) -> Schedule:
    text = text.strip()
    if text.startswith(("CRON_TZ=", "TZ=")):
        prefix, *rest = text.split(maxsplit=1)
        zone_name = prefix.partition("=")[2]
        text = rest[0] if rest else ""
        if not text:
            raise ScheduleError(f"{prefix} must be followed by a space and a schedule")
    zone = _load_zone(zone_name)
    if text.startswith("@"):
        words = text.split()
        if words[0] == "@every":
            if len(words) != 2:
                raise ScheduleError("@every takes one duration, like @every 1h30m")
            return _Interval(anchor, _parse_every(words[1]))
        if words[0] not in _DESCRIPTORS or len(words) > 1:
            known = ", ".join(["@every <duration>", *_DESCRIPTORS])
            raise ScheduleError(f"unknown descriptor {text!r}; known: {known}")
        text = _DESCRIPTORS[words[0]]
    fields = text.split()
    if len(fields) == 5:
        fields.append("*")  # day-of-week is optional
    if len(fields) != 6:
        raise ScheduleError(
            "a Cron schedule has 5 or 6 fields (second minute hour day-of-month month "
            f"[day-of-week]), got {len(text.split())}: {text!r}"
        )
    seconds, minutes, hours, days, months, weekdays = (
        _parse_field(value, field) for value, field in zip(fields, _FIELDS, strict=True)
    )
    return _Cron(seconds, minutes, hours, days, months, weekdays, zone)


def _load_zone(name: str) -> ZoneInfo:
    if not _ZONE_NAME.fullmatch(name):
        raise ScheduleError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {name!r}") from None


def _parse_field(text: str, field: _Field) -> _Values:
    allowed: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{field.label} field {text!r} has an empty list item")
        values, part_star = _parse_part(part, field)
        allowed.update(values)
        star = star or part_star
    return _Values(frozenset(allowed), tuple(sorted(allowed)), star)


def _parse_part(part: str, field: _Field) -> tuple[range, bool]:
    """One list item: ``*``, ``?``, ``N``, ``N-M``, each but ``?`` with an optional ``/S``."""
    if _QUARTZ_ONLY.search(part):
        raise ScheduleError(f"{field.label} {part!r}: L, W and # are not supported")
    head, slash, step_text = part.partition("/")
    step = 1
    if slash:
        step = _parse_number(step_text, f"step of {field.label} {part!r}")
        if step == 0:
            raise ScheduleError(f"{field.label} {part!r}: the step must be positive")
    if head == "?":
        if not field.blank:
            raise ScheduleError(
                f"'?' is allowed only in day-of-month and day-of-week, not {field.label}"
            )
        if slash:
            raise ScheduleError(f"{field.label} {part!r}: '?' takes no step")
        return range(field.low, field.high + 1), True
    if head == "*":
        return range(field.low, field.high + 1, step), step == 1
    if "*" in head or "?" in head:
        raise ScheduleError(f"{field.label} {part!r}: '*' and '?' stand alone (or '*/S')")
    first_text, dash, last_text = head.partition("-")
    if "-" in last_text:
        raise ScheduleError(f"{field.label} {part!r} has more than one '-'")
    first = _parse_value(first_text, field, part)
    if dash:
        last = _parse_value(last_text, field, part)
    elif slash:
        last = field.high  # "N/S" runs from N to the end of the range
    else:
        last = first
    if first > last:
        raise ScheduleError(f"{field.label} range {part!r} runs backwards")
    return range(first, last + 1, step), False


def _parse_value(text: str, field: _Field, part: str) -> int:
    if text.upper() in field.names:
        return field.low + field.names.index(text.upper())
    if not _NUMBER.fullmatch(text):
        accepted = (
            f"a number or a name ({field.names[0]}-{field.names[-1]})"
            if field.names
            else "a number"
        )
        raise ScheduleError(f"{field.label} {part!r}: {text!r} is not {accepted}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise ScheduleError(
            f"{field.label} {part!r}: {value} is out of range {field.low}-{field.high}"
        )
    return value


def _parse_number(text: str, what: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise ScheduleError(f"{what}: {text!r} is not a number")
    return int(text)


# --- Cron fire times ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cron:
    """Fires at the wall-clock times of ``zone`` that every field allows."""

    seconds: _Values
    minutes: _Values
    hours: _Values
    days: _Values
    months: _Values
    weekdays: _Values
    zone: ZoneInfo

    def next_after(self, moment: datetime) -> datetime:
        try:
            return self._next_after(_utc(moment, "moment"))
        except OverflowError:  # the calendar's end (year 9999) is past the horizon
            raise _never_fires(moment) from None

    def _next_after(self, instant: datetime) -> datetime:
        local = instant.astimezone(self.zone)
        after = local.replace(tzinfo=None, microsecond=0)
        first_pass = local.replace(fold=0)
        if local.fold and first_pass.utcoffset() != local.utcoffset():
            # The second pass over a repeated (fall-back) wall time: the wall times left in the
            # repeat fired in the first pass, so look from the repeat's end.
            end = _transition(self.zone, first_pass.astimezone(UTC), instant)
            after = (end - _SECOND).astimezone(self.zone).replace(tzinfo=None, microsecond=0)
        last_year = min(local.year + HORIZON_YEARS, MAXYEAR - 1)
        while (wall := self._next_wall(after, last_year)) is not None:
            fire = wall.replace(tzinfo=self.zone).astimezone(UTC)  # fold=0: the first pass
            if fire.astimezone(self.zone).replace(tzinfo=None) == wall:
                return fire
            # ``wall`` falls in a spring-forward gap: go on from the gap's end.
            before = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
            end = _transition(self.zone, before, fire)
            after = end.astimezone(self.zone).replace(tzinfo=None) - _SECOND
        raise _never_fires(instant)

    def _next_wall(self, after: datetime, last_year: int) -> datetime | None:
        """The first naive wall time after ``after`` that every field allows, up to the end of
        ``last_year``. As in robfig, the largest field that does not match moves to its next
        allowed value and the smaller ones restart, so long gaps take a few steps."""
        if after.year > last_year:
            return None
        t = after + _SECOND
        while t.year <= last_year:
            if (month := self.months.first_from(t.month)) != t.month:
                if month is None:
                    t = datetime(t.year + 1, self.months.ordered[0], 1)
                else:
                    t = datetime(t.year, month, 1)
            elif not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) + _DAY
            elif (hour := self.hours.first_from(t.hour)) != t.hour:
                if hour is None:
                    t = datetime(t.year, t.month, t.day) + _DAY
                else:
                    t = t.replace(hour=hour, minute=0, second=0)
            elif (minute := self.minutes.first_from(t.minute)) != t.minute:
                if minute is None:
                    t = t.replace(minute=0, second=0) + _HOUR
                else:
                    t = t.replace(minute=minute, second=0)
            elif (second := self.seconds.first_from(t.second)) != t.second:
                t = t.replace(second=0) + _MINUTE if second is None else t.replace(second=second)
            else:
                return t
        return None

    def _day_matches(self, day: datetime) -> bool:
        """robfig's rule: if either day field is a star, both must match, else either."""
        in_month = day.day in self.days.allowed
        in_week = (day.weekday() + 1) % 7 in self.weekdays.allowed  # 0 = Sunday
        if self.days.star or self.weekdays.star:
            return in_month and in_week
        return in_month or in_week


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first whole second (UTC) at which ``zone`` has the offset it has at ``after``, given
    ``before < after`` with one offset change between them."""
    before = before.replace(microsecond=0)
    after = after.replace(microsecond=0)
    offset = after.astimezone(zone).utcoffset()
    while after - before > _SECOND:
        middle = (before + (after - before) / 2).replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == offset:
            after = middle
        else:
            before = middle
    return after
