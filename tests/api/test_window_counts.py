"""``count`` and deep pages of long windows stay exact while settled minutes are rolled up.

Records are put in the store directly at past times (as a restored or long-running service
holds them), in every status, on a server without a worker (no roll-up of its own); the test
rolls the settled minutes up itself, then compares each list's ``count`` with the records, and
deep pages with the store's plain offset walk, for windows that start and end inside minutes,
per status, before and after records change.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    ListActiveAsyncInvocationsRequest,
    ListAsyncInvocationsRequest,
)

from openfgs.counting import SETTLE_MS, SKIP_FROM
from openfgs.models import MINUTE_MS, InvocationQuery, NewInvocation, Outcome, Status, now_ms
from openfgs.store.base import Store
from tests.support import (
    BACKENDS,
    LiveServer,
    create_function,
    database_url,
    free_port,
    live_server,
    make_settings,
    sdk_client,
    urn,
    wait_for,
)

FAR = 2**52
HOUR_MS = 60 * MINUTE_MS


class Records:
    """Records of one function placed at chosen times and statuses, and what they should count."""

    def __init__(self, server: LiveServer, function_id: int) -> None:
        self.server = server
        self.function_id = function_id
        self.status: dict[str, tuple[int, Status]] = {}

    @property
    def store(self) -> Store:
        return self.server.services.store

    def add(self, start_time: int, status: Status) -> str:
        return self.add_many([(start_time, status)])[0]

    def add_many(self, records: list[tuple[int, Status]]) -> list[str]:
        """Insert records at once (their accepts and outcomes share the store's commits)."""
        ids = [str(uuid.uuid4()) for _ in records]

        async def insert(request_id: str, start_time: int) -> None:
            invocation = NewInvocation(
                request_id=request_id,
                function_id=self.function_id,
                version="latest",
                payload=b"{}",
                start_time=start_time,
                available_at=FAR,
                expires_at=FAR,
            )
            await self.store.insert_invocation(invocation)

        async def everything() -> None:
            await asyncio.gather(
                *(insert(i, start) for i, (start, _) in zip(ids, records, strict=True))
            )
            await asyncio.gather(
                *(
                    self._move(i, start, Status.WAIT, to)
                    for i, (start, to) in zip(ids, records, strict=True)
                )
            )

        self.server.run(everything())
        for request_id, (start, status) in zip(ids, records, strict=True):
            self.status[request_id] = (start, status)
        return ids

    def move(self, request_id: str, status: Status) -> None:
        start, current = self.status[request_id]
        self.server.run(self._move(request_id, start, current, status))
        self.status[request_id] = (start, status)

    async def _move(self, request_id: str, start: int, current: Status, status: Status) -> None:
        if status is current:
            return
        if current is Status.WAIT:
            claimed = await self.store.claim_waiting(request_id, self.function_id, "w", start, FAR)
            assert claimed is not None
        if status is not Status.RUNNING:
            code = 0 if status is Status.SUCCESS else 4200
            outcome = Outcome(status, code, "")
            assert await self.store.finish_invocation(request_id, 1, outcome, start + 5)

    def expected(self, begin: int, end: int, status: Status | None = None) -> int:
        return sum(
            1
            for start, current in self.status.values()
            if begin <= start <= end and (status is None or current is status)
        )


def roll_up(server: LiveServer) -> None:
    """What a worker does on its beat, until nothing is behind."""
    while server.run(server.services.invocations.roll_up_counts()):
        pass


def text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def listed_count(sdk: Any, begin: int, end: int, status: Status | None = None) -> int:
    request = ListAsyncInvocationsRequest(
        function_urn=urn("counted"),
        query_begin_time=text(begin),
        query_end_time=text(end),
        status=status.value if status else None,
        limit="1",
    )
    count: int = sdk.list_async_invocations(request).count
    return count


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The counts are the store's: every test here runs on SQLite and on PostgreSQL."""
    name: str = request.param
    return name


@pytest.fixture
def server(make_server: Any) -> LiveServer:
    """No worker: no roll-up but the test's own, nor claims of the records put in place."""
    live: LiveServer = make_server(worker=False)
    return live


@pytest.fixture
def records(server: LiveServer) -> Records:
    sdk = sdk_client(server.url)
    create_function(sdk, "counted")
    function = server.run(
        server.services.store.get_function(server.settings.project_id, "default", "counted")
    )
    assert function is not None
    return Records(server, function.id)


def test_long_window_counts_match_the_records(server: LiveServer, records: Records) -> None:
    sdk = sdk_client(server.url)
    now = now_ms()
    this_hour = now - now % HOUR_MS
    statuses = [Status.SUCCESS, Status.SUCCESS, Status.FAIL, Status.DISCARD, Status.SUCCESS]
    records.add_many(
        [
            (this_hour - hours_ago * HOUR_MS + n * 600_000 + 17 * n, state)
            for hours_ago in range(1, 50)
            for n, state in enumerate(statuses[: 1 + hours_ago % 5])
        ]
    )
    old_wait = records.add(this_hour - 30 * HOUR_MS + 1_000, Status.WAIT)
    old_running = records.add(this_hour - 20 * HOUR_MS + 2_000, Status.RUNNING)
    records.add(now - 1_000, Status.WAIT)  # not settled yet: never rolled up
    records.add(now - 11 * MINUTE_MS, Status.SUCCESS)  # settled, in the window's last hour

    windows = [
        (this_hour - 48 * HOUR_MS, now),  # whole minutes to now
        (this_hour - 47 * HOUR_MS + 1_234_567, now - 1),  # starts inside a minute
        (this_hour - 40 * HOUR_MS - 600_000, this_hour - 5 * HOUR_MS + 700_123),  # ends inside
        (now - HOUR_MS, now),  # the default window
    ]

    def check(status_filters: tuple[Status | None, ...]) -> None:
        for begin, end in windows:
            for status in status_filters:
                assert listed_count(sdk, begin, end, status) == records.expected(
                    begin, end, status
                ), (text(begin), text(end), status)

    check((None, *Status))  # nothing rolled up: every record counted
    roll_up(server)
    check((None, *Status))  # rolled up to the oldest WAIT record, counted beyond it

    # Records that held the roll-up back end; the next pass goes on past them.
    records.move(old_wait, Status.SUCCESS)
    records.move(old_running, Status.FAIL)
    check((None, Status.WAIT, Status.RUNNING, Status.SUCCESS, Status.FAIL))
    roll_up(server)
    check((None, *Status))
    totals = Counter(status for _, status in records.status.values())
    assert totals[Status.WAIT] == 1 and totals[Status.RUNNING] == 0


def test_active_list_counts_long_windows_too(server: LiveServer, records: Records) -> None:
    sdk = sdk_client(server.url)
    now = now_ms()
    this_hour = now - now % HOUR_MS
    records.add_many(
        [(this_hour - hours_ago * HOUR_MS, Status.SUCCESS) for hours_ago in range(2, 30)]
    )
    records.add(this_hour - 12 * HOUR_MS + 5, Status.WAIT)
    records.add(this_hour - 9 * HOUR_MS + 5, Status.RUNNING)
    begin, end = this_hour - 29 * HOUR_MS, now
    for _ in range(2):
        active = sdk.list_active_async_invocations(
            ListActiveAsyncInvocationsRequest(
                function_urn=urn("counted"),
                query_begin_time=text(begin),
                query_end_time=text(end),
            )
        )
        assert active.count == 2
        assert listed_count(sdk, begin, end) == records.expected(begin, end)
        roll_up(server)


def test_deep_pages_skip_rolled_up_minutes(server: LiveServer, records: Records) -> None:
    """A marker past SKIP_FROM is found by the minute counts; the page is the one the plain
    offset walk gives, at every depth and across every kind of part of the window."""
    sdk = sdk_client(server.url)
    now = now_ms()
    start = now - now % MINUTE_MS - 3 * HOUR_MS
    cycle = [Status.SUCCESS, Status.FAIL, Status.SUCCESS, Status.DISCARD]
    placed = [
        # Minutes of 0 to 24 records, some with equal start times (ordered by request id).
        (start + minute * MINUTE_MS + (n // 2) * 1_000, cycle[(minute + n) % 4])
        for minute in range(0, 170)
        for n in range(minute * 7 % 25)
    ]
    records.add_many(placed)
    records.add_many([(now - 2_000 - n, Status.SUCCESS) for n in range(40)])  # not settled
    roll_up(server)
    begin, end = start - 30_000, now
    total = records.expected(begin, end)
    assert total > 2 * SKIP_FROM

    def pages(status: Status | None, marker: int) -> tuple[list[str], int, int]:
        request = ListAsyncInvocationsRequest(
            function_urn=urn("counted"),
            query_begin_time=text(begin),
            query_end_time=text(end),
            status=status.value if status else None,
            marker=str(marker),
            limit="100",
        )
        answer = sdk.list_async_invocations(request)
        ids = [record.request_id for record in answer.invocations or []]
        return ids, int(answer.count), int(answer.next_marker)

    store = server.services.store
    for status in (None, Status.SUCCESS, Status.FAIL):
        expected_count = records.expected(begin, end, status)
        query = InvocationQuery(
            function_id=records.function_id,
            begin=begin,
            end=end,
            statuses=(status,) if status else (),
        )
        markers = [0, SKIP_FROM - 1, SKIP_FROM, SKIP_FROM + 37, expected_count - 50]
        markers += [expected_count - 1, expected_count, expected_count + 5]
        for marker in markers:
            plain = server.run(store.list_invocations(replace(query, marker=marker)))
            ids, count, next_marker = pages(status, marker)
            assert ids == [record.request_id for record in plain.invocations], (status, marker)
            assert count == expected_count, (status, marker)
            assert next_marker == marker + len(ids)


def test_a_worker_rolls_the_settled_minutes_up(backend: str, tmp_path: Path) -> None:
    """The roll-up runs beside a worker's beat: a worker started on a store that holds
    history rolls it up on its own, and lists then read those counts."""
    with database_url(backend) as url:
        settings = make_settings(tmp_path / "data", database_url=url, worker=False)
        with live_server(settings) as server:
            sdk = sdk_client(server.url)
            create_function(sdk, "counted")
            function = server.run(
                server.services.store.get_function(settings.project_id, "default", "counted")
            )
            assert function is not None
            records = Records(server, function.id)
            now = now_ms()
            records.add_many([(now - n * 37_000, Status.SUCCESS) for n in range(20, 200)])
            first = (now - HOUR_MS) // MINUTE_MS + 1
            assert server.run(server.services.store.rolled_count(function.id, first, FAR, ())) == (
                first,
                0,
            )
        with live_server(settings.with_overrides(worker=True, port=free_port())) as server:
            store = server.services.store
            settled = records.expected(
                first * MINUTE_MS, (now - SETTLE_MS) // MINUTE_MS * MINUTE_MS - 1
            )
            wait_for(
                lambda: server.run(store.rolled_count(function.id, first, FAR, ()))[1] == settled
            )
            assert listed_count(sdk_client(server.url), now - HOUR_MS, now) == records.expected(
                now - HOUR_MS, now
            )
