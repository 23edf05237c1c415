"""Async invocation: invoke, outcomes, and the two list endpoints exactly as the spec reads."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    InvokeFunctionRequest,
    ListActiveAsyncInvocationsRequest,
    ListAsyncInvocationsRequest,
)

from openfgs.models import now_ms
from tests.support import (
    BACKENDS,
    LiveServer,
    create_function,
    record_status,
    reported_event,
    urn,
    wait_for,
    wait_for_terminal_record,
)

from .conftest import RawApi, function_path, insert_records, set_concurrency


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test of this module runs on SQLite and on PostgreSQL (the SDK checks, per backend)."""
    name: str = request.param
    return name


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server per backend for the module: each test starts from empty projects."""
    return shared_server


TIME_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
NEVER_RUN = "def handler(event, context):\n    raise AssertionError('never runs')\n"
MAYBE_FAIL = """\
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail: " + str(event["fail"]))
    return {"ok": True}
"""


def client_error(call: Any) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def invoke_async(sdk: Any, function_urn: str, body: dict[str, Any] | None = None) -> str:
    response = sdk.async_invoke_function(
        AsyncInvokeFunctionRequest(function_urn=function_urn, body=body)
    )
    assert response.status_code == 202
    request_id: str = response.request_id
    return request_id


def list_records(sdk: Any, function_urn: str, **query: Any) -> Any:
    return sdk.list_async_invocations(
        ListAsyncInvocationsRequest(function_urn=function_urn, **query)
    )


def list_ids(sdk: Any, function_urn: str, **query: Any) -> list[str]:
    return [r.request_id for r in list_records(sdk, function_urn, **query).invocations]


def list_json(raw: RawApi, function_urn: str, **params: str) -> dict[str, Any]:
    response = raw.call("GET", function_path(function_urn, "/async-invocations"), params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def utc(ms: int) -> datetime:
    """A naive UTC datetime (the SDK sends it as ``YYYY-MM-DDTHH:mm:ss[.ffffff]``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


@pytest.fixture
def rows_urn(sdk: Any) -> str:
    """A function whose records the tests insert directly; its handler never runs."""
    create_function(sdk, "rows", NEVER_RUN)
    function_urn: str = urn("rows")
    return function_urn


# -- invoking -----------------------------------------------------------------------------


def test_async_invoke_is_accepted_and_runs_to_success(sdk: Any, echo_urn: str) -> None:
    request_id = invoke_async(sdk, echo_urn, {"k": "v", "n": 1})

    assert str(uuid.UUID(request_id)) == request_id
    record = record_status(sdk, echo_urn, request_id)
    assert record is not None
    assert record.status in ("WAIT", "RUNNING", "SUCCESS")
    done = wait_for_terminal_record(sdk, echo_urn, request_id)
    assert done.status == "SUCCESS"
    assert done.error_code == 0
    assert not done.error_message
    assert TIME_FORMAT.fullmatch(done.end_time)


def test_the_whole_body_is_the_event(sdk: Any, reporter_urn: str) -> None:
    event = {"k": "v", "n": 1, "nested": {"list": [1, "two", None]}, "text": "é"}

    request_id = invoke_async(sdk, reporter_urn, event)

    assert reported_event(wait_for_terminal_record(sdk, reporter_urn, request_id)) == event


def test_an_empty_body_is_the_empty_object(sdk: Any, reporter_urn: str) -> None:
    request_id = invoke_async(sdk, reporter_urn, None)  # the SDK sends no body at all

    assert reported_event(wait_for_terminal_record(sdk, reporter_urn, request_id)) == {}


def test_async_invoke_of_an_unknown_function_is_not_found(sdk: Any) -> None:
    error = client_error(lambda: invoke_async(sdk, urn("missing"), {}))

    assert (error.status_code, error.error_code) == (404, "FSS.0404")


def test_a_body_over_256_kb_is_too_large_and_not_stored(sdk: Any, echo_urn: str) -> None:
    big = {"data": "x" * (256 * 1024)}

    error = client_error(lambda: invoke_async(sdk, echo_urn, big))

    assert error.status_code == 413
    assert error.error_code.startswith("FSS.")
    assert list_records(sdk, echo_urn).count == 0


def test_a_body_just_under_256_kb_is_accepted(sdk: Any, echo_urn: str) -> None:
    body = {"data": "x" * (256 * 1024 - 100)}

    request_id = invoke_async(sdk, echo_urn, body)

    assert wait_for_terminal_record(sdk, echo_urn, request_id).status == "SUCCESS"


@pytest.mark.parametrize("body", [b"not json", b'{"k": ', b"\xff\xfe"])
def test_a_non_json_body_is_rejected_and_not_stored(
    sdk: Any, raw: RawApi, echo_urn: str, body: bytes
) -> None:
    invoke_async(sdk, echo_urn, {"first": True})

    response = raw.call("POST", function_path(echo_urn, "/invocations-async"), content=body)

    assert response.status_code == 400, response.text
    assert response.json()["error_code"].startswith("FSS.")
    assert list_records(sdk, echo_urn).count == 1


def test_a_disabled_function_answers_429(sdk: Any, echo_urn: str) -> None:
    set_concurrency(sdk, "echo", 0)

    error = client_error(lambda: invoke_async(sdk, echo_urn, {}))

    assert (error.status_code, error.error_code) == (429, "FSS.0429")
    assert error.error_msg == "Function Disabled"
    assert list_records(sdk, echo_urn).count == 0
    set_concurrency(sdk, "echo", 10)
    assert invoke_async(sdk, echo_urn, {})


# -- outcomes -----------------------------------------------------------------------------


def test_a_raising_handler_fails_with_its_exception(sdk: Any) -> None:
    create_function(sdk, "raiser", MAYBE_FAIL)

    request_id = invoke_async(sdk, urn("raiser"), {"fail": "boom-42"})
    record = wait_for_terminal_record(sdk, urn("raiser"), request_id)

    assert record.status == "FAIL"
    assert isinstance(record.error_code, int)
    assert record.error_code != 0
    assert "ValueError" in record.error_message
    assert "asked to fail: boom-42" in record.error_message


def test_a_handler_past_its_timeout_fails_as_timed_out(sdk: Any) -> None:
    create_function(sdk, "looper", "def handler(e, c):\n    while True:\n        pass\n", timeout=3)

    request_id = invoke_async(sdk, urn("looper"), {})
    record = wait_for_terminal_record(sdk, urn("looper"), request_id, timeout=30)

    assert record.status == "FAIL"
    assert record.error_code != 0
    assert "timed out" in record.error_message


def test_sync_invoke_returns_result_log_and_request_id(sdk: Any) -> None:
    code = """\
    def handler(event, context):
        print("tail-marker", event["n"])
        return {"doubled": event["n"] * 2, "text": "é"}
    """
    create_function(sdk, "sync", code)

    response = sdk.invoke_function(
        InvokeFunctionRequest(
            function_urn=urn("sync"),
            x_cff_log_type="tail",
            x_cff_request_version="v1",
            body={"n": 21},
        )
    )

    assert response.status_code == 200
    assert isinstance(response.result, str)
    assert json.loads(response.result) == {"doubled": 42, "text": "é"}
    assert "tail-marker 21" in response.log
    assert response.status == 200
    assert response.x_cff_request_id
    assert response.x_cff_request_id == response.request_id


def test_sync_invoke_without_tail_returns_no_log(sdk: Any) -> None:
    create_function(sdk, "sync", "def handler(e, c):\n    print('noisy')\n    return 1\n")

    response = sdk.invoke_function(
        InvokeFunctionRequest(function_urn=urn("sync"), x_cff_request_version="v1", body={})
    )

    assert json.loads(response.result) == 1
    assert not response.log


# -- ListAsyncInvocations: defaults, order, paging ----------------------------------------


def test_list_defaults_to_the_last_hour(server: LiveServer, sdk: Any, rows_urn: str) -> None:
    now = now_ms()
    inside = insert_records(server, "rows", [now - 59 * 60_000, now - 5_000])
    insert_records(server, "rows", [now - 61 * 60_000, now - 5 * 3600_000, now + 3600_000])

    page = list_records(sdk, rows_urn)

    assert [r.request_id for r in page.invocations] == inside[::-1]
    assert (page.count, page.next_marker) == (2, 2)


def test_list_defaults_to_marker_0_and_limit_100(
    server: LiveServer, sdk: Any, rows_urn: str
) -> None:
    now = now_ms()
    ids = insert_records(server, "rows", [now - 120_000 + i * 100 for i in range(105)])

    page = list_records(sdk, rows_urn)

    assert len(page.invocations) == 100
    assert (page.count, page.next_marker) == (105, 100)
    assert [r.request_id for r in page.invocations] == ids[::-1][:100]


def test_pages_of_7_return_every_record_once_newest_first(
    server: LiveServer, sdk: Any, rows_urn: str
) -> None:
    now = now_ms()
    # Ten start times shared by several records each: ties must not break paging.
    starts = [now - 600_000 + (i % 10) * 30_000 for i in range(41)]
    ids = insert_records(server, "rows", starts)
    start_of = dict(zip(ids, starts, strict=True))

    seen: list[str] = []
    marker = 0
    for _ in range(20):
        page = list_records(sdk, rows_urn, marker=str(marker), limit="7")
        assert page.count == 41
        assert len(page.invocations) <= 7
        assert page.next_marker == marker + len(page.invocations)
        seen += [r.request_id for r in page.invocations]
        if len(page.invocations) < 7:
            break
        marker = page.next_marker

    assert sorted(seen) == sorted(ids)
    assert len(seen) == 41
    times = [start_of[request_id] for request_id in seen]
    assert times == sorted(times, reverse=True)


def test_a_marker_past_the_end_gives_an_empty_page(
    server: LiveServer, sdk: Any, rows_urn: str
) -> None:
    insert_records(server, "rows", [now_ms() - 1000] * 3)

    page = list_records(sdk, rows_urn, marker="10")

    assert page.invocations == []
    assert page.count == 3
    assert page.next_marker == 10


@pytest.mark.parametrize("limit", ["1", "500"])
def test_limit_bounds_are_accepted(server: LiveServer, sdk: Any, rows_urn: str, limit: str) -> None:
    insert_records(server, "rows", [now_ms() - 1000] * 2)

    page = list_records(sdk, rows_urn, limit=limit)

    assert len(page.invocations) == min(int(limit), 2)
    assert page.count == 2


# -- ListAsyncInvocations: filters --------------------------------------------------------


@pytest.fixture
def mixed(sdk: Any, server: LiveServer) -> dict[str, list[str]]:
    """Three SUCCESS, two FAIL and two WAIT records of the function ``mixed``, by status."""
    create_function(sdk, "mixed", MAYBE_FAIL)
    success = [invoke_async(sdk, urn("mixed"), {"i": i}) for i in range(3)]
    fail = [invoke_async(sdk, urn("mixed"), {"fail": f"f{i}"}) for i in range(2)]
    for request_id in success + fail:
        wait_for_terminal_record(sdk, urn("mixed"), request_id)
    wait = insert_records(server, "mixed", [now_ms() - 2000] * 2)
    return {"SUCCESS": success, "FAIL": fail, "WAIT": wait}


def test_filter_by_status(sdk: Any, mixed: dict[str, list[str]]) -> None:
    for status, ids in mixed.items():
        page = list_records(sdk, urn("mixed"), status=status)
        assert sorted(r.request_id for r in page.invocations) == sorted(ids), status
        assert page.count == len(ids)
        assert {r.status for r in page.invocations} == {status}
    assert list_records(sdk, urn("mixed"), status="DISCARD").count == 0
    assert list_records(sdk, urn("mixed"), status="RUNNING").count == 0


def test_filter_by_request_id(sdk: Any, mixed: dict[str, list[str]]) -> None:
    for status, ids in mixed.items():
        page = list_records(sdk, urn("mixed"), request_id=ids[0])
        assert [(r.request_id, r.status) for r in page.invocations] == [(ids[0], status)]
        assert (page.count, page.next_marker) == (1, 1)


def test_filters_combine(sdk: Any, mixed: dict[str, list[str]]) -> None:
    failed = mixed["FAIL"][0]
    now = now_ms()
    window = {"query_begin_time": utc(now - 600_000), "query_end_time": utc(now + 60_000)}

    assert list_ids(sdk, urn("mixed"), request_id=failed, status="FAIL", **window) == [failed]
    assert list_ids(sdk, urn("mixed"), request_id=failed, status="SUCCESS", **window) == []
    page = list_records(sdk, urn("mixed"), status="SUCCESS", limit="2", **window)
    assert len(page.invocations) == 2
    assert (page.count, page.next_marker) == (3, 2)
    past = {"query_begin_time": utc(now - 7200_000), "query_end_time": utc(now - 3600_000)}
    assert list_ids(sdk, urn("mixed"), request_id=failed, status="FAIL", **past) == []


def test_an_unknown_request_id_gives_an_empty_list(sdk: Any, mixed: dict[str, list[str]]) -> None:
    page = list_records(sdk, urn("mixed"), request_id=str(uuid.uuid4()))

    assert page.invocations == []
    assert page.count == 0


def test_a_record_of_another_function_is_not_listed(
    sdk: Any, mixed: dict[str, list[str]], rows_urn: str
) -> None:
    assert list_ids(sdk, rows_urn, request_id=mixed["SUCCESS"][0]) == []
    assert list_records(sdk, rows_urn).count == 0


@pytest.fixture
def timeline(server: LiveServer, rows_urn: str) -> tuple[int, dict[str, str]]:
    """Records around a whole second T three hours ago: T-60s, T-1s, T+0.5s, T+30s, T+120s."""
    t = (now_ms() // 1000 - 3 * 3600) * 1000
    offsets = {"T-60": -60_000, "T-1": -1000, "T+0.5": 500, "T+30": 30_000, "T+120": 120_000}
    ids = insert_records(server, "rows", [t + o for o in offsets.values()])
    return t, dict(zip(offsets, ids, strict=True))


def names_of(ids: list[str], names: dict[str, str]) -> list[str]:
    by_id = {v: k for k, v in names.items()}
    return [by_id[i] for i in ids]


def test_time_window_selects_by_start_time(
    sdk: Any, rows_urn: str, timeline: tuple[int, dict[str, str]]
) -> None:
    t, names = timeline

    ids = list_ids(sdk, rows_urn, query_begin_time=utc(t), query_end_time=utc(t + 60_000))
    assert names_of(ids, names) == ["T+30", "T+0.5"]

    ids = list_ids(sdk, rows_urn, query_begin_time=utc(t - 120_000), query_end_time=utc(t - 500))
    assert names_of(ids, names) == ["T-1", "T-60"]

    ids = list_ids(sdk, rows_urn, query_begin_time=utc(t - 30_000), query_end_time=utc(t + 100_000))
    assert names_of(ids, names) == ["T+30", "T+0.5", "T-1"]

    ids = list_ids(
        sdk, rows_urn, query_begin_time=utc(t + 200_000), query_end_time=utc(t + 300_000)
    )
    assert ids == []


def test_time_window_with_microseconds(
    sdk: Any, rows_urn: str, timeline: tuple[int, dict[str, str]]
) -> None:
    t, names = timeline
    begin = utc(t - 500)  # T-0.5s: sent as ...:59.500000
    assert begin.microsecond == 500_000

    ids = list_ids(sdk, rows_urn, query_begin_time=begin, query_end_time=utc(t + 60_250))

    assert names_of(ids, names) == ["T+30", "T+0.5"]


@pytest.mark.parametrize("offset_hours", [0, 8, -5])
def test_time_window_with_aware_datetimes(
    sdk: Any, rows_urn: str, timeline: tuple[int, dict[str, str]], offset_hours: int
) -> None:
    t, names = timeline
    zone = timezone(timedelta(hours=offset_hours))
    begin = datetime.fromtimestamp(t / 1000, zone)
    end = datetime.fromtimestamp((t + 60_000) / 1000, zone)

    ids = list_ids(sdk, rows_urn, query_begin_time=begin, query_end_time=end)

    assert names_of(ids, names) == ["T+30", "T+0.5"]


@pytest.mark.parametrize(
    ("suffix", "shift_ms"),
    [("", 0), (".000000", 0), ("Z", 0), ("+00:00", 0), ("+08:00", -8 * 3600_000)],
)
def test_raw_query_times_in_every_iso_form(
    raw: RawApi, rows_urn: str, timeline: tuple[int, dict[str, str]], suffix: str, shift_ms: int
) -> None:
    """``+08:00`` names the same instant as UTC eight hours earlier."""
    t, names = timeline

    def stamp(ms: int) -> str:
        return utc(ms - shift_ms).strftime("%Y-%m-%dT%H:%M:%S") + suffix

    body = list_json(raw, rows_urn, query_begin_time=stamp(t), query_end_time=stamp(t + 60_000))

    ids = [r["request_id"] for r in body["invocations"]]
    assert names_of(ids, names) == ["T+30", "T+0.5"]


def test_begin_alone_ends_now(
    sdk: Any, rows_urn: str, timeline: tuple[int, dict[str, str]]
) -> None:
    t, names = timeline

    ids = list_ids(sdk, rows_urn, query_begin_time=utc(t))

    assert names_of(ids, names) == ["T+120", "T+30", "T+0.5"]


def test_records_carry_int_error_codes_and_formatted_times(
    raw: RawApi, mixed: dict[str, list[str]]
) -> None:
    body = list_json(raw, urn("mixed"))

    assert set(body) == {"invocations", "count", "next_marker"}
    assert type(body["count"]) is int
    assert type(body["next_marker"]) is int
    statuses = {}
    for record in body["invocations"]:
        statuses[record["request_id"]] = record["status"]
        assert type(record["error_code"]) is int, record
        assert TIME_FORMAT.fullmatch(record["start_time"]), record
        if record["status"] in ("SUCCESS", "FAIL"):
            assert TIME_FORMAT.fullmatch(record["end_time"]), record
        else:
            assert record["end_time"] == "" or TIME_FORMAT.fullmatch(record["end_time"]), record
        if record["status"] == "SUCCESS":
            assert (record["error_code"], record["error_message"]) == (0, "")
        if record["status"] == "FAIL":
            assert record["error_code"] != 0
            assert record["error_message"]
    assert statuses == {i: s for s, ids in mixed.items() for i in ids}


# -- ListAsyncInvocations: invalid parameters ---------------------------------------------

INVALID_QUERIES = [
    ("limit", {"limit": "abc"}),
    ("limit", {"limit": "0"}),
    ("limit", {"limit": "501"}),
    ("limit", {"limit": "-1"}),
    ("limit", {"limit": "1.5"}),
    ("marker", {"marker": "x"}),
    ("marker", {"marker": "-1"}),
    ("status", {"status": "DONE"}),
    ("status", {"status": "success"}),
    ("query_begin_time", {"query_begin_time": "yesterday"}),
    ("query_end_time", {"query_end_time": "2024-13-01T00:00:00"}),
    ("query_begin_time", {"query_begin_time": "2024-05-01"}),
    ("request_id", {"request_id": "r" * 65}),
]


@pytest.mark.parametrize(
    ("parameter", "query"),
    INVALID_QUERIES,
    ids=[f"{p}={next(iter(q.values()))}" for p, q in INVALID_QUERIES],
)
def test_invalid_list_parameters_are_rejected(
    sdk: Any, rows_urn: str, parameter: str, query: dict[str, str]
) -> None:
    error = client_error(lambda: list_records(sdk, rows_urn, **query))

    assert error.status_code == 400
    assert re.fullmatch(r"FSS\.\d{4}", error.error_code)
    assert parameter in error.error_msg


def test_begin_after_end_is_rejected(sdk: Any, rows_urn: str) -> None:
    now = now_ms()

    error = client_error(
        lambda: list_records(
            sdk, rows_urn, query_begin_time=utc(now - 1000), query_end_time=utc(now - 60_000)
        )
    )

    assert error.status_code == 400
    assert re.fullmatch(r"FSS\.\d{4}", error.error_code)
    assert "query_begin_time" in error.error_msg or "query_end_time" in error.error_msg


@pytest.mark.parametrize("endpoint", ["list", "active"])
def test_listing_an_unknown_function_is_not_found(sdk: Any, endpoint: str) -> None:
    if endpoint == "list":
        call = lambda: list_records(sdk, urn("missing"))  # noqa: E731
    else:
        call = lambda: sdk.list_active_async_invocations(  # noqa: E731
            ListActiveAsyncInvocationsRequest(function_urn=urn("missing"))
        )

    error = client_error(call)

    assert (error.status_code, error.error_code) == (404, "FSS.0404")


# -- ListActiveAsyncInvocations -----------------------------------------------------------


def list_active(sdk: Any, function_urn: str, **query: Any) -> Any:
    return sdk.list_active_async_invocations(
        ListActiveAsyncInvocationsRequest(function_urn=function_urn, **query)
    )


def test_active_lists_only_waiting_and_running(sdk: Any, mixed: dict[str, list[str]]) -> None:
    page = list_active(sdk, urn("mixed"))

    assert sorted(r.request_id for r in page.invocations) == sorted(mixed["WAIT"])
    assert page.count == 2
    assert {r.status for r in page.invocations} == {"WAIT"}
    assert list_active(sdk, urn("mixed"), status="WAIT").count == 2
    assert list_active(sdk, urn("mixed"), status="RUNNING").count == 0


def test_active_with_a_terminal_status_lists_nothing(sdk: Any, mixed: dict[str, list[str]]) -> None:
    for status in ("SUCCESS", "FAIL", "DISCARD"):
        page = list_active(sdk, urn("mixed"), status=status)
        assert [r.status for r in page.invocations] == [], status
        assert page.count == 0, status


def test_active_filters_by_requests(sdk: Any, mixed: dict[str, list[str]]) -> None:
    wanted = [mixed["WAIT"][0], mixed["SUCCESS"][0], str(uuid.uuid4())]

    page = list_active(sdk, urn("mixed"), requests=",".join(wanted))

    assert [r.request_id for r in page.invocations] == [mixed["WAIT"][0]]
    assert page.count == 1


def test_active_accepts_ten_requests_and_refuses_eleven(
    server: LiveServer, sdk: Any, rows_urn: str
) -> None:
    ids = insert_records(server, "rows", [now_ms() - 1000 - i for i in range(11)])

    page = list_active(sdk, rows_urn, requests=",".join(ids[:10]))
    assert sorted(r.request_id for r in page.invocations) == sorted(ids[:10])

    error = client_error(lambda: list_active(sdk, rows_urn, requests=",".join(ids)))
    assert error.status_code == 400
    assert re.fullmatch(r"FSS\.\d{4}", error.error_code)
    assert "requests" in error.error_msg


def test_active_pages_like_the_list(server: LiveServer, sdk: Any, rows_urn: str) -> None:
    now = now_ms()
    ids = insert_records(server, "rows", [now - 10_000 + i for i in range(5)])

    first = list_active(sdk, rows_urn, limit="3")
    second = list_active(sdk, rows_urn, limit="3", marker=str(first.next_marker))

    assert (first.count, first.next_marker, second.next_marker) == (5, 3, 5)
    seen = [r.request_id for r in first.invocations + second.invocations]
    assert seen == ids[::-1]


def test_a_finished_record_leaves_the_active_list(sdk: Any, echo_urn: str) -> None:
    request_id = invoke_async(sdk, echo_urn, {})

    wait_for(lambda: record_status(sdk, echo_urn, request_id).status == "SUCCESS")

    assert list_active(sdk, echo_urn, requests=request_id).invocations == []
