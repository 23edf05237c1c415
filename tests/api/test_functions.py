"""Function management through the official SDK: create, list, show, update, delete, validation."""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    DeleteFunctionRequest,
    FuncCode,
    InvokeFunctionRequest,
    ListFunctionsRequest,
    ShowFunctionCodeRequest,
    ShowFunctionConfigRequest,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
    UpdateFunctionConfigRequest,
    UpdateFunctionConfigRequestBody,
)

from tests.support import PROJECT, LiveServer, b64, create_function, urn

from .conftest import zip_of


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


HELLO = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"


def create_body(**overrides: Any) -> CreateFunctionRequestBody:
    fields: dict[str, Any] = {
        "func_name": "hello",
        "package": "default",
        "runtime": "Python3.9",
        "timeout": 30,
        "handler": "index.handler",
        "memory_size": 128,
        "code_type": "inline",
        "func_code": FuncCode(file=b64(HELLO)),
    }
    fields.update(overrides)
    return CreateFunctionRequestBody(**fields)


def config_body(**overrides: Any) -> UpdateFunctionConfigRequestBody:
    fields: dict[str, Any] = {
        "func_name": "hello",
        "runtime": "Python3.9",
        "timeout": 30,
        "handler": "index.handler",
        "memory_size": 128,
    }
    fields.update(overrides)
    return UpdateFunctionConfigRequestBody(**fields)


def client_error(call: Any) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def function_names(sdk: Any, **query: str) -> list[str]:
    response = sdk.list_functions(ListFunctionsRequest(**query))
    return [f.func_name for f in response.functions]


def invoke_sync(sdk: Any, function_urn: str, event: dict[str, Any]) -> Any:
    request = InvokeFunctionRequest(
        function_urn=function_urn, x_cff_request_version="v1", body=event
    )
    return sdk.invoke_function(request)


# -- create -------------------------------------------------------------------------------


def test_create_inline_function_returns_the_function_model(sdk: Any) -> None:
    response = sdk.create_function(CreateFunctionRequest(body=create_body(description="demo")))

    assert response.status_code == 200
    assert response.func_urn == urn("hello")
    assert response.func_name == "hello"
    assert response.package == "default"
    assert response.namespace == PROJECT
    assert response.runtime == "Python3.9"
    assert response.handler == "index.handler"
    assert (response.memory_size, response.timeout) == (128, 30)
    assert response.code_type == "inline"
    assert response.code_size == len(HELLO.encode())
    assert response.digest == hashlib.sha512(HELLO.encode()).hexdigest()
    assert response.version == "latest"
    assert response.description == "demo"


def test_create_zip_function_runs_the_code_in_the_archive(sdk: Any) -> None:
    archive = zip_of({"main.py": "def run(event, context):\n    return {'from': 'zip'}\n"})
    body = create_body(
        func_name="zipped",
        handler="main.run",
        code_type="zip",
        code_filename="code.zip",
        func_code=FuncCode(file=b64(archive)),
    )
    created = sdk.create_function(CreateFunctionRequest(body=body))
    assert created.code_type == "zip"
    assert created.code_size == len(archive)

    code = sdk.show_function_code(ShowFunctionCodeRequest(function_urn=urn("zipped")))
    assert base64.b64decode(code.func_code.file) == archive
    assert code.code_filename == "code.zip"
    result = invoke_sync(sdk, urn("zipped"), {})
    assert json.loads(result.result) == {"from": "zip"}


def test_duplicate_function_is_a_conflict(sdk: Any) -> None:
    sdk.create_function(CreateFunctionRequest(body=create_body()))

    error = client_error(lambda: sdk.create_function(CreateFunctionRequest(body=create_body())))

    assert (error.status_code, error.error_code) == (409, "FSS.1061")


def test_same_name_in_another_package_is_another_function(sdk: Any) -> None:
    sdk.create_function(CreateFunctionRequest(body=create_body()))
    sdk.create_function(CreateFunctionRequest(body=create_body(package="other")))

    assert function_names(sdk) == ["hello", "hello"]


# -- validation ---------------------------------------------------------------------------

