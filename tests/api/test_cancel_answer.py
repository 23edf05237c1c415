"""A successful CancelAsyncInvocation answers ``{}``: FunctionGraph documents ``null``, which
the official Node.js SDK cannot parse (tests/e2e/test_node_sdk.py runs that SDK)."""

from __future__ import annotations

import json
from typing import Any

from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    CancelAsyncInvocationRequest,
    CancelAsyncInvocationRequestBody,
)

from tests.api.conftest import (
    RawApi,
    function_path,
)
from tests.support import (
    create_function,
    urn,
    wait_for_terminal_record,
)

SLEEPER = """\
import time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return event
"""


def test_cancel_answers_an_empty_object(raw: RawApi, sdk: Any) -> None:
    create_function(sdk, "sleeper", SLEEPER)
    invoke = AsyncInvokeFunctionRequest(function_urn=urn("sleeper"), body={"sleep": 60})
    request_id = sdk.async_invoke_function(invoke).request_id

    body = json.dumps({"request_id": request_id, "type": "force"}).encode()
    response = raw.call("POST", function_path(urn("sleeper"), "/cancel"), content=body)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == b"{}"
    assert wait_for_terminal_record(sdk, urn("sleeper"), request_id).error_code == 4208


def test_the_python_sdk_parses_the_answer(sdk: Any) -> None:
    create_function(sdk, "sleeper", SLEEPER)
    invoke = AsyncInvokeFunctionRequest(function_urn=urn("sleeper"), body={"sleep": 60})
    request_id = sdk.async_invoke_function(invoke).request_id

    cancel = CancelAsyncInvocationRequest(
        function_urn=urn("sleeper"), body=CancelAsyncInvocationRequestBody(request_id=request_id)
    )
    assert sdk.cancel_async_invocation(cancel).status_code == 200
    # Ended before the test server stops: a stop while the cancel was still under way was seen
    # to hold the test server's teardown for 30 s.
    assert wait_for_terminal_record(sdk, urn("sleeper"), request_id).error_code == 4208
