"""The per-minute counts of settled minutes (openfgs.counting), on every backend.

Covers ``roll_up_minutes`` (what is settled: terminal records only, minutes that ended
``settle_ms`` before ``now``, nothing at or after a WAIT or RUNNING record; ``span`` and
``batch`` per pass; idempotence, also from two stores on one database), ``rolled_count``,
``rolled_boundary`` and ``count_invocations`` against counts made by hand, and that minute
rows go with their function (a reused SQLite id starts fresh) and with retention.
"""

from __future__ import annotations

import asyncio

import pytest

from openfgs.models import Outcome, Status
from openfgs.store.base import Store

from .conftest import Backend
from .test_store import BASE, FAR, add_function, new_invocation, query

pytestmark = pytest.mark.anyio

MINUTE = 60_000
M0 = BASE // MINUTE  # the first minute of records in these tests
SETTLE = 10 * MINUTE
NOW = (M0 + 100) * MINUTE  # long after every record below
LIMIT = M0 + 90  # the last settled minute + 1 at NOW
BIG = 10_000  # a span that takes every minute at once
S, F, D = Status.SUCCESS, Status.FAIL, Status.DISCARD
TERMINAL = (S, F, D)
# Records per minute offset from M0, at the minute's edges and inside it.
LAYOUT = {0: [S, S, F], 1: [D], 3: [S, F, F, D], 4: [F], 7: [S, D]}
OFFSETS_IN_MINUTE = (0, MINUTE - 1, 30_000, 1)
Rows = list[tuple[int, Status]]  # (start_time, status) of each record


async def finish(store: Store, function_id: int, request_id: str, status: Status) -> None:
    """Take a WAIT or RUNNING record on to ``status``."""
    claimed = await store.claim_waiting(request_id, function_id, "w", NOW, FAR)
    attempt = 1 if claimed is None else claimed.attempt
    if status is not Status.RUNNING:
        assert await store.finish_invocation(request_id, attempt, Outcome(status), NOW)


async def add_record(store: Store, function_id: int, start_time: int, status: Status) -> str:
    row = new_invocation(function_id, start_time, available_at=FAR)
    await store.insert_invocation(row)
    if status is not Status.WAIT:
        await finish(store, function_id, row.request_id, status)
    return row.request_id


async def add_layout(store: Store, function_id: int, layout: dict[int, list[Status]]) -> Rows:
    rows: Rows = []
    for offset, statuses in layout.items():
        for i, status in enumerate(statuses):
            start_time = (M0 + offset) * MINUTE + OFFSETS_IN_MINUTE[i]
            await add_record(store, function_id, start_time, status)
            rows.append((start_time, status))
    return rows