INVALID_CREATES = [
    ("func_name", {"func_name": "1starts-with-digit"}, "FSS.1002"),
    ("func_name", {"func_name": "has space"}, "FSS.1002"),
    ("func_name", {"func_name": "ends-with-dash-"}, "FSS.1002"),
    ("func_name", {"func_name": "a" * 61}, "FSS.1002"),
    ("handler", {"handler": "index"}, "FSS.1003"),
    ("handler", {"handler": "index.handler" + "x" * 120}, "FSS.1003"),
    ("package", {"package": "no spaces here"}, "FSS.1004"),
    ("runtime", {"runtime": "Java11"}, "FSS.1005"),
    ("runtime", {"runtime": "Python2"}, "FSS.1005"),
    ("runtime", {"runtime": "Python2.7"}, "FSS.1005"),
    ("runtime", {"runtime": "Node.js99.1"}, "FSS.1005"),
    ("runtime", {"runtime": "Custom Image"}, "FSS.1005"),
    ("handler", {"runtime": "Node.js20.15", "handler": "../up.handler"}, "FSS.1003"),
    ("handler", {"runtime": "Node.js20.15", "handler": "/abs/index.handler"}, "FSS.1003"),
    ("handler", {"runtime": "Node.js20.15", "handler": "src/./index.handler"}, "FSS.1003"),
    ("handler", {"runtime": "Node.js20.15", "handler": "index.1bad"}, "FSS.1003"),
    ("handler", {"runtime": "Python3.9", "handler": "src/index.handler"}, "FSS.1003"),
    ("handler", {"runtime": "Custom", "handler": "boot strap"}, "FSS.1003"),
    ("func_code", {"runtime": "Custom", "handler": "bootstrap", "func_code": None}, "FSS.1012"),
    ("func_code", {"runtime": "http", "handler": "bootstrap", "func_code": None}, "FSS.1012"),
    ("code_type", {"code_type": "tarball"}, "FSS.1006"),
    ("memory_size", {"memory_size": 100}, "FSS.1007"),
    ("memory_size", {"memory_size": 8192}, "FSS.1007"),
    ("timeout", {"timeout": 2}, "FSS.1008"),
    ("timeout", {"timeout": 259201}, "FSS.1008"),
    ("user_data", {"user_data": "not json"}, "FSS.1009"),
    ("user_data", {"user_data": '["a list"]'}, "FSS.1009"),
    ("user_data", {"user_data": json.dumps({f"K{i}": "v" for i in range(21)})}, "FSS.1017"),
    ("user_data", {"user_data": json.dumps({"BIG": "x" * 4100})}, "FSS.1018"),
    ("func_code", {"func_code": FuncCode(file="this is *not* base64!")}, "FSS.1011"),
    (
        "func_code",
        {"code_type": "zip", "func_code": FuncCode(file=b64(b"plain bytes, not a zip"))},
        "FSS.1011",
    ),
    ("description", {"description": "d" * 513}, "FSS.1019"),
    ("initializer_handler", {"initializer_handler": "nodot"}, "FSS.1404"),
    ("initializer_timeout", {"initializer_timeout": 0}, "FSS.1405"),
    ("initializer_timeout", {"initializer_timeout": 301}, "FSS.1405"),
]


@pytest.mark.parametrize(
    ("field", "overrides", "code"),
    INVALID_CREATES,
    ids=[f"{field}-{code}-{i}" for i, (field, _, code) in enumerate(INVALID_CREATES)],
)
def test_invalid_create_is_rejected_with_the_field_code(
    sdk: Any, field: str, overrides: dict[str, Any], code: str
) -> None:
    body = create_body(**overrides)

    error = client_error(lambda: sdk.create_function(CreateFunctionRequest(body=body)))

    assert (error.status_code, error.error_code) == (400, code), error.error_msg
    assert error.error_msg
    assert function_names(sdk) == []


def test_boundary_values_are_accepted(sdk: Any) -> None:
    body = create_body(
        func_name="a" * 60,
        timeout=3,
        memory_size=4096,
        description="d" * 512,
        user_data=json.dumps({f"K{i}": "v" for i in range(20)}),
        initializer_handler="index.init",
        initializer_timeout=300,
    )
    sdk.create_function(CreateFunctionRequest(body=body))
    body = create_body(func_name="b", timeout=259200, initializer_timeout=1)
    sdk.create_function(CreateFunctionRequest(body=body))

    assert sorted(function_names(sdk)) == ["a" * 60, "b"]


