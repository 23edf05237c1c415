"""Backpressure (429 past the waiting limit) and the per-function stats endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    CancelAsyncInvocationRequest,
    CancelAsyncInvocationRequestBody,
)

from tests.api.conftest import RawApi, function_path
from tests.support import (
    ECHO_CODE,
    TERMINAL,
    LiveServer,
    create_function,
    sdk_client,
    urn,
    wait_for,
)

from .conftest import (
    FAIL_ALWAYS,
    api_client,
    api_error,
    client_error,
    invoke_async,
    run_burst,
    stats,
)


@pytest.fixture
def limited(make_server: Callable[..., LiveServer]) -> LiveServer:
    """No worker, at most 3 waiting records per function."""
    return make_server(worker=False, max_waiting_per_function=3)


@pytest.fixture
def raw_limited(limited: LiveServer) -> Iterator[RawApi]:
    client = RawApi(limited.url)
    yield client
    client.close()


def raw_invoke(raw: RawApi, function_urn: str) -> httpx.Response:
    return raw.call("POST", function_path(function_urn, "/invocations-async"), content=b"{}")


def test_the_fourth_waiting_invoke_answers_429_with_retry_after(
    limited: LiveServer, raw_limited: RawApi
) -> None:
    sdk = sdk_client(limited.url)
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    for _ in range(3):
        invoke_async(sdk, function_urn)

    refused = raw_invoke(raw_limited, function_urn)

    assert refused.status_code == 429, refused.text
    assert refused.json()["error_code"] == "FSS.0429"
    assert refused.headers["Retry-After"] == "1"
    error = client_error(lambda: invoke_async(sdk, function_urn))
    assert error.status_code == 429
    assert error.error_code == "FSS.0429"
    with api_client(limited.url) as api:
        assert stats(api, function_urn)["WAIT"] == 3


def test_the_limit_is_per_function(limited: LiveServer) -> None:
    sdk = sdk_client(limited.url)
    create_function(sdk, "full", ECHO_CODE)
    full = urn("full")
    create_function(sdk, "other", ECHO_CODE)
    other = urn("other")
    for _ in range(3):
        invoke_async(sdk, full)

    assert client_error(lambda: invoke_async(sdk, full)).status_code == 429
    assert invoke_async(sdk, other)


def test_accepts_resume_once_a_waiting_record_has_gone(
    limited: LiveServer, raw_limited: RawApi
) -> None:
    sdk = sdk_client(limited.url)
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    waiting = [invoke_async(sdk, function_urn) for _ in range(3)]
    assert raw_invoke(raw_limited, function_urn).status_code == 429

    sdk.cancel_async_invocation(
        CancelAsyncInvocationRequest(
            function_urn=function_urn,
            body=CancelAsyncInvocationRequestBody(request_id=waiting[0]),
        )
    )

    # The waiting count may be up to 1 s stale, by design: retry as a client would.
    answer = wait_for(
        lambda: (r := raw_invoke(raw_limited, function_urn)).status_code == 202 and r, 30
    )
    assert answer.json()["request_id"]
    assert raw_invoke(raw_limited, function_urn).status_code == 429
    with api_client(limited.url) as api:
        counts = stats(api, function_urn)
    assert (counts["WAIT"], counts["DISCARD"]) == (3, 1)


def test_running_and_ended_records_do_not_count_as_waiting(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(worker=False, max_waiting_per_function=3)
    sdk = sdk_client(live.url)
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    for _ in range(3):
        invoke_async(sdk, function_urn)
    run_burst(live)

    def accepted_again() -> str | None:
        try:
            return invoke_async(sdk, function_urn)
        except Exception:
            return None

    assert wait_for(accepted_again, 30)


# -- stats ------------------------------------------------------------------------------------


def test_stats_count_every_accepted_request_by_status(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(worker=False)
    sdk = sdk_client(live.url)
    create_function(sdk, "good", ECHO_CODE)
    good = urn("good")
    create_function(sdk, "bad", FAIL_ALWAYS)
    bad = urn("bad")
    with api_client(live.url) as api:
        assert stats(api, good) == {
            "accepted": 0,
            "WAIT": 0,
            "RUNNING": 0,
            "SUCCESS": 0,
            "FAIL": 0,
            "DISCARD": 0,
        }
        good_ids = [invoke_async(sdk, good, {"i": i}) for i in range(5)]
        bad_ids = [invoke_async(sdk, bad) for _ in range(3)]
        sdk.cancel_async_invocation(
            CancelAsyncInvocationRequest(
                function_urn=good, body=CancelAsyncInvocationRequestBody(request_id=good_ids[0])
            )
        )
        before = stats(api, good)
        run_burst(live)
        after_good, after_bad = stats(api, good), stats(api, bad)

    assert before == {
        "accepted": 5,
        "WAIT": 4,
        "RUNNING": 0,
        "SUCCESS": 0,
        "FAIL": 0,
        "DISCARD": 1,
    }
    assert after_good == {
        "accepted": 5,
        "WAIT": 0,
        "RUNNING": 0,
        "SUCCESS": 4,
        "FAIL": 0,
        "DISCARD": 1,
    }
    assert after_bad["accepted"] == len(bad_ids) == after_bad["FAIL"]


def test_accepted_equals_the_sum_of_statuses_and_the_202s_at_every_moment(
    sdk: Any, api: Any
) -> None:
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    accepted = 0
    snapshots = []
    for _ in range(12):
        invoke_async(sdk, function_urn)
        accepted += 1
        snapshots.append((accepted, stats(api, function_urn)))

    def settled() -> dict[str, int] | None:
        counts = stats(api, function_urn)
        return counts if counts["SUCCESS"] == accepted else None

    snapshots.append((accepted, wait_for(settled, 30)))
    for sent, counts in snapshots:
        statuses = sum(v for k, v in counts.items() if k != "accepted")
        assert counts["accepted"] == statuses == sent, counts
    assert set(snapshots[-1][1]) == {"accepted", *TERMINAL, "WAIT", "RUNNING"}


def test_stats_of_an_unknown_function_are_not_found(api: Any) -> None:
    error = api_error(lambda: stats(api, urn("missing")))

    assert error.status == 404
