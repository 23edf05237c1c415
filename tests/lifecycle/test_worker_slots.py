"""A worker fills its free slots in batches, yet never keeps a free slot idle while work waits.

While most slots run long invocations, one free slot is less than the half the worker waits
for before claiming; it must still be filled after the short refill delay, not when a long
invocation ends.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

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


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])  # SQLite's claim has no round trip to save
def test_an_idle_worker_runs_what_its_node_accepts_without_a_claim(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(worker_concurrency=2)
    worker = live.services.worker
    assert worker is not None
    sdk = sdk_client(live.url)
    create_function(sdk, "quick", SLEEPER)
    with api_client(live.url) as api:
        for _ in range(5):
            request_id = invoke_async(sdk, urn("quick"), {"seconds": 0})
            assert wait_for_terminal_detail(api, request_id)["status"] == "SUCCESS"
            found = live.run(live.services.store.get_invocation(request_id))
            assert found is not None
            (attempt,) = found.attempts
            # Started in the accept's own transaction: the attempt began at the accept, which
            # a claim (after the accept's durable commit) cannot do.
            assert (attempt.worker_id, attempt.start_time) == (
                worker.worker_id,
                found.record.start_time,
            )
