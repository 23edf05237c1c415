"""CancelAsyncInvocation: WAIT becomes DISCARD, RUNNING is stopped and FAIL; both 4208."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    CancelAsyncInvocationRequest,
    CancelAsyncInvocationRequestBody,
)

from tests.support import (
    ECHO_CODE,
    LiveServer,
    create_function,
    detail,
    sdk_client,
    urn,
    wait_detail,
    wait_for_terminal_detail,
)

from .conftest import (
    FAIL_ALWAYS,
    SLEEPER,
    api_client,
    client_error,
    invoke_async,
    outcomes,
    put_config,
)

CANCELED = "function invocation canceled"


def cancel(sdk: Any, function_urn: str, request_id: str, kind: str | None = "force") -> Any:
    return sdk.cancel_async_invocation(
        CancelAsyncInvocationRequest(
            function_urn=function_urn,
            body=CancelAsyncInvocationRequestBody(request_id=request_id, type=kind),
        )
    )


@pytest.fixture
def idle(make_server: Callable[..., LiveServer]) -> LiveServer:
    """A server without a worker: accepted requests stay WAIT."""
    return make_server(worker=False)


@pytest.mark.parametrize("kind", ["force", "recursive", None])
def test_a_waiting_request_is_discarded(idle: LiveServer, kind: str | None) -> None:
    sdk = sdk_client(idle.url)
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    request_id = invoke_async(sdk, function_urn)
    other = invoke_async(sdk, function_urn)

    response = cancel(sdk, function_urn, request_id, kind)

    assert response.status_code == 200
    with api_client(idle.url) as api:
        found = detail(api, request_id)
        assert found["status"] == "DISCARD"
        assert found["error_code"] == 4208
        assert found["error_message"] == CANCELED
        assert found["end_time"]
        assert detail(api, other)["status"] == "WAIT"


def test_a_running_request_is_stopped_quickly_and_fails(sdk: Any, api: Any) -> None:
    create_function(sdk, "sleepy", SLEEPER, timeout=60)
    function_urn = urn("sleepy")
    request_id = invoke_async(sdk, function_urn, {"seconds": 30})
    wait_detail(api, request_id, lambda d: d["status"] == "RUNNING")

    started = time.monotonic()
    assert cancel(sdk, function_urn, request_id).status_code == 200
    found = wait_for_terminal_detail(api, request_id, timeout=20)

    assert time.monotonic() - started < 10
    assert found["status"] == "FAIL"
    assert found["error_code"] == 4208
    assert found["error_message"] == CANCELED
    assert outcomes(found) == ["FAIL"]


def test_a_canceled_running_request_is_not_retried(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(retry_backoff_seconds=0.05)
    sdk = sdk_client(live.url)
    with api_client(live.url) as api:
        create_function(sdk, "sleepy", SLEEPER, timeout=60)
        function_urn = urn("sleepy")
        put_config(sdk, function_urn, max_async_retry_attempts=3)
        request_id = invoke_async(sdk, function_urn, {"seconds": 30})
        wait_detail(api, request_id, lambda d: d["status"] == "RUNNING")

        cancel(sdk, function_urn, request_id)
        found = wait_for_terminal_detail(api, request_id, timeout=20)

    assert found["status"] == "FAIL"
    assert found["error_code"] == 4208
    assert outcomes(found) == ["FAIL"]


def test_canceling_an_ended_request_is_invalid(idle: LiveServer) -> None:
    sdk = sdk_client(idle.url)
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    request_id = invoke_async(sdk, function_urn)
    cancel(sdk, function_urn, request_id)

    error = client_error(lambda: cancel(sdk, function_urn, request_id))

    assert error.status_code == 400
    assert error.error_code == "FSS.0400"
    assert "Invalid RequestId" in error.error_msg


def test_canceling_a_finished_request_is_invalid(sdk: Any, api: Any) -> None:
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    request_id = invoke_async(sdk, function_urn)
    assert wait_for_terminal_detail(api, request_id)["status"] == "SUCCESS"

    error = client_error(lambda: cancel(sdk, function_urn, request_id))

    assert error.status_code == 400
    assert error.error_code == "FSS.0400"
    assert detail(api, request_id)["status"] == "SUCCESS"


def test_canceling_an_unknown_request_is_invalid(idle: LiveServer) -> None:
    sdk = sdk_client(idle.url)
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")

    error = client_error(lambda: cancel(sdk, function_urn, str(uuid.uuid4())))

    assert error.status_code == 400
    assert error.error_code == "FSS.0400"
    assert "Invalid RequestId" in error.error_msg


def test_canceling_a_request_of_another_function_is_invalid(idle: LiveServer) -> None:
    sdk = sdk_client(idle.url)
    create_function(sdk, "first", ECHO_CODE)
    first = urn("first")
    create_function(sdk, "second", ECHO_CODE)
    second = urn("second")
    request_id = invoke_async(sdk, first)

    error = client_error(lambda: cancel(sdk, second, request_id))

    assert error.status_code == 400
    assert error.error_code == "FSS.0400"
    with api_client(idle.url) as api:
        assert detail(api, request_id)["status"] == "WAIT"


def test_cancel_of_an_unknown_function_is_not_found(idle: LiveServer) -> None:
    sdk = sdk_client(idle.url)

    error = client_error(lambda: cancel(sdk, urn("missing"), str(uuid.uuid4())))

    assert error.status_code == 404


def test_a_request_waiting_for_its_retry_is_discarded(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(retry_backoff_seconds=60, retry_backoff_max_seconds=60)
    sdk = sdk_client(live.url)
    with api_client(live.url) as api:
        create_function(sdk, "failing", FAIL_ALWAYS)
        function_urn = urn("failing")
        put_config(sdk, function_urn, max_async_retry_attempts=2)
        request_id = invoke_async(sdk, function_urn)
        wait_detail(api, request_id, lambda d: d["status"] == "WAIT" and d["attempts"])

        cancel(sdk, function_urn, request_id)
        found = detail(api, request_id)

    assert found["status"] == "DISCARD"
    assert found["error_code"] == 4208
    assert found["error_message"] == CANCELED
    assert outcomes(found)[0] == "RETRY"
