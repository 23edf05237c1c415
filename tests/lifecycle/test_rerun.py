"""Re-runs: FAIL and DISCARD records of a window are queued again, each naming its origin.

The server runs without a worker and a burst worker runs what is waiting on demand, so which
records exist, and in which status, is exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    CancelAsyncInvocationRequest,
    CancelAsyncInvocationRequestBody,
)

from openfgs.client import FunctionGraphClient
from tests.support import (
    CREDENTIAL,
    LiveServer,
    cli_in_process,
    create_function,
    detail,
    sdk_client,
    urn,
)

from .conftest import api_client, api_error, invoke_async, outcomes, run_burst, stats

MAYBE_FAIL = """\
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail: " + str(event["fail"]))
    return {"ok": True}
"""


@dataclass
class Window:
    """A function with 2 FAIL, 2 DISCARD and 1 SUCCESS records."""

    live: LiveServer
    sdk: Any
    api: FunctionGraphClient
    urn: str
    failed: list[str]
    discarded: list[str]
    succeeded: str

    def rerun(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.api.json(
            "POST", f"/functions/{self.urn}/rerun", body=body, section="openfgs"
        )
        return result


@pytest.fixture
def window(make_server: Callable[..., LiveServer]) -> Iterator[Window]:
    live = make_server(worker=False)
    sdk = sdk_client(live.url)
    create_function(sdk, "mixed", MAYBE_FAIL)
    function_urn = urn("mixed")
    failed = [invoke_async(sdk, function_urn, {"fail": f"f{i}"}) for i in range(2)]
    succeeded = invoke_async(sdk, function_urn, {})
    discarded = [invoke_async(sdk, function_urn, {"n": i}) for i in range(2)]
    for request_id in discarded:
        sdk.cancel_async_invocation(
            CancelAsyncInvocationRequest(
                function_urn=function_urn,
                body=CancelAsyncInvocationRequestBody(request_id=request_id),
            )
        )
    run_burst(live)
    with api_client(live.url) as api:
        counts = stats(api, function_urn)
        assert (counts["FAIL"], counts["DISCARD"], counts["SUCCESS"]) == (2, 2, 1), counts
        yield Window(live, sdk, api, function_urn, failed, discarded, succeeded)


def test_rerun_queues_every_fail_and_discard_record_again(window: Window) -> None:
    result = window.rerun()

    assert result["count"] == 4
    assert len(result["reruns"]) == 4
    origins = {item["rerun_of"] for item in result["reruns"]}
    assert origins == {*window.failed, *window.discarded}
    for item in result["reruns"]:
        found = detail(window.api, item["request_id"])
        assert found["status"] == "WAIT"
        assert found["rerun_of"] == item["rerun_of"]
        assert found["attempts"] == []
    assert detail(window.api, window.failed[0])["rerun_of"] == ""
    assert stats(window.api, window.urn)["accepted"] == 9


def test_rerun_records_run_the_original_events(window: Window) -> None:
    reruns = {item["rerun_of"]: item["request_id"] for item in window.rerun()["reruns"]}

    run_burst(window.live)

    for old_id in window.failed:
        old, new = detail(window.api, old_id), detail(window.api, reruns[old_id])
        assert new["status"] == "FAIL"
        assert new["error_message"] == old["error_message"]
    for old_id in window.discarded:
        new = detail(window.api, reruns[old_id])
        assert new["status"] == "SUCCESS"
        assert outcomes(new) == ["SUCCESS"]


@pytest.mark.parametrize("status", ["FAIL", "DISCARD"])
def test_rerun_filters_by_status(window: Window, status: str) -> None:
    result = window.rerun(status=status)

    expected = window.failed if status == "FAIL" else window.discarded
    assert result["count"] == 2
    assert {item["rerun_of"] for item in result["reruns"]} == set(expected)


def test_rerun_of_one_record_by_its_request_id(window: Window) -> None:
    for old_id in (window.failed[1], window.discarded[0]):
        result = window.rerun(request_id=old_id)
        assert [item["rerun_of"] for item in result["reruns"]] == [old_id]
    assert window.rerun(request_id=window.succeeded)["count"] == 0
    assert window.rerun(request_id="no-such-record")["count"] == 0
    assert stats(window.api, window.urn)["WAIT"] == 2


def test_rerun_honours_the_limit(window: Window) -> None:
    result = window.rerun(limit=1)

    assert result["count"] == 1
    assert stats(window.api, window.urn)["WAIT"] == 1


def test_rerun_of_a_window_before_the_records_queues_nothing(window: Window) -> None:
    end = datetime.now(UTC) - timedelta(hours=2)
    result = window.rerun(
        query_begin_time=(end - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
        query_end_time=end.strftime("%Y-%m-%dT%H:%M:%S"),
    )

    assert result == {"reruns": [], "count": 0}
    assert stats(window.api, window.urn)["WAIT"] == 0


@pytest.mark.parametrize(
    "body",
    [{"status": "SUCCESS"}, {"limit": 0}, {"limit": 1001}, {"query_begin_time": "yesterday"}],
    ids=["status-success", "limit-0", "limit-1001", "bad-time"],
)
def test_invalid_rerun_bodies_are_rejected(window: Window, body: dict[str, Any]) -> None:
    error = api_error(lambda: window.rerun(**body))

    assert error.status == 400
    assert stats(window.api, window.urn)["WAIT"] == 0


@pytest.fixture
def cli_env(window: Window, monkeypatch: pytest.MonkeyPatch) -> Window:
    for name in list(os.environ):
        if name.startswith("OPENFGS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENFGS_ENDPOINT", window.live.url)
    monkeypatch.setenv("OPENFGS_PROJECT_ID", CREDENTIAL.project_id)
    monkeypatch.setenv("OPENFGS_ACCESS_KEY", CREDENTIAL.access_key)
    monkeypatch.setenv("OPENFGS_SECRET_KEY", CREDENTIAL.secret_key)
    return window


def test_cli_rerun_queues_and_prints_the_new_records(
    cli_env: Window, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli_in_process(["invocations", "rerun", "mixed", "--status", "fail", "--since", "1h"]) == 0
    )

    out = capsys.readouterr().out
    assert "2 queued again" in out
    for old_id in cli_env.failed:
        assert old_id in out
    assert not any(old_id in out for old_id in cli_env.discarded)
    assert stats(cli_env.api, cli_env.urn)["WAIT"] == 2


def test_cli_show_prints_the_record_and_its_attempts(
    cli_env: Window, capsys: pytest.CaptureFixture[str]
) -> None:
    (item,) = cli_env.rerun(status="FAIL", limit=1)["reruns"]
    run_burst(cli_env.live)

    assert cli_in_process(["invocations", "show", item["request_id"]]) == 0

    lines = capsys.readouterr().out.splitlines()
    fields = dict(line.split(None, 1) for line in lines[:10] if line.strip())
    assert fields["request_id"] == item["request_id"]
    assert fields["status"] == "FAIL"
    assert fields["rerun_of"] == item["rerun_of"]
    assert fields["attempt"] == "1"
    assert fields["func_urn"] == cli_env.urn
    assert "asked to fail" in fields["error_message"]
    assert any(line.split()[:2] == ["1", "FAIL"] for line in lines[10:]), lines


def test_cli_show_of_an_unknown_request_fails(
    cli_env: Window, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_in_process(["invocations", "show", "0" * 36]) == 1

    assert "404" in capsys.readouterr().err
