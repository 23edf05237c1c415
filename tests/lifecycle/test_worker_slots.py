"""A worker fills its free slots in batches, yet never keeps a free slot idle while work waits.

While most slots run long invocations, one free slot is less than the half the worker waits
for before claiming; it must still be filled after the short refill delay, not when a long
invocation ends.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.lifecycle.conftest import SLEEPER, api_client, invoke_async
from tests.support import (
    LiveServer,
    create_function,
    detail,
    sdk_client,
    urn,
    wait_detail,
    wait_for_terminal_detail,
)


def test_a_single_free_slot_is_filled_while_long_invocations_run(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(worker_concurrency=4, shutdown_grace_seconds=0.5)
    sdk = sdk_client(live.url)
    create_function(sdk, "sleepy", SLEEPER, timeout=120)
    function_urn = urn("sleepy")
    with api_client(live.url) as api:
        long_ones = [invoke_async(sdk, function_urn, {"seconds": 60}) for _ in range(3)]
        for request_id in long_ones:
            wait_detail(api, request_id, lambda d: d["status"] == "RUNNING")
        # Three of four slots stay busy for a minute; short ones go through the fourth.
        for _ in range(3):
            short = invoke_async(sdk, function_urn, {"seconds": 0})
            assert wait_for_terminal_detail(api, short, timeout=20)["status"] == "SUCCESS"
        assert all(detail(api, r)["status"] == "RUNNING" for r in long_ones)