def by_hand(rows: Rows, first: int, stop: int, statuses: tuple[Status, ...] = ()) -> int:
    """The records of minutes ``[first, stop)`` in ``statuses`` (all when empty)."""
    wanted = statuses or tuple(Status)
    return sum(first <= t // MINUTE < stop and s in wanted for t, s in rows)


def boundary_by_hand(
    rows: Rows, first: int, stop: int, statuses: tuple[Status, ...], skip: int
) -> tuple[int, int] | None:
    newer = 0
    for minute in range(stop - 1, first - 1, -1):
        n = by_hand(rows, minute, minute + 1, statuses)
        if newer + n > skip:
            return minute, newer
        newer += n
    return None


async def roll_up_all(store: Store, now: int = NOW, span: int = BIG) -> None:
    for _ in range(200):
        if await store.roll_up_minutes(now, SETTLE, 100, span) == 0:
            return
    raise AssertionError("the roll-up never caught up")


async def test_rolled_counts_match_the_records_by_status_and_range(store: Store) -> None:
    function = await add_function(store, "counted")
    other = await add_function(store, "other")
    rows = await add_layout(store, function.id, LAYOUT)
    await add_layout(store, other.id, {0: [S, S, S, S], 2: [F]})

    assert await store.roll_up_minutes(NOW, SETTLE, 100, BIG) == 0
    for statuses in [(), (S,), (F,), (D,), (F, D), (Status.WAIT, Status.RUNNING)]:
        got = await store.rolled_count(function.id, M0 - 5, M0 + BIG, statuses)
        assert got == (LIMIT, by_hand(rows, M0 - 5, LIMIT, statuses)), statuses
    assert await store.rolled_count(function.id, M0 + 1, M0 + 4, ()) == (M0 + 4, 5)
    assert await store.rolled_count(function.id, M0 + 3, M0 + 4, (F,)) == (M0 + 4, 2)
    assert await store.rolled_count(other.id, M0, M0 + 3, ()) == (M0 + 3, 5)
    # Past the watermark nothing is rolled up: stop' is first.
    assert await store.rolled_count(function.id, LIMIT + 1, LIMIT + 9, ()) == (LIMIT + 1, 0)


@pytest.mark.parametrize("held", [Status.WAIT, Status.RUNNING])
async def test_a_record_still_open_holds_the_watermark_at_its_minute(
    store: Store, held: Status
) -> None:
    function = await add_function(store, "held")
    rows = await add_layout(store, function.id, {m: [S, F] for m in range(10)})
    open_id = await add_record(store, function.id, (M0 + 5) * MINUTE + 7, held)

    await roll_up_all(store)
    assert await store.rolled_count(function.id, M0, M0 + BIG, ()) == (M0 + 5, 10)

    await finish(store, function.id, open_id, D)
    rows.append(((M0 + 5) * MINUTE + 7, D))
    await roll_up_all(store)
    assert await store.rolled_count(function.id, M0, M0 + BIG, ()) == (LIMIT, 21)
    assert await store.rolled_count(function.id, M0, M0 + BIG, (D,)) == (LIMIT, 1)
    assert by_hand(rows, M0, LIMIT) == 21


async def test_minutes_inside_the_settle_window_are_not_rolled_up(store: Store) -> None:
    function = await add_function(store, "recent")
    rows = await add_layout(store, function.id, {88: [S], 89: [F], 90: [S], 95: [D]})
    await roll_up_all(store)
    assert await store.rolled_count(function.id, M0, M0 + BIG, ()) == (LIMIT, 2)
    assert by_hand(rows, M0, LIMIT) == 2


async def test_a_function_with_only_unsettled_records_keeps_its_window_open(
    store: Store,
) -> None:
    """The first record is newer than the settle limit: the watermark must not pass the
    limit, or a record committed late into the minutes before that one is never counted."""
    function = await add_function(store, "late")
    rows = await add_layout(store, function.id, {95: [S]})
    await roll_up_all(store)
    stop, _ = await store.rolled_count(function.id, M0, M0 + BIG, ())
    assert stop <= LIMIT

    late = (M0 + 92) * MINUTE  # an accept committed late, inside the settle window
    await add_record(store, function.id, late, F)
    rows.append((late, F))
    later = NOW + 20 * MINUTE
    await roll_up_all(store, later)
    stop, total = await store.rolled_count(function.id, M0, M0 + BIG, ())
    assert (stop, total) == (LIMIT + 20, by_hand(rows, M0, LIMIT + 20)) == (LIMIT + 20, 2)


async def test_span_limits_a_pass_and_later_passes_catch_up(store: Store) -> None:
    first = await add_function(store, "first")
    second = await add_function(store, "second")
    rows = await add_layout(store, first.id, {m: [S] for m in range(10)})
    await add_layout(store, second.id, {m: [F] for m in range(10)})

    assert await store.roll_up_minutes(NOW, SETTLE, 1, 4) == 2  # batch 1: both pages taken
    assert await store.rolled_count(first.id, M0, M0 + BIG, ()) == (M0 + 4, 4)
    assert await store.rolled_count(second.id, M0, M0 + BIG, (F,)) == (M0 + 4, 4)
    passes = 1
    while await store.roll_up_minutes(NOW, SETTLE, 1, 4):
        passes += 1
        assert passes < 100
    assert passes >= 3
    for function in (first, second):
        stop, total = await store.rolled_count(function.id, M0, M0 + BIG, ())
        assert LIMIT - 4 < stop <= LIMIT
        assert total == by_hand(rows, M0, stop) == 10


async def test_an_idle_function_gets_a_watermark_and_counts_later_records(store: Store) -> None:
    function = await add_function(store, "idle")
    await roll_up_all(store)
    assert await store.rolled_count(function.id, LIMIT - 10, LIMIT + 50, ()) == (LIMIT, 0)

    rows: Rows = []
    for start_time, status in [(NOW, S), (NOW + MINUTE, F), (NOW + 5 * MINUTE + 9, S)]:
        await add_record(store, function.id, start_time, status)
        rows.append((start_time, status))
    await roll_up_all(store, NOW + 30 * MINUTE)
    assert await store.rolled_count(function.id, LIMIT - 10, LIMIT + 50, ()) == (LIMIT + 30, 3)
    assert await store.rolled_count(function.id, M0 + 101, LIMIT + 50, (S,)) == (
        LIMIT + 30,
        by_hand(rows, M0 + 101, LIMIT + 30, (S,)),
    )


async def test_rolled_boundary_walks_the_minutes_newest_first(store: Store) -> None:
    function = await add_function(store, "deep")
    rows = await add_layout(store, function.id, LAYOUT)
    await roll_up_all(store)
    for first, stop in [(M0, LIMIT), (M0 + 1, M0 + 4), (M0 - 3, M0 + 8)]:
        for statuses in [(), (S,), (F,), (F, D)]:
            total = by_hand(rows, first, stop, statuses)
            for skip in range(total + 2):
                expected = boundary_by_hand(rows, first, stop, statuses, skip)
                got = await store.rolled_boundary(function.id, first, stop, statuses, skip)
                assert got == expected, (first, stop, statuses, skip)
                assert (got is None) == (skip >= total)
    assert await store.rolled_boundary(function.id, M0, LIMIT, (), 0) == (M0 + 7, 0)
    assert await store.rolled_boundary(function.id, M0, LIMIT, (), 3) == (M0 + 3, 3)


async def test_count_invocations_counts_the_window_and_statuses(store: Store) -> None:
    function = await add_function(store, "window")
    rows = await add_layout(store, function.id, {**LAYOUT, 5: [Status.WAIT, Status.RUNNING, S]})
    windows = [(0, FAR), (M0 * MINUTE + 1, (M0 + 3) * MINUTE), ((M0 + 1) * MINUTE, M0 * MINUTE)]
    for begin, end in windows:
        for statuses in [(), (S,), (Status.WAIT,), (Status.WAIT, Status.RUNNING), (F, D)]:
            got = await store.count_invocations(
                query(function.id, begin=begin, end=end, statuses=statuses)
            )
            wanted = statuses or tuple(Status)
            assert got == sum(begin <= t <= end and s in wanted for t, s in rows), (begin, statuses)


async def test_deleting_a_function_deletes_its_minutes(store: Store) -> None:
    doomed = await add_function(store, "doomed")
    await add_layout(store, doomed.id, LAYOUT)
    await roll_up_all(store)
    assert (await store.rolled_count(doomed.id, M0, M0 + BIG, ()))[1] == 11

    await store.delete_function(doomed)
    assert await store.rolled_count(doomed.id, M0, M0 + BIG, ()) == (M0, 0)
    assert await store.rolled_boundary(doomed.id, M0, M0 + BIG, (), 0) is None
    fresh = await add_function(store, "fresh")  # starts fresh whatever its id
    assert await store.rolled_count(fresh.id, M0, M0 + BIG, ()) == (M0, 0)
    rows = await add_layout(store, fresh.id, {2: [F], 50: [S]})
    await roll_up_all(store)
    assert await store.rolled_count(fresh.id, M0, M0 + BIG, ()) == (LIMIT, by_hand(rows, M0, LIMIT))
    assert by_hand(rows, M0, LIMIT) == 2


async def test_rolling_up_again_or_from_two_stores_counts_the_same(
    store: Store, backend: Backend
) -> None:
    function = await add_function(store, "twice")
    rows = await add_layout(store, function.id, {m: [S, F, D][: 1 + m % 3] for m in range(20)})
    other = backend.new_store()
    await other.open()
    try:
        for _ in range(30):
            behind = await asyncio.gather(
                store.roll_up_minutes(NOW, SETTLE, 100, 3),
                other.roll_up_minutes(NOW, SETTLE, 100, 3),
            )
            if behind == (0, 0):
                break
        await roll_up_all(other)
        await roll_up_all(store)
        for reader in (store, other):
            for statuses in [(), (S,), (F,), (D,)]:
                stop, total = await reader.rolled_count(function.id, M0, M0 + BIG, statuses)
                assert stop > M0 + 19
                assert total == by_hand(rows, M0, stop, statuses), statuses
    finally:
        await other.close()


async def test_retention_deletes_minutes_before_the_cutoffs_minute(store: Store) -> None:
    function = await add_function(store, "kept")
    rows = await add_layout(store, function.id, LAYOUT)
    await roll_up_all(store)
    cutoff = (M0 + 4) * MINUTE + 30_000  # minute 4 is kept: it ends after the cutoff
    await store.delete_expired(cutoff, 0, 1000)
    assert await store.rolled_count(function.id, M0, M0 + 4, ()) == (M0 + 4, 0)
    assert await store.rolled_count(function.id, M0 + 4, M0 + BIG, ()) == (
        LIMIT,
        by_hand(rows, M0 + 4, LIMIT),
    )
    assert by_hand(rows, M0 + 4, LIMIT) == 3
    assert await store.rolled_boundary(function.id, M0, M0 + 4, (), 0) is None
