"""Retention: terminal records past ``retention_seconds`` go with their attempts; WAIT ones stay.

The workers purge once a minute; the test calls the same domain operation on the server's loop
instead, on a server without a worker whose records a burst worker ran.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from contextlib import closing

import psycopg
from huaweicloudsdkfunctiongraph.v2 import (
    CancelAsyncInvocationRequest,
    CancelAsyncInvocationRequestBody,
)

from openfgs.models import now_ms
from tests.api.conftest import insert_records
from tests.support import ECHO_CODE, LiveServer, create_function, detail, sdk_client, urn, wait_for

from .conftest import FAIL_ALWAYS, api_client, api_error, invoke_async, put_config, run_burst, stats


def attempt_rows(live: LiveServer, request_ids: list[str]) -> int:
    """Attempt rows of these requests, read from the database itself."""
    marks = ",".join("?" * len(request_ids))
    query = f"SELECT count(*) FROM invocation_attempts WHERE request_id IN ({marks})"
    if live.settings.database_url:
        with psycopg.connect(live.settings.database_url) as pg:
            row = pg.execute(query.replace("?", "%s"), request_ids).fetchone()
            assert row is not None
            return int(row[0])
    uri = f"file:{live.settings.database_path}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        count: int = conn.execute(query, request_ids).fetchone()[0]
        return count


def test_terminal_records_and_their_attempts_are_purged_and_waiting_ones_stay(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(worker=False, retention_seconds=1, retry_backoff_seconds=0)
    sdk = sdk_client(live.url)
    create_function(sdk, "good", ECHO_CODE)
    good = urn("good")
    create_function(sdk, "bad", FAIL_ALWAYS)
    bad = urn("bad")
    put_config(sdk, bad, max_async_retry_attempts=1)
    ended = [invoke_async(sdk, good), invoke_async(sdk, bad), invoke_async(sdk, bad)]
    canceled = invoke_async(sdk, good)
    sdk.cancel_async_invocation(
        CancelAsyncInvocationRequest(
            function_urn=good, body=CancelAsyncInvocationRequestBody(request_id=canceled)
        )
    )
    ended.append(canceled)
    run_burst(live)
    old_waiting = insert_records(live, "good", [now_ms() - 3_600_000, now_ms() - 10_000])

    with api_client(live.url) as api:
        assert [detail(api, r)["status"] for r in ended] == ["SUCCESS", "FAIL", "FAIL", "DISCARD"]
        assert attempt_rows(live, ended) == 1 + 2 + 2 + 1  # the cancel is recorded too
        purged = 0

        def all_purged() -> bool:
            nonlocal purged
            count: int = live.run(live.services.invocations.purge_expired_records())
            purged += count
            return purged >= len(ended)

        wait_for(all_purged, 30, interval=0.2)

        assert purged == len(ended)
        for request_id in ended:
            assert api_error(functools.partial(detail, api, request_id)).status == 404
        assert attempt_rows(live, ended) == 0
        for request_id in old_waiting:
            assert detail(api, request_id)["status"] == "WAIT"
        assert stats(api, good)["accepted"] == 2
        assert stats(api, bad)["accepted"] == 0


def test_records_within_retention_are_kept(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(worker=False, retention_seconds=3600)
    sdk = sdk_client(live.url)
    create_function(sdk, "good", ECHO_CODE)
    good = urn("good")
    request_id = invoke_async(sdk, good)
    run_burst(live)

    assert live.run(live.services.invocations.purge_expired_records()) == 0
    with api_client(live.url) as api:
        assert detail(api, request_id)["status"] == "SUCCESS"
