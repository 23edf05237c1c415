"""Function statistics: ListFunctionStatistics, ShowFunctionMetrics and ListStatistics, and
openfgs's async series (ListFunctionAsyncSeries, an extension the console draws).

The series come from the invocation records (openfgs.statistics); docs/api.md "Statistics"
says what each one counts here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from openfgs.api.deps import FunctionsDep, ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.errors import BadRequest
from openfgs.invocations import DEFAULT_EVENT_AGE_SECONDS
from openfgs.models import Function, now_ms
from openfgs.services import Services
from openfgs.statistics import (
    KINDS,
    MAX_PERIOD_MINUTES,
    NO_DATA,
    PERCENTILES,
    AsyncBucket,
    parse_period,
    percentile,
)

# Static segments after /fgs/functions/ (``statistics``) are declared before any
# ``{function_urn}`` route: create_app includes this router first.
project_router = APIRouter(prefix="/v2/{project_id}/fgs/functions", responses=ERROR_RESPONSES)
router = APIRouter(
    prefix="/v2/{project_id}/fgs/functions/{function_urn}", responses=ERROR_RESPONSES
)
report_router = APIRouter(prefix="/v2/{project_id}/fgs/function", responses=ERROR_RESPONSES)
FUNCTIONS_PAGE = 400
# ListFunctionAsMetric's ``type`` → the series ranked.
RANKED = {
    "failcount": "fail_count",
    "count": "count",
    "rejectcount": "reject_count",
    "functionerrorcount": "function_error_count",
    "systemerrorcount": "system_error_count",
    "duration": "duration",
    "maxduration": "max_duration",
}
DEFAULT_REPORT_MS = 3_600_000
MAX_REPORT_LIMIT = 500


class SlaReportsValue(BaseModel):
    timestamp: int  # the bucket's start, epoch milliseconds
    value: float  # -1: no record in the bucket


class FunctionStatisticsOut(BaseModel):
    count: list[SlaReportsValue]
    duration: list[SlaReportsValue]
    fail_count: list[SlaReportsValue]
    max_duration: list[SlaReportsValue]
    min_duration: list[SlaReportsValue]
    reject_count: list[SlaReportsValue]
    function_error_count: list[SlaReportsValue]
    system_error_count: list[SlaReportsValue]
    reserved_instance_num: list[SlaReportsValue]
    concurrency_num: list[SlaReportsValue]


class FunctionMetricsOut(FunctionStatisticsOut):
    instance_num: list[SlaReportsValue]


class StatisticsOut(BaseModel):
    statistics: FunctionStatisticsOut


class Percentiles(BaseModel):
    p50: list[int | None]
    p90: list[int | None]
    p99: list[int | None]


class AsyncSeriesOut(BaseModel):
    """openfgs's async series: one value per bucket in each list, oldest first."""

    bucket_ms: int
    timestamps: list[int]  # each bucket's start, epoch milliseconds
    accepted: list[int]  # records accepted in the bucket: the sum of the statuses
    statuses: dict[str, list[int]]  # SUCCESS, FAIL, DISCARD, CANCELED, RUNNING, WAIT
    dispatch_ms: Percentiles  # accept → first start; None: no record in the bucket started
    run_ms: Percentiles  # the last attempt's run time; None: none ended
    waiting: list[int]  # records waiting at the bucket's end (now, for the bucket holding now)


class FunctionMetric(BaseModel):
    key: str  # the function's unqualified URN
    value: int


class FunctionMetricsReportOut(BaseModel):
    values: list[FunctionMetric]
    next_marker: int
    count: int


@project_router.get(
    "/statistics", response_model=StatisticsOut, summary="ListStatistics (monitor_data)"
)
async def list_statistics(
    project_id: ProjectDep,
    services: ServicesDep,
    filter: Annotated[str, Query(max_length=32)] = "",
    period: Annotated[str, Query(max_length=16)] = "60",
) -> dict[str, Any]:
    if filter != "monitor_data":
        raise BadRequest(f"Invalid filter {filter!r}: only monitor_data is supported")
    minutes = parse_period(period)
    functions = await project_functions(services, project_id)
    return {"statistics": await services.invocations.statistics.series(functions, minutes)}


@router.get(
    "/statistics/{period}", response_model=FunctionStatisticsOut, summary="ListFunctionStatistics"
)
async def list_function_statistics(
    period: str, functions: FunctionsDep, services: ServicesDep
) -> dict[str, Any]:
    minutes = parse_period(period)
    return await services.invocations.statistics.series(functions, minutes)


