"""A function that lists a dependency imports it when invoked, sync and async, on every backend;
changing or detaching its dependencies takes effect at the next invocation."""

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
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    DeleteDependencyVersionRequest,
    FuncCode,
    InvokeFunctionRequest,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
)

from tests.api.conftest import (
    zip_of,
)
from tests.support import (
    LiveServer,
    b64,
    reported_event,
    sdk_client,
    urn,
    wait_for_terminal_record,
)

# A tiny pure-Python package, zipped as from site-packages: the package folder at the root.
PACKAGE = {
    "tinylib/__init__.py": "from tinylib.words import greet\n",
    "tinylib/words.py": "def greet(name):\n    return 'hello ' + name\n",
    "settings.py": "SOURCE = 'dependency'\n",
}
CODE = {
    "index.py": (
        "import settings\n"
        "\n"
        "def handler(event, context):\n"
        "    from tinylib import greet\n"
        "    return {'greeting': greet(event['name']), 'settings': settings.SOURCE}\n"
    ),
    "settings.py": "SOURCE = 'code'\n",
}
REPORTER = (
    "import json\n"
    "import tinylib\n"
    "\n"
    "class EventReport(Exception):\n"
    "    pass\n"
    "\n"
    "def handler(event, context):\n"
    "    raise EventReport('EVENT=' + json.dumps({'greeting': tinylib.greet('async')}))\n"
)


def create_dependency(sdk: Any, files: dict[str, str]) -> Any:
    body = CreateDependencyRequestBody(
        depend_type="zip", depend_file=b64(zip_of(files)), runtime="Python3.9", name="tinylib"
    )
    return sdk.create_dependency_version(CreateDependencyVersionRequest(body=body))


def invoke(sdk: Any, name: str, event: dict[str, Any]) -> Any:
    request = InvokeFunctionRequest(function_urn=urn(name), x_cff_request_version="v1", body=event)
    return sdk.invoke_function(request)


def update(sdk: Any, name: str, depend: list[str]) -> None:
    body = UpdateFunctionCodeRequestBody(
        code_type="zip", func_code=FuncCode(file=b64(zip_of(CODE))), depend_version_list=depend
    )
    sdk.update_function_code(UpdateFunctionCodeRequest(function_urn=urn(name), body=body))


def create(sdk: Any, name: str, depend: list[str], code: dict[str, str] = CODE) -> None:
    body = CreateFunctionRequestBody(
        func_name=name,
        package="default",
        runtime="Python3.9",
        timeout=30,
        handler="index.handler",
        memory_size=128,
        code_type="zip",
        func_code=FuncCode(file=b64(zip_of(code))),
        depend_version_list=depend,
    )
    sdk.create_function(CreateFunctionRequest(body=body))


def test_a_listed_dependency_imports_and_wins_over_the_code(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    version = create_dependency(sdk, PACKAGE)
    create(sdk, "greeter", [version.id])

    result = invoke(sdk, "greeter", {"name": "world"})

    assert json.loads(result.result) == {"greeting": "hello world", "settings": "dependency"}


def test_changing_and_detaching_dependencies_takes_effect(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    first = create_dependency(sdk, PACKAGE)
    changed = {**PACKAGE, "tinylib/words.py": "def greet(name):\n    return 'hi ' + name\n"}
    second = create_dependency(sdk, changed)
    create(sdk, "greeter", [first.id])
    assert json.loads(invoke(sdk, "greeter", {"name": "a"}).result)["greeting"] == "hello a"

    update(sdk, "greeter", [second.id])
    assert json.loads(invoke(sdk, "greeter", {"name": "b"}).result)["greeting"] == "hi b"
    update(sdk, "greeter", [second.id, first.id])  # the later one wins
    assert json.loads(invoke(sdk, "greeter", {"name": "c"}).result)["greeting"] == "hello c"

    update(sdk, "greeter", [])
    result = invoke(sdk, "greeter", {"name": "d"})
    assert "tinylib" in result.result  # ModuleNotFoundError: the code alone lacks it


def test_an_async_invocation_imports_it_too(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    version = create_dependency(sdk, PACKAGE)
    create(sdk, "reporter", [version.id], {"index.py": REPORTER})

    accepted = sdk.async_invoke_function(
        AsyncInvokeFunctionRequest(function_urn=urn("reporter"), body={})
    )
    record = wait_for_terminal_record(sdk, urn("reporter"), accepted.request_id)

    assert reported_event(record) == {"greeting": "hello async"}


def test_a_published_version_keeps_the_dependencies_it_was_published_with(
    server: LiveServer,
) -> None:
    sdk = sdk_client(server.url)
    version = create_dependency(sdk, PACKAGE)
    create(sdk, "pinned", [version.id])
    sdk.create_function_version(
        CreateFunctionVersionRequest(
            function_urn=urn("pinned", qualifier=None),
            body=CreateFunctionVersionRequestBody(version="v1"),
        )
    )
    update(sdk, "pinned", [])  # latest drops the dependency; v1 keeps it
    pinned = sdk.invoke_function(
        InvokeFunctionRequest(
            function_urn=urn("pinned", qualifier="v1"),
            x_cff_request_version="v1",
            body={"name": "v1"},
        )
    )
    assert json.loads(pinned.result)["settings"] == "dependency"
    assert json.loads(invoke(sdk, "pinned", {"name": "x"}).result).get("errorMessage")
    delete = DeleteDependencyVersionRequest(depend_id=version.dep_id, version=version.version)
    with pytest.raises(ClientRequestException) as refused:
        sdk.delete_dependency_version(delete)
    assert refused.value.error_code == "FSS.1033"  # v1 still uses it
