"""One bad record never stops the service: it ends (or loses only its destination), and every
loop over records — outcomes, upkeep, recovery at start-up — goes on with the others.

The faults are real where the service can meet them: an event nested a thousand levels deep
(valid JSON the async invoke accepts, which Python's ``json`` cannot parse) and an error
message the stores refuse to hold (a lone surrogate). A store refusing every write of one
record is a fault no input provokes: the tests of recovery and claims wrap the real store so
that it refuses the writes of chosen records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from huaweicloudsdkfunctiongraph.v2 import ListAsyncInvocationsRequest

from openfgs.client import ApiFailure, FunctionGraphClient
from openfgs.errors import StoreError
from openfgs.models import ErrorCode, Status
from openfgs.services import FAR_FUTURE, Services
from openfgs.settings import Settings
from openfgs.store import Store, create_store
from tests.support import (
    ECHO_CODE,
    REPORTER_CODE,
    TERMINAL,
    LiveServer,
    create_function,
    database_url,
    detail,
    live_server,
    make_settings,
    reported_event,
    sdk_client,
    urn,
    wait_for,
    wait_for_terminal_detail,
)

from .conftest import api_client, api_error, invoke_async, put_config, run_burst

NESTED = b"[" * 1000 + b"]" * 1000  # valid JSON; json.loads raises RecursionError on it
# The stores refuse text holding a lone surrogate, which an exception message can carry.
UNWRITABLE_ERROR = """\
def handler(event, context):
    raise RuntimeError("cannot be stored: \\udcff")
