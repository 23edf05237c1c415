"""HTTP (APIG) triggers served by openfgs itself, called with a plain HTTP client: the event a
function receives, the response it makes, routes, authentication, async mode and bounds."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    ApigTriggerFuncInfo,
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    ListAsyncInvocationsRequest,
    TriggerEventDataRequestBody,
)

from tests.api.conftest import (
    RawApi,
    set_concurrency,
)
from tests.support import (
    PROJECT,
    LiveServer,
    create_function,
    urn,
    wait_for,
)


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


pytestmark = pytest.mark.usefixtures("server")

ECHO_APIG = """\
import base64, json
def handler(event, context):
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Multi": ["a", "b"]},
        "isBase64Encoded": False,
        "body": json.dumps(event),
    }
"""


def route(
    sdk: Any,
    name: str,
    path: str,
    *,
    method: str = "ANY",
    match_mode: str = "NORMAL",
    auth: str = "NONE",
    invocation_type: str = "sync",
    timeout: int = 5000,
) -> Any:
    data = TriggerEventDataRequestBody(
        name="api_" + name.replace("-", "_"),
        path=path,
        req_method=method,
        match_mode=match_mode,
        auth=auth,
        func_info=ApigTriggerFuncInfo(invocation_type=invocation_type, timeout=timeout),
    )
    body = CreateFunctionTriggerRequestBody(trigger_type_code="DEDICATEDGATEWAY", event_data=data)
    return sdk.create_function_trigger(
        CreateFunctionTriggerRequest(function_urn=urn(name), body=body)
    )


@pytest.fixture
def http(server: LiveServer) -> Any:
    with httpx.Client(base_url=f"{server.url}/apig/{PROJECT}", timeout=30) as client:
        yield client


def test_the_function_gets_the_apig_event_and_makes_the_response(sdk: Any, http: Any) -> None:
    create_function(sdk, "echo-web", ECHO_APIG)
    created = route(sdk, "echo-web", "/users/{id}/items")
    answer = http.post(
        "/users/42/items?x=1&y=two", content=b"\x00binary\xff", headers={"X-Test": "yes"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers.get_list("X-Multi") == ["a", "b"]
    event = answer.json()
    assert base64.b64decode(event["body"]) == b"\x00binary\xff"
    assert event["isBase64Encoded"] is True
    assert event["httpMethod"] == "POST"
    assert event["path"] == "/users/42/items"
    assert event["queryStringParameters"] == {"x": "1", "y": "two"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["headers"]["x-test"] == "yes"
    assert all(name == name.lower() for name in event["headers"])
    context = event["requestContext"]
    assert context["apiId"] == created.trigger_id and context["stage"] == "RELEASE"
    assert context["sourceIp"] == "127.0.0.1" and context["requestId"]


def test_routes_match_by_method_exact_path_then_longest_prefix(sdk: Any, http: Any) -> None:
    code = 'def handler(event, context):\n    return {"statusCode": 200, "body": "%s:" + event["path"] + ":" + event["pathParameters"].get("", "-")}\n'
    for name in ("get-one", "prefix", "deeper"):
        create_function(sdk, name, code % name)
    route(sdk, "get-one", "/shop", method="GET")
    route(sdk, "prefix", "/shop", method="POST", match_mode="SWA")
    route(sdk, "deeper", "/shop/cart", method="ANY", match_mode="SWA")
    assert http.get("/shop").text == "get-one:/shop:-"
    assert http.post("/shop/a/b").text == "prefix:/shop/a/b:a/b"
    assert http.post("/shop/cart/x").text == "deeper:/shop/cart/x:x"
    assert http.get("/shop/cart").text == "deeper:/shop/cart:-"
    missing = http.get("/shopping")
    assert missing.status_code == 404 and missing.json()["error_code"] == "APIGW.0101"
    assert http.delete("/shop").status_code == 404
    other_project = httpx.get(str(http.base_url).replace(PROJECT, "f" * 32) + "/shop")
    assert other_project.status_code == 404


def test_an_iam_route_needs_a_signature_of_its_project(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "private", ECHO_APIG)
    route(sdk, "private", "/secret", auth="IAM")
    unsigned = httpx.get(f"{server.url}/apig/{PROJECT}/secret")
    assert unsigned.status_code in (401, 403)
    assert "error_code" in unsigned.json()
    raw = RawApi(server.url)
    try:
        signed = raw.call("GET", f"/apig/{PROJECT}/secret")
        assert signed.status_code == 201, signed.text
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ('def handler(event, context):\n    return "plain text"\n', 502),
        ('def handler(event, context):\n    return {"statusCode": "200"}\n', 502),
        ('def handler(event, context):\n    return {"statusCode": 200, "body": 5}\n', 502),
        (
            'def handler(event, context):\n    return {"statusCode": 200, "body": "!", '
            '"isBase64Encoded": True}\n',
            502,
        ),
        ("def handler(event, context):\n    raise ValueError('broken')\n", 502),
        ("import time\ndef handler(event, context):\n    time.sleep(5)\n", 504),
    ],
)
def test_anything_but_a_gateway_response_is_a_gateway_error(
    sdk: Any, http: Any, code: str, status: int
) -> None:
    create_function(sdk, "odd", code)
    route(sdk, "odd", "/odd", timeout=1000)
    answer = http.get("/odd")
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error_code", "error_msg"}


def test_headers_a_function_cannot_inject(sdk: Any, http: Any) -> None:
    code = (
        "def handler(event, context):\n"
        '    return {"statusCode": 200, "body": "ok", "headers": '
        '{"X-Ok": "1", "X-Bad": "a\\r\\nSet-Cookie: x=1", "Bad Name": "v"}}\n'
    )
    create_function(sdk, "inject", code)
    route(sdk, "inject", "/inject")
    answer = http.get("/inject")
    assert answer.status_code == 200 and answer.headers["X-Ok"] == "1"
    assert "set-cookie" not in answer.headers and "x-bad" not in answer.headers


def test_a_function_cannot_frame_the_response(server: LiveServer, sdk: Any) -> None:
    """Its Content-Length or Transfer-Encoding beside the server's would desynchronise the
    connection (a proxy reading one response as two)."""
    code = (
        "def handler(event, context):\n"
        '    return {"statusCode": 200, "body": "hello", "headers": {"Content-Length": "1", '
        '"Transfer-Encoding": "chunked", "Connection": "close", "X-Ok": ["1"]}}\n'
    )
    create_function(sdk, "framing", code)
    route(sdk, "framing", "/framing")
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        request = f"GET /apig/{PROJECT}/framing HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.sendall(request.encode() * 2)  # two requests on one connection
        received = b""
        while received.count(b"hello") < 2:
            chunk = conn.recv(65536)
            assert chunk, received
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    assert head.count(b"content-length:") == 1 and b"content-length: 5" in head
    assert b"transfer-encoding" not in head and b"x-ok: 1" in head


def test_an_async_route_queues_the_event(sdk: Any, http: Any) -> None:
    create_function(sdk, "queued", ECHO_APIG)
    route(sdk, "queued", "/q", invocation_type="async")
    answer = http.post("/q", json={"k": "v"})
    assert answer.status_code == 202
    request_id = answer.json()["request_id"]

    def listed() -> Any:
        request = ListAsyncInvocationsRequest(function_urn=urn("queued"), request_id=request_id)
        found = sdk.list_async_invocations(request).invocations
        return found and found[0].status == "SUCCESS"

    wait_for(listed)
    big = http.post("/q", content=b"x" * (256 * 1024 + 1))
    assert big.status_code == 413


def test_bodies_are_bounded_and_disabled_functions_refused(sdk: Any, http: Any) -> None:
    create_function(sdk, "bounded", ECHO_APIG)
    route(sdk, "bounded", "/b")
    too_big = http.post("/b", content=b"x" * (6 * 1024 * 1024 + 1))
    assert too_big.status_code == 413
    set_concurrency(sdk, "bounded", 0)
    assert http.get("/b").status_code == 429
    assert json.loads(http.get("/b").text)["error_code"] == "FSS.0429"
