"""Exact ``count`` and deep pages of long windows without walking every record each time.

A list answer carries the number of records in its window (and status), and its ``marker`` is
an offset. Both walk one index entry per record: 1.8 million for a busy function's week. But a
minute of ``start_time`` whose records are all terminal no longer changes — records are
created at the current time only, and a terminal record stays terminal — until retention
purges it. The workers roll such *settled* minutes up into per-minute counts in the store
(``Store.roll_up_minutes``, beside their beat); a list then reads a long window's rolled-up
minutes from there, and counts only the rest (its partial first minute, the last minutes
before now, whatever follows a record still waiting or running) record by record. A deep
marker skips whole rolled-up minutes the same way: the page is read from the minute in which
the offset falls, with the offset left within that minute.
"""

from __future__ import annotations

from dataclasses import replace

from openfgs.models import MINUTE_MS, Function, InvocationPage, InvocationQuery, now_ms
from openfgs.store.base import Store

# A minute is rolled up only once it ended this long ago: accepts committed late (an accept's
# p99 is tens of ms), or made on a node whose clock is behind the roll-up's, have landed by
# then. A record committed later than this into a rolled-up minute would be listed but missing
# from `count` (docs/api.md).
SETTLE_MS = 2 * MINUTE_MS
MIN_MINUTES = 10  # windows with fewer rolled-up minutes are counted directly
SKIP_FROM = 1_000  # markers from here skip rolled-up minutes instead of walking their records
ROLL_UP_BATCH = 200  # function rows a roll-up pass takes
ROLL_UP_SPAN = 60  # minutes a function's roll-up counts at once
ROLL_UP_INTERVAL_SECONDS = 30.0  # between passes once the roll-up has caught up


def rolled_span(begin: int, end: int, now: int, retention_ms: int) -> range:
    """The minutes wholly inside ``[begin, end]`` (inclusive ms) that retention cannot have
    purged yet: the only ones whose rolled-up counts may be used."""
    first = max(-(-begin // MINUTE_MS), -(-(now - retention_ms) // MINUTE_MS))
    stop = (end + 1) // MINUTE_MS
    return range(first, max(first, stop))


class WindowCounter:
    """List pages whose ``count`` and deep offsets take a window's rolled-up minutes from the
    store, and the rest from its records."""

    def __init__(self, store: Store, retention_ms: int) -> None:
        self._store = store
        self._retention_ms = retention_ms

    async def list_records(self, function: Function, query: InvocationQuery) -> InvocationPage:
        if query.request_ids:
            return await self._store.list_invocations(query)
        span = rolled_span(query.begin, query.end, now_ms(), self._retention_ms)
        if len(span) < MIN_MINUTES:
            return await self._store.list_invocations(query)
        if query.marker < SKIP_FROM:
            # The store reads the rolled-up minutes' count with the page, in one snapshot.
            return await self._store.list_invocations(
                replace(query, rolled=(span.start, span.stop))
            )
        stop, rolled = await self._store.rolled_count(
            function.id, span.start, span.stop, query.statuses
        )
        if stop - span.start < MIN_MINUTES:
            return await self._store.list_invocations(query)
        older, newer = query.around(span.start, stop)
        first_ms, stop_ms = span.start * MINUTE_MS, stop * MINUTE_MS
        # A deep page: the newer records first, then whole rolled-up minutes are skipped.
        newer_count = 0
        if newer:
            newer_count = await self._store.count_invocations(
                replace(query, begin=stop_ms, count_ranges=None)
            )
        skip = query.marker - newer_count
        if skip < 0:
            page = await self._store.list_invocations(replace(query, count_ranges=older))
        else:
            found = await self._store.rolled_boundary(
                function.id, span.start, stop, query.statuses, skip
            )
            if found is None:  # past every rolled-up minute: into the older records
                end, offset = first_ms - 1, skip - rolled
            else:
                minute, newer_in_rolled = found
                end, offset = (minute + 1) * MINUTE_MS - 1, skip - newer_in_rolled
            page = await self._store.list_invocations(
                replace(query, end=end, marker=offset, count_ranges=older)
            )
        return InvocationPage(
            page.invocations,
            page.count + newer_count + rolled,
            query.marker + len(page.invocations),
        )
