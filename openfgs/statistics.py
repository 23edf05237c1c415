"""Function statistics: FunctionGraph's metric series, computed from the invocation records.

``ListFunctionStatistics`` and ``ShowFunctionMetrics`` answer arrays of ``{timestamp, value}``
per metric over a look-back window (``period`` minutes): 1-minute buckets up to 60 minutes,
1-hour buckets beyond; a bucket without records is ``-1`` (FunctionGraph's "not executed").

The store aggregates records per minute of ``start_time`` in SQL, walking the
``(function_id, start_time)`` index. A minute whose records are all terminal, and that ended
``SETTLE_MS`` ago, no longer changes (records are created at the current time only, and a
terminal record stays terminal) until retention purges it: it is remembered, so a console
polling the last hour every few seconds makes the store read only its last minutes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from openfgs.counting import runs
from openfgs.errors import BadRequest
from openfgs.models import Function, now_ms
from openfgs.store.base import Store

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MAX_MINUTE_BUCKETS = 60  # periods up to an hour get minute buckets, longer ones hours
MAX_PERIOD_MINUTES = 7 * 24 * 60  # the default retention: older records are purged
# A minute is remembered once it ended this long ago and holds no waiting or running record:
# an accept committed late (its start_time is taken before the commit) has landed by then.
SETTLE_MS = 2 * MINUTE_MS
MAX_MINUTES = 500_000  # remembered (function, minute) entries; the least recently used go first
NO_DATA = -1

# The series both operations answer, in FunctionGraph's names.
SERIES = (
    "count",
    "duration",
    "fail_count",
    "max_duration",
    "min_duration",
    "reject_count",
    "function_error_count",
    "system_error_count",
    "reserved_instance_num",
    "concurrency_num",
)


@dataclass(frozen=True)
class Tally:
    """What a minute (or a bucket, their sum) holds: counts and durations (ms) of its records.

    ``timed`` is the number of records with a duration (SUCCESS or FAIL after running)."""

    count: int = 0
    active: int = 0
    fail_count: int = 0
    function_error_count: int = 0
    system_error_count: int = 0
    reject_count: int = 0
    timed: int = 0
    duration_sum: int = 0
    max_duration: int | None = None
    min_duration: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, int | None]) -> Tally:
        """A minute as the store counted it (``invocation_minutes``)."""
        counts = {f.name: row[f.name] or 0 for f in fields(cls) if "_duration" not in f.name}
        return cls(**counts, max_duration=row["max_duration"], min_duration=row["min_duration"])

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            count=self.count + other.count,
            active=self.active + other.active,
            fail_count=self.fail_count + other.fail_count,
            function_error_count=self.function_error_count + other.function_error_count,
            system_error_count=self.system_error_count + other.system_error_count,
            reject_count=self.reject_count + other.reject_count,
            timed=self.timed + other.timed,
            duration_sum=self.duration_sum + other.duration_sum,
            max_duration=_pick(max, self.max_duration, other.max_duration),
            min_duration=_pick(min, self.min_duration, other.min_duration),
        )

    def values(self) -> dict[str, float]:
        """The bucket's value of each series (``-1`` for a series without data)."""
        if self.count == 0:
            return dict.fromkeys(SERIES, NO_DATA)
        return {
            "count": self.count,
            "duration": round(self.duration_sum / self.timed, 3) if self.timed else NO_DATA,
            "fail_count": self.fail_count,
            "max_duration": NO_DATA if self.max_duration is None else self.max_duration,
            "min_duration": NO_DATA if self.min_duration is None else self.min_duration,
            "reject_count": self.reject_count,
            "function_error_count": self.function_error_count,
            "system_error_count": self.system_error_count,
            "reserved_instance_num": 0,  # there are no reserved instances here
            "concurrency_num": NO_DATA,  # not recorded per minute
        }


EMPTY = Tally()


def _pick(choose: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else choose(a, b)


def parse_period(text: str) -> int:
    """A period in minutes: a whole number from 1 to ``MAX_PERIOD_MINUTES``."""
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 6):
        raise BadRequest(f"Invalid period {text[:40]!r}: expected a number of minutes")
    period = int(text)
    if not 1 <= period <= MAX_PERIOD_MINUTES:
        raise BadRequest(f"Invalid period {period}: between 1 and {MAX_PERIOD_MINUTES} minutes")
    return period


