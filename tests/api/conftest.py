"""Helpers of the HTTP API tests: signed raw requests, code archives, records put in place.

Fixtures and helpers every folder uses (``server``, ``sdk``, ``create_function``, ``urn``,
``wait_for`` …) live in ``tests/conftest.py`` and ``tests/support.py``.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    StrategyConfig,
    UpdateFunctionConfigRequest,
    UpdateFunctionConfigRequestBody,
)

from openfgs.auth.signing import sign_headers
from openfgs.models import Credential, NewInvocation
from tests.support import (
    CREDENTIAL,
    PROJECT,
    REPORTER_CODE,
    LiveServer,
    create_function,
    urn,
)

FAR_FUTURE_MS = 2**52  # available_at of inserted rows: the worker never claims them


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


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
    return urn("echo")


@pytest.fixture
def reporter_urn(sdk: Any) -> str:
    """The ``:latest`` URN of a function that fails with the event it received."""
    create_function(sdk, "reporter", REPORTER_CODE)
    return urn("reporter")


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