@router.get(
    "/openfgs-statistics/{period}",
    response_model=AsyncSeriesOut,
    summary="ListFunctionAsyncSeries (openfgs)",
)
async def list_function_async_series(
    period: str,
    functions: FunctionsDep,
    services: ServicesDep,
    end_time: Annotated[str, Query(max_length=20)] = "",
) -> dict[str, Any]:
    minutes = parse_period(period)
    end = epoch_ms("end_time", end_time, now_ms())
    age = await event_age_ms(services, functions)
    window, buckets, waiting = await services.invocations.statistics.async_series(
        functions, minutes, end, age
    )
    return {
        "bucket_ms": window.size,
        "timestamps": list(window.starts),
        **async_values(buckets),
        "waiting": waiting,
    }


async def event_age_ms(services: Services, functions: list[Function]) -> int:
    """The longest time a record of ``functions`` may wait before it is discarded (ms)."""
    ages = [DEFAULT_EVENT_AGE_SECONDS]
    for function in functions:
        config = await services.invocations.config(function)
        if config is not None:
            ages.append(config.max_async_event_age_in_seconds)
    return max(ages) * 1000


def async_values(buckets: list[AsyncBucket]) -> dict[str, Any]:
    """The per-bucket lists of the async series from the buckets' sums."""
    return {
        "accepted": [sum(b.kinds.values()) for b in buckets],
        "statuses": {kind: [b.kinds[kind] for b in buckets] for kind in KINDS},
        "dispatch_ms": {f"p{p}": [percentile(b.dispatch, p) for b in buckets] for p in PERCENTILES},
        "run_ms": {f"p{p}": [percentile(b.run, p) for b in buckets] for p in PERCENTILES},
    }


@router.get(
    "/slareports/{period}", response_model=FunctionMetricsOut, summary="ShowFunctionMetrics"
)
async def show_function_metrics(
    period: str, functions: FunctionsDep, services: ServicesDep
) -> dict[str, Any]:
    minutes = parse_period(period)
    series = await services.invocations.statistics.series(functions, minutes)
    # Instances are this node's: the last bucket has their number now; earlier ones no data.
    instances = [{**point, "value": NO_DATA} for point in series["count"]]
    if instances:
        instances[-1]["value"] = live_instances(services, functions)
    return {**series, "instance_num": instances}


@report_router.get(
    "/report", response_model=FunctionMetricsReportOut, summary="ListFunctionAsMetric"
)
async def list_function_as_metric(
    project_id: ProjectDep,
    services: ServicesDep,
    type: Annotated[str, Query(max_length=32)] = "failcount",
    start_time: Annotated[str, Query(max_length=20)] = "",
    end_time: Annotated[str, Query(max_length=20)] = "",
    limit: Annotated[str, Query(max_length=8)] = "",
) -> dict[str, Any]:
    series = RANKED.get(type.lower())
    if series is None:
        raise BadRequest(f"Invalid type {type!r}: one of {', '.join(RANKED)}")
    end = epoch_ms("end_time", end_time, now_ms())
    begin = epoch_ms("start_time", start_time, end - DEFAULT_REPORT_MS)
    if not 0 <= end - begin <= MAX_PERIOD_MINUTES * 60_000:
        raise BadRequest("Invalid time range: start_time ≤ end_time, at most a week apart")
    top = parse_int("limit", limit, 10, 1, MAX_REPORT_LIMIT)
    region = services.settings.region
    ranked: list[tuple[int, str]] = []
    for rows in await project_function_rows(services, project_id):
        tally = await services.invocations.statistics.total(rows, begin, end)
        if tally.count:
            ranked.append((-int(tally.values()[series]), rows[0].urn(region).unqualified))
    ranked.sort()
    values = [{"key": key, "value": -value} for value, key in ranked[:top]]
    return {"values": values, "next_marker": len(values), "count": len(ranked)}


def epoch_ms(name: str, text: str, default: int) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 16):
        raise BadRequest(f"Invalid {name} {text[:20]!r}: epoch milliseconds expected")
    return int(text)


def parse_int(name: str, text: str, default: int, low: int, high: int) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not low <= int(text) <= high:
        raise BadRequest(f"Invalid {name} {text[:20]!r}: from {low} to {high}")
    return int(text)


def live_instances(services: Services, functions: list[Function]) -> int:
    region = services.settings.region
    urns = {f.urn(region).qualified(f.version) for f in functions}
    return sum(len(services.pool.instance_pids(urn)) for urn in urns)


async def project_functions(services: Services, project_id: str) -> list[Function]:
    """Every row (latest, versions, aliases) of every function of the project."""
    return [row for rows in await project_function_rows(services, project_id) for row in rows]


async def project_function_rows(services: Services, project_id: str) -> list[list[Function]]:
    """The rows (latest, versions, aliases) of each function of the project."""
    functions: list[list[Function]] = []
    marker = 0
    while True:
        page, total = await services.registry.list_functions(
            project_id, None, None, marker, FUNCTIONS_PAGE
        )
        for function in page:
            functions.append(await services.registry.qualifiers(function))
        marker += len(page)
        if not page or marker >= total:
            return functions
