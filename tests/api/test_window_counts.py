"""``count`` of long windows stays exact while whole settled hours are remembered.

Records are put in the store directly at past times (as a restored or long-running service
holds them), in every status; the list's ``count`` is compared with the records themselves,
for windows that start and end inside hours, per status, before and after records change.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    ListActiveAsyncInvocationsRequest,
    ListAsyncInvocationsRequest,
)

from openfgs.counting import HOUR_MS
from openfgs.models import NewInvocation, Outcome, Status, now_ms
from openfgs.store.base import Store
from tests.support import BACKENDS, LiveServer, create_function, sdk_client, urn, wait_for

FAR = 2**52


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
        request_id = str(uuid.uuid4())
        invocation = NewInvocation(
            request_id=request_id,
            function_id=self.function_id,
            version="latest",
            payload=b"{}",
            start_time=start_time,
            available_at=FAR,
            expires_at=FAR,
        )
        self.server.run(self.store.insert_invocation(invocation))
        self.status[request_id] = (start_time, Status.WAIT)
        self.move(request_id, status)
        return request_id

    def move(self, request_id: str, status: Status) -> None:
        start, current = self.status[request_id]
        if status is current:
            return
        if current is Status.WAIT:
            claimed = self.server.run(
                self.store.claim_waiting(request_id, self.function_id, "w", start, FAR)
            )
            assert claimed is not None
        if status is not Status.RUNNING:
            code = 0 if status is Status.SUCCESS else 4200
            done = self.server.run(
                self.store.finish_invocation(request_id, 1, Outcome(status, code, ""), start + 5)
            )
            assert done
        self.status[request_id] = (start, status)

    def expected(self, begin: int, end: int, status: Status | None = None) -> int:
        return sum(
            1
            for start, current in self.status.values()
            if begin <= start <= end and (status is None or current is status)
        )


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
    for hours_ago in range(1, 50):
        for n, state in enumerate(statuses[: 1 + hours_ago % 5]):
            records.add(this_hour - hours_ago * HOUR_MS + n * 600_000 + 17, state)
    old_wait = records.add(this_hour - 30 * HOUR_MS + 1_000, Status.WAIT)
    old_running = records.add(this_hour - 20 * HOUR_MS + 2_000, Status.RUNNING)
    records.add(now - 1_000, Status.WAIT)  # this hour: never remembered

    windows = [
        (this_hour - 48 * HOUR_MS, now),  # whole hours to now
        (this_hour - 47 * HOUR_MS + 1_234_000, now - 1),  # starts inside an hour
        (this_hour - 40 * HOUR_MS - 600_000, this_hour - 5 * HOUR_MS + 700_000),  # ends inside
    ]
    invocations = server.services.invocations
    for _ in range(2):  # the first time counted plainly; then settled hours come from memory
        for begin, end in windows:
            for status in (None, *Status):
                assert listed_count(sdk, begin, end, status) == records.expected(
                    begin, end, status
                ), (text(begin), text(end), status)
        wait_for(lambda: invocations.learning == 0)

    # Records of unsettled hours change; the counts follow.
    records.move(old_wait, Status.SUCCESS)
    records.move(old_running, Status.FAIL)
    for begin, end in windows:
        for status in (None, Status.WAIT, Status.RUNNING, Status.SUCCESS, Status.FAIL):
            assert listed_count(sdk, begin, end, status) == records.expected(begin, end, status)
    totals = Counter(status for _, status in records.status.values())
    assert totals[Status.WAIT] == 1 and totals[Status.RUNNING] == 0


def test_active_list_counts_long_windows_too(server: LiveServer, records: Records) -> None:
    sdk = sdk_client(server.url)
    now = now_ms()
    this_hour = now - now % HOUR_MS
    for hours_ago in range(2, 30):
        records.add(this_hour - hours_ago * HOUR_MS, Status.SUCCESS)
    records.add(this_hour - 12 * HOUR_MS + 5, Status.WAIT)
    records.add(this_hour - 9 * HOUR_MS + 5, Status.RUNNING)
    begin, end = this_hour - 29 * HOUR_MS, now
    for _ in range(2):
        wait_for(lambda: server.services.invocations.learning == 0)
        active = sdk.list_active_async_invocations(
            ListActiveAsyncInvocationsRequest(
                function_urn=urn("counted"),
                query_begin_time=text(begin),
                query_end_time=text(end),
            )
        )
        assert active.count == 2
        assert listed_count(sdk, begin, end) == records.expected(begin, end)
