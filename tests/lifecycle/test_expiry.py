"""Expiry: an event older than its maximum age when its turn comes is discarded, not run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from openfgs.models import NewInvocation, now_ms
from tests.support import (
    PROJECT,
    LiveServer,
    create_function,
    sdk_client,
    urn,
    wait_detail,
    wait_for,
    wait_for_terminal_detail,
)

from .conftest import FAIL_ALWAYS, SLEEPER, api_client, invoke_async, outcomes, put_config, stats

NEVER_RUNS = """\
def handler(event, context):
    raise AssertionError("an expired event ran")
"""


def test_events_queued_behind_a_slow_one_past_their_age_are_discarded(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(worker_concurrency=1)
    sdk = sdk_client(live.url)
    with api_client(live.url) as api:
        create_function(sdk, "sleepy", SLEEPER)
        function_urn = urn("sleepy")
        put_config(sdk, function_urn, max_async_event_age_in_seconds=1, max_async_retry_attempts=0)
        slow = invoke_async(sdk, function_urn, {"seconds": 3})
        wait_detail(api, slow, lambda d: d["status"] == "RUNNING")
        queued = [invoke_async(sdk, function_urn, {"seconds": 0}) for _ in range(3)]

        assert wait_for_terminal_detail(api, slow)["status"] == "SUCCESS"
        for request_id in queued:
            found = wait_for_terminal_detail(api, request_id)
            assert found["status"] == "DISCARD", found
            assert found["error_code"] == 4211
            assert "maximum age" in found["error_message"]
            assert "before attempt 1" in found["error_message"]
            assert outcomes(found) == ["DISCARD"]
            assert found["end_time"]


def test_a_retry_due_after_expiry_is_discarded_with_the_last_error(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(retry_backoff_seconds=30, retry_backoff_max_seconds=30)
    sdk = sdk_client(live.url)
    with api_client(live.url) as api:
        create_function(sdk, "failing", FAIL_ALWAYS)
        function_urn = urn("failing")
        put_config(sdk, function_urn, max_async_event_age_in_seconds=2, max_async_retry_attempts=2)

        found = wait_for_terminal_detail(api, invoke_async(sdk, function_urn, {"tag": "late"}))

    assert found["status"] == "DISCARD", found
    assert found["error_code"] == 4211
    assert "maximum age" in found["error_message"]
    assert "before attempt 2" in found["error_message"]
    assert "always fails: late" in found["error_message"]
    assert outcomes(found) == ["RETRY", "DISCARD"]


def test_an_event_within_its_age_runs(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(worker_concurrency=1)
    sdk = sdk_client(live.url)
    with api_client(live.url) as api:
        create_function(sdk, "sleepy", SLEEPER)
        function_urn = urn("sleepy")
        put_config(sdk, function_urn, max_async_event_age_in_seconds=60)
        slow = invoke_async(sdk, function_urn, {"seconds": 1})
        wait_detail(api, slow, lambda d: d["status"] == "RUNNING")
        queued = invoke_async(sdk, function_urn, {"seconds": 0})

        assert wait_for_terminal_detail(api, queued)["status"] == "SUCCESS"


def test_a_backlog_of_expired_events_is_discarded_without_running(
    server: LiveServer, sdk: Any
) -> None:
    """Events that aged out while no worker ran: inserted as a crash would have left them."""
    create_function(sdk, "never", NEVER_RUNS)
    function_urn = urn("never")
    function = server.run(server.services.store.get_function(PROJECT, "default", "never"))
    accepted = now_ms() - 10_000
    for _ in range(60):
        server.run(
            server.services.store.insert_invocation(
                NewInvocation(
                    request_id=str(uuid.uuid4()),
                    function_id=function.id,
                    version="latest",
                    payload=b"{}",
                    start_time=accepted,
                    available_at=accepted,
                    expires_at=accepted + 1000,
                )
            )
        )
    server.services.invocations.notifier.notify()
    with api_client(server.url) as api:
        counts = wait_for(
            lambda: (c := stats(api, function_urn))["WAIT"] + c["RUNNING"] == 0 and c, 30
        )

    assert counts["DISCARD"] == counts["accepted"] == 60
