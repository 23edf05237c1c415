"""Function statistics: FunctionGraph's metric series, computed from the invocation records.

``ListFunctionStatistics`` and ``ShowFunctionMetrics`` answer arrays of ``{timestamp, value}``
per metric over a look-back window (``period`` minutes): 1-minute buckets up to 60 minutes,
1-hour buckets beyond; a bucket without records is ``-1`` (FunctionGraph's "not executed").

The store aggregates records per minute of ``start_time`` in SQL, walking the
``(function_id, start_time)`` index. A minute whose records are all terminal, and that ended
``SETTLE_MS`` ago, no longer changes (records are created at the current time only, and a
terminal record stays terminal) until retention purges it: it is remembered, so a console
polling the last hour every few seconds makes the store read only its last minutes.

openfgs's async series (``AsyncSeries``, the console's charts) are made the same way from a
second per-minute reading of the records: counts per status, dispatch and run times binned to
two significant digits (bins of minutes merge into any bucket, so percentiles of remembered
minutes stay exact to the bin), and the waits that span a minute's end (the waiting depth at
each bucket's end is their sum).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from itertools import accumulate
from typing import Any, Generic, Protocol, TypeVar

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


def runs(numbers: list[int]) -> list[range]:
    """Sorted numbers as runs of consecutive ones: ``[1, 2, 3, 7]`` → ``[range(1, 4), range(7, 8)]``."""
    out: list[range] = []
    for n in numbers:
        if out and out[-1].stop == n:
            out[-1] = range(out[-1].start, n + 1)
        else:
            out.append(range(n, n + 1))
    return out


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

    @classmethod
    def fitting(cls, period: int, end: int) -> Buckets:
        """At most ``MAX_BUCKETS`` buckets of the first size in ``BUCKET_MINUTES`` that gives
        so few over ``period`` minutes; the last one holds ``end``."""
        minutes = next((m for m in BUCKET_MINUTES if -(-period // m) <= MAX_BUCKETS), 60)
        size, count = minutes * MINUTE_MS, -(-period // minutes)
        return cls(end // size * size - (count - 1) * size, size, count)

    @property
    def starts(self) -> range:
        return range(self.first, self.first + self.count * self.size, self.size)

    @property
    def minutes(self) -> range:
        first = self.first // MINUTE_MS
        return range(first, first + self.count * self.size // MINUTE_MS)


class Minute(Protocol):
    """What a remembered minute tells its cache: how many of its records may still change."""

    @property
    def active(self) -> int: ...


M = TypeVar("M", bound=Minute)
ReadMinutes = Callable[[int, int, int], Awaitable[dict[int, M]]]


def settled(minute: int, counted: Minute, now: int) -> bool:
    """Whether ``minute`` no longer changes: no waiting or running record, and ended
    ``SETTLE_MS`` ago."""
    return counted.active == 0 and (minute + 1) * MINUTE_MS + SETTLE_MS <= now


class SettledMinutes(Generic[M]):
    """What the store counted for each minute of each function row, remembered once settled
    (``limit`` entries, the least recently used forgotten first)."""

    def __init__(self, read: ReadMinutes[M], empty: M, limit: int) -> None:
        self._read = read  # (function id, first ms, last ms) → {minute: counted}
        self._empty = empty
        self._limit = limit
        self._settled: OrderedDict[tuple[str, int], M] = OrderedDict()

    async def get(self, function: Function, minutes: range, now: int) -> dict[int, M]:
        key = f"{function.id}:{function.func_id}"  # ids of deleted functions may come back
        found: dict[int, M] = {}
        missing = []
        for minute in minutes:
            counted = self._settled.get((key, minute))
            if counted is None:
                missing.append(minute)
            else:
                self._settled.move_to_end((key, minute))
                found[minute] = counted
        for run in runs(missing):
            read = await self._read(function.id, run.start * MINUTE_MS, run.stop * MINUTE_MS - 1)
            for minute in run:
                counted = read.get(minute, self._empty)
                found[minute] = counted
                if settled(minute, counted, now):
                    self._settled[(key, minute)] = counted
        while len(self._settled) > self._limit:
            self._settled.popitem(last=False)
        return found


# -- openfgs's async series ---------------------------------------------------------------------

# The statuses a bucket's records are stacked by: a FAIL or DISCARD that was a cancel (4208) is
# CANCELED; WAIT and RUNNING are records not yet ended.
KINDS = ("SUCCESS", "FAIL", "DISCARD", "CANCELED", "RUNNING", "WAIT")
PERCENTILES = (50, 90, 99)
BUCKET_MINUTES = (1, 5, 15, 60)  # the first size that gives at most MAX_BUCKETS buckets
MAX_BUCKETS = 180
ASYNC_MINUTE_WEIGHT = 4  # a remembered minute of the async series weighs about four tallies

Bins = tuple[tuple[int, int, int], ...]  # (bin, records, the smallest time in it), by bin
Waits = tuple[tuple[int, int | None, int], ...]  # (first minute, last minute or None, records)


@dataclass(frozen=True)
class AsyncMinute:
    """What the store counted for one minute of accept times (``async_minutes``): records per
    kind, their binned dispatch and run times, and their waits that span a minute's end."""

    kinds: tuple[tuple[str, int], ...] = ()
    dispatch: Bins = ()
    run: Bins = ()
    waits: Waits = ()

    @property
    def active(self) -> int:
        return sum(n for kind, n in self.kinds if kind in ("WAIT", "RUNNING"))

    @staticmethod
    def from_rows(rows: Iterable[tuple[int, str, int, int | None, int]]) -> dict[int, AsyncMinute]:
        parts: dict[int, dict[str, list[Any]]] = {}
        for minute, kind, a, b, count in rows:
            part = parts.setdefault(minute, {"kinds": [], "dispatch": [], "run": [], "waits": []})
            if kind in ("dispatch", "run"):
                part[kind].append((a, count, b))
            elif kind == "WAITED":
                part["waits"].append((a, b, count))
            else:
                part["kinds"].append((kind, count))
        return {
            minute: AsyncMinute(
                tuple(part["kinds"]),
                tuple(part["dispatch"]),
                tuple(part["run"]),
                tuple(part["waits"]),
            )
            for minute, part in parts.items()
        }