"""


@pytest.fixture
def url(backend: str) -> Iterator[str]:
    """One database (or, for SQLite, one data directory) that successive servers share."""
    with database_url(backend) as found:
        yield found


def serve(settings: Settings) -> contextlib.AbstractContextManager[LiveServer]:
    return live_server(settings)


def invoke_raw(api: FunctionGraphClient, function_urn: str, body: bytes) -> str:
    """AsyncInvokeFunction with ``body`` sent as it is (the SDK cannot write such events)."""
    response = api.request(
        "POST", f"/functions/{function_urn}/invocations-async", body=orjson.Fragment(body)
    )
    assert response.status_code == 202
    request_id: str = response.json()["request_id"]
    return request_id


def received_event(sdk: Any, sink_urn: str, timeout: float = 30) -> Any:
    """The one event the reporter ``sink`` received (waits for its record to end)."""

    def ended() -> list[Any] | None:
        request = ListAsyncInvocationsRequest(function_urn=sink_urn, limit="500")
        found: list[Any] = sdk.list_async_invocations(request).invocations or []
        return found if found and all(r.status in TERMINAL for r in found) else None

    found = wait_for(ended, timeout)
    assert len(found) == 1, found
    return reported_event(found[0])


def die_mid_attempt(live: LiveServer) -> list[str]:
    """Claim everything due as a worker that dies at once (a lease of 0 s); the claimed ids."""
    claimed = live.run(live.services.invocations.claim("dead-worker", 100, lease_seconds=0))
    assert claimed
    return [item.request_id for item in claimed]


def recover_all(live: LiveServer, count: int) -> None:
    """Recover ``count`` rows a dead worker left (once the clock has passed their leases)."""
    recovered: list[int] = []

    def done() -> bool:
        recovered.append(live.run(live.services.invocations.recover()))
        return sum(recovered) >= count

    wait_for(done, 10)


def test_a_deeply_nested_event_ends_and_its_destination_carries_it_as_text(
    server: LiveServer, sdk: Any, api: FunctionGraphClient
) -> None:
    create_function(sdk, "source", ECHO_CODE)
    source = urn("source")
    create_function(sdk, "sink", REPORTER_CODE)
    sink = urn("sink")
    create_function(sdk, "other", ECHO_CODE)
    other = urn("other")
    put_config(sdk, source, on_failure=sink, max_async_retry_attempts=0)

    nested = invoke_raw(api, source, NESTED)
    others = [invoke_async(sdk, other, {"n": n}) for n in range(3)]

    found = wait_for_terminal_detail(api, nested)
    assert found["status"] == "FAIL"
    assert "RecursionError" in found["error_message"]  # the function could not read it either
    event = received_event(sdk, sink)
    assert event["request_context"]["request_id"] == nested
    assert event["request_context"]["condition"] == "Failure"
    assert event["request_payload"] == NESTED.decode()
    assert [wait_for_terminal_detail(api, r)["status"] for r in others] == ["SUCCESS"] * 3


def test_a_restart_with_a_poisoned_row_running_starts_recovers_and_purges(
    url: str, tmp_path: Path
) -> None:
    first = make_settings(tmp_path / "data", database_url=url, worker=False)
    with serve(first) as live, api_client(live.url) as api:
        sdk = sdk_client(live.url)
        create_function(sdk, "source", ECHO_CODE)
        source = urn("source")
        create_function(sdk, "sink", REPORTER_CODE)
        sink = urn("sink")
        create_function(sdk, "other", ECHO_CODE)
        other = urn("other")
        put_config(sdk, source, on_failure=sink, max_async_retry_attempts=0)
        old = invoke_async(sdk, other, {"old": True})
        run_burst(live)
        assert wait_for_terminal_detail(api, old)["status"] == "SUCCESS"
        ended = live.run(live.services.store.get_invocation(old)).record.end_time
        # The poisoned row on its second attempt: its recovery makes it FAIL and fire on_failure.
        nested = invoke_raw(api, source, NESTED)
        assert die_mid_attempt(live) == [nested]
        recover_all(live, 1)
        assert die_mid_attempt(live) == [nested]
        # A row of another function on its first attempt: recovered, it runs again.
        cut_short = invoke_async(sdk, other, {"cut": "short"})
        assert die_mid_attempt(live) == [cut_short]
        wait_for(lambda: time.time() * 1000 > ended + 1000)  # ``old`` is past its retention

    second = make_settings(tmp_path / "data", database_url=url, retention_seconds=1)
    with serve(second) as live, api_client(live.url) as api:
        sdk = sdk_client(live.url)
        found = wait_for_terminal_detail(api, nested)
        assert (found["status"], found["error_code"]) == ("FAIL", ErrorCode.INTERRUPTED)
        event = received_event(sdk, sink)
        assert event["request_context"]["condition"] == "RetriesExhausted"
        assert event["request_payload"] == NESTED.decode()
        assert wait_for_terminal_detail(api, cut_short)["status"] == "SUCCESS"
        wait_for(lambda: gone(api, old), 10)


def gone(api: FunctionGraphClient, request_id: str) -> bool:
    """True once the record is purged (its detail answers 404)."""
    try:
        detail(api, request_id)
    except ApiFailure as failure:
        assert failure.status == 404, failure
        return True
    return False


def test_a_message_no_store_takes_is_escaped_and_keeps_its_retries_and_destination(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(retry_backoff_seconds=0)
    sdk = sdk_client(live.url)
    with api_client(live.url) as api:
        create_function(sdk, "bad", UNWRITABLE_ERROR)
        bad = urn("bad")
        create_function(sdk, "retried", UNWRITABLE_ERROR)
        retried = urn("retried")
        create_function(sdk, "sink", REPORTER_CODE)
        sink = urn("sink")
        create_function(sdk, "good", ECHO_CODE)
        good = urn("good")
        put_config(sdk, retried, on_failure=sink, max_async_retry_attempts=2)

        refused = [invoke_async(sdk, bad), invoke_async(sdk, retried)]
        fine = [invoke_async(sdk, good, {"n": n}) for n in range(3)]

        for request_id in refused:
            found = wait_for_terminal_detail(api, request_id)
            assert (found["status"], found["error_code"]) == ("FAIL", ErrorCode.FUNCTION_ERROR)
            assert "RuntimeError: cannot be stored: \\udcff" in found["error_message"]
        assert len(detail(api, refused[1])["attempts"]) == 3  # retried as configured
        assert [wait_for_terminal_detail(api, r)["status"] for r in fine] == ["SUCCESS"] * 3
        assert "cannot be stored" in json.dumps(received_event(sdk, sink))


class RefusingStore:
    """A real store that refuses to write the outcomes of chosen records, so many times each."""

    def __init__(self, store: Store, refusals: dict[str, int]) -> None:
        self._store = store
        self.refusals = refusals

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _refuse(self, request_id: str) -> None:
        if self.refusals.get(request_id, 0) > 0:
            self.refusals[request_id] -= 1
            raise StoreError(f"refused to write {request_id}")

    async def finish_invocation(self, request_id: str, *args: Any, **kwargs: Any) -> bool:
        self._refuse(request_id)
        return bool(await self._store.finish_invocation(request_id, *args, **kwargs))

    async def requeue_invocation(self, request_id: str, *args: Any, **kwargs: Any) -> bool:
        self._refuse(request_id)
        return bool(await self._store.requeue_invocation(request_id, *args, **kwargs))


Outcome = tuple[Status, int, str]


def with_refusing_store(
    settings: Settings,
    refusals: dict[str, int],
    work: Callable[[Services], Awaitable[object]],
    request_ids: list[str],
) -> dict[str, Outcome]:
    """Run ``work`` on services whose store refuses ``refusals``; then the records' outcomes."""

    async def run() -> dict[str, Outcome]:
        store = RefusingStore(create_store(settings), refusals)
        services = Services.build(settings, cast(Store, store))
        await services.start()
        try:
            await work(services)
            found = [await services.store.get_invocation(r) for r in request_ids]
        finally:
            await services.stop()
        return {
            d.record.request_id: (d.record.status, d.record.error_code, d.record.error_message)
            for d in found
            if d is not None
        }

    return asyncio.run(run())


