"""ListFunctionStatistics, ShowFunctionMetrics and ListStatistics through the official SDK."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    ListFunctionAsMetricRequest,
    ListFunctionStatisticsRequest,
    ListStatisticsRequest,
    ShowFunctionMetricsRequest,
)

from openfgs.models import now_ms
from tests.api.conftest import (
    RawApi,
    function_path,
    insert_records,
)
from tests.support import (
    PROJECT,
    REPORTER_CODE,
    LiveServer,
    create_function,
    sdk_client,
    urn,
    wait_for_terminal_record,
)


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


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
HOUR_MS = 3_600_000


def total(points: list[Any]) -> float:
    return float(sum(p.value for p in points if p.value != -1))


def run_workload(sdk: Any, function_urn: str, events: int) -> None:
    ids = [
        sdk.async_invoke_function(
            AsyncInvokeFunctionRequest(function_urn=function_urn, body={"n": n})
        ).request_id
        for n in range(events)
    ]
    for request_id in ids:
        wait_for_terminal_record(sdk, function_urn, request_id)


def test_function_statistics_count_the_records(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    create_function(sdk, "reporter", REPORTER_CODE)
    run_workload(sdk, urn("echo"), 3)
    run_workload(sdk, urn("reporter"), 2)

    echo = sdk.list_function_statistics(
        ListFunctionStatisticsRequest(func_urn=urn("echo"), period="5")
    )
    for name in SERIES:
        points = getattr(echo, name)
        assert len(points) == 5, name  # one-minute buckets over the last five minutes
        assert [p.timestamp for p in points] == sorted(p.timestamp for p in points)
        assert all(b.timestamp - a.timestamp == 60_000 for a, b in itertools.pairwise(points))
    assert total(echo.count) == 3
    assert total(echo.fail_count) == 0
    assert any(p.value >= 0 for p in echo.duration)
    assert all(p.value == -1 for p in echo.count if p.value <= 0)  # empty buckets are -1

    failing = sdk.list_function_statistics(
        ListFunctionStatisticsRequest(func_urn=urn("reporter"), period="5")
    )
    assert total(failing.count) == 2
    assert total(failing.fail_count) == 2
    assert total(failing.function_error_count) == 2
    assert total(failing.system_error_count) == 0

    # The unqualified URN covers every row of the function; slareports adds instance_num.
    metrics = sdk.show_function_metrics(
        ShowFunctionMetricsRequest(func_urn=urn("echo", qualifier=None), period="5")
    )
    assert total(metrics.count) == 3
    assert len(metrics.instance_num) == 5
    assert metrics.instance_num[-1].value >= 0

    tenant = sdk.list_statistics(ListStatisticsRequest(filter="monitor_data", period="5"))
    assert total(tenant.statistics.count) == 5
    assert total(tenant.statistics.fail_count) == 2


def test_long_periods_have_hour_buckets(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    now = now_ms()
    insert_records(any_server, "echo", [now - 2 * HOUR_MS, now - 2 * HOUR_MS + 1])

    for _ in range(2):  # the second answer comes partly from remembered minutes
        answer = sdk.list_function_statistics(
            ListFunctionStatisticsRequest(func_urn=urn("echo"), period="180")
        )
        assert len(answer.count) == 3
        assert all(
            b.timestamp - a.timestamp == HOUR_MS for a, b in itertools.pairwise(answer.count)
        )
        assert now - HOUR_MS < answer.count[-1].timestamp <= now_ms()
        assert total(answer.count) == 2
        waiting = [p for p in answer.count if p.value == 2]
        assert len(waiting) == 1
        # Waiting records have no duration yet.
        index = answer.count.index(waiting[0])
        assert answer.duration[index].value == -1


def test_an_unqualified_urn_covers_every_row(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    sdk.create_function_version(
        CreateFunctionVersionRequest(
            function_urn=urn("echo", qualifier=None),
            body=CreateFunctionVersionRequestBody(version="v1"),
        )
    )
    v1 = any_server.run(any_server.services.registry.resolve(PROJECT, urn("echo", qualifier="v1")))
    now = now_ms()
    insert_records(any_server, "echo", [now - 1000])
    insert_records(any_server, "echo", [now - 2000, now - 3000], function_id=v1.id)

    def counted(function_urn: str) -> float:
        return total(
            sdk.list_function_statistics(
                ListFunctionStatisticsRequest(func_urn=function_urn, period="3")
            ).count
        )

    assert counted(urn("echo")) == 1
    assert counted(urn("echo", qualifier="v1")) == 2
    assert counted(urn("echo", qualifier=None)) == 3


@pytest.mark.parametrize("period", ["0", "-5", "abc", "10081", "1.5", "9" * 40])
def test_a_bad_period_is_400(raw: RawApi, sdk: Any, period: str) -> None:
    create_function(sdk, "echo")
    for suffix in ("/statistics/", "/slareports/"):
        response = raw.call("GET", function_path(urn("echo"), suffix + period))
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "FSS.0400"
    with pytest.raises(ClientRequestException) as caught:
        sdk.list_function_statistics(
            ListFunctionStatisticsRequest(func_urn=urn("echo"), period=period)
        )
    assert caught.value.status_code == 400


def test_statistics_of_a_missing_function_is_404(raw: RawApi) -> None:
    response = raw.call("GET", function_path(urn("nothing"), "/statistics/5"))
    assert response.status_code == 404
    assert response.json()["error_code"].startswith("FSS.")


def test_tenant_statistics_need_monitor_data(raw: RawApi) -> None:
    path = f"/v2/{PROJECT}/fgs/functions/statistics"
    for params in ({}, {"filter": "monthly_report"}, {"filter": "monitor_data", "period": "x"}):
        response = raw.call("GET", path, params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error_code"] == "FSS.0400"


def test_functions_ranked_by_a_metric(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    create_function(sdk, "reporter", REPORTER_CODE)
    run_workload(sdk, urn("echo"), 1)
    run_workload(sdk, urn("reporter"), 2)

    failing = sdk.list_function_as_metric(ListFunctionAsMetricRequest())  # failcount, last hour
    assert [(v.key, v.value) for v in failing.values] == [
        (urn("reporter", qualifier=None), 2),
        (urn("echo", qualifier=None), 0),
    ]
    assert failing.count == 2
    busiest = sdk.list_function_as_metric(
        ListFunctionAsMetricRequest(
            type="count", start_time=str(now_ms() - 600_000), end_time=str(now_ms()), limit="1"
        )
    )
    assert [(v.key, v.value) for v in busiest.values] == [(urn("reporter", qualifier=None), 2)]


@pytest.mark.parametrize(
    "params",
    [
        {"type": "nonsense"},
        {"limit": "0"},
        {"limit": "x"},
        {"start_time": "yesterday"},
        {"start_time": "2", "end_time": "1"},
        {"start_time": "0", "end_time": str(10**12)},
    ],
)
def test_a_bad_report_query_is_400(raw: RawApi, params: dict[str, str]) -> None:
    response = raw.call("GET", f"/v2/{PROJECT}/fgs/function/report", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "FSS.0400"
