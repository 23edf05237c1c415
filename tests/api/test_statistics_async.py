"""openfgs's async series (``…/openfgs-statistics/{period}``) over HTTP, on both stores.

The records are written through the store with chosen accept, start and end times, so every
bucket's counts, percentiles and waiting depth are known exactly.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    ListFunctionStatisticsRequest,
)

from openfgs.models import ErrorCode, NewInvocation, Outcome, Status, now_ms
from openfgs.store.base import Store
from tests.api.conftest import FAR_FUTURE_MS, RawApi, function_path, insert_records
from tests.api.test_statistics import run_workload
from tests.support import PROJECT, REPORTER_CODE, LiveServer, create_function, sdk_client, urn

MINUTE_MS = 60_000


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


KINDS = {"SUCCESS", "FAIL", "DISCARD", "CANCELED", "RUNNING", "WAIT"}
FUNCTIONGRAPH_KEYS = {
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
}


@dataclass(frozen=True)
class Record:
    """A record to write: accepted at ``accept``, first started ``dispatch`` ms later, run for
    ``run`` ms, ended as ``status`` (None: left waiting, never started)."""

    accept: int
    dispatch: int = 0
    run: int = 0
    status: Status | None = Status.SUCCESS
    error_code: int = 0
    retried_after: int | None = None  # a first attempt that failed this long after its start


def write(server: LiveServer, function_id: int, records: list[Record]) -> None:
    """Write ``records``, side by side."""

    async def all_of() -> None:
        await asyncio.gather(*(write_one(server.services.store, function_id, r) for r in records))

    server.run(all_of())


async def write_one(store: Store, function_id: int, record: Record) -> None:
    request_id = str(uuid.uuid4())
    new = NewInvocation(
        request_id=request_id,
        function_id=function_id,
        version="latest",
        payload=b"{}",
        start_time=record.accept,
        available_at=FAR_FUTURE_MS,
        expires_at=FAR_FUTURE_MS,
        max_attempts=3,
    )
    await store.insert_invocation(new)
    if record.status is None:
        return
    start = record.accept + record.dispatch
    assert await store.claim_waiting(request_id, function_id, "w", start, FAR_FUTURE_MS)
    attempt = 1
    if record.retried_after is not None:
        retry = Outcome(Status.WAIT, ErrorCode.FUNCTION_ERROR, "x", retry_at=FAR_FUTURE_MS)
        assert await store.requeue_invocation(request_id, 1, retry, start + 10)
        start += record.retried_after
        assert await store.claim_waiting(request_id, function_id, "w", start, FAR_FUTURE_MS)
        attempt = 2
    if record.status is not Status.RUNNING:
        outcome = Outcome(record.status, record.error_code)
        assert await store.finish_invocation(request_id, attempt, outcome, start + record.run)


def function_id(server: LiveServer, qualifier: str = "latest") -> int:
    function = server.run(
        server.services.registry.resolve(PROJECT, urn("echo", qualifier=qualifier))
    )
    return int(function.id)


def series(server: LiveServer, function_urn: str, period: int, **params: str) -> dict[str, Any]:
    api = RawApi(server.url)
    try:
        path = function_path(function_urn, f"/openfgs-statistics/{period}")
        response = api.call("GET", path, params=params)
    finally:
        api.close()
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bucket(answer: dict[str, Any], start: int) -> dict[str, Any]:
    """The values of the bucket that starts at ``start``."""
    i = answer["timestamps"].index(start)
    return {
        "accepted": answer["accepted"][i],
        "statuses": {kind: values[i] for kind, values in answer["statuses"].items()},
        "dispatch": [answer["dispatch_ms"][p][i] for p in ("p50", "p90", "p99")],
        "run": [answer["run_ms"][p][i] for p in ("p50", "p90", "p99")],
        "waiting": answer["waiting"][i],
    }


def test_buckets_hold_the_records_their_times_and_the_waiting(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    fid = function_id(any_server)
    base = now_ms() // MINUTE_MS * MINUTE_MS - 10 * MINUTE_MS  # a minute start, 10 min ago
    one = [
        Record(base + 1_000, dispatch=5, run=30),
        Record(base + 2_000, dispatch=10, run=40),
        Record(base + 3_000, dispatch=20, run=1_234),
        Record(base + 4_000, dispatch=7, run=8, status=Status.FAIL, error_code=4200),
        # Started 150 s after its accept: waiting at the ends of this minute and the next.
        Record(base + 5_000, dispatch=150_000, run=50),
        # Retried: its dispatch is its first attempt's; its run time its last attempt's.
        Record(base + 6_000, dispatch=3, run=20, retried_after=30_000),
    ]
    two = [
        Record(base + MINUTE_MS + 1, dispatch=90, status=Status.DISCARD, error_code=4211),
        Record(base + MINUTE_MS + 2, dispatch=60, status=Status.DISCARD, error_code=4208),
        Record(base + MINUTE_MS + 3, dispatch=2, run=5, status=Status.FAIL, error_code=4208),
        Record(base + MINUTE_MS + 4, dispatch=9, status=Status.RUNNING),
    ]
    write(any_server, fid, one + two)
    # Left waiting, as if no worker ran: waiting at every bucket end from theirs on, and now.
    insert_records(any_server, "echo", [base + 4 * MINUTE_MS + 10, base + 4 * MINUTE_MS + 20])

    first = series(any_server, urn("echo"), 15)
    assert first == series(any_server, urn("echo"), 15)  # the second comes partly remembered
    assert first["bucket_ms"] == MINUTE_MS
    assert len(first["timestamps"]) == 15
    assert first["timestamps"] == sorted(first["timestamps"])
    assert sum(first["accepted"]) == len(one) + len(two) + 2
    for i, accepted in enumerate(first["accepted"]):  # every record has one status
        assert accepted == sum(values[i] for values in first["statuses"].values())
    assert set(first["statuses"]) == KINDS

    b1 = bucket(first, base)
    assert b1["accepted"] == 6
    assert b1["statuses"] == dict.fromkeys(KINDS, 0) | {"SUCCESS": 5, "FAIL": 1}
    # Nearest-rank percentiles of 3, 5, 7, 10, 20, 150000 and of 8, 20, 30, 40, 50, 1234.
    assert b1["dispatch"] == [7, 150_000, 150_000]
    assert b1["run"] == [30, 1_234, 1_234]
    assert b1["waiting"] == 1

    b2 = bucket(first, base + MINUTE_MS)
    assert b2["statuses"] == dict.fromkeys(KINDS, 0) | {
        "DISCARD": 1,
        "CANCELED": 2,
        "RUNNING": 1,
    }
    assert b2["dispatch"] == [2, 9, 9]  # the records that ran: canceled running and running
    assert b2["run"] == [5, 5, 5]
    assert b2["waiting"] == 1  # the 150 s one still

    assert bucket(first, base + 2 * MINUTE_MS)["waiting"] == 0  # it started at base + 155 s
    quiet = bucket(first, base + 3 * MINUTE_MS)
    assert quiet["accepted"] == 0
    assert quiet["dispatch"] == [None] * 3
    assert quiet["run"] == [None] * 3
    waited = bucket(first, base + 4 * MINUTE_MS)
    assert waited["statuses"]["WAIT"] == 2
    assert waited["waiting"] == 2
    assert first["waiting"][-1] == 2  # now
    assert first["waiting"][: first["timestamps"].index(base)] == [0] * (
        first["timestamps"].index(base)
    )


def test_a_workload_run_by_the_worker(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    create_function(sdk, "reporter", REPORTER_CODE)
    run_workload(sdk, urn("echo"), 3)
    run_workload(sdk, urn("reporter"), 2)

    for name, status, count in (("echo", "SUCCESS", 3), ("reporter", "FAIL", 2)):
        answer = series(any_server, urn(name), 5)
        assert sum(answer["accepted"]) == count
        assert sum(answer["statuses"][status]) == count
        assert answer["waiting"] == [0] * 5
        for times in (answer["dispatch_ms"], answer["run_ms"]):
            ran = [i for i, n in enumerate(answer["accepted"]) if n]
            for i in ran:  # every bucket with records has their times, in order
                p50, p90, p99 = (times[p][i] for p in ("p50", "p90", "p99"))
                assert 0 <= p50 <= p90 <= p99 < 30_000
            assert all(times["p50"][i] is None for i in set(range(5)) - set(ran))


def test_another_projects_function_is_not_found(shared_server: LiveServer, raw: RawApi) -> None:
    create_function(sdk_client(shared_server.url), "echo")
    other = urn("echo", project="f" * 32)
    response = raw.call("GET", function_path(other, "/openfgs-statistics/5"))
    assert response.status_code == 404, response.text
    assert response.json()["error_code"].startswith("FSS.")


def test_a_backlog_older_than_the_event_age_is_waiting_throughout(
    shared_server: LiveServer,
) -> None:
    """Records no worker took for hours (the default event age is an hour): counted from the
    status index, they wait at every bucket's end; records started then are not read."""
    create_function(sdk_client(shared_server.url), "echo")
    hours_ago = now_ms() - 3 * 3_600_000
    insert_records(shared_server, "echo", [hours_ago, hours_ago + 1])
    write(shared_server, function_id(shared_server), [Record(hours_ago, dispatch=1)])
    answer = series(shared_server, urn("echo"), 15)
    assert answer["waiting"] == [2] * 15
    assert sum(answer["accepted"]) == 0  # accepted before the window


