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

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace

from openfgs.models import Function, InvocationPage, InvocationQuery, Status, now_ms
from openfgs.store.base import Store

log = logging.getLogger("openfgs.counting")

HOUR_MS = 3_600_000
# An hour is remembered only once it ended this long ago: accepts committed late, a worker's
# clock behind ours, or a retry that is about to make a record WAIT again have settled by then.
SETTLE_MS = 10 * 60_000
MIN_HOURS = 3  # windows with fewer whole settled hours are counted directly
MAX_HOURS = 200_000  # remembered (function, hour) entries; the least recently used go first
LEARN_INLINE_HOURS = 2  # newly settled hours counted on the request; more are learnt beside it

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


class WindowCounter:
    """List pages whose ``count`` takes the whole settled hours of a long window from
    :class:`SettledHours`, and the rest from the store."""

    def __init__(self, store: Store, retention_ms: int) -> None:
        self._store = store
        self._settled = SettledHours(retention_ms)
        self._learning: dict[str, asyncio.Future[None]] = {}

    @property
    def learning(self) -> int:
        """How many functions' hours are being counted in the background now."""
        return len(self._learning)

    async def list_records(self, function: Function, query: InvocationQuery) -> InvocationPage:
        if query.request_ids:
            return await self._store.list_invocations(query)
        hours = self._settled.whole_hours(query.begin, query.end, now_ms())
        if len(hours) < MIN_HOURS:
            return await self._store.list_invocations(query)
        key = f"{function.id}:{function.func_id}"  # ids of deleted functions may come back
        missing = self._settled.missing(key, hours)
        if len(missing) > LEARN_INLINE_HOURS:
            # Counting per hour walks the same entries as one count, and more slowly: this
            # request counts the plain way, and the hours are learnt beside it for the next.
            self._learn_hours(key, function.id, missing)
            return await self._store.list_invocations(query)
        fresh: dict[int, HourCounts] = {}
        for run in runs(missing):
            rows = await self._store.count_by_hour(
                function.id, run.start * HOUR_MS, run.stop * HOUR_MS - 1
            )
            fresh.update(self._settled.learn(key, run, rows))
        counted = self._settled.total(key, hours, query.statuses, fresh)
        if counted is None:
            return await self._store.list_invocations(query)
        rest = []
        if query.begin < hours.start * HOUR_MS:
            rest.append((query.begin, hours.start * HOUR_MS - 1))
        if hours.stop * HOUR_MS <= query.end:
            rest.append((hours.stop * HOUR_MS, query.end))
        page = await self._store.list_invocations(replace(query, count_ranges=tuple(rest)))
        return replace(page, count=page.count + counted)

    def _learn_hours(self, key: str, function_id: int, hours: list[int]) -> None:
        """Count ``hours`` per status in the background (once at a time per function)."""
        if key in self._learning:
            return

        async def learn() -> None:
            for run in runs(hours):
                rows = await self._store.count_by_hour(
                    function_id, run.start * HOUR_MS, run.stop * HOUR_MS - 1
                )
                self._settled.learn(key, run, rows)

        task = asyncio.ensure_future(learn())
        self._learning[key] = task
        task.add_done_callback(lambda done: self._learnt(key, done))

    def _learnt(self, key: str, task: asyncio.Future[None]) -> None:
        self._learning.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("counting the hours of %s failed: %s", key, task.exception())
