"""Every error answers FunctionGraph's shape: ``{"error_code": ..., "error_msg": ...}`` as JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    FuncCode,
    ListAsyncInvocationsRequest,
    ListFunctionsRequest,
    ShowFunctionConfigRequest,
)

from openfgs.models import Credential
from tests.support import PROJECT, LiveServer, b64, create_function, sdk_client, urn

from .conftest import RawApi, function_path, set_concurrency


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


ERROR_CODE = re.compile(r"(FSS|APIGW)\.\d{4}")
FUNCTIONS = f"/v2/{PROJECT}/fgs/functions"
HELLO = "def handler(event, context):\n    return 'hi'\n"


def valid_create(name: str = "hello") -> dict[str, Any]:
    return {
        "func_name": name,
        "package": "default",
        "runtime": "Python3.9",
        "timeout": 30,
        "handler": "index.handler",
        "memory_size": 128,
        "code_type": "inline",
        "func_code": {"file": b64(HELLO)},
    }


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.fixture
def setup(sdk: Any) -> None:
    """``hello`` exists; ``disabled`` exists with concurrency 0."""
    create_function(sdk, "hello", HELLO)
    create_function(sdk, "disabled", HELLO)
    set_concurrency(sdk, "disabled", 0)


Call = Callable[[RawApi], httpx.Response]
HELLO_PATH = function_path(urn("hello"))

ERROR_CASES: list[tuple[str, int, Call]] = [
    ("unknown-route", 404, lambda r: r.call("GET", "/no/such/route", credential=None)),
    ("unknown-route-signed", 404, lambda r: r.call("GET", f"/v2/{PROJECT}/fgs/nothing")),
    ("unknown-v3-route", 404, lambda r: r.call("GET", "/v3/projects", credential=None)),
    ("wrong-method", 405, lambda r: r.call("PATCH", FUNCTIONS)),
    ("wrong-method-unsigned", 405, lambda r: r.call("DELETE", "/healthz", credential=None)),
    ("wrong-method-on-config", 405, lambda r: r.call("POST", HELLO_PATH + "/config")),
    (
        "async-body-too-large",
        413,
        lambda r: r.call(
            "POST", HELLO_PATH + "/invocations-async", content=as_json({"x": "y" * 300_000})
        ),
    ),
    (
        "inline-code-too-large",
        413,
        lambda r: r.call(
            "POST",
            FUNCTIONS,
            content=as_json({**valid_create("big"), "func_code": {"file": b64("#" * 20_000)}}),
        ),
    ),
    ("create-not-json", 400, lambda r: r.call("POST", FUNCTIONS, content=b"{not json")),
    ("create-json-array", 400, lambda r: r.call("POST", FUNCTIONS, content=b"[]")),
    ("create-empty-body", 400, lambda r: r.call("POST", FUNCTIONS, content=b"")),
    (
        "create-missing-field",
        400,
        lambda r: r.call(
            "POST",
            FUNCTIONS,
            content=as_json({k: v for k, v in valid_create().items() if k != "handler"}),
        ),
    ),
    (
        "create-wrong-type",
        400,
        lambda r: r.call("POST", FUNCTIONS, content=as_json({**valid_create(), "timeout": "30"})),
    ),
    (
        "create-nested-wrong-type",
        400,
        lambda r: r.call(
            "POST", FUNCTIONS, content=as_json({**valid_create(), "func_code": {"file": 5}})
        ),
    ),
    (
        "invoke-not-json",
        400,
        lambda r: r.call("POST", HELLO_PATH + "/invocations-async", content=b"nope"),
    ),
    (
        "list-bad-limit",
        400,
        lambda r: r.call("GET", HELLO_PATH + "/async-invocations", params={"limit": "many"}),
    ),
    ("malformed-urn", 400, lambda r: r.call("GET", function_path("not-a-urn", "/config"))),
    (
        "bad-signature",
        401,
        lambda r: r.call(
            "GET", FUNCTIONS, credential=Credential(PROJECT, "TESTACCESSKEY0000001", "bad")
        ),
    ),
    ("no-credentials", 403, lambda r: r.call("GET", FUNCTIONS, credential=None)),
    (
        "bad-token",
        403,
        lambda r: r.call("GET", FUNCTIONS, credential=None, headers={"X-Auth-Token": "MIIx"}),
    ),
    ("unknown-function", 404, lambda r: r.call("GET", function_path(urn("nope"), "/config"))),
    (
        "unknown-function-invoke",
        404,
        lambda r: r.call("POST", function_path(urn("nope"), "/invocations-async"), content=b"{}"),
    ),
    ("duplicate", 409, lambda r: r.call("POST", FUNCTIONS, content=as_json(valid_create()))),
    (
        "disabled",
        429,
        lambda r: r.call(
            "POST", function_path(urn("disabled"), "/invocations-async"), content=b"{}"
        ),
    ),
    (
        "token-bad-secret",
        401,
        lambda r: r.call(
            "POST",
            "/v3/auth/tokens",
            credential=None,
            content=as_json(
                {
                    "auth": {
                        "identity": {
                            "methods": ["password"],
                            "password": {"user": {"name": "TESTACCESSKEY0000001", "password": "x"}},
                        }
                    }
                }
            ),
        ),
    ),
    (
        "token-bad-body",
        400,
        lambda r: r.call("POST", "/v3/auth/tokens", credential=None, content=b"{}"),
    ),
]


@pytest.mark.parametrize(
    ("status", "call"),
    [(status, call) for _, status, call in ERROR_CASES],
    ids=[name for name, _, _ in ERROR_CASES],
)
@pytest.mark.usefixtures("setup")
def test_every_error_has_functiongraphs_shape(raw: RawApi, status: int, call: Call) -> None:
    response = call(raw)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error_code", "error_msg"}, body
    assert isinstance(body["error_code"], str)
    assert ERROR_CODE.fullmatch(body["error_code"]), body
    assert isinstance(body["error_msg"], str)
    assert body["error_msg"]


def sdk_error(call: Callable[[], Any]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def test_the_sdk_reads_code_and_message_of_a_404(sdk: Any, raw: RawApi) -> None:
    missing = urn("nope")
    body = raw.call("GET", function_path(missing, "/async-invocations")).json()

    error = sdk_error(
        lambda: sdk.list_async_invocations(ListAsyncInvocationsRequest(function_urn=missing))
    )

    assert error.status_code == 404
    assert (error.error_code, error.error_msg) == (body["error_code"], body["error_msg"])
    assert error.error_code == "FSS.0404"


def test_the_sdk_reads_code_and_message_of_a_400(sdk: Any, raw: RawApi) -> None:
    create_function(sdk, "hello", HELLO)
    query = {"status": "DONE"}
    body = raw.call("GET", function_path(urn("hello"), "/async-invocations"), params=query).json()

    error = sdk_error(
        lambda: sdk.list_async_invocations(
            ListAsyncInvocationsRequest(function_urn=urn("hello"), **query)
        )
    )

    assert error.status_code == 400
    assert (error.error_code, error.error_msg) == (body["error_code"], body["error_msg"])


def test_the_sdk_reads_code_and_message_of_a_409(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)

    error = sdk_error(lambda: create_function(sdk, "hello", HELLO))

    assert (error.status_code, error.error_code) == (409, "FSS.1061")
    assert "hello" in error.error_msg


def test_the_sdk_reads_code_and_message_of_a_413(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)
    request = AsyncInvokeFunctionRequest(function_urn=urn("hello"), body={"x": "y" * 300_000})

    error = sdk_error(lambda: sdk.async_invoke_function(request))

    assert error.status_code == 413
    assert ERROR_CODE.fullmatch(error.error_code)
    assert error.error_msg and not error.error_msg.startswith("{")


def test_the_sdk_reads_code_and_message_of_a_401(server: LiveServer) -> None:
    client = sdk_client(server.url, Credential(PROJECT, "TESTACCESSKEY0000001", "bad"))

    error = sdk_error(lambda: client.list_functions(ListFunctionsRequest()))

    assert (error.status_code, error.error_code) == (401, "APIGW.0301")
    assert "verify aksk signature fail" in error.error_msg


def test_the_sdk_reads_a_validation_error(sdk: Any) -> None:
    body = CreateFunctionRequestBody(
        func_name="hello",
        package="default",
        runtime="Python3.9",
        timeout=30,
        handler="index.handler",
        memory_size=127,
        code_type="inline",
        func_code=FuncCode(file=b64(HELLO)),
    )

    error = sdk_error(lambda: sdk.create_function(CreateFunctionRequest(body=body)))

    assert (error.status_code, error.error_code) == (400, "FSS.1007")
    assert "memory" in error.error_msg.lower()


def test_the_sdk_reads_a_404_on_show_config(sdk: Any) -> None:
    error = sdk_error(
        lambda: sdk.show_function_config(ShowFunctionConfigRequest(function_urn=urn("nope")))
    )

    assert error.status_code == 404
    assert ERROR_CODE.fullmatch(error.error_code)
    assert error.error_msg