RESERVED_NAMES = ["LD_PRELOAD", "ld_library_path", "PYTHONPATH", "PYTHONSTARTUP", "GCONV_PATH"]


@pytest.mark.parametrize("name", [*RESERVED_NAMES, "1STARTS_WITH_A_DIGIT", "HAS-DASH"])
def test_user_data_may_not_set_runtime_variables_at_create(sdk: Any, name: str) -> None:
    body = create_body(user_data=json.dumps({"OK": "1", name: "/tmp/evil"}))

    error = client_error(lambda: sdk.create_function(CreateFunctionRequest(body=body)))

    assert (error.status_code, error.error_code) == (400, "FSS.1009"), error.error_msg
    assert repr(name) in error.error_msg
    assert function_names(sdk) == []


@pytest.mark.parametrize("name", RESERVED_NAMES)
def test_user_data_may_not_set_runtime_variables_at_update(sdk: Any, name: str) -> None:
    create_function(sdk, "hello", HELLO, user_data={"A": "1"})
    body = config_body(user_data=json.dumps({name: "/tmp/evil"}))
    request = UpdateFunctionConfigRequest(function_urn=urn("hello"), body=body)

    error = client_error(lambda: sdk.update_function_config(request))

    assert (error.status_code, error.error_code) == (400, "FSS.1009"), error.error_msg
    assert repr(name) in error.error_msg
    shown = sdk.show_function_config(ShowFunctionConfigRequest(function_urn=urn("hello")))
    assert json.loads(shown.user_data) == {"A": "1"}


def test_user_data_of_ordinary_names_reaches_the_function(sdk: Any) -> None:
    code = (
        "import os\ndef handler(e, c):\n    return [os.environ['DB_HOST'], c.getUserData('x_y')]\n"
    )
    create_function(sdk, "env", code, user_data={"DB_HOST": "db", "x_y": "z"})

    assert json.loads(invoke_sync(sdk, urn("env"), {}).result) == ["db", "z"]


def test_inline_code_over_10_kb_is_too_large(sdk: Any) -> None:
    code = HELLO + "#" * (10 * 1024)
    body = create_body(func_code=FuncCode(file=b64(code)))

    error = client_error(lambda: sdk.create_function(CreateFunctionRequest(body=body)))

    assert (error.status_code, error.error_code) == (413, "FSS.1072")
    assert function_names(sdk) == []


def test_inline_code_of_exactly_10_kb_is_accepted(sdk: Any) -> None:
    code = HELLO + "#" * (10 * 1024 - len(HELLO))
    body = create_body(func_code=FuncCode(file=b64(code)))

    created = sdk.create_function(CreateFunctionRequest(body=body))

    assert created.code_size == 10 * 1024


# -- list ---------------------------------------------------------------------------------


def test_list_functions_pages_with_marker_and_maxitems(sdk: Any) -> None:
    names = [f"fn-{i}" for i in range(5)]
    for name in names:
        create_function(sdk, name, HELLO)

    seen: list[str] = []
    marker = "0"
    for _ in range(10):
        page = sdk.list_functions(ListFunctionsRequest(marker=marker, maxitems="2"))
        assert page.count == 5
        assert len(page.functions) <= 2
        assert page.next_marker == int(marker) + len(page.functions)
        seen += [f.func_name for f in page.functions]
        if len(page.functions) < 2:
            break
        marker = str(page.next_marker)

    assert sorted(seen) == names
    assert len(seen) == len(set(seen))


def test_listed_functions_carry_unqualified_urns(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)

    (listed,) = sdk.list_functions(ListFunctionsRequest()).functions

    assert listed.func_urn == urn("hello", qualifier=None)
    assert listed.version == "latest"
    assert listed.func_name == "hello"


