"""Custom runtimes and HTTP functions through a real server and the official SDK: the bash
bootstrap FunctionGraph publishes, an error posted to the runtime API, an HTTP function behind
an HTTP trigger and invoked with InvokeFunction. The shim itself is tested in
tests/runtime/test_shim.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    ApigTriggerFuncInfo,
    AsyncInvokeFunctionRequest,
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    InvokeFunctionRequest,
    TriggerEventDataRequestBody,
)

from tests.runtime.test_shim import BASH_SAMPLE, NODE_SERVER, PY_SERVER
from tests.support import (
    PROJECT,
    LiveServer,
    create_zip_function,
    urn,
    wait_for_terminal_record,
)
from tests.zips import package_b64

pytestmark = pytest.mark.slow


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


# A bootstrap that reports every invocation as an error, the way FunctionGraph's samples do.
ERROR_BOOTSTRAP = r"""#!/bin/bash
set -euo pipefail
while true
do
  HEADERS="$(mktemp)"
  EVENT_DATA=$(curl -sS -LD "$HEADERS" -X GET "http://$RUNTIME_API_ADDR/v1/runtime/invocation/request")
  REQUEST_ID=$(grep -Fi x-cff-request-id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  ERROR='{"errorType": "InputError", "errorMessage": "cannot handle this event"}'
  curl -sS -X POST "http://$RUNTIME_API_ADDR/v1/runtime/invocation/error/$REQUEST_ID" -d "$ERROR"
done
"""

# FunctionGraph's HTTP function samples: a start command, no #! line, not executable.
HTTP_BOOTSTRAP = "python3 -u server.py 8000\n"


def zipped(files: dict[str, str], executable: tuple[str, ...] = ("bootstrap",)) -> str:
    """A zip package (base64) of these texts, ``executable`` entries with mode 755."""
    return package_b64({name: text.lstrip("\n") for name, text in files.items()}, executable)


def invoke(sdk: Any, name: str, event: Any, status: int = 200) -> Any:
    """A sync invocation's v1 answer; ``status`` is the function's (500: it failed)."""
    request = InvokeFunctionRequest(function_urn=urn(name), x_cff_request_version="v1", body=event)
    answer = sdk.invoke_function(request)
    assert answer.status == status, answer
    return answer


def test_the_bash_sample_answers_sync_and_async_invocations(sdk: Any) -> None:
    create_zip_function(sdk, "bash-sample", "Custom", zipped({"bootstrap": BASH_SAMPLE}))
    for number in range(2):
        answer = invoke(sdk, "bash-sample", {"n": number})
        assert answer.result == f"""Echoing request: '{{"n": {number}}}'""", answer
    request = AsyncInvokeFunctionRequest(function_urn=urn("bash-sample"), body={"a": "sync"})
    request_id = sdk.async_invoke_function(request).request_id
    record = wait_for_terminal_record(sdk, urn("bash-sample"), request_id)
    assert record.status == "SUCCESS", record


def test_an_error_posted_by_the_bootstrap_fails_the_invocation(sdk: Any) -> None:
    create_zip_function(sdk, "bash-error", "Custom", zipped({"bootstrap": ERROR_BOOTSTRAP}))
    answer = invoke(sdk, "bash-error", {"x": 1}, status=500)
    assert json.loads(answer.result) == {
        "errorType": "InputError",
        "errorMessage": "cannot handle this event",
    }
    request = AsyncInvokeFunctionRequest(function_urn=urn("bash-error"), body={"x": 2})
    request_id = sdk.async_invoke_function(request).request_id
    record = wait_for_terminal_record(sdk, urn("bash-error"), request_id)
    assert record.status == "FAIL", record
    assert "cannot handle this event" in record.error_message


# The bash sample, but an event that says "exit" ends the bootstrap.
EXITING_BOOTSTRAP = BASH_SAMPLE.replace(
    "  # Run the handler function",
    '  if [[ "$EVENT_DATA" == *exit* ]]; then exit 3; fi\n  # Run the handler function',
)


def test_a_bootstrap_that_exits_fails_that_invocation_only(sdk: Any) -> None:
    create_zip_function(sdk, "bash-exit", "Custom", zipped({"bootstrap": EXITING_BOOTSTRAP}))
    assert invoke(sdk, "bash-exit", {"n": 1}).result == """Echoing request: '{"n": 1}'"""
    failed = invoke(sdk, "bash-exit", {"exit": True}, status=500)
    assert "the bootstrap exited with code 3" in failed.result
    for number in range(3):  # each on a new instance or the old one, never a dead one
        answer = invoke(sdk, "bash-exit", {"n": number})
        assert answer.result == f"""Echoing request: '{{"n": {number}}}'""", answer


# Answers each invocation with its runtime API's address.
ADDRESS_BOOTSTRAP = BASH_SAMPLE.replace(
    "RESPONSE=\"Echoing request: '$EVENT_DATA'\"", 'RESPONSE="$RUNTIME_API_ADDR"'
)

# Asks another function's runtime API (the event's "addr") for that function's invocation.
INTRUDER_BOOTSTRAP = r"""#!/bin/bash
set -uo pipefail
while true
do
  HEADERS="$(mktemp)"
  EVENT_DATA=$(curl -sS -LD "$HEADERS" -X GET "http://$RUNTIME_API_ADDR/v1/runtime/invocation/request")
  REQUEST_ID=$(grep -Fi x-cff-request-id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  TARGET=$(echo "$EVENT_DATA" | sed -e 's/.*"addr": *"\([^"]*\)".*/\1/')
  curl -sS -m 5 -o /dev/null "http://$TARGET/v1/runtime/invocation/request"
  RESULT="curl exit $?"
  curl -sS -X POST "http://$RUNTIME_API_ADDR/v1/runtime/invocation/response/$REQUEST_ID" -d "$RESULT"
done
"""


def test_another_function_cannot_use_a_runtime_api(sdk: Any) -> None:
    """Functions share the host's network (the default): one that learns another's runtime
    API address is refused there, so it can neither take nor answer its invocations."""
    create_zip_function(sdk, "victim", "Custom", zipped({"bootstrap": ADDRESS_BOOTSTRAP}))
    create_zip_function(sdk, "intruder", "Custom", zipped({"bootstrap": INTRUDER_BOOTSTRAP}))
    address = invoke(sdk, "victim", {}).result
    assert address.startswith("127.0.0.1:"), address
    # 52: empty reply, 56: reset; a long poll that was let in would time out (28).
    assert invoke(sdk, "intruder", {"addr": address}).result in ("curl exit 52", "curl exit 56")
    assert invoke(sdk, "victim", {}).result == address  # its own bootstrap still gets in


def route(sdk: Any, name: str, path: str) -> Any:
    data = TriggerEventDataRequestBody(
        name="api_" + name.replace("-", "_"),
        path=path,
        req_method="ANY",
        match_mode="SWA",
        auth="NONE",
        func_info=ApigTriggerFuncInfo(invocation_type="sync", timeout=10000),
    )
    body = CreateFunctionTriggerRequestBody(trigger_type_code="DEDICATEDGATEWAY", event_data=data)
    return sdk.create_function_trigger(
        CreateFunctionTriggerRequest(function_urn=urn(name), body=body)
    )


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/apig/{PROJECT}", timeout=30) as client:
        yield client


def test_an_http_function_behind_an_http_trigger(sdk: Any, http: httpx.Client) -> None:
    files = {"bootstrap": HTTP_BOOTSTRAP, "server.py": PY_SERVER}
    create_zip_function(sdk, "web", "http", zipped(files, executable=()))
    route(sdk, "web", "/web")
    answers = []
    for number in range(3):
        answer = http.post(
            f"/web/items?n={number}", content=bytes([number, 255]), headers={"X-Test": "yes"}
        )
        assert answer.status_code == 201, answer.text
        assert answer.headers.get_list("Set-Cookie") == ["a=1", "b=2"]
        assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
        answers.append(answer.json())
    assert [seen["count"] for seen in answers] == [1, 2, 3]  # one instance, state kept
    seen = answers[2]
    assert seen["path"] == "/web/items?n=2"
    assert base64.b64decode(seen["body"]) == bytes([2, 255])
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert headers["x-test"] == "yes"
    assert headers["x-cff-func-name"] == "web"
    assert headers["x-cff-project-id"] == PROJECT
    assert answer.headers["X-Cff-Request-Id"] == headers["x-cff-request-id"]
    binary = http.get("/web/binary")
    assert binary.content == bytes(range(256))


def test_an_http_function_invoked_synchronously(sdk: Any) -> None:
    files = {"bootstrap": HTTP_BOOTSTRAP, "server.py": PY_SERVER}
    create_zip_function(sdk, "web-sync", "http", zipped(files, executable=()))
    event = {
        "httpMethod": "PUT",
        "path": "/things",
        "queryStringParameters": {"q": "a b"},
        "headers": {"content-type": "text/plain"},
        "body": base64.b64encode(b"payload").decode(),
        "isBase64Encoded": True,
    }
    result = json.loads(invoke(sdk, "web-sync", event).result)
    assert result["statusCode"] == 200 and result["isBase64Encoded"] is True
    assert result["headers"]["Set-Cookie"] == ["a=1", "b=2"]
    seen = json.loads(base64.b64decode(result["body"]))
    assert (seen["method"], seen["path"]) == ("PUT", "/things?q=a%20b")
    assert base64.b64decode(seen["body"]) == b"payload"
    # Not an APIG event: a JSON POST to /.
    plain = json.loads(invoke(sdk, "web-sync", {"a": 1}).result)
    seen = json.loads(base64.b64decode(plain["body"]))
    assert (seen["method"], seen["path"], seen["count"]) == ("POST", "/", 2)
    assert json.loads(base64.b64decode(seen["body"])) == {"a": 1}


def test_a_node_http_function(sdk: Any, http: httpx.Client) -> None:
    """node in the sandbox (no address-space limit: V8 reserves gigabytes it never touches)."""
    files = {"bootstrap": "node server.js 8000\n", "server.js": NODE_SERVER}
    create_zip_function(sdk, "web-node", "http", zipped(files, executable=()))
    route(sdk, "web-node", "/node")
    first = http.get("/node/a", params={"q": "1"})
    second = http.post("/node/b", content=b"\x00\x01")
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers.get_list("X-Powered-By") == ["node", "test"]
    seen = second.json()
    assert (seen["count"], seen["method"], seen["url"]) == (2, "POST", "/node/b")
    assert base64.b64decode(seen["body"]) == b"\x00\x01"
    assert seen["headers"]["x-cff-func-name"] == "web-node"
