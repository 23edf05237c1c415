"""Every operation of the official SDK's FunctionGraphClient reaches its route or a 404.

The operations are read from the SDK itself (each ``_<operation>_http_info`` request builder
gives the method and path); openfgs's table of them (``openfgs.api.operations``) must list
the same ones, and docs/api.md must show that table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import huaweicloudsdkfunctiongraph.v2 as fgs
import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkfunctiongraph.v2 import FunctionGraphClient

from openfgs.api.operations import IMPLEMENTED, OPERATIONS, PREFIX, operations_table
from tests.api.conftest import RawApi
from tests.support import PROJECT, LiveServer


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


# Operations whose routes come with modules of their own (versions, aliases, dependencies,
# triggers): until such a module is part of the app, its operations answer 404 FSS.0404 like
# any operation without a route, so either answer passes here. When a module lands, its
# operations are marked IMPLEMENTED in openfgs.api.operations and leave this set.
ROUTED_WHEN_PRESENT: set[str] = set()
NOT_IMPLEMENTED = "is not implemented by openfgs"
_PARAMETER = re.compile(r"\{(\w+)\}")


def sdk_operations() -> dict[str, tuple[str, str]]:
    """``{operation: (method, path)}`` of every operation of the SDK's client."""
    found = {}
    for attribute in dir(FunctionGraphClient):
        match = re.fullmatch(r"_(\w+)_http_info", attribute)
        if match is None:
            continue
        name = match[1]
        request = request_class(name)()
        info = getattr(FunctionGraphClient, attribute)(request)
        found[name] = (info["method"], info["resource_path"])
    return found


def request_class(name: str) -> Any:
    title = "".join(part.capitalize() for part in name.split("_"))
    return getattr(fgs, f"{title}Request")


def test_the_table_lists_every_sdk_operation_as_the_sdk_sends_it() -> None:
    table = {op.name: (op.method, op.full_path) for op in OPERATIONS}
    assert len(table) == len(OPERATIONS)
    assert table == sdk_operations()


def test_docs_show_the_operations_table() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    assert operations_table() in docs, "docs/api.md: paste `python -m openfgs.api.operations`"


def path_values(function_urn: str) -> dict[str, str]:
    return {
        "function_urn": function_urn,
        "func_urn": function_urn,
        "resource_id": function_urn,
        "resource_type": "functions",
        "period": "5",
    }


def call(sdk: Any, name: str, path: str, function_urn: str) -> tuple[int, str, str]:
    """Call ``name`` through the SDK with its path parameters set; (status, code, message)."""
    values = path_values(function_urn)
    params = {p: values.get(p, f"{p}-1") for p in _PARAMETER.findall(path) if p != "project_id"}
    try:
        response = getattr(sdk, name)(request_class(name)(**params))
    except exceptions.ServiceResponseException as exc:
        return exc.status_code, exc.error_code, exc.error_msg
    return response.status_code, "", ""


def test_every_sdk_operation_reaches_its_route_or_a_404(sdk: Any, echo_urn: str) -> None:
    implemented = {op.name for op in OPERATIONS if op.support is IMPLEMENTED}
    operations = sdk_operations()
    # DeleteFunction last: with the :latest URN it deletes nothing (400 FSS.1015), anyway.
    for name in sorted(operations, key=lambda n: n == "delete_function"):
        method, path = operations[name]
        status, code, message = call(sdk, name, path, echo_urn)
        where = (name, method, path, status, code, message)
        assert status != 405 and status < 500, where
        routed = not (status == 404 and NOT_IMPLEMENTED in message)
        if status == 404 and not routed:
            assert code == "FSS.0404", where
        if name in ROUTED_WHEN_PRESENT:
            continue
        assert routed == (name in implemented), where


@pytest.mark.parametrize(
    "path",
    [
        "/fgs/functions/reservedinstanceconfigs",
        "/fgs/functions/reservedinstances",
        "/fgs/functions/statistics",
        "/fgs/functions/enable-lts-logs",
        "/fgs/functions/import",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_static_segments_are_not_taken_for_a_urn(raw: RawApi, method: str, path: str) -> None:
    """The operation's own method answers 404 naming it (a path read as a function URN would
    answer 400 FSS.1309, or 405); any other method is no server error."""
    response = raw.call(method, f"/v2/{PROJECT}{path}")
    assert response.status_code < 500, response.text
    operation = next(
        (op for op in OPERATIONS if op.full_path == PREFIX + path and op.method == method), None
    )
    if operation is not None and operation.support is IMPLEMENTED:
        assert "FSS.1309" not in response.text, response.text  # answered by its own route
    elif operation is not None:
        assert response.status_code == 404, response.text
        assert response.json() == {
            "error_code": "FSS.0404",
            "error_msg": f"{operation.title} {NOT_IMPLEMENTED}: {operation.reason}",
        }


def test_an_operation_without_a_route_is_authenticated_first(raw: RawApi) -> None:
    response = raw.call("GET", f"/v2/{PROJECT}/fgs/functions/statistics", credential=None)
    assert response.status_code in (401, 403), response.text
