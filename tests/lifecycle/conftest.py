"""Helpers of the async lifecycle tests: the backends, handlers, destinations and records.

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
from openfgs.worker import Worker
from tests.support import BACKENDS, CREDENTIAL, LiveServer

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


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every lifecycle test runs on both stores: the domain must not depend on the backend."""
    name: str = request.param
    return name


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


def stats(api: FunctionGraphClient, function_urn: str) -> dict[str, int]:
    found: dict[str, int] = api.json("GET", f"/functions/{function_urn}/stats", section="openfgs")
    return found


def outcomes(found: dict[str, Any]) -> list[str]:
    return [a["outcome"] for a in found["attempts"]]
