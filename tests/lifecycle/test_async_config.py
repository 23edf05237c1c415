"""Async invoke config: PUT/GET/list/DELETE through the SDK, ranges, defaults, destinations."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    DeleteFunctionAsyncInvokeConfigRequest,
    EnableAsyncStatusLogRequest,
    FuncAsyncDestinationConfig,
    FuncDestinationConfig,
    ListFunctionAsyncInvokeConfigRequest,
    ShowFunctionAsyncInvokeConfigRequest,
    ShowProjectAsyncStatusLogInfoRequest,
)

from openfgs.client import FunctionGraphClient
from tests.support import ECHO_CODE, LiveServer, create_function, urn

from .conftest import api_error, client_error, destination, put_config

CREATED_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
LAST_MODIFIED = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server per backend for the module (no test here invokes): each test starts from
    empty projects."""
    return shared_server


@pytest.fixture
def target(sdk: Any) -> str:
    create_function(sdk, "target", ECHO_CODE)
    return urn("target")


@pytest.fixture
def sink(sdk: Any) -> str:
    create_function(sdk, "sink", ECHO_CODE)
    return urn("sink")


def show(sdk: Any, function_urn: str) -> Any:
    return sdk.show_function_async_invoke_config(
        ShowFunctionAsyncInvokeConfigRequest(function_urn=function_urn)
    )


def test_put_answers_the_config_with_a_qualified_urn_and_both_time_formats(
    sdk: Any, target: str, sink: str
) -> None:
    response = put_config(
        sdk,
        urn("target", qualifier=None),
        max_async_event_age_in_seconds=120,
        max_async_retry_attempts=2,
        on_success=sink,
        on_failure=sink,
        enable_async_status_log=True,
    )

    assert response.status_code == 200
    assert response.func_urn == urn("target")
    assert response.max_async_event_age_in_seconds == 120
    assert response.max_async_retry_attempts == 2
    assert response.enable_async_status_log is True
    assert CREATED_TIME.fullmatch(response.created_time), response.created_time
    assert LAST_MODIFIED.fullmatch(response.last_modified), response.last_modified
    for dest in (response.destination_config.on_success, response.destination_config.on_failure):
        assert dest.destination == "FunctionGraph"
        assert json.loads(dest.param) == {"func_urn": sink}


def test_get_returns_what_put_stored(sdk: Any, target: str, sink: str) -> None:
    put_config(sdk, target, max_async_event_age_in_seconds=60, on_failure=sink)

    found = show(sdk, target)

    assert found.status_code == 200
    assert found.func_urn == urn("target")
    assert found.max_async_event_age_in_seconds == 60
    assert found.max_async_retry_attempts == 1
    assert found.destination_config.on_success is None
    assert json.loads(found.destination_config.on_failure.param) == {"func_urn": sink}
    assert CREATED_TIME.fullmatch(found.created_time)
    assert LAST_MODIFIED.fullmatch(found.last_modified)


def test_put_again_replaces_the_config_and_keeps_created_time(sdk: Any, target: str) -> None:
    first = put_config(sdk, target, max_async_retry_attempts=3, max_async_event_age_in_seconds=10)
    second = put_config(sdk, target, max_async_retry_attempts=0)

    assert second.max_async_retry_attempts == 0
    assert second.max_async_event_age_in_seconds == 3600
    assert second.created_time == first.created_time
    assert show(sdk, target).max_async_retry_attempts == 0


def test_get_without_a_config_is_not_found(sdk: Any, target: str) -> None:
    error = client_error(lambda: show(sdk, target))

    assert error.status_code == 404
    assert error.error_code == "FSS.0404"


def test_delete_answers_204_then_the_config_is_gone(sdk: Any, target: str) -> None:
    put_config(sdk, target, max_async_retry_attempts=2)

    response = sdk.delete_function_async_invoke_config(
        DeleteFunctionAsyncInvokeConfigRequest(function_urn=target)
    )

    assert response.status_code == 204
    assert client_error(lambda: show(sdk, target)).status_code == 404
    again = client_error(
        lambda: sdk.delete_function_async_invoke_config(
            DeleteFunctionAsyncInvokeConfigRequest(function_urn=target)
        )
    )
    assert again.status_code == 404


def test_list_has_the_one_config_and_page_info(sdk: Any, target: str) -> None:
    request = ListFunctionAsyncInvokeConfigRequest(function_urn=target)
    empty = sdk.list_function_async_invoke_config(request)
    assert empty.count == 0
    assert empty.async_invoke_configs == []

    put_config(sdk, target, max_async_event_age_in_seconds=30)
    listed = sdk.list_function_async_invoke_config(request)

    assert listed.status_code == 200
    assert listed.count == 1
    (config,) = listed.async_invoke_configs
    assert config.func_urn == urn("target")
    assert config.max_async_event_age_in_seconds == 30
    assert CREATED_TIME.fullmatch(config.created_time)
    assert LAST_MODIFIED.fullmatch(config.last_modified)
    assert listed.page_info.current_count == 1
    assert listed.page_info.next_marker == 1


