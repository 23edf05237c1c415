"""Idempotent accept: ``X-Openfgs-Idempotency-Key`` makes a repeated async invoke a no-op."""

from __future__ import annotations

import uuid
from typing import Any

from openfgs.client import FunctionGraphClient
from tests.support import ECHO_CODE, create_function, urn, wait_for_terminal_detail

from .conftest import api_error, stats

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
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    key = f"order-{uuid.uuid4()}"

    first = invoke_with_key(api, function_urn, key, {"n": 1})
    second = invoke_with_key(api, function_urn, key, {"n": 2})

    assert second == first
    wait_for_terminal_detail(api, first)
    assert stats(api, function_urn)["accepted"] == 1


def test_a_repeat_after_the_first_ended_still_answers_the_first_request_id(
    sdk: Any, api: FunctionGraphClient
) -> None:
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    first = invoke_with_key(api, function_urn, "same", {})
    assert wait_for_terminal_detail(api, first)["status"] == "SUCCESS"

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
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")

    first = invoke_with_key(api, function_urn, "key-a", {})
    second = invoke_with_key(api, function_urn, "key-b", {})

    assert first != second
    assert stats(api, function_urn)["accepted"] == 2


def test_the_same_key_on_another_function_is_separate(sdk: Any, api: FunctionGraphClient) -> None:
    create_function(sdk, "one", ECHO_CODE)
    one = urn("one")
    create_function(sdk, "two", ECHO_CODE)
    two = urn("two")

    first = invoke_with_key(api, one, "shared", {})
    second = invoke_with_key(api, two, "shared", {})

    assert first != second
    assert stats(api, one)["accepted"] == 1
    assert stats(api, two)["accepted"] == 1
    assert wait_for_terminal_detail(api, second)["func_urn"].endswith(":two:latest")


def test_a_key_of_128_characters_works_and_a_longer_one_is_refused(
    sdk: Any, api: FunctionGraphClient
) -> None:
    create_function(sdk, "echo", ECHO_CODE)
    function_urn = urn("echo")
    longest = "k" * 128

    first = invoke_with_key(api, function_urn, longest, {})
    assert invoke_with_key(api, function_urn, longest, {}) == first
    error = api_error(lambda: invoke_with_key(api, function_urn, "k" * 129, {}))

    assert error.status == 400
    assert stats(api, function_urn)["accepted"] == 1
