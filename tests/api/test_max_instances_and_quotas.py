"""UpdateFunctionMaxInstanceConfig and ListQuotas through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    InvokeFunctionRequest,
    ListQuotasRequest,
    ShowFunctionConfigRequest,
    UpdateFunctionMaxInstanceConfigRequest,
    UpdateFunctionMaxInstanceConfigRequestBody,
)

from tests.api.conftest import (
    RawApi,
    function_path,
)
from tests.support import (
    OTHER,
    PROJECT,
    LiveServer,
    create_function,
    live_server,
    make_settings,
    sdk_client,
    urn,
)


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


def set_max_instances(sdk: Any, function_urn: str, number: int) -> Any:
    body = UpdateFunctionMaxInstanceConfigRequestBody(max_instance_num=number)
    request = UpdateFunctionMaxInstanceConfigRequest(function_urn=function_urn, body=body)
    return sdk.update_function_max_instance_config(request)


def refused(call: Any, status: int) -> str:
    with pytest.raises(ClientRequestException) as info:
        call()
    assert info.value.status_code == status, info.value.error_msg
    code: str = info.value.error_code
    return code


def concurrency(sdk: Any, name: str) -> int:
    config = sdk.show_function_config(ShowFunctionConfigRequest(function_urn=urn(name)))
    value: int = config.strategy_config.concurrency
    return value


def test_max_instances_is_strategy_config_concurrency(sdk: Any) -> None:
    create_function(sdk, "capped")

    response = set_max_instances(sdk, urn("capped", qualifier=None), 5)
    assert response.status_code == 200
    assert response.func_urn == urn("capped") and response.func_name == "capped"
    assert response.strategy_config.concurrency == 5
    assert concurrency(sdk, "capped") == 5
    set_max_instances(sdk, urn("capped"), 1000)
    assert concurrency(sdk, "capped") == 1000
    # -1: no limit of the function's own, stored as the default as strategy_config does it.
    assert set_max_instances(sdk, urn("capped"), -1).strategy_config.concurrency == 400


def test_zero_disables_the_function_until_raised_again(sdk: Any) -> None:
    create_function(sdk, "switch")
    set_max_instances(sdk, urn("switch"), 0)

    invoke = InvokeFunctionRequest(function_urn=urn("switch"), body={})
    async_invoke = AsyncInvokeFunctionRequest(function_urn=urn("switch"), body={})
    assert refused(lambda: sdk.invoke_function(invoke), 429) == "FSS.0429"
    assert refused(lambda: sdk.async_invoke_function(async_invoke), 429) == "FSS.0429"

    set_max_instances(sdk, urn("switch"), 1)
    assert sdk.async_invoke_function(async_invoke).request_id
    assert sdk.invoke_function(invoke).status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"max_instance_num": 1001}', "FSS.1026"),
        (b'{"max_instance_num": -2}', "FSS.1026"),
        (b'{"max_instance_num": 99999999999999999999999}', "FSS.1026"),
        (b'{"max_instance_num": "5"}', "FSS.0400"),
        (b'{"max_instance_num": true}', "FSS.0400"),
        (b'{"max_instance_num": 1.5}', "FSS.0400"),
        (b'{"max_instance_num": null}', "FSS.0400"),
        (b"{}", "FSS.0400"),
        (b"[]", "FSS.0400"),
        (b"{not json", "FSS.0400"),
    ],
)
def test_bad_max_instances_answer_400(raw: RawApi, sdk: Any, body: bytes, code: str) -> None:
    create_function(sdk, "strict")
    path = function_path(urn("strict"), "/config-max-instance")
    response = raw.call("PUT", path, content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == code, response.text
    assert concurrency(sdk, "strict") == 400


def test_max_instances_of_a_missing_or_foreign_function_is_404(
    server: LiveServer, sdk: Any
) -> None:
    create_function(sdk, "mine")
    other = sdk_client(server.url, OTHER)
    assert refused(lambda: set_max_instances(sdk, urn("nobody"), 3), 404) == "FSS.1051"
    assert refused(lambda: set_max_instances(other, urn("mine"), 3), 404) == "FSS.1051"
    assert concurrency(sdk, "mine") == 400


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose projects may have two functions and 1 MB of code."""
    settings = make_settings(
        tmp_path / "data", max_functions_per_project=2, max_code_bytes_per_project=1024 * 1024
    )
    with live_server(settings) as live:
        yield live


def quotas(sdk: Any) -> dict[str, dict[str, Any]]:
    response = sdk.list_quotas(ListQuotasRequest())
    return {r.type: r.to_dict() for r in response.quotas.resources}


def test_quotas_are_the_settings_and_the_usage(small_server: LiveServer) -> None:
    sdk = sdk_client(small_server.url)
    found = quotas(sdk)
    assert found["fgs_func_num"] == {"type": "fgs_func_num", "quota": 2, "used": 0, "unit": None}
    assert found["fgs_func_code_size"] == {
        "type": "fgs_func_code_size",
        "quota": 1,
        "used": 0,
        "unit": "MB",
    }
    assert {name: q["quota"] for name, q in found.items()} == {
        "fgs_func_num": 2,
        "fgs_func_code_size": 1,
        "fgs_on_demand_instance_limit": 1000,
        "fgs_func_version_num": 20,
        "fgs_func_alias_num": 10,
        "fgs_func_dependency_num": 20,
        "fgs_func_trigger_num": 10,
        "fgs_func_tag_num": 20,
    }

    create_function(sdk, "one")
    create_function(sdk, "two")
    found = quotas(sdk)
    assert found["fgs_func_num"]["used"] == 2
    assert found["fgs_func_code_size"]["used"] == 1  # a few hundred bytes, rounded up
    assert refused(lambda: create_function(sdk, "three"), 403) == "FSS.1041"
    assert quotas(sdk_client(small_server.url, OTHER))["fgs_func_num"]["used"] == 0


def test_quotas_answer_without_a_unit_where_there_is_none(raw: RawApi) -> None:
    response = raw.call("GET", f"/v2/{PROJECT}/fgs/quotas")
    assert response.status_code == 200
    resources = response.json()["quotas"]["resources"]
    assert all(("unit" in r) == (r["type"] == "fgs_func_code_size") for r in resources)