def test_percentiles_are_times_of_the_bucket(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    fid = function_id(any_server)
    base = now_ms() // MINUTE_MS * MINUTE_MS - 5 * MINUTE_MS
    runs = [3 + (n * 7919) % 90_000 for n in range(100)]  # spread over five decades
    write(any_server, fid, [Record(base + n, n % 50, run) for n, run in enumerate(runs)])

    b = bucket(series(any_server, urn("echo"), 10), base)
    assert b["accepted"] == 100
    assert b["dispatch"][0] in range(50) and b["dispatch"] == sorted(b["dispatch"])
    ordered = sorted(runs)
    for p, value in zip((50, 90, 99), b["run"], strict=True):
        exact = ordered[-(-len(runs) * p // 100) - 1]
        assert value in runs  # a time some record has
        assert 0.9 * exact <= value <= exact  # its bin's smallest: at most 10 % below


def test_an_unqualified_urn_covers_every_row(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    sdk.create_function_version(
        CreateFunctionVersionRequest(
            function_urn=urn("echo", qualifier=None),
            body=CreateFunctionVersionRequestBody(version="v1"),
        )
    )
    now = now_ms()
    insert_records(any_server, "echo", [now - 1000])
    insert_records(
        any_server, "echo", [now - 2000, now - 3000], function_id=function_id(any_server, "v1")
    )

    def waiting(function_urn: str) -> int:
        answer = series(any_server, function_urn, 5)
        assert sum(answer["statuses"]["WAIT"]) == answer["waiting"][-1]
        return int(answer["waiting"][-1])

    assert waiting(urn("echo")) == 1
    assert waiting(urn("echo", qualifier="v1")) == 2
    assert waiting(urn("echo", qualifier=None)) == 3


@pytest.mark.parametrize(
    ("period", "bucket_minutes", "count"),
    [(15, 1, 15), (180, 1, 180), (181, 5, 37), (1440, 15, 96), (10080, 60, 168)],
)
def test_windows_get_at_most_180_buckets(
    shared_server: LiveServer, period: int, bucket_minutes: int, count: int
) -> None:
    create_function(sdk_client(shared_server.url), "echo")
    before = now_ms()
    answer = series(shared_server, urn("echo"), period)
    size = bucket_minutes * MINUTE_MS
    assert answer["bucket_ms"] == size
    assert len(answer["timestamps"]) == count
    assert all(t % size == 0 for t in answer["timestamps"])
    assert answer["timestamps"][-1] <= now_ms() and answer["timestamps"][-1] + size > before
    assert answer["accepted"] == [0] * count


def test_a_window_may_end_in_the_past(shared_server: LiveServer) -> None:
    create_function(sdk_client(shared_server.url), "echo")
    end = now_ms() // MINUTE_MS * MINUTE_MS - 30 * MINUTE_MS
    insert_records(shared_server, "echo", [end - 90_000, end + 90_000])
    answer = series(shared_server, urn("echo"), 10, end_time=str(end))
    assert answer["timestamps"][-1] == end
    assert sum(answer["accepted"]) == 1
    assert answer["waiting"][-2] == 1  # the older one, still waiting; the newer not yet there
    later = series(shared_server, urn("echo"), 10, end_time=str(10**15))  # never beyond now
    assert later["timestamps"][-1] <= now_ms()
    epoch = series(shared_server, urn("echo"), 10080, end_time="0")  # before any record
    assert epoch["timestamps"][-1] == 0 and sum(epoch["accepted"]) == 0
    assert epoch["waiting"] == [0] * 168


def test_functiongraph_statistics_keep_their_shape(shared_server: LiveServer, raw: RawApi) -> None:
    sdk = sdk_client(shared_server.url)
    create_function(sdk, "echo")
    insert_records(shared_server, "echo", [now_ms() - 1000])
    body = raw.call("GET", function_path(urn("echo"), "/statistics/5")).json()
    assert set(body) == FUNCTIONGRAPH_KEYS
    parsed = sdk.list_function_statistics(
        ListFunctionStatisticsRequest(func_urn=urn("echo"), period="5")
    )
    assert sum(p.value for p in parsed.count if p.value > 0) == 1


@pytest.mark.parametrize(
    ("suffix", "params"),
    [
        ("0", {}),
        ("10081", {}),
        ("abc", {}),
        ("5", {"end_time": "yesterday"}),
        ("5", {"end_time": "-1"}),
        ("5", {"end_time": "9" * 30}),
    ],
)
def test_bad_input_is_400(
    shared_server: LiveServer, raw: RawApi, suffix: str, params: dict[str, str]
) -> None:
    create_function(sdk_client(shared_server.url), "echo")
    path = function_path(urn("echo"), f"/openfgs-statistics/{suffix}")
    response = raw.call("GET", path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "FSS.0400"


def test_a_missing_function_is_404(raw: RawApi) -> None:
    response = raw.call("GET", function_path(urn("nothing"), "/openfgs-statistics/5"))
    assert response.status_code == 404
    assert response.json()["error_code"].startswith("FSS.")