def test_list_pages_by_marker_and_refuses_a_negative_limit(
    api: FunctionGraphClient, sdk: Any, target: str
) -> None:
    put_config(sdk, target)
    path = f"/functions/{target}/async-invoke-configs"

    past_the_end = api.json("GET", path, query={"marker": "1", "limit": "200"})
    error = api_error(lambda: api.json("GET", path, query={"limit": "-1"}))

    assert past_the_end["count"] == 1
    assert past_the_end["async_invoke_configs"] == []
    assert past_the_end["page_info"]["current_count"] == 0
    assert error.status == 400


def test_omitted_fields_take_the_documented_defaults(sdk: Any, target: str) -> None:
    response = put_config(sdk, target)

    assert response.max_async_event_age_in_seconds == 3600
    assert response.max_async_retry_attempts == 1
    assert response.enable_async_status_log is False
    assert response.destination_config.on_success is None
    assert response.destination_config.on_failure is None


@pytest.mark.parametrize(
    "fields",
    [
        {"max_async_event_age_in_seconds": 0},
        {"max_async_event_age_in_seconds": 86401},
        {"max_async_retry_attempts": -1},
        {"max_async_retry_attempts": 4},
    ],
    ids=["age-0", "age-86401", "retries--1", "retries-4"],
)
def test_out_of_range_values_are_rejected(sdk: Any, target: str, fields: dict[str, int]) -> None:
    error = client_error(lambda: put_config(sdk, target, **fields))

    assert error.status_code == 400
    assert client_error(lambda: show(sdk, target)).status_code == 404


@pytest.mark.parametrize(
    "fields",
    [
        {"max_async_event_age_in_seconds": 1, "max_async_retry_attempts": 0},
        {"max_async_event_age_in_seconds": 86400, "max_async_retry_attempts": 3},
    ],
    ids=["low", "high"],
)
def test_range_bounds_are_accepted(sdk: Any, target: str, fields: dict[str, int]) -> None:
    response = put_config(sdk, target, **fields)

    assert response.max_async_event_age_in_seconds == fields["max_async_event_age_in_seconds"]
    assert response.max_async_retry_attempts == fields["max_async_retry_attempts"]


@pytest.mark.parametrize("kind", ["OBS", "SMN", "DIS"])
def test_destinations_other_than_functiongraph_are_rejected(
    sdk: Any, target: str, kind: str
) -> None:
    dest = FuncDestinationConfig(destination=kind, param=json.dumps({"topic_urn": "x"}))
    error = client_error(
        lambda: put_config(
            sdk, target, destination_config=FuncAsyncDestinationConfig(on_failure=dest)
        )
    )

    assert error.status_code == 400
    assert error.error_code == "FSS.0400"
    assert client_error(lambda: show(sdk, target)).status_code == 404


def test_a_destination_function_that_does_not_exist_is_rejected(sdk: Any, target: str) -> None:
    error = client_error(lambda: put_config(sdk, target, on_success=urn("nowhere")))

    assert error.status_code == 400
    assert "nowhere" in error.error_msg


@pytest.mark.parametrize(
    "param",
    ["not json", json.dumps({"urn": "x"}), json.dumps({"func_urn": 5}), json.dumps(["a"])],
    ids=["not-json", "no-func-urn", "urn-not-a-string", "a-list"],
)
def test_a_malformed_destination_param_is_rejected(sdk: Any, target: str, param: str) -> None:
    dest = FuncDestinationConfig(destination="FunctionGraph", param=param)
    error = client_error(
        lambda: put_config(
            sdk, target, destination_config=FuncAsyncDestinationConfig(on_success=dest)
        )
    )

    assert error.status_code == 400


def test_a_destination_in_another_project_is_rejected(sdk: Any, target: str) -> None:
    from tests.support import OTHER_PROJECT

    error = client_error(
        lambda: put_config(sdk, target, on_failure=urn("target", project=OTHER_PROJECT))
    )

    assert error.status_code == 400


def test_config_of_an_unknown_function_is_not_found(sdk: Any) -> None:
    error = client_error(lambda: put_config(sdk, urn("missing"), max_async_retry_attempts=1))

    assert error.status_code == 404


def test_a_destination_param_survives_the_round_trip_verbatim(sdk: Any, target: str) -> None:
    put_config(
        sdk,
        target,
        destination_config=FuncAsyncDestinationConfig(on_success=destination(target)),
    )

    assert show(sdk, target).destination_config.on_success.param == destination(target).param


def test_enable_async_status_log_answers_200(sdk: Any) -> None:
    response = sdk.enable_async_status_log(EnableAsyncStatusLogRequest())

    assert response.status_code == 200


def test_status_log_info_has_the_four_names(sdk: Any) -> None:
    response = sdk.show_project_async_status_log_info(ShowProjectAsyncStatusLogInfoRequest())

    assert response.status_code == 200
    for name in ("group_name", "group_id", "stream_id", "stream_name"):
        value = getattr(response, name)
        assert isinstance(value, str)
        assert value


def test_a_wrong_json_type_is_rejected_raw(api: FunctionGraphClient, target: str) -> None:
    error = api_error(
        lambda: api.json(
            "PUT",
            f"/functions/{target}/async-invoke-config",
            body={"max_async_retry_attempts": "2"},
        )
    )

    assert error.status == 400