EMPTY_MINUTE = AsyncMinute()


@dataclass
class AsyncBucket:
    """A bucket of the async series: the sum of its minutes (their times merged by bin)."""

    kinds: Counter[str] = field(default_factory=Counter)
    dispatch: dict[int, tuple[int, int]] = field(default_factory=dict)  # bin → (records, least)
    run: dict[int, tuple[int, int]] = field(default_factory=dict)

    def add(self, minute: AsyncMinute | AsyncBucket) -> None:
        if isinstance(minute, AsyncMinute):
            self.kinds.update(dict(minute.kinds))
            dispatch = [(b, (n, least)) for b, n, least in minute.dispatch]
            run = [(b, (n, least)) for b, n, least in minute.run]
        else:
            self.kinds.update(minute.kinds)
            dispatch, run = list(minute.dispatch.items()), list(minute.run.items())
        for bins, more in ((self.dispatch, dispatch), (self.run, run)):
            for key, (n, least) in more:
                had = bins.get(key)
                bins[key] = (n, least) if had is None else (had[0] + n, min(had[1], least))


def percentile(bins: dict[int, tuple[int, int]], p: int) -> int | None:
    """The nearest-rank ``p``th percentile, as the smallest time of the bin it falls in (at most
    10 % below the exact value, and a time some record has); None without times."""
    total = sum(n for n, _ in bins.values())
    rank = -(-total * p // 100)
    seen = 0
    for key in sorted(bins):
        n, least = bins[key]
        seen += n
        if seen >= rank > 0:
            return least
    return None


def waiting_depth(
    waits: Iterable[tuple[int, int | None, int]], window: Buckets, now: int
) -> list[int]:
    """Records waiting at each bucket's end (now for the bucket that holds now): a wait from
    minute ``a`` to minute ``b`` spans the end of minute ``k - 1`` when ``a < k <= b``."""
    ends = [start + window.size for start in window.starts]
    closed = [end // MINUTE_MS for end in ends if end <= now]
    change = [0] * (window.count + 1)
    for since, until, n in waits:
        first = bisect_right(closed, since)
        last = len(closed) if until is None else bisect_right(closed, until)
        if until is None and len(closed) < window.count:
            last = window.count  # still waiting: waiting now
        if first < last:
            change[first] += n
            change[last] -= n
    return list(accumulate(change[:-1]))


class AsyncSeries:
    """openfgs's async series of functions over a window: per bucket the records by kind, the
    percentiles of their dispatch and run times, and the waiting depth at the bucket's end.
    Settled minutes are remembered, and so are buckets made of settled minutes only."""

    def __init__(self, store: Store, max_minutes: int) -> None:
        self._store = store
        self._minutes = SettledMinutes(self._read, EMPTY_MINUTE, max_minutes)
        self._max_buckets = max_minutes
        self._buckets: OrderedDict[tuple[int, str, int, int], AsyncBucket] = OrderedDict()

    async def _read(self, function_id: int, begin: int, end: int) -> dict[int, AsyncMinute]:
        return AsyncMinute.from_rows(await self._store.async_minutes(function_id, begin, end))

    async def __call__(
        self,
        functions: Sequence[Function],
        period: int,
        end: int,
        event_age_ms: int,
        now: int | None = None,
    ) -> tuple[Buckets, list[AsyncBucket], list[int]]:
        """The window of ``period`` minutes ending at ``end`` (now at the latest), and each of
        its buckets over the records of ``functions``: its sum, and the waiting depth.

        A record is discarded once it waited ``event_age_ms`` (the longest of the functions'):
        the waits that reach into the window are those of records accepted that long before
        it, plus records still waiting that were accepted earlier (a backlog no worker took)."""
        now = now_ms() if now is None else now
        window = Buckets.fitting(period, min(end, now))
        minutes = window.minutes
        read = range(minutes.start - (event_age_ms + SETTLE_MS) // MINUTE_MS, minutes.stop)
        buckets = [AsyncBucket() for _ in range(window.count)]
        waits: list[tuple[int, int | None, int]] = []
        for function in functions:
            found = await self._minutes.get(function, read, now)
            for index, start in enumerate(window.starts):
                buckets[index].add(self._bucket(function, window.size, start, found, now))
            waits += (wait for counted in found.values() for wait in counted.waits)
            older = await self._store.count_waiting_before(function.id, read.start * MINUTE_MS)
            waits.append((read.start - 1, None, older))  # waiting since before the minutes read
        return window, buckets, waiting_depth(waits, window, now)

    def _bucket(
        self, function: Function, size: int, start: int, found: dict[int, AsyncMinute], now: int
    ) -> AsyncBucket:
        key = (function.id, function.func_id, size, start)
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
            return bucket
        bucket = AsyncBucket()
        minutes = range(start // MINUTE_MS, (start + size) // MINUTE_MS)
        for minute in minutes:
            bucket.add(found[minute])
        if all(settled(minute, found[minute], now) for minute in minutes):
            self._buckets[key] = bucket
            while len(self._buckets) > self._max_buckets:
                self._buckets.popitem(last=False)
        return bucket


class Statistics:
    """Metric series of functions over look-back windows, settled minutes remembered."""

    def __init__(self, store: Store, max_minutes: int = MAX_MINUTES) -> None:
        self._tallies = SettledMinutes(self._read_tallies, EMPTY, max_minutes)
        self._store = store
        self.async_series = AsyncSeries(store, max_minutes // ASYNC_MINUTE_WEIGHT)

    async def _read_tallies(self, function_id: int, begin: int, end: int) -> dict[int, Tally]:
        rows = await self._store.invocation_minutes(function_id, begin, end)
        return {int(row["minute"] or 0): Tally.from_row(row) for row in rows}

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
            minutes = await self._tallies.get(function, window.minutes, now)
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
            for counted in (await self._tallies.get(function, minutes, now)).values():
                tally = tally + counted
        return tally
