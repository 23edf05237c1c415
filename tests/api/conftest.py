"""Helpers of the HTTP API tests: functions made through the SDK, signed raw requests, records.

The fixtures ``server`` and ``sdk``, the constants and the helpers ``sdk_client``, ``urn`` and
``wait_for`` come from ``tests/conftest.py``; this module re-exports them for the test modules.
"""

from __future__ import annotations

import base64
import io
import json
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    FuncCode,
    ListAsyncInvocationsRequest,
    StrategyConfig,
    UpdateFunctionConfigRequest,
    UpdateFunctionConfigRequestBody,
)

from openfgs.auth.signing import sign_headers
from openfgs.models import Credential, NewInvocation, Status
from tests.support import CREDENTIAL, OTHER, PROJECT, LiveServer, sdk_client, urn, wait_for

__all__ = [
    "CREDENTIAL",
    "OTHER",
    "PROJECT",
    "LiveServer",
    "RawApi",
    "b64",
    "create_function",
    "function_path",
    "insert_records",
    "record_status",
    "reported_event",
    "sdk_client",
    "set_concurrency",
    "urn",
    "wait_for",
    "wait_for_terminal",
    "zip_of",
]

FAR_FUTURE_MS = 2**52  # available_at of inserted rows: the worker never claims them

ECHO_CODE = """\
import json


def handler(event, context):
    print("echo handler saw", json.dumps(event))
    return {"echo": event}
"""
# Async results are not exposed by the API, but error messages are: this handler reports the
# event it received as its failure message, so tests can see exactly what reached it.
REPORTER_CODE = """\
import json


class EventReport(Exception):
    pass


def handler(event, context):
    raise EventReport("EVENT=" + json.dumps(event, sort_keys=True))
"""


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def create_function(
    sdk: Any,
    name: str,
    code: str = ECHO_CODE,
    *,
    timeout: int = 30,
    user_data: dict[str, str] | None = None,
    **fields: Any,
) -> Any:
    """Create a Python function with inline ``index.py`` through the SDK; return the response."""
    body = CreateFunctionRequestBody(
        func_name=name,
        package="default",
        runtime="Python3.9",
        timeout=timeout,
        handler="index.handler",
        memory_size=128,
        code_type="inline",
        func_code=FuncCode(file=b64(textwrap.dedent(code))),
        user_data=json.dumps(user_data) if user_data is not None else None,
        **fields,
    )
    return sdk.create_function(CreateFunctionRequest(body=body))


def set_concurrency(sdk: Any, name: str, concurrency: int) -> None:
    """Set a function's ``strategy_config.concurrency`` (0 is FunctionGraph's "disabled")."""
    body = UpdateFunctionConfigRequestBody(
        func_name=name,
        runtime="Python3.9",
        timeout=30,
        handler="index.handler",
        memory_size=128,
        strategy_config=StrategyConfig(concurrency=concurrency),
    )
    sdk.update_function_config(UpdateFunctionConfigRequest(function_urn=urn(name), body=body))


def function_path(function_urn: str, suffix: str = "", project: str = PROJECT) -> str:
    """The path of a function resource, the URN percent-encoded as the SDK does."""
    return f"/v2/{project}/fgs/functions/{quote(function_urn, safe='')}{suffix}"


class RawApi:
    """Signed raw HTTP requests, for what the SDK cannot express (bad bodies, bad signatures)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60)

    def build(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
        credential: Credential | None = CREDENTIAL,
        now: datetime | None = None,
    ) -> httpx.Request:
        """A request signed like the SDK signs it (unsigned when ``credential`` is None)."""
        extra = {"Content-Type": "application/json", **(headers or {})}
        request = self.http.build_request(method, path, params=params, content=content)
        if credential is None:
            request.headers.update(extra)
            return request
        raw_path, _, query = request.url.raw_path.decode().partition("?")
        to_sign = {
            **extra,
            "Host": request.url.netloc.decode(),
            "X-Project-Id": credential.project_id,
        }
        signed = sign_headers(
            method,
            raw_path,
            query,
            to_sign,
            content,
            credential.access_key,
            credential.secret_key,
            now=now,
        )
        request.headers.update(signed)
        return request

    def send(self, request: httpx.Request) -> httpx.Response:
        return self.http.send(request)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.send(self.build(method, path, **kwargs))

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def raw(server: LiveServer) -> Iterator[RawApi]:
    client = RawApi(server.url)
    yield client
    client.close()


@pytest.fixture
def echo_urn(sdk: Any) -> str:
    """The ``:latest`` URN of a function that returns ``{"echo": event}``."""
    create_function(sdk, "echo")
    function_urn: str = urn("echo")
    return function_urn


@pytest.fixture
def reporter_urn(sdk: Any) -> str:
    """The ``:latest`` URN of a function that fails with the event it received."""
    create_function(sdk, "reporter", REPORTER_CODE)
    function_urn: str = urn("reporter")
    return function_urn


def reported_event(record: Any) -> Any:
    """The event a reporter function received, read from its FAIL record."""
    assert record.status == "FAIL", record
    assert "EventReport" in record.error_message, record
    return json.loads(record.error_message.split("EVENT=", 1)[1])


def insert_records(
    server: LiveServer, name: str, start_times_ms: list[int], *, function_id: int | None = None
) -> list[str]:
    """Insert WAIT rows (never claimed) at the given start times; return their request ids."""
    if function_id is None:
        function = server.run(server.services.store.get_function(PROJECT, "default", name))
        assert function is not None, name
        function_id = function.id
    ids = []
    for start in start_times_ms:
        request_id = str(uuid.uuid4())
        server.run(
            server.services.store.insert_invocation(
                NewInvocation(
                    request_id=request_id,
                    function_id=function_id,
                    version="latest",
                    payload=b"{}",
                    start_time=start,
                    available_at=FAR_FUTURE_MS,
                    expires_at=FAR_FUTURE_MS,
                )
            )
        )
        ids.append(request_id)
    return ids


def record_status(sdk: Any, function_urn: str, request_id: str) -> Any:
    """The one record of ``request_id`` (or None), read through ListAsyncInvocations."""
    response = sdk.list_async_invocations(
        ListAsyncInvocationsRequest(function_urn=function_urn, request_id=request_id)
    )
    records = response.invocations or []
    assert len(records) <= 1, records
    return records[0] if records else None


def wait_for_terminal(sdk: Any, function_urn: str, request_id: str, timeout: float = 30) -> Any:
    """Poll until the record of ``request_id`` is terminal; return it."""
    terminal = {s.value for s in Status if s.terminal}

    def done() -> Any:
        record = record_status(sdk, function_urn, request_id)
        return record if record is not None and record.status in terminal else None

    return wait_for(done, timeout)
