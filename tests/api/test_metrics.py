"""``GET /metrics``: a known workload counted as the records say, the fast routes counted,
the bearer token enforced, labels bounded whatever the paths."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    ListAsyncInvocationsRequest,
    ListFunctionStatisticsRequest,
)
from prometheus_client.parser import text_string_to_metric_families

from openfgs.api import create_app
from openfgs.api.observe import metrics_app, observed
from openfgs.api.server import server_config
from openfgs.errors import Unauthorized
from openfgs.models import NewInvocation, now_ms
from openfgs.services import Services
from openfgs.settings import Settings
from tests.api.conftest import (
    insert_records,
)
from tests.support import (
    PROJECT,
    REPORTER_CODE,
    LiveServer,
    _Server,
    create_function,
    database_url,
    make_settings,
    sdk_client,
    urn,
    wait_for,
    wait_for_terminal_record,
)

ACCEPT_ROUTE = "/v2/{project_id}/fgs/functions/{function_urn}/invocations-async"
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
LIST_ROUTE = "/v2/{project_id}/fgs/functions/{function_urn}/async-invocations"


def start_observed(settings: Settings) -> Iterator[LiveServer]:
    """A live server as ``openfgs serve`` builds it: the observability layer outermost."""
    services = Services.build(settings)
    app = create_app(services, outer=[observed(services)])
    server = _Server(server_config(app, settings, host="127.0.0.1", log_level="warning"))
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive())
    assert server.started, "server did not start"
    try:
        yield LiveServer(f"http://127.0.0.1:{settings.port}", services, settings, loops[0])
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    with database_url(request.param) as url:
        yield from start_observed(make_settings(tmp_path / "data", database_url=url))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from start_observed(make_settings(tmp_path / "data"))


def scrape(server: LiveServer, **headers: str) -> dict[str, list[Any]]:
    """The samples of each family of ``/metrics``, by sample name."""
    response = httpx.get(f"{server.url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 without any)."""
    return float(
        sum(
            s.value
            for s in samples.get(name, [])
            if all(s.labels.get(k) == v for k, v in labels.items())
        )
    )


def run_workload(sdk: Any, function_urn: str, events: int) -> list[str]:
    ids = [
        sdk.async_invoke_function(
            AsyncInvokeFunctionRequest(function_urn=function_urn, body={"n": n})
        ).request_id
        for n in range(events)
    ]
    for request_id in ids:
        wait_for_terminal_record(sdk, function_urn, request_id)
    return ids


def record_statuses(sdk: Any, function_urn: str) -> dict[str, int]:
    records = sdk.list_async_invocations(
        ListAsyncInvocationsRequest(function_urn=function_urn, limit="500")
    ).invocations
    statuses: dict[str, int] = {}
    for record in records or []:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    return statuses