def test_list_functions_filters_by_package_and_name(sdk: Any) -> None:
    for name in ("alpha-one", "alpha-two", "beta"):
        create_function(sdk, name, HELLO)
    sdk.create_function(CreateFunctionRequest(body=create_body(func_name="alpha-3", package="p2")))

    assert sorted(function_names(sdk, func_name="alpha")) == ["alpha-3", "alpha-one", "alpha-two"]
    assert function_names(sdk, package_name="p2") == ["alpha-3"]
    assert sorted(function_names(sdk, package_name="default", func_name="alpha")) == [
        "alpha-one",
        "alpha-two",
    ]
    assert function_names(sdk, func_name="gamma") == []
    response = sdk.list_functions(ListFunctionsRequest(func_name="alpha", maxitems="1"))
    assert response.count == 3
    assert len(response.functions) == 1


@pytest.mark.parametrize("marker", ["x", "-1"])
def test_list_functions_rejects_a_bad_marker(sdk: Any, marker: str) -> None:
    error = client_error(lambda: sdk.list_functions(ListFunctionsRequest(marker=marker)))

    assert error.status_code == 400
    assert "marker" in error.error_msg


# -- show / update ------------------------------------------------------------------------


@pytest.mark.parametrize("qualifier", [None, "latest"])
def test_show_config_by_unqualified_or_latest_urn(sdk: Any, qualifier: str | None) -> None:
    create_function(sdk, "hello", HELLO, timeout=42)

    config = sdk.show_function_config(
        ShowFunctionConfigRequest(function_urn=urn("hello", qualifier=qualifier))
    )

    assert config.func_urn == urn("hello")
    assert config.func_name == "hello"
    assert config.timeout == 42
    assert config.code_type == "inline"
    assert config.version == "latest"


def test_update_config_changes_what_show_config_returns(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)
    body = config_body(
        timeout=60,
        handler="index.other",
        memory_size=256,
        description="updated",
        user_data=json.dumps({"A": "1"}),
    )

    updated = sdk.update_function_config(
        UpdateFunctionConfigRequest(function_urn=urn("hello"), body=body)
    )
    shown = sdk.show_function_config(ShowFunctionConfigRequest(function_urn=urn("hello")))

    for model in (updated, shown):
        assert (model.timeout, model.handler, model.memory_size) == (60, "index.other", 256)
        assert model.description == "updated"
        assert json.loads(model.user_data) == {"A": "1"}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"memory_size": 100}, "FSS.1007"),
        ({"timeout": 2}, "FSS.1008"),
        ({"handler": "nodot"}, "FSS.1003"),
        ({"runtime": "Java11"}, "FSS.1005"),
        ({"runtime": "Node.js20.15", "handler": "../index.handler"}, "FSS.1003"),
        ({"user_data": "{"}, "FSS.1009"),
        ({"description": "d" * 513}, "FSS.1019"),
        ({"func_name": "someone-else"}, "FSS.1002"),
    ],
)
def test_invalid_config_update_is_rejected(sdk: Any, overrides: dict[str, Any], code: str) -> None:
    create_function(sdk, "hello", HELLO, timeout=42)
    request = UpdateFunctionConfigRequest(function_urn=urn("hello"), body=config_body(**overrides))

    error = client_error(lambda: sdk.update_function_config(request))

    assert (error.status_code, error.error_code) == (400, code), error.error_msg
    shown = sdk.show_function_config(ShowFunctionConfigRequest(function_urn=urn("hello")))
    assert shown.timeout == 42


def test_show_code_round_trips_the_base64(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)

    code = sdk.show_function_code(ShowFunctionCodeRequest(function_urn=urn("hello")))

    assert base64.b64decode(code.func_code.file).decode() == HELLO
    assert code.code_type == "inline"
    assert code.code_size == len(HELLO.encode())
    assert code.digest == hashlib.sha512(HELLO.encode()).hexdigest()
    assert code.func_urn == urn("hello")


def test_update_code_changes_the_digest_and_the_behaviour(sdk: Any) -> None:
    before = create_function(sdk, "hello", HELLO)
    new_code = textwrap.dedent(
        """\
        def handler(event, context):
            return {"version": 2}
        """
    )
    body = UpdateFunctionCodeRequestBody(code_type="inline", func_code=FuncCode(file=b64(new_code)))

    updated = sdk.update_function_code(
        UpdateFunctionCodeRequest(function_urn=urn("hello"), body=body)
    )

    assert updated.digest == hashlib.sha512(new_code.encode()).hexdigest()
    assert updated.digest != before.digest
    assert updated.code_size == len(new_code)
    shown = sdk.show_function_code(ShowFunctionCodeRequest(function_urn=urn("hello")))
    assert base64.b64decode(shown.func_code.file).decode() == new_code
    assert json.loads(invoke_sync(sdk, urn("hello"), {}).result) == {"version": 2}


