"""Exact ``count`` for long list windows without walking every record each time.

A list answer carries the number of records in its window (and status). Counting walks one
index entry per record: 200,000 for a busy function's week. But an hour of ``start_time`` whose
records are all terminal no longer changes — records are created at the current time only, and
a terminal record stays terminal — until retention purges it. Such *settled* hours are counted
once, per status, and remembered; a long window is then the remembered whole hours plus the
rest (its partial first hour, the recent hours, hours that still hold waiting or running
records), counted in the store as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from openfgs.models import Status

HOUR_MS = 3_600_000
# An hour is remembered only once it ended this long ago: accepts committed late, a worker's
# clock behind ours, or a retry that is about to make a record WAIT again have settled by then.
SETTLE_MS = 10 * 60_000
MIN_HOURS = 3  # windows with fewer whole settled hours are counted directly
MAX_HOURS = 200_000  # remembered (function, hour) entries; the least recently used go first

HourCounts = dict[Status, int]
_UNSETTLED = (Status.WAIT, Status.RUNNING)


class SettledHours:
    """Per-status counts of settled hours, per function, as long as retention keeps them."""

    def __init__(self, retention_ms: int, max_hours: int = MAX_HOURS) -> None:
        self._retention_ms = retention_ms
        self._max_hours = max_hours
        self._hours: OrderedDict[tuple[str, int], HourCounts] = OrderedDict()

    def whole_hours(self, begin: int, end: int, now: int) -> range:
        """The hours wholly inside ``[begin, end]`` (inclusive ms) that may be settled now:
        ended ``SETTLE_MS`` ago, and young enough that retention cannot purge them yet."""
        first = max(-(-begin // HOUR_MS), -(-(now - self._retention_ms) // HOUR_MS))
        last = min((end + 1) // HOUR_MS, (now - SETTLE_MS) // HOUR_MS)
        return range(first, max(first, last))

    def missing(self, key: str, hours: range) -> list[int]:
        return [hour for hour in hours if (key, hour) not in self._hours]

    def learn(
        self, key: str, hours: Iterable[int], rows: Iterable[tuple[int, Status, int]]
    ) -> dict[int, HourCounts]:
        """Take the counts of ``hours`` (rows of hour, status, count; hours without rows have
        no records); remember the settled ones. Returns the counts of every hour given."""
        counted: dict[int, HourCounts] = {hour: {} for hour in hours}
        for hour, status, count in rows:
            if hour in counted:
                counted[hour][status] = count
        for hour, counts in counted.items():
            if not any(counts.get(status) for status in _UNSETTLED):
                self._hours[(key, hour)] = counts
                self._hours.move_to_end((key, hour))
        while len(self._hours) > self._max_hours:
            self._hours.popitem(last=False)
        return counted

    def total(
        self,
        key: str,
        hours: range,
        statuses: tuple[Status, ...],
        fresh: dict[int, HourCounts],
    ) -> int | None:
        """The records of ``hours`` in ``statuses`` (all statuses when empty); None if an hour
        is neither in ``fresh`` nor remembered (forgotten meanwhile to stay within bounds)."""
        wanted = statuses or tuple(Status)
        total = 0
        for hour in hours:
            counts = fresh.get(hour)
            if counts is None:
                counts = self._hours.get((key, hour))
                if counts is None:
                    return None
                self._hours.move_to_end((key, hour))
            total += sum(counts.get(status, 0) for status in wanted)
        return total


def runs(hours: list[int]) -> list[range]:
    """Sorted hours as runs of consecutive hours: ``[1, 2, 3, 7]`` → ``[range(1, 4), range(7, 8)]``."""
    out: list[range] = []
    for hour in hours:
        if out and out[-1].stop == hour:
            out[-1] = range(out[-1].start, hour + 1)
        else:
            out.append(range(hour, hour + 1))
    return out
