"""Node.js functions through the real service and the official SDK: created inline or from a
zip, invoked sync and async, kept warm, initialized, timed out, out of memory, failing,
answering 6 MB, and published as versions. The instances are real ``node`` processes.
"""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    CreateVersionAliasRequest,
    CreateVersionAliasRequestBody,
    FuncCode,
    InvokeFunctionRequest,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
)

from openfgs.models import ErrorCode
from openfgs.runtime.families import node_executable
from tests.api.conftest import zip_of
from tests.support import LiveServer, b64, urn, wait_for_terminal_record

pytestmark = pytest.mark.slow

SIX_MB = 6 * 1024 * 1024


@pytest.fixture(autouse=True)
def node_installed() -> None:
    """Without node these tests are skipped on a developer's machine and fail under CI."""
    if node_executable() is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed under CI: Node.js functions must be tested")
        pytest.skip("node is not installed")


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One service for the module, emptied between tests."""
    return shared_server


def create_node_function(
    sdk: Any,
    name: str,
    code: str | bytes,
    *,
    runtime: str = "Node.js20.15",
    handler: str = "index.handler",
    **fields: Any,
) -> Any:
    """A Node.js function: ``code`` is index.js (inline), or zip bytes."""
    if isinstance(code, str):
        package = {"code_type": "inline", "func_code": FuncCode(file=b64(textwrap.dedent(code)))}
    else:
        package = {
            "code_type": "zip",
            "code_filename": "code.zip",
            "func_code": FuncCode(file=b64(code)),
        }
    values: dict[str, Any] = {"timeout": 30, "memory_size": 128, **package, **fields}
    body = CreateFunctionRequestBody(
        func_name=name, package="default", runtime=runtime, handler=handler, **values
    )
    return sdk.create_function(CreateFunctionRequest(body=body))


def invoke(sdk: Any, function_urn: str, event: dict[str, Any] | None = None) -> Any:
    """A sync invocation (v1, with the log's tail)."""
    request = InvokeFunctionRequest(
        function_urn=function_urn,
        x_cff_request_version="v1",
        x_cff_log_type="tail",
        body=event or {},
    )
    return sdk.invoke_function(request)


def invoke_async(sdk: Any, function_urn: str, event: dict[str, Any]) -> str:
    request = AsyncInvokeFunctionRequest(function_urn=function_urn, body=event)
    request_id: str = sdk.async_invoke_function(request).request_id
    return request_id


ECHO = """
exports.handler = async (event, context) => {
  console.log("node", process.version, "saw", JSON.stringify(event));
  return {
    event,
    name: context.getFunctionName(),
    version: context.getVersion(),
    memory: context.getMemorySize(),
    colour: context.getUserData("colour"),
  };
};
"""


@pytest.mark.parametrize("runtime", ["Node.js20.15", "Node.js18.15", "Node.js16.17"])
def test_an_inline_function_answers_on_each_runtime(sdk: Any, runtime: str) -> None:
    created = create_node_function(
        sdk, "echo", ECHO, runtime=runtime, user_data=json.dumps({"colour": "green"})
    )
    assert created.runtime == runtime
    answer = invoke(sdk, urn("echo"), {"greeting": "hi"})
    assert answer.status == 200
    assert json.loads(answer.result) == {
        "event": {"greeting": "hi"},
        "name": "echo",
        "version": "latest",
        "memory": 128,
        "colour": "green",
    }
    assert 'saw {"greeting":"hi"}' in answer.log


def test_a_zip_with_node_modules_and_package_json(sdk: Any) -> None:
    archive = zip_of(
        {
            "package.json": json.dumps({"name": "shop", "version": "1.0.0", "private": True}),
            "node_modules/greeter/package.json": json.dumps(
                {"name": "greeter", "version": "2.0.0", "main": "lib/greet.js"}
            ),
            "node_modules/greeter/lib/greet.js": "exports.greet = (who) => `hello ${who}`;\n",
            "src/app.js": textwrap.dedent(
                """
                const { greet } = require("greeter");
                const pkg = require("../package.json");
                exports.main = async (event) => ({ text: greet(event.who), app: pkg.name });
                """
            ),
        }
    )
    create_node_function(sdk, "zipped", archive, handler="src/app.main")
    answer = invoke(sdk, urn("zipped"), {"who": "world"})
    assert json.loads(answer.result) == {"text": "hello world", "app": "shop"}


def test_async_invocations_end_in_success_or_in_the_functions_failure(sdk: Any) -> None:
    create_node_function(
        sdk,
        "sometimes",
        """
        exports.handler = (event, context, callback) => {
          if (event.fail) callback(new RangeError(`refused ${event.fail}`));
          else callback(null, "fine");
        };
        """,
    )
    good = invoke_async(sdk, urn("sometimes"), {"fail": ""})
    bad = invoke_async(sdk, urn("sometimes"), {"fail": "this one"})
    assert wait_for_terminal_record(sdk, urn("sometimes"), good).status == "SUCCESS"
    record = wait_for_terminal_record(sdk, urn("sometimes"), bad)
    assert record.status == "FAIL"
    assert record.error_code == ErrorCode.FUNCTION_ERROR
    assert record.error_message == "RangeError: refused this one"


def test_a_warm_instance_keeps_its_module_state(sdk: Any) -> None:
    create_node_function(
        sdk,
        "counter",
        """
        let calls = 0;
        const loadedAt = process.hrtime.bigint().toString();
        exports.handler = async () => ({ calls: ++calls, loadedAt });
        """,
    )
    first = json.loads(invoke(sdk, urn("counter")).result)
    second = json.loads(invoke(sdk, urn("counter")).result)
    assert (first["calls"], second["calls"]) == (1, 2)
    assert first["loadedAt"] == second["loadedAt"]


def test_a_thrown_error_is_functiongraphs_error_object_in_the_sync_answer(sdk: Any) -> None:
    create_node_function(
        sdk,
        "thrower",
        """
        function check(event) {
          throw new TypeError(`no ${event.what}`);
        }
        exports.handler = async (event) => check(event);
        """,
    )
    answer = invoke(sdk, urn("thrower"), {"what": "cheese"})
    assert answer.status == 500
    error = json.loads(answer.result)
    assert error["errorType"] == "TypeError"
    assert error["errorMessage"] == "no cheese"
    assert error["stackTrace"][0].startswith("at check (")
    assert "TypeError: no cheese" in answer.log


def test_a_failing_initializer_is_tried_three_times(sdk: Any) -> None:
    create_node_function(
        sdk,
        "badinit",
        """
        exports.init = (context, callback) => {
          console.log("initializer attempt");
          callback(new Error("no database"));
        };
        exports.handler = async () => "never";
        """,
        initializer_handler="index.init",
        initializer_timeout=5,
    )
    answer = invoke(sdk, urn("badinit"))
    assert answer.status == 500
    assert json.loads(answer.result) == {
        "errorCode": ErrorCode.INITIALIZER_FAILED,
        "errorMessage": "initializer failed: Error: no database",
    }
    assert answer.log.count("initializer attempt") == 3


def test_an_initializer_runs_once_per_instance(sdk: Any) -> None:
    create_node_function(
        sdk,
        "goodinit",
        """
        let runs = 0;
        exports.init = async (context) => { runs += 1; };
        exports.handler = async () => runs;
        """,
        initializer_handler="index.init",
        initializer_timeout=5,
    )
    assert [invoke(sdk, urn("goodinit")).result for _ in range(2)] == ["1", "1"]


def test_a_handler_past_its_timeout_is_killed_and_the_next_gets_a_new_instance(sdk: Any) -> None:
    create_node_function(
        sdk,
        "spinner",
        """
        let calls = 0;
        exports.handler = async (event) => {
          calls += 1;
          if (event.spin) for (;;);
          return calls;
        };
        """,
        timeout=3,
    )
    answer = invoke(sdk, urn("spinner"), {"spin": True})
    assert json.loads(answer.result)["errorCode"] == ErrorCode.TIMEOUT
    assert invoke(sdk, urn("spinner"), {"spin": False}).result == "1"


def test_a_handler_past_its_memory_size_fails_out_of_memory(sdk: Any) -> None:
    create_node_function(
        sdk,
        "hog",
        """
        const kept = [];
        exports.handler = async () => {
          // 1 GB at most: where nothing limits the instance, the test fails, not the host.
          for (let i = 0; i < 64; i++) kept.push(Buffer.alloc(16 * 1024 * 1024, 1));
          return "survived";
        };
        """,
        memory_size=128,
    )
    answer = invoke(sdk, urn("hog"))
    assert json.loads(answer.result)["errorCode"] == ErrorCode.OUT_OF_MEMORY


def test_a_handler_filling_the_javascript_heap_fails_out_of_memory(sdk: Any) -> None:
    create_node_function(
        sdk,
        "heap",
        """
        const kept = [];
        exports.handler = async () => {
          // 1 GB of JavaScript objects at most (8 MB each).
          for (let i = 0; i < 128; i++) kept.push(new Array(1e6).fill(i + 0.5));
          return "survived";
        };
        """,
        memory_size=128,
    )
    answer = invoke(sdk, urn("heap"))
    assert json.loads(answer.result)["errorCode"] == ErrorCode.OUT_OF_MEMORY
    assert json.loads(invoke(sdk, urn("heap"), {}).result)["errorCode"] == ErrorCode.OUT_OF_MEMORY


def test_results_up_to_six_megabytes(sdk: Any) -> None:
    create_node_function(sdk, "big", "exports.handler = async (event) => 'x'.repeat(event.size);")
    answer = invoke(sdk, urn("big"), {"size": SIX_MB})
    assert answer.status == 200 and len(answer.result) == SIX_MB
    answer = invoke(sdk, urn("big"), {"size": SIX_MB + 1})
    assert json.loads(answer.result) == {
        "errorCode": ErrorCode.RESULT_TOO_LARGE,
        "errorMessage": f"function result is {SIX_MB + 1} bytes, more than the limit of {SIX_MB}",
    }


def test_a_published_version_keeps_its_code_and_an_alias_is_seen_by_the_function(
    sdk: Any,
) -> None:
    def code(generation: int) -> str:
        return (
            "exports.handler = async (event, context) =>"
            f" ({{ generation: {generation}, alias: context.getAlias() }});"
        )

    create_node_function(sdk, "versioned", code(1))
    sdk.create_function_version(
        CreateFunctionVersionRequest(
            function_urn=urn("versioned", qualifier=None),
            body=CreateFunctionVersionRequestBody(version="v1"),
        )
    )
    alias = sdk.create_version_alias(
        CreateVersionAliasRequest(
            function_urn=urn("versioned", qualifier=None),
            body=CreateVersionAliasRequestBody(name="stable", version="v1"),
        )
    )
    body = UpdateFunctionCodeRequestBody(code_type="inline", func_code=FuncCode(file=b64(code(2))))
    sdk.update_function_code(UpdateFunctionCodeRequest(function_urn=urn("versioned"), body=body))

    def answer(function_urn: str) -> Any:
        return json.loads(invoke(sdk, function_urn).result)

    assert answer(urn("versioned")) == {"generation": 2, "alias": ""}
    assert answer(urn("versioned", qualifier="v1")) == {"generation": 1, "alias": ""}
    assert answer(alias.alias_urn) == {"generation": 1, "alias": "stable"}