def test_counters_match_the_records(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    create_function(sdk, "reporter", REPORTER_CODE)
    run_workload(sdk, urn("echo"), 3)
    run_workload(sdk, urn("reporter"), 2)

    samples = scrape(any_server)
    for name, events in (("echo", 3), ("reporter", 2)):
        labels = {"project": PROJECT, "function": f"{name}:latest"}
        assert value(samples, "openfgs_async_accepted_total", **labels) == events
        for status, count in record_statuses(sdk, urn(name)).items():
            finished = value(samples, "openfgs_async_finished_total", **labels, status=status)
            assert finished == count, (name, status)
        assert value(samples, "openfgs_async_finished_total", **labels) == events
        assert value(samples, "openfgs_invocation_duration_seconds_count", **labels) == events
    assert value(samples, "openfgs_async_finished_total", status="FAIL") == 2
    assert value(samples, "openfgs_dispatch_seconds_count") == 5
    assert value(samples, "openfgs_dispatch_seconds_bucket", le="+Inf") == 5

    # The fast routes, answered ahead of FastAPI, are counted under their templates.
    accepts = value(
        samples, "openfgs_http_requests_total", route=ACCEPT_ROUTE, method="POST", status="202"
    )
    assert accepts == 5
    assert value(samples, "openfgs_http_requests_total", route=LIST_ROUTE, method="GET") > 0
    assert value(samples, "openfgs_http_request_duration_seconds_count", route=ACCEPT_ROUTE) == 5
    assert {s.labels["state"] for s in samples["openfgs_instances"]} == {
        "starting",
        "busy",
        "idle",
    }


def test_waiting_gauges_come_from_the_store(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    insert_records(any_server, "echo", [now_ms() - 30_000, now_ms() - 5_000, now_ms()])

    samples = scrape(any_server)
    labels = {"project": PROJECT, "function": "echo:latest"}
    assert value(samples, "openfgs_async_waiting", **labels) == 3
    assert 30 <= value(samples, "openfgs_async_oldest_waiting_seconds", **labels) < 300


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LiveServer]:
    yield from start_observed(make_settings(tmp_path / "data", metrics_token="scrape-token-1"))


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wrong", "Basic scrape-token-1", "Bearer x" * 9]
)
def test_the_bearer_token_is_enforced(guarded: LiveServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.get(f"{guarded.url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 401
    # The error body of every other authentication failure (FunctionGraph's APIGW.0301).
    assert response.json()["error_code"] == Unauthorized.error_code
    assert response.json()["error_msg"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_right_token_is_let_in(guarded: LiveServer) -> None:
    httpx.get(f"{guarded.url}/metrics", timeout=30)  # refused, and counted
    samples = scrape(guarded, Authorization="Bearer scrape-token-1")
    assert value(samples, "openfgs_http_requests_total", route="/metrics", status="401") == 1
    assert "openfgs_instances" in samples


def test_labels_stay_bounded_for_random_paths(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(40):
            client.get(f"/{uuid.uuid4().hex}/{uuid.uuid4().hex}")
            client.request("BREW", f"/x/{uuid.uuid4().hex}")
            client.get(f"/v2/{PROJECT}/fgs/functions/{uuid.uuid4().hex}/nothing-here")

    samples = scrape(server)
    routes = {s.labels["route"] for s in samples["openfgs_http_requests_total"]}
    methods = {s.labels["method"] for s in samples["openfgs_http_requests_total"]}
    assert "unmatched" in routes
    assert all("{" in route or route in ("unmatched", "/metrics") for route in routes), routes
    assert len(routes) <= 3
    assert methods <= {"GET", "OTHER"}
    unmatched = value(samples, "openfgs_http_requests_total", route="unmatched")
    assert unmatched >= 80


def test_the_dashboard_uses_exported_series(server: LiveServer) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set(re.findall(r"openfgs_[a-z_]+", " ".join(exprs)))
    response = httpx.get(f"{server.url}/metrics", timeout=30)
    declared = set(re.findall(r"^# TYPE (openfgs_[a-z_]+)", response.text, re.MULTILINE))
    suffixes = ("_total", "_bucket", "_count", "_sum")
    exported = declared | {name + suffix for name in declared for suffix in suffixes}
    assert used and used <= exported, used - exported


def test_a_worker_node_serves_only_metrics(guarded: LiveServer) -> None:
    app = metrics_app(guarded.services)

    async def get(path: str, **headers: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=guarded.url) as client:
            return await client.get(path, headers=headers)

    answer = guarded.run(get("/metrics", Authorization="Bearer scrape-token-1"))
    assert answer.status_code == 200
    assert "openfgs_instances" in answer.text
    assert guarded.run(get("/metrics")).status_code == 401
    missing = guarded.run(get("/v2/anything"))
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "FSS.0404"


def test_expired_records_count_as_discarded_and_rejected(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "echo")
    function = any_server.run(any_server.services.registry.resolve(PROJECT, urn("echo")))
    now = now_ms()
    expired = NewInvocation(
        request_id=str(uuid.uuid4()),
        function_id=function.id,
        version="latest",
        payload=b"{}",
        start_time=now - 5_000,
        available_at=now - 5_000,
        expires_at=now - 1_000,
    )
    any_server.run(any_server.services.store.insert_invocation(expired))
    assert wait_for_terminal_record(sdk, urn("echo"), expired.request_id).status == "DISCARD"

    samples = scrape(any_server)
    labels = {"project": PROJECT, "function": "echo:latest", "status": "DISCARD"}
    assert value(samples, "openfgs_async_finished_total", **labels) == 1
    statistics = sdk.list_function_statistics(
        ListFunctionStatisticsRequest(func_urn=urn("echo"), period="2")
    )
    assert sum(p.value for p in statistics.reject_count if p.value > 0) == 1
    assert all(p.value == -1 for p in statistics.duration)  # it never ran
