"""Idempotent accept: ``X-Openfgs-Idempotency-Key`` makes a repeated async invoke a no-op."""

from __future__ import annotations

import uuid
from typing import Any

from openfgs.client import FunctionGraphClient

from .conftest import ECHO_CODE, api_error, new_function, stats, wait_terminal

HEADER = "X-Openfgs-Idempotency-Key"


def invoke_with_key(
    api: FunctionGraphClient, function_urn: str, key: str, event: dict[str, Any]
) -> str:
    response = api.request(
        "POST", f"/functions/{function_urn}/invocations-async", body=event, headers={HEADER: key}
    )
    assert response.status_code == 202, response.text
    request_id: str = response.json()["request_id"]
    return request_id


def test_the_same_key_twice_gives_the_first_request_id_and_one_record(
    sdk: Any, api: FunctionGraphClient
) -> None:
    function_urn = new_function(sdk, "echo", ECHO_CODE)
    key = f"order-{uuid.uuid4()}"

    first = invoke_with_key(api, function_urn, key, {"n": 1})
    second = invoke_with_key(api, function_urn, key, {"n": 2})

    assert second == first
    wait_terminal(api, first)
    assert stats(api, function_urn)["accepted"] == 1


def test_a_repeat_after_the_first_ended_still_answers_the_first_request_id(
    sdk: Any, api: FunctionGraphClient
) -> None:
    function_urn = new_function(sdk, "echo", ECHO_CODE)
    first = invoke_with_key(api, function_urn, "same", {})
    assert wait_terminal(api, first)["status"] == "SUCCESS"

    assert invoke_with_key(api, function_urn, "same", {}) == first
    assert stats(api, function_urn) == {
        "accepted": 1,
        "WAIT": 0,
        "RUNNING": 0,
        "SUCCESS": 1,
        "FAIL": 0,
        "DISCARD": 0,
    }


def test_different_keys_give_two_requests(sdk: Any, api: FunctionGraphClient) -> None:
    function_urn = new_function(sdk, "echo", ECHO_CODE)

    first = invoke_with_key(api, function_urn, "key-a", {})
    second = invoke_with_key(api, function_urn, "key-b", {})

    assert first != second
    assert stats(api, function_urn)["accepted"] == 2


def test_the_same_key_on_another_function_is_separate(sdk: Any, api: FunctionGraphClient) -> None:
    one = new_function(sdk, "one", ECHO_CODE)
    two = new_function(sdk, "two", ECHO_CODE)

    first = invoke_with_key(api, one, "shared", {})
    second = invoke_with_key(api, two, "shared", {})

    assert first != second
    assert stats(api, one)["accepted"] == 1
    assert stats(api, two)["accepted"] == 1
    assert wait_terminal(api, second)["func_urn"].endswith(":two:latest")


def test_a_key_of_128_characters_works_and_a_longer_one_is_refused(
    sdk: Any, api: FunctionGraphClient
) -> None:
    function_urn = new_function(sdk, "echo", ECHO_CODE)
    longest = "k" * 128

    first = invoke_with_key(api, function_urn, longest, {})
    assert invoke_with_key(api, function_urn, longest, {}) == first
    error = api_error(lambda: invoke_with_key(api, function_urn, "k" * 129, {}))

    assert error.status == 400
    assert stats(api, function_urn)["accepted"] == 1