def test_recovery_goes_on_past_rows_the_store_refuses(url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", database_url=url, worker=False)
    with serve(settings) as live:
        sdk = sdk_client(live.url)
        create_function(sdk, "echo", ECHO_CODE)
        echo = urn("echo")
        left = [invoke_async(sdk, echo, {"n": n}) for n in range(3)]
        assert sorted(die_mid_attempt(live)) == sorted(left)
    never, once, fine = left

    async def recover_twice(services: Services) -> None:
        first = await services.invocations.recover(cutoff=FAR_FUTURE)
        again = await services.invocations.recover(cutoff=FAR_FUTURE)
        assert (first, again) == (2, 0)  # ``never`` is passed over, not looped on

    records = with_refusing_store(settings, {never: 1000, once: 1}, recover_twice, left)

    assert records[never][0] is Status.RUNNING  # left to the next recovery
    assert records[once][:2] == (Status.FAIL, ErrorCode.NOT_RECORDED)
    assert records[once][2].startswith("not recorded: the outcome of attempt 1 (RETRY")
    assert f"StoreError: refused to write {once}" in records[once][2]
    assert records[fine][0] is Status.WAIT


def test_a_claim_goes_on_past_expired_rows_the_store_refuses(url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", database_url=url, worker=False)
    with serve(settings) as live:
        sdk = sdk_client(live.url)
        create_function(sdk, "aging", ECHO_CODE)
        aging = urn("aging")
        create_function(sdk, "echo", ECHO_CODE)
        echo = urn("echo")
        put_config(sdk, aging, max_async_event_age_in_seconds=1)
        expiring = [invoke_async(sdk, aging, {"n": n}) for n in range(3)]
        runnable = invoke_async(sdk, echo)
        accepted = time.time()
    never, once, fine = expiring
    wait_for(lambda: time.time() > accepted + 1.05)  # past the events' maximum age

    async def claim(services: Services) -> None:
        claimed = await services.invocations.claim("worker", 10, lease_seconds=60)
        assert [item.request_id for item in claimed] == [runnable]

    records = with_refusing_store(settings, {never: 1000, once: 1}, claim, expiring)

    assert records[never][0] is Status.RUNNING  # left to lease recovery
    assert records[once][:2] == (Status.FAIL, ErrorCode.NOT_RECORDED)
    assert records[once][2].startswith("not recorded: the outcome of attempt 1 (DISCARD: ")
    assert records[fine][:2] == (Status.DISCARD, ErrorCode.EXPIRED)


def test_a_destination_param_nested_too_deep_is_a_bad_request(
    sdk: Any, api: FunctionGraphClient
) -> None:
    create_function(sdk, "source", ECHO_CODE)
    source = urn("source")
    target = {"destination": "FunctionGraph", "param": NESTED.decode()}
    body = {"destination_config": {"on_failure": target}}

    failure = api_error(
        lambda: api.request("PUT", f"/functions/{source}/async-invoke-config", body=body)
    )

    assert failure.status == 400
    assert "param must be a JSON string" in failure.error_msg
