"""Retries: none without a config; with one, every failed attempt is recorded and retried."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    DeleteFunctionAsyncInvokeConfigRequest,
    ListAsyncInvocationsRequest,
)

from openfgs.client import FunctionGraphClient
from tests.support import (
    LiveServer,
    create_function,
    detail,
    sdk_client,
    urn,
    wait_detail,
    wait_for_terminal_detail,
)

from .conftest import (
    CRASHER,
    FAIL_ALWAYS,
    FAIL_ONCE,
    HANGER,
    api_client,
    invoke_async,
    outcomes,
    put_config,
)

BACKOFF = 0.05
MEMORY_HOG = """\
def handler(event, context):
    blocks = []
    while True:
        blocks.append(bytearray(64 * 1024 * 1024))
"""


@pytest.fixture
def fast(make_server: Callable[..., LiveServer]) -> LiveServer:
    """A server whose retries come after a short backoff."""
    return make_server(retry_backoff_seconds=BACKOFF, retry_backoff_max_seconds=BACKOFF)


@pytest.fixture
def fast_sdk(fast: LiveServer) -> Any:
    return sdk_client(fast.url)


@pytest.fixture
def fast_api(fast: LiveServer) -> Any:
    with api_client(fast.url) as client:
        yield client


def test_without_a_config_a_failing_handler_runs_once(sdk: Any, api: FunctionGraphClient) -> None:
    create_function(sdk, "failing", FAIL_ALWAYS)
    function_urn = urn("failing")

    found = wait_for_terminal_detail(api, invoke_async(sdk, function_urn, {"tag": "once"}))

    assert found["status"] == "FAIL"
    assert found["max_attempts"] == 1
    assert found["attempt"] == 1
    assert outcomes(found) == ["FAIL"]
    assert "always fails: once" in found["error_message"]
    assert found["error_code"] == 4200


def test_with_two_retries_an_always_failing_handler_ends_fail_after_three_attempts(
    fast_sdk: Any, fast_api: FunctionGraphClient
) -> None:
    create_function(fast_sdk, "failing", FAIL_ALWAYS)
    function_urn = urn("failing")
    put_config(fast_sdk, function_urn, max_async_retry_attempts=2)

    found = wait_for_terminal_detail(
        fast_api, invoke_async(fast_sdk, function_urn, {"tag": "thrice"})
    )

    assert found["status"] == "FAIL"
    assert found["error_code"] == 4200
    assert "always fails: thrice" in found["error_message"]
    assert found["max_attempts"] == 3
    assert found["attempt"] == 3
    assert outcomes(found) == ["RETRY", "RETRY", "FAIL"]
    assert [a["attempt"] for a in found["attempts"]] == [1, 2, 3]
    for attempt in found["attempts"]:
        assert attempt["error_code"] == 4200
        assert "RuntimeError" in attempt["error_message"]
        assert "always fails: thrice" in attempt["error_message"]
        assert attempt["worker_id"]
        assert attempt["start_time"] <= attempt["end_time"]
    assert found["attempts"][0]["end_time"] <= found["attempts"][1]["start_time"]


def test_a_handler_failing_only_its_first_attempt_ends_success_after_two(
    fast_sdk: Any, fast_api: FunctionGraphClient, scratch: Path
) -> None:
    create_function(fast_sdk, "flaky", FAIL_ONCE, user_data={"SCRATCH": str(scratch)})
    function_urn = urn("flaky")
    put_config(fast_sdk, function_urn, max_async_retry_attempts=1)

    request_id = invoke_async(fast_sdk, function_urn)
    found = wait_for_terminal_detail(fast_api, request_id)

    assert found["status"] == "SUCCESS", found
    assert found["error_code"] == 0
    assert found["error_message"] == ""
    assert outcomes(found) == ["RETRY", "SUCCESS"]
    assert "first attempt fails" in found["attempts"][0]["error_message"]
    assert found["attempts"][1]["error_code"] == 0
    assert (scratch / request_id).exists()


def test_while_waiting_for_its_retry_the_record_shows_wait_and_the_last_error(
    make_server: Callable[..., LiveServer],
) -> None:
    slow = make_server(retry_backoff_seconds=30, retry_backoff_max_seconds=30)
    sdk = sdk_client(slow.url)
    with api_client(slow.url) as api:
        create_function(sdk, "failing", FAIL_ALWAYS)
        function_urn = urn("failing")
        put_config(sdk, function_urn, max_async_retry_attempts=1)

        found = wait_detail(
            api, invoke_async(sdk, function_urn, {"tag": "wait"}), lambda d: d["attempts"]
        )

    assert found["status"] == "WAIT"
    assert found["attempt"] == 1
    assert outcomes(found) == ["RETRY"]
    assert found["error_code"] == 4200
    assert "always fails: wait" in found["error_message"]
    assert found["end_time"] == ""
    listed = sdk.list_async_invocations(
        ListAsyncInvocationsRequest(function_urn=function_urn, request_id=found["request_id"])
    ).invocations
    assert [(r.status, r.error_code) for r in listed] == [("WAIT", 4200)]
    assert "always fails: wait" in listed[0].error_message


@pytest.mark.timeout(60)  # two attempts of a 3 s handler timeout, and their restarts
def test_a_timed_out_attempt_is_retried(fast_sdk: Any, fast_api: FunctionGraphClient) -> None:
    create_function(fast_sdk, "hanging", HANGER, timeout=3)
    function_urn = urn("hanging")
    put_config(fast_sdk, function_urn, max_async_retry_attempts=1)

    found = wait_for_terminal_detail(fast_api, invoke_async(fast_sdk, function_urn), timeout=60)

    assert found["status"] == "FAIL"
    assert found["error_code"] == 4201
    assert "timed out" in found["error_message"]
    assert outcomes(found) == ["RETRY", "FAIL"]
    assert [a["error_code"] for a in found["attempts"]] == [4201, 4201]


def test_a_crashed_instance_is_retried(fast_sdk: Any, fast_api: FunctionGraphClient) -> None:
    create_function(fast_sdk, "crashing", CRASHER)
    function_urn = urn("crashing")
    put_config(fast_sdk, function_urn, max_async_retry_attempts=2)

    found = wait_for_terminal_detail(fast_api, invoke_async(fast_sdk, function_urn))

    assert found["status"] == "FAIL"
    assert found["error_code"] == 4202
    assert "3" in found["error_message"]
    assert outcomes(found) == ["RETRY", "RETRY", "FAIL"]
    assert {a["error_code"] for a in found["attempts"]} == {4202}


def test_an_out_of_memory_attempt_is_retried(fast_sdk: Any, fast_api: FunctionGraphClient) -> None:
    create_function(fast_sdk, "hungry", MEMORY_HOG)
    function_urn = urn("hungry")
    put_config(fast_sdk, function_urn, max_async_retry_attempts=1)

    found = wait_for_terminal_detail(fast_api, invoke_async(fast_sdk, function_urn), timeout=60)

    assert found["status"] == "FAIL"
    assert found["error_code"] == 4203
    assert outcomes(found) == ["RETRY", "FAIL"]


def test_without_a_config_a_crash_is_not_retried(sdk: Any, api: FunctionGraphClient) -> None:
    create_function(sdk, "crashing", CRASHER)
    function_urn = urn("crashing")

    found = wait_for_terminal_detail(api, invoke_async(sdk, function_urn))

    assert found["status"] == "FAIL"
    assert found["error_code"] == 4202
    assert outcomes(found) == ["FAIL"]


def test_zero_retries_in_a_config_means_one_attempt(
    fast_sdk: Any, fast_api: FunctionGraphClient
) -> None:
    create_function(fast_sdk, "failing", FAIL_ALWAYS)
    function_urn = urn("failing")
    put_config(fast_sdk, function_urn, max_async_retry_attempts=0)

    found = wait_for_terminal_detail(fast_api, invoke_async(fast_sdk, function_urn))

    assert found["status"] == "FAIL"
    assert found["max_attempts"] == 1
    assert outcomes(found) == ["FAIL"]


def test_limits_are_taken_when_a_request_is_accepted(
    make_server: Callable[..., LiveServer],
) -> None:
    idle = make_server(worker=False)
    sdk = sdk_client(idle.url)
    with api_client(idle.url) as api:
        create_function(sdk, "failing", FAIL_ALWAYS)
        function_urn = urn("failing")
        before = invoke_async(sdk, function_urn)
        put_config(sdk, function_urn, max_async_retry_attempts=3)
        after = invoke_async(sdk, function_urn)

        assert detail(api, before)["max_attempts"] == 1
        assert detail(api, after)["max_attempts"] == 4


def test_after_the_config_is_deleted_failures_are_not_retried(
    fast_sdk: Any, fast_api: FunctionGraphClient
) -> None:
    create_function(fast_sdk, "failing", FAIL_ALWAYS)
    function_urn = urn("failing")
    put_config(fast_sdk, function_urn, max_async_retry_attempts=3)
    fast_sdk.delete_function_async_invoke_config(
        DeleteFunctionAsyncInvokeConfigRequest(function_urn=function_urn)
    )

    found = wait_for_terminal_detail(fast_api, invoke_async(fast_sdk, function_urn))

    assert found["status"] == "FAIL"
    assert found["max_attempts"] == 1
    assert outcomes(found) == ["FAIL"]
