"""Graceful stop of a real ``openfgs serve``: SIGTERM lets short invocations finish, queues the
long ones again, exits 0; the next start runs what was queued again."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Serve, ServeProcess
from tests.support import (
    create_function,
    detail,
    sdk_client,
    urn,
    wait_detail,
    wait_for_terminal_detail,
)

from .conftest import api_client, invoke_async, outcomes

pytestmark = pytest.mark.slow

# Sleeps 20 s on the first attempt of a request, returns at once on the next one.
LONG_FIRST_TIME = """\
import os
import time


def handler(event, context):
    marker = os.path.join(context.getUserData("SCRATCH"), context.getRequestID())
    if os.path.exists(marker):
        return {"run": "again"}
    open(marker, "w").close()
    time.sleep(20)
    return {"run": "first"}
"""
# Runs until the test creates the file "go" in the scratch directory.
UNTIL_GO = """\
import os
import time


def handler(event, context):
    go = os.path.join(context.getUserData("SCRATCH"), "go")
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"went": os.path.exists(go)}
"""


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    processes = Serve(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


def start(serve: Serve, data_dir: Path) -> ServeProcess:
    return serve.start(data_dir, shutdown_grace_seconds="1", lease_seconds="30")


@pytest.mark.slow
def test_sigterm_finishes_short_work_requeues_long_work_and_exits_0(
    serve: Serve, tmp_path: Path, scratch: Path
) -> None:
    data_dir = tmp_path / "data"
    first = start(serve, data_dir)
    sdk: Any = sdk_client(first.url)
    user_data = {"SCRATCH": str(scratch)}
    create_function(sdk, "long", LONG_FIRST_TIME, timeout=60, user_data=user_data)
    long_urn = urn("long")
    create_function(sdk, "short", UNTIL_GO, user_data=user_data)
    short_urn = urn("short")
    with api_client(first.url) as api:
        long_id = invoke_async(sdk, long_urn)
        wait_detail(
            api, long_id, lambda d: d["status"] == "RUNNING" and (scratch / long_id).exists()
        )
        short_id = invoke_async(sdk, short_urn)
        wait_detail(api, short_id, lambda d: d["status"] == "RUNNING")

    first.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    (scratch / "go").touch()
    assert first.wait_exit(30) == 0, first.stderr()
    assert time.monotonic() - stopped_at < 10, "the stop took longer than grace + a few seconds"

    second = start(serve, data_dir)
    with api_client(second.url) as api:
        short = detail(api, short_id)
        assert short["status"] == "SUCCESS", short
        assert outcomes(short) == ["SUCCESS"]  # finished within the grace period, before exit

        long = wait_for_terminal_detail(api, long_id, timeout=30)
        assert long["status"] == "SUCCESS", long
        assert long["attempt"] == 2
        assert outcomes(long) == ["RETRY", "SUCCESS"]
        assert long["max_attempts"] == 1  # no retries configured: the re-run is not a retry
    second.stop()
