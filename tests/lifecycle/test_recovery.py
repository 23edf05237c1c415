"""A worker that dies mid-attempt: once its lease runs out, the attempt is run once more.

A claim by a worker that never reports back (lease of 0 s) stands in for the dead worker; the
recovery and the next attempt are the service's own operations, run on the server's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from openfgs.client import FunctionGraphClient
from tests.support import ECHO_CODE, LiveServer, create_function, detail, sdk_client, urn, wait_for

from .conftest import api_client, invoke_async, outcomes, run_burst


@pytest.fixture
def idle(make_server: Callable[..., LiveServer]) -> LiveServer:
    return make_server(worker=False, retry_backoff_seconds=0)


@pytest.fixture
def idle_api(idle: LiveServer) -> Any:
    with api_client(idle.url) as client:
        yield client


def die_mid_attempt(live: LiveServer) -> int:
    """Claim everything due as a worker that then dies; recover its rows; how many."""
    invocations = live.services.invocations
    claimed = live.run(invocations.claim("dead-worker", 100, lease_seconds=0))
    assert claimed

    def recovered() -> int:
        # The lease ends at the claim's millisecond: poll until the clock has passed it.
        count: int = live.run(invocations.recover())
        return count

    total: int = wait_for(recovered, 10)
    return total


def test_an_attempt_cut_short_runs_once_more_without_a_config(
    idle: LiveServer, idle_api: FunctionGraphClient
) -> None:
    sdk = sdk_client(idle.url)
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    request_id = invoke_async(sdk, function_urn)

    assert die_mid_attempt(idle) == 1
    waiting = detail(idle_api, request_id)
    assert waiting["status"] == "WAIT"
    assert outcomes(waiting) == ["RETRY"]
    assert waiting["attempts"][0]["worker_id"] == "dead-worker"

    run_burst(idle)
    found = detail(idle_api, request_id)
    assert found["status"] == "SUCCESS"
    assert found["attempt"] == 2
    assert outcomes(found) == ["RETRY", "SUCCESS"]
    assert found["attempts"][1]["worker_id"] == "burst"


def test_a_second_cut_short_attempt_fails_as_interrupted(
    idle: LiveServer, idle_api: FunctionGraphClient
) -> None:
    sdk = sdk_client(idle.url)
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    request_id = invoke_async(sdk, function_urn)

    die_mid_attempt(idle)
    die_mid_attempt(idle)

    found = detail(idle_api, request_id)
    assert found["status"] == "FAIL"
    assert found["error_code"] == 4210
    assert found["error_message"].startswith("interrupted: ")
    assert outcomes(found) == ["RETRY", "FAIL"]
