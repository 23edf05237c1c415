"""Runtime families through the official SDK: which runtimes a function may name, what each
takes (handlers, dependencies, invocation types, triggers) and that the same inline bytes run
under two families side by side. Node.js, custom runtimes and HTTP functions themselves are
tested in tests/e2e and tests/runtime."""

from __future__ import annotations

import json
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    CreateDependencyRequestBody,
    CreateDependencyVersionRequest,
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    InvokeFunctionRequest,
    TriggerEventDataRequestBody,
)

from openfgs.runtime.families import FAMILIES, NODEJS, family_of
from tests.support import LiveServer, create_function, create_zip_function, urn
from tests.zips import package_b64


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    return shared_server


pytestmark = pytest.mark.usefixtures("server")


def invoke(sdk: Any, name: str, event: Any) -> str:
    """The function's result as sent (a sync invocation in FunctionGraph's v1 wrapping)."""
    request = InvokeFunctionRequest(function_urn=urn(name), x_cff_request_version="v1", body=event)
    answer = sdk.invoke_function(request)
    assert answer.status == 200, answer
    result: str = answer.result
    return result


def error_of(call: Any) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


@pytest.mark.parametrize("runtime", [runtime for family in FAMILIES for runtime in family.runtimes])
def test_every_runtime_string_of_a_family_is_taken(sdk: Any, runtime: str) -> None:
    family = family_of(runtime)
    assert family is not None
    name = "f-" + runtime.replace(".", "-").replace("_", "-").lower()
    if family.program == "shim":
        created = create_zip_function(
            sdk, name, runtime, package_b64({"bootstrap": b"#!/bin/sh\n"})
        )
    else:
        created = create_function(sdk, name, runtime=runtime)
    assert created.runtime == runtime


def test_a_node_function_created_without_code_gets_a_default_handler(sdk: Any) -> None:
    body = CreateFunctionRequestBody(
        func_name="node-default",
        package="default",
        runtime="Node.js20.15",
        timeout=30,
        handler="index.handler",
        memory_size=128,
        code_type="inline",
    )
    sdk.create_function(CreateFunctionRequest(body=body))
    result = json.loads(invoke(sdk, "node-default", {"k": "v"}))
    assert result["statusCode"] == 200 and json.loads(result["body"]) == {"k": "v"}


# Valid Python and valid JavaScript: each language sees the other's code in a string/comment.
POLYGLOT = """0 // 1 ; \"\"\"
exports.handler = async () => 'js'; /*
\"\"\"
def handler(event, context): return 'py'
#*/
"""


def test_the_same_inline_bytes_run_under_python_and_node(sdk: Any) -> None:
    """Inline code is written as the family's file (index.py, index.js), so equal bytes
    under two families unpack to two directories."""
    create_function(sdk, "same-py", POLYGLOT)
    create_function(sdk, "same-node", POLYGLOT, runtime="Node.js20.15")
    # Python's result is JSON; Node.js sends a string as it is (FunctionGraph's rule).
    for name, expected in (("same-py", '"py"'), ("same-node", "js"), ("same-py", '"py"')):
        assert invoke(sdk, name, {}) == expected, name


def test_http_functions_answer_only_synchronous_requests(sdk: Any) -> None:
    create_zip_function(sdk, "web", "http", package_b64({"bootstrap": b"sleep 60\n"}))
    error = error_of(
        lambda: sdk.async_invoke_function(
            AsyncInvokeFunctionRequest(function_urn=urn("web"), body={})
        )
    )
    assert (error.status_code, error.error_code) == (400, "FSS.0400"), error.error_msg

    timer = TriggerEventDataRequestBody(name="every", schedule="1m", schedule_type="Rate")
    body = CreateFunctionTriggerRequestBody(trigger_type_code="TIMER", event_data=timer)
    error = error_of(
        lambda: sdk.create_function_trigger(
            CreateFunctionTriggerRequest(function_urn=urn("web"), body=body)
        )
    )
    assert (error.status_code, error.error_code) == (400, "FSS.1101"), error.error_msg


def test_custom_runtimes_take_no_dependencies(sdk: Any) -> None:
    body = CreateDependencyRequestBody(
        depend_type="zip",
        runtime="Custom",
        name="tools",
        depend_file=package_b64({"lib/tool": b"x"}),
    )
    error = error_of(
        lambda: sdk.create_dependency_version(CreateDependencyVersionRequest(body=body))
    )
    assert (error.status_code, error.error_code) == (400, "FSS.1024"), error.error_msg

    body.runtime = NODEJS.runtimes[0]  # a Node.js dependency is fine
    created = sdk.create_dependency_version(CreateDependencyVersionRequest(body=body))
    assert created.runtime == NODEJS.runtimes[0]


def test_a_node_function_requires_a_module_of_its_dependency(sdk: Any) -> None:
    """A Node.js dependency's node_modules is merged over the code, as for Python."""
    module = b"module.exports = (name) => `hello, ${name}`;\n"
    body = CreateDependencyRequestBody(
        depend_type="zip",
        runtime="Node.js20.15",
        name="greeting",
        depend_file=package_b64({"node_modules/greeting/index.js": module}),
    )
    dependency = sdk.create_dependency_version(CreateDependencyVersionRequest(body=body))
    code = "const greet = require('greeting');\nexports.handler = async (e) => greet(e.name);\n"
    create_function(
        sdk, "uses-dep", code, runtime="Node.js20.15", depend_version_list=[dependency.id]
    )
    assert invoke(sdk, "uses-dep", {"name": "node"}) == "hello, node"
