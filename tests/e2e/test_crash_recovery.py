"""``kill -9`` with invocations waiting and running: after a restart none is lost or doubled."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import AsyncInvokeFunctionRequest, ListAsyncInvocationsRequest

from tests.support import CREDENTIAL, create_function, sdk_client, urn, wait_for

from .conftest import Serve

pytestmark = pytest.mark.slow

BATCH = 200
SETTINGS = {
    "worker_concurrency": "20",
    # Longer than the test: only the restart's recovery can bring the interrupted rows back.
    "lease_seconds": "600",
}
SLEEPER = """
import time


def handler(event, context):
    time.sleep(1)
    return {"n": event["n"]}
"""
TERMINAL = {"SUCCESS", "FAIL", "DISCARD"}


def list_all(client: Any, function_urn: str) -> list[Any]:
    """Every record of the last two hours, paging with marker and limit."""
    since = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None, microsecond=0)
    records: list[Any] = []
    while True:
        page = client.list_async_invocations(
            ListAsyncInvocationsRequest(
                function_urn=function_urn,
                marker=str(len(records)),
                limit="100",
                query_begin_time=since,
            )
        )
        records += page.invocations or []
        if not page.invocations or len(records) >= page.count:
            return records


def statuses_in_database(data_dir: Path) -> dict[str, int]:
    """What the killed process left on disk (read directly: nothing serves it now)."""
    with sqlite3.connect(data_dir / "openfgs.db") as conn:
        rows = conn.execute("SELECT status, count(*) FROM invocations GROUP BY status").fetchall()
    conn.close()
    return dict(rows)


def test_kill_9_loses_and_doubles_nothing(serve: Serve, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = serve.start(data_dir, credential=CREDENTIAL, **SETTINGS)
    client = sdk_client(first.url, CREDENTIAL)
    create_function(client, "sleeper", SLEEPER)
    function_urn = urn("sleeper")

    accepted = []
    for n in range(BATCH):
        response = client.async_invoke_function(
            AsyncInvokeFunctionRequest(function_urn=function_urn, body={"n": n})
        )
        assert response.status_code == 202
        accepted.append(response.request_id)
    first.kill()

    left = statuses_in_database(data_dir)
    assert sum(left.values()) == BATCH, left
    assert left.get("WAIT", 0) > 0 and left.get("RUNNING", 0) > 0, left  # the crash hit both

    second = serve.start(data_dir, credential=CREDENTIAL, **SETTINGS)
    client = sdk_client(second.url, CREDENTIAL)

    def all_terminal() -> list[Any] | None:
        records = list_all(client, function_urn)
        done = all(r.status in TERMINAL for r in records) and len(records) >= BATCH
        return records if done else None

    records = wait_for(all_terminal, 45, interval=0.5)
    listed = [r.request_id for r in records]
    assert len(listed) == len(set(listed)), "a request is listed twice"
    assert set(listed) == set(accepted)
    # An attempt cut short by the crash runs again, so every one of them succeeds.
    assert {r.status for r in records} == {"SUCCESS"}, {
        (r.status, r.error_code, r.error_message) for r in records
    }
