"""Helpers of the async lifecycle tests: servers with chosen settings, handlers, records.

Records are observed through the API only: the attempts of the openfgs detail endpoint, the
statuses and messages of the records, and what destination functions report they received.
Function instances run as ``nobody`` when the tests run as root, so a handler that must keep
state between attempts uses a world-writable scratch directory (``scratch``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    FuncAsyncDestinationConfig,
    FuncDestinationConfig,
    UpdateFunctionAsyncInvokeConfigRequest,
    UpdateFunctionAsyncInvokeConfigRequestBody,
)

from openfgs.client import ApiFailure, FunctionGraphClient
from openfgs.models import Status
from openfgs.worker import Worker
from tests.api.conftest import ECHO_CODE, REPORTER_CODE, create_function, reported_event
from tests.support import (
    CREDENTIAL,
    PROJECT,
    LiveServer,
    database_url,
    make_settings,
    start_server,
    urn,
    wait_for,
)

__all__ = [
    "CREDENTIAL",
    "ECHO_CODE",
    "PROJECT",
    "REPORTER_CODE",
    "ApiFailure",
    "LiveServer",
    "create_function",
    "reported_event",
    "urn",
    "wait_for",
]

TERMINAL = frozenset(s.value for s in Status if s.terminal)

FAIL_ALWAYS = """\
def handler(event, context):
    raise RuntimeError("always fails: " + str(event.get("tag", "")))
"""
# Fails on the first attempt of each request and succeeds on the next: the marker file of the
# request id lives in the scratch directory named by the SCRATCH environment variable.
FAIL_ONCE = """\
import os


def handler(event, context):
    marker = os.path.join(context.getUserData("SCRATCH"), context.getRequestID())
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return {"second": True}
"""
SLEEPER = """\
import time


def handler(event, context):
    time.sleep(float(event.get("seconds", 0)))
    return {"slept": event.get("seconds", 0)}
"""
CRASHER = """\
import os


def handler(event, context):
    os._exit(3)
"""
HANGER = """\
import time


def handler(event, context):
    time.sleep(600)
"""


# -- servers and clients ----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Every lifecycle test runs on both stores: the domain must not depend on the backend."""
    name: str = request.param
    return name


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[LiveServer]:
    with database_url(backend) as url:
        yield from start_server(make_settings(tmp_path / "data", database_url=url))


@pytest.fixture
def make_server(backend: str, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers with other settings (each with its own database and data dir)."""
    with contextlib.ExitStack() as stack:
        count = 0

        def make(**overrides: Any) -> LiveServer:
            nonlocal count
            count += 1
            url = stack.enter_context(database_url(backend))
            settings = make_settings(tmp_path / f"data-{count}", database_url=url, **overrides)
            live: LiveServer = stack.enter_context(
                contextlib.contextmanager(start_server)(settings)
            )
            return live

        yield make


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory function instances (running as ``nobody``) can write to."""
    path = Path(tempfile.mkdtemp(prefix="openfgs-lifecycle-"))
    os.chmod(path, 0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def api_client(url: str) -> Iterator[FunctionGraphClient]:
    client = FunctionGraphClient(url, CREDENTIAL, timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def api(server: LiveServer) -> Iterator[FunctionGraphClient]:
    """Signed raw requests to the fixture ``server`` (for what the SDK cannot express)."""
    with api_client(server.url) as client:
        yield client


def run_burst(live: LiveServer) -> None:
    """On a server without a worker: run what is waiting and due, until nothing is left."""
    services = live.services
    worker = Worker(services.invocations, services.registry, services.pool, worker_id="burst")
    live.run(worker.run_until_idle())


# -- functions and configs --------------------------------------------------------------------


def new_function(sdk: Any, name: str, code: str, **kwargs: Any) -> str:
    """Create a function through the SDK; its ``:latest`` URN."""
    create_function(sdk, name, code, **kwargs)
    function_urn: str = urn(name)
    return function_urn


def destination(function_urn: str) -> FuncDestinationConfig:
    return FuncDestinationConfig(
        destination="FunctionGraph", param=json.dumps({"func_urn": function_urn})
    )


def put_config(sdk: Any, function_urn: str, **fields: Any) -> Any:
    """UpdateFunctionAsyncInvokeConfig; ``on_success``/``on_failure`` are destination URNs."""
    on_success = fields.pop("on_success", None)
    on_failure = fields.pop("on_failure", None)
    if on_success or on_failure:
        fields["destination_config"] = FuncAsyncDestinationConfig(
            on_success=destination(on_success) if on_success else None,
            on_failure=destination(on_failure) if on_failure else None,
        )
    body = UpdateFunctionAsyncInvokeConfigRequestBody(**fields)
    return sdk.update_function_async_invoke_config(
        UpdateFunctionAsyncInvokeConfigRequest(function_urn=function_urn, body=body)
    )


def client_error(call: Callable[[], Any]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def api_error(call: Callable[[], Any]) -> ApiFailure:
    with pytest.raises(ApiFailure) as info:
        call()
    return info.value


# -- invocations and records ------------------------------------------------------------------


def invoke_async(sdk: Any, function_urn: str, event: dict[str, Any] | None = None) -> str:
    """AsyncInvokeFunction through the SDK; the request id."""
    response = sdk.async_invoke_function(
        AsyncInvokeFunctionRequest(function_urn=function_urn, body=event or {})
    )
    assert response.status_code == 202
    request_id: str = response.request_id
    return request_id


def detail(api: FunctionGraphClient, request_id: str) -> dict[str, Any]:
    """The record with every attempt (``GET /v2/{project}/openfgs/async-invocations/{id}``)."""
    found: dict[str, Any] = api.json("GET", f"/async-invocations/{request_id}", section="openfgs")
    return found


def wait_detail(
    api: FunctionGraphClient,
    request_id: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 30,
) -> dict[str, Any]:
    """Poll the detail of ``request_id`` until ``predicate`` holds; return it."""
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        last = detail(api, request_id)
        return predicate(last)

    try:
        wait_for(check, timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(f"condition not met within {timeout} s; last: {last}") from None
    return last


def wait_terminal(api: FunctionGraphClient, request_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait_detail(api, request_id, lambda d: d["status"] in TERMINAL, timeout)


def stats(api: FunctionGraphClient, function_urn: str) -> dict[str, int]:
    found: dict[str, int] = api.json("GET", f"/functions/{function_urn}/stats", section="openfgs")
    return found


def outcomes(found: dict[str, Any]) -> list[str]:
    return [a["outcome"] for a in found["attempts"]]