def test_update_code_with_bad_code_keeps_the_old_code(sdk: Any) -> None:
    before = create_function(sdk, "hello", HELLO)
    body = UpdateFunctionCodeRequestBody(code_type="zip", func_code=FuncCode(file=b64(b"no zip")))
    request = UpdateFunctionCodeRequest(function_urn=urn("hello"), body=body)

    error = client_error(lambda: sdk.update_function_code(request))

    assert (error.status_code, error.error_code) == (400, "FSS.1011")
    shown = sdk.show_function_code(ShowFunctionCodeRequest(function_urn=urn("hello")))
    assert shown.digest == before.digest


# -- delete -------------------------------------------------------------------------------


def test_delete_function_then_it_is_gone(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)

    response = sdk.delete_function(DeleteFunctionRequest(function_urn=urn("hello", qualifier=None)))

    assert response.status_code == 204
    error = client_error(
        lambda: sdk.show_function_config(ShowFunctionConfigRequest(function_urn=urn("hello")))
    )
    assert error.status_code == 404
    assert function_names(sdk) == []
    error = client_error(
        lambda: sdk.delete_function(
            DeleteFunctionRequest(function_urn=urn("hello", qualifier=None))
        )
    )
    assert error.status_code == 404


def test_deleting_latest_alone_is_refused(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)

    error = client_error(
        lambda: sdk.delete_function(DeleteFunctionRequest(function_urn=urn("hello")))
    )

    assert error.status_code == 400
    assert error.error_code.startswith("FSS.")
    assert function_names(sdk) == ["hello"]


def test_a_deleted_name_can_be_created_again(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("hello", qualifier=None)))

    created = create_function(sdk, "hello", "def handler(e, c):\n    return 2\n")

    assert json.loads(invoke_sync(sdk, created.func_urn, {}).result) == 2


# -- unknown function ---------------------------------------------------------------------

UNKNOWN_CALLS: dict[str, Callable[[Any, str], Any]] = {
    "show_config": lambda sdk, u: sdk.show_function_config(
        ShowFunctionConfigRequest(function_urn=u)
    ),
    "show_code": lambda sdk, u: sdk.show_function_code(ShowFunctionCodeRequest(function_urn=u)),
    "update_config": lambda sdk, u: sdk.update_function_config(
        UpdateFunctionConfigRequest(function_urn=u, body=config_body())
    ),
    "update_code": lambda sdk, u: sdk.update_function_code(
        UpdateFunctionCodeRequest(
            function_urn=u,
            body=UpdateFunctionCodeRequestBody(
                code_type="inline", func_code=FuncCode(file=b64(HELLO))
            ),
        )
    ),
    "delete": lambda sdk, u: sdk.delete_function(DeleteFunctionRequest(function_urn=u)),
}


@pytest.mark.parametrize("operation", sorted(UNKNOWN_CALLS))
def test_unknown_function_is_not_found(sdk: Any, operation: str) -> None:
    call = UNKNOWN_CALLS[operation]

    error = client_error(lambda: call(sdk, urn("hello", qualifier=None)))

    assert error.status_code == 404
    assert error.error_code in ("FSS.1051", "FSS.0404")
    assert error.error_msg


def test_a_function_of_another_urn_project_is_not_found(sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)
    other = urn("hello", project="fedcba9876543210fedcba9876543210")

    error = client_error(
        lambda: sdk.show_function_config(ShowFunctionConfigRequest(function_urn=other))
    )

    assert error.status_code == 404


@pytest.mark.parametrize("bad_urn", ["hello", "urn:fss:cn-north-4:x:notfunction:default:hello"])
def test_a_malformed_urn_is_a_bad_request(sdk: Any, bad_urn: str) -> None:
    error = client_error(
        lambda: sdk.show_function_config(ShowFunctionConfigRequest(function_urn=bad_urn))
    )

    assert (error.status_code, error.error_code) == (400, "FSS.1309")