@dataclass(frozen=True)
class Buckets:
    """The buckets of a look-back window: ``count`` buckets of ``size`` ms from ``first``;
    the last one holds now."""

    first: int
    size: int
    count: int

    @classmethod
    def look_back(cls, period: int, now: int) -> Buckets:
        if period <= MAX_MINUTE_BUCKETS:
            size, count = MINUTE_MS, period
        else:
            size, count = HOUR_MS, -(-period // 60)
        return cls(now // size * size - (count - 1) * size, size, count)

    @property
    def starts(self) -> range:
        return range(self.first, self.first + self.count * self.size, self.size)

    @property
    def minutes(self) -> range:
        first = self.first // MINUTE_MS
        return range(first, first + self.count * self.size // MINUTE_MS)


class Statistics:
    """Metric series of functions over look-back windows, settled minutes remembered."""

    def __init__(self, store: Store, max_minutes: int = MAX_MINUTES) -> None:
        self._store = store
        self._max_minutes = max_minutes
        self._settled: OrderedDict[tuple[str, int], Tally] = OrderedDict()

    async def buckets(
        self, functions: Sequence[Function], period: int, now: int | None = None
    ) -> tuple[Buckets, list[Tally]]:
        """The window of ``period`` minutes ending now, and the tally of each of its buckets
        over the records of ``functions`` (a function's rows: latest, versions, aliases)."""
        now = now_ms() if now is None else now
        window = Buckets.look_back(period, now)
        per_minute = window.size // MINUTE_MS
        tallies = [EMPTY] * window.count
        for function in functions:
            minutes = await self._minutes(function, window.minutes, now)
            for index, minute in enumerate(window.minutes):
                tally = minutes.get(minute)
                if tally is not None:
                    bucket = index // per_minute
                    tallies[bucket] = tallies[bucket] + tally
        return window, tallies

    async def series(
        self, functions: Sequence[Function], period: int, now: int | None = None
    ) -> dict[str, list[dict[str, float]]]:
        """FunctionGraph's answer: each series as ``[{timestamp, value}]``, oldest first."""
        window, tallies = await self.buckets(functions, period, now)
        out: dict[str, list[dict[str, float]]] = {name: [] for name in SERIES}
        for start, tally in zip(window.starts, tallies, strict=True):
            for name, value in tally.values().items():
                out[name].append({"timestamp": start, "value": value})
        return out

    async def total(
        self, functions: Sequence[Function], begin: int, end: int, now: int | None = None
    ) -> Tally:
        """The records of ``functions`` accepted in the minutes ``[begin, end]`` touch."""
        now = now_ms() if now is None else now
        minutes = range(begin // MINUTE_MS, end // MINUTE_MS + 1)
        tally = EMPTY
        for function in functions:
            for counted in (await self._minutes(function, minutes, now)).values():
                tally = tally + counted
        return tally

    async def _minutes(self, function: Function, minutes: range, now: int) -> dict[int, Tally]:
        key = f"{function.id}:{function.func_id}"  # ids of deleted functions may come back
        found: dict[int, Tally] = {}
        missing = []
        for minute in minutes:
            tally = self._settled.get((key, minute))
            if tally is None:
                missing.append(minute)
            else:
                self._settled.move_to_end((key, minute))
                found[minute] = tally
        for run in runs(missing):
            rows = await self._store.invocation_minutes(
                function.id, run.start * MINUTE_MS, run.stop * MINUTE_MS - 1
            )
            counted = {int(row["minute"] or 0): Tally.from_row(row) for row in rows}
            for minute in run:
                tally = counted.get(minute, EMPTY)
                found[minute] = tally
                if tally.active == 0 and (minute + 1) * MINUTE_MS + SETTLE_MS <= now:
                    self._settled[(key, minute)] = tally
        while len(self._settled) > self._max_minutes:
            self._settled.popitem(last=False)
        return found
