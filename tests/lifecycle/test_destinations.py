"""Destinations: the destination function receives FunctionGraph's destination event.

The sink fails with the event it received as its error message (``REPORTER_CODE``), so its
FAIL record, read through ListAsyncInvocations, shows exactly what reached it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    CancelAsyncInvocationRequest,
    CancelAsyncInvocationRequestBody,
    DeleteFunctionRequest,
    ListAsyncInvocationsRequest,
)

from tests.support import (
    ECHO_CODE,
    REPORTER_CODE,
    TERMINAL,
    LiveServer,
    create_function,
    reported_event,
    sdk_client,
    urn,
    wait_detail,
    wait_for,
    wait_for_terminal_detail,
)

from .conftest import FAIL_ALWAYS, SLEEPER, api_client, invoke_async, put_config, stats

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def records(sdk: Any, function_urn: str) -> list[Any]:
    response = sdk.list_async_invocations(
        ListAsyncInvocationsRequest(function_urn=function_urn, limit="500")
    )
    found: list[Any] = response.invocations or []
    return found


def received_event(sdk: Any, sink_urn: str, timeout: float = 30) -> Any:
    """The one event the reporter sink received (waits for its record to end)."""

    def ended() -> Any:
        found = records(sdk, sink_urn)
        return found if found and all(r.status in TERMINAL for r in found) else None

    found = wait_for(ended, timeout)
    assert len(found) == 1, found
    return reported_event(found[0])


def check_timestamp(text: str) -> None:
    assert TIMESTAMP.fullmatch(text), text
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(moment.timestamp() - time.time()) < 120


@pytest.fixture
def fast(make_server: Callable[..., LiveServer]) -> LiveServer:
    return make_server(retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.05)


def test_on_success_sends_the_destination_event(sdk: Any, api: Any) -> None:
    create_function(sdk, "source", ECHO_CODE)
    source = urn("source")
    create_function(sdk, "sink", REPORTER_CODE)
    sink = urn("sink")
    put_config(sdk, source, on_success=sink)

    request_id = invoke_async(sdk, source, {"k": "v", "n": [1, 2]})
    assert wait_for_terminal_detail(api, request_id)["status"] == "SUCCESS"
    event = received_event(sdk, sink)

    assert set(event) == {
        "timestamp",
        "request_context",
        "request_payload",
        "response_context",
        "response_payload",
    }
    check_timestamp(event["timestamp"])
    assert event["request_context"] == {
        "request_id": request_id,
        "function_urn": urn("source"),
        "condition": "Success",
        "approximate_invoke_count": 1,
    }
    assert event["request_payload"] == {"k": "v", "n": [1, 2]}
    assert event["response_context"] == {"status_code": 200, "function_error": ""}
    assert event["response_payload"] == {"echo": {"k": "v", "n": [1, 2]}}


def test_on_success_does_not_fire_on_failure(sdk: Any, api: Any) -> None:
    create_function(sdk, "source", FAIL_ALWAYS)
    source = urn("source")
    create_function(sdk, "sink", REPORTER_CODE)
    sink = urn("sink")
    put_config(sdk, source, on_success=sink, max_async_retry_attempts=0)

    request_id = invoke_async(sdk, source)

    assert wait_for_terminal_detail(api, request_id)["status"] == "FAIL"
    assert stats(api, sink)["accepted"] == 0


def test_on_failure_after_retries_says_retries_exhausted(fast: LiveServer) -> None:
    sdk = sdk_client(fast.url)
    create_function(sdk, "source", FAIL_ALWAYS)
    source = urn("source")
    create_function(sdk, "sink", REPORTER_CODE)
    sink = urn("sink")
    put_config(sdk, source, on_failure=sink, on_success=sink, max_async_retry_attempts=2)

    request_id = invoke_async(sdk, source, {"tag": "exhausted"})
    event = received_event(sdk, sink)

    check_timestamp(event["timestamp"])
    context = event["request_context"]
    assert context["request_id"] == request_id
    assert context["function_urn"] == urn("source")
    assert context["condition"] == "RetriesExhausted"
    assert context["approximate_invoke_count"] == 3
    assert event["request_payload"] == {"tag": "exhausted"}
    assert event["response_context"]["status_code"] == 500
    assert "always fails: exhausted" in event["response_context"]["function_error"]
    assert event["response_payload"]["errorCode"] == 4200
    assert "always fails: exhausted" in event["response_payload"]["errorMessage"]


def test_on_failure_of_a_single_attempt_says_failure(sdk: Any, api: Any) -> None:
    create_function(sdk, "source", FAIL_ALWAYS)
    source = urn("source")
    create_function(sdk, "sink", REPORTER_CODE)
    sink = urn("sink")
    put_config(sdk, source, on_failure=sink, max_async_retry_attempts=0)

    request_id = invoke_async(sdk, source, {"tag": "once"})
    event = received_event(sdk, sink)

    assert event["request_context"]["request_id"] == request_id
    assert event["request_context"]["condition"] == "Failure"
    assert event["request_context"]["approximate_invoke_count"] == 1
    assert event["response_context"]["status_code"] == 500


def test_on_failure_of_an_expired_event_says_event_age_exceeded(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(worker_concurrency=1)
    sdk = sdk_client(live.url)
    with api_client(live.url) as api:
        create_function(sdk, "source", SLEEPER)
        source = urn("source")
        create_function(sdk, "sink", REPORTER_CODE)
        sink = urn("sink")
        put_config(sdk, source, on_failure=sink, max_async_event_age_in_seconds=1)
        slow = invoke_async(sdk, source, {"seconds": 3})
        wait_detail(api, slow, lambda d: d["status"] == "RUNNING")
        late = invoke_async(sdk, source, {"seconds": 0, "late": True})

        assert wait_for_terminal_detail(api, late)["status"] == "DISCARD"
        event = received_event(sdk, sink)

    assert event["request_context"]["request_id"] == late
    assert event["request_context"]["condition"] == "EventAgeExceeded"
    assert event["request_payload"] == {"seconds": 0, "late": True}
    assert event["response_payload"]["errorCode"] == 4211
    assert event["response_context"]["status_code"] == 500


def test_on_failure_of_a_canceled_running_request_says_canceled(sdk: Any, api: Any) -> None:
    create_function(sdk, "source", SLEEPER, timeout=60)
    source = urn("source")
    create_function(sdk, "sink", REPORTER_CODE)
    sink = urn("sink")
    put_config(sdk, source, on_failure=sink)
    request_id = invoke_async(sdk, source, {"seconds": 30})
    wait_detail(api, request_id, lambda d: d["status"] == "RUNNING")

    sdk.cancel_async_invocation(
        CancelAsyncInvocationRequest(
            function_urn=source, body=CancelAsyncInvocationRequestBody(request_id=request_id)
        )
    )
    event = received_event(sdk, sink)

    assert event["request_context"]["request_id"] == request_id
    assert event["request_context"]["condition"] == "Canceled"
    assert event["response_payload"]["errorCode"] == 4208


def test_on_failure_of_a_canceled_waiting_request_is_accepted(
    make_server: Callable[..., LiveServer],
) -> None:
    idle = make_server(worker=False)
    sdk = sdk_client(idle.url)
    with api_client(idle.url) as api:
        create_function(sdk, "source", ECHO_CODE)
        source = urn("source")
        create_function(sdk, "sink", REPORTER_CODE)
        sink = urn("sink")
        put_config(sdk, source, on_failure=sink)
        request_id = invoke_async(sdk, source)

        sdk.cancel_async_invocation(
            CancelAsyncInvocationRequest(
                function_urn=source, body=CancelAsyncInvocationRequestBody(request_id=request_id)
            )
        )

        assert stats(api, source)["DISCARD"] == 1
        assert stats(api, sink)["WAIT"] == 1


def test_a_destination_loop_stops_after_eight_hops(sdk: Any, api: Any) -> None:
    create_function(sdk, "loop", ECHO_CODE)
    loop = urn("loop")
    put_config(sdk, loop, on_success=loop)

    invoke_async(sdk, loop, {"hop": 0})

    def settled() -> dict[str, int] | None:
        counts = stats(api, loop)
        return counts if counts["WAIT"] + counts["RUNNING"] == 0 else None

    counts = wait_for(settled, 60)
    assert counts["SUCCESS"] == 9, counts  # the original request and 8 hops
    assert counts["accepted"] == 9
    assert len(records(sdk, loop)) == 9


def test_a_destination_deleted_after_the_config_is_skipped(sdk: Any, api: Any) -> None:
    create_function(sdk, "source", ECHO_CODE)
    source = urn("source")
    create_function(sdk, "sink", REPORTER_CODE)
    sink = urn("sink")
    put_config(sdk, source, on_success=sink)
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("sink", qualifier=None)))

    found = wait_for_terminal_detail(api, invoke_async(sdk, source))

    assert found["status"] == "SUCCESS"
    assert stats(api, source)["accepted"] == 1
