"""Pure functions of the async lifecycle: the decision, expiry, backoff, destination events and
the query parsers of the list endpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from openfgs.api.params import parse_active_query, parse_list_query
from openfgs.errors import BadRequest
from openfgs.invocations import (
    Decision,
    backoff_ms,
    decide,
    destination_event,
    expiry_decision,
)
from openfgs.models import ClaimedInvocation, ErrorCode, Function, Status, parse_time
from openfgs.runtime.types import RunResult

NOW = 1_700_000_000_000
URN = "urn:fss:cn-north-4:0123456789abcdef0123456789abcdef:function:default:f:latest"


def claimed(
    attempt: int = 1,
    max_attempts: int = 1,
    *,
    last_error: str = "",
    payload: bytes = b'{"k": "v"}',
    expires_at: int = NOW + 3_600_000,
) -> ClaimedInvocation:
    return ClaimedInvocation(
        request_id="req-1",
        function_id=7,
        version="latest",
        payload=payload,
        attempt=attempt,
        expires_at=expires_at,
        max_attempts=max_attempts,
        last_error=last_error,
    )


def failure(code: int = ErrorCode.FUNCTION_ERROR, message: str = "ValueError: boom") -> RunResult:
    return RunResult(ok=False, error_code=code, error_message=message)


SUCCESS = RunResult(ok=True, result='{"answer": 42}')


def record_backoff(calls: list[int]) -> Callable[[int], int]:
    def backoff(attempt: int) -> int:
        calls.append(attempt)
        return 1000 * attempt

    return backoff


# -- decide -----------------------------------------------------------------------------------


def test_success_is_terminal_with_the_result() -> None:
    decision = decide(claimed(), SUCCESS, NOW)

    assert decision == Decision(Status.SUCCESS, ErrorCode.OK, "", b'{"answer": 42}')


def test_success_on_a_retry_is_success() -> None:
    decision = decide(
        claimed(attempt=3, max_attempts=3, last_error="attempt 2 failed"), SUCCESS, NOW
    )

    assert decision.status is Status.SUCCESS
    assert decision.error_message == ""


def test_a_failure_without_attempts_left_is_fail_with_its_own_message() -> None:
    decision = decide(claimed(attempt=1, max_attempts=1), failure(), NOW)

    assert decision == Decision(Status.FAIL, ErrorCode.FUNCTION_ERROR, "ValueError: boom")


def test_a_failure_with_attempts_left_waits_for_the_backoff_of_its_attempt() -> None:
    calls: list[int] = []

    decision = decide(claimed(attempt=2, max_attempts=4), failure(), NOW, record_backoff(calls))

    assert calls == [2]
    assert decision.status is Status.WAIT
    assert decision.retry_at == NOW + 2000
    assert decision.error_code == ErrorCode.FUNCTION_ERROR
    assert decision.error_message == "attempt 2 failed: ValueError: boom"
    assert decision.result is None


def test_the_last_attempt_fails_for_good() -> None:
    decision = decide(claimed(attempt=4, max_attempts=4), failure(), NOW, lambda a: 10)

    assert decision.status is Status.FAIL
    assert decision.retry_at is None


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.FUNCTION_ERROR,
        ErrorCode.TIMEOUT,
        ErrorCode.INSTANCE_CRASHED,
        ErrorCode.OUT_OF_MEMORY,
        ErrorCode.RESULT_TOO_LARGE,
        ErrorCode.INITIALIZER_FAILED,
    ],
)
def test_every_kind_of_failure_is_retried(code: ErrorCode) -> None:
    decision = decide(claimed(attempt=1, max_attempts=2), failure(code, "x"), NOW)

    assert decision.status is Status.WAIT
    assert decision.error_code == code


def test_a_cancel_is_never_retried() -> None:
    decision = decide(
        claimed(attempt=1, max_attempts=4),
        failure(ErrorCode.CANCELED, "function invocation canceled"),
        NOW,
    )

    assert decision == Decision(Status.FAIL, ErrorCode.CANCELED, "function invocation canceled")


def test_the_default_backoff_retries_at_once() -> None:
    assert decide(claimed(attempt=1, max_attempts=2), failure(), NOW).retry_at == NOW


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_an_interrupted_first_attempt_runs_again_even_without_retries(max_attempts: int) -> None:
    decision = decide(claimed(max_attempts=max_attempts, last_error="earlier"), None, NOW)

    assert decision.status is Status.WAIT
    assert decision.retry_at == NOW
    assert decision.error_message == "earlier"


def test_an_interrupted_second_attempt_without_retries_fails_as_interrupted() -> None:
    decision = decide(claimed(attempt=2, max_attempts=1), None, NOW)

    assert decision.status is Status.FAIL
    assert decision.error_code == ErrorCode.INTERRUPTED
    assert decision.error_message.startswith("interrupted: ")
    assert "attempt 2" in decision.error_message


def test_an_interrupted_attempt_with_retries_left_runs_again() -> None:
    assert decide(claimed(attempt=3, max_attempts=4), None, NOW).status is Status.WAIT
    assert decide(claimed(attempt=4, max_attempts=4), None, NOW).status is Status.FAIL


# -- expired ----------------------------------------------------------------------------------


def test_an_event_within_its_age_is_not_expired() -> None:
    assert expiry_decision(claimed(expires_at=NOW + 1), NOW) is None


def test_an_event_past_its_age_is_discarded_before_its_attempt() -> None:
    decision = expiry_decision(claimed(attempt=1, expires_at=NOW - 1), NOW)

    assert decision is not None
    assert decision.status is Status.DISCARD
    assert decision.error_code == ErrorCode.EXPIRED
    assert int(ErrorCode.EXPIRED) == 4211
    assert decision.error_message == (
        "discarded: the event exceeded its maximum age before attempt 1"
    )


def test_an_expired_retry_carries_the_last_failure() -> None:
    decision = expiry_decision(
        claimed(attempt=3, expires_at=NOW - 1, last_error="attempt 2 failed: ValueError: boom"),
        NOW,
    )

    assert decision is not None
    assert decision.status is Status.DISCARD
    assert "before attempt 3" in decision.error_message
    assert decision.error_message.endswith("attempt 2 failed: ValueError: boom")


# -- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [
        (1, 1.0, 60.0, 1000),
        (2, 1.0, 60.0, 2000),
        (3, 1.0, 60.0, 4000),
        (7, 1.0, 60.0, 60000),
        (30, 1.0, 60.0, 60000),
        (1, 0.05, 60.0, 50),
        (3, 0.05, 0.1, 100),
        (0, 2.0, 60.0, 2000),
        (5, 0.0, 60.0, 0),
    ],
)
def test_backoff_doubles_up_to_its_cap(
    attempt: int, base: float, cap: float, expected: int
) -> None:
    assert backoff_ms(attempt, base, cap) == expected


# -- destination events -----------------------------------------------------------------------


def event_of(item: ClaimedInvocation, decision: Decision, now: int = NOW) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(destination_event(item, decision, URN, now))
    return parsed


def test_a_success_event_has_functiongraphs_shape() -> None:
    event = event_of(claimed(), Decision(Status.SUCCESS, result=b'{"answer": 42}'))

    assert event == {
        "timestamp": datetime.fromtimestamp(NOW / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "request_context": {
            "request_id": "req-1",
            "function_urn": URN,
            "condition": "Success",
            "approximate_invoke_count": 1,
        },
        "request_payload": {"k": "v"},
        "response_context": {"status_code": 200, "function_error": ""},
        "response_payload": {"answer": 42},
    }


def test_a_failure_on_the_only_attempt_says_failure() -> None:
    decision = Decision(Status.FAIL, ErrorCode.FUNCTION_ERROR, "ValueError: boom")
    event = event_of(claimed(), decision)

    assert event["request_context"] == {
        "request_id": "req-1",
        "function_urn": URN,
        "condition": "Failure",
        "approximate_invoke_count": 1,
    }
    assert event["response_context"] == {"status_code": 500, "function_error": "ValueError: boom"}
    assert event["response_payload"] == {"errorCode": 4200, "errorMessage": "ValueError: boom"}


@pytest.mark.parametrize(
    ("item", "decision", "condition"),
    [
        (claimed(attempt=3, max_attempts=3), Decision(Status.FAIL, 4201, "t"), "RetriesExhausted"),
        (claimed(attempt=1), Decision(Status.DISCARD, 4211, "discarded"), "EventAgeExceeded"),
        (
            claimed(attempt=2, max_attempts=3),
            Decision(Status.DISCARD, 4211, "d"),
            "EventAgeExceeded",
        ),
        (claimed(attempt=1, max_attempts=3), Decision(Status.FAIL, 4208, "c"), "Canceled"),
        (claimed(attempt=2, max_attempts=3), Decision(Status.FAIL, 4208, "c"), "Canceled"),
        (claimed(attempt=2, max_attempts=2), Decision(Status.FAIL, 4210, "i"), "RetriesExhausted"),
    ],
    ids=["retries", "expired", "expired-retry", "canceled", "canceled-retry", "interrupted"],
)
def test_the_condition_names_why_the_request_ended(
    item: ClaimedInvocation, decision: Decision, condition: str
) -> None:
    event = event_of(item, decision)

    context = event["request_context"]
    assert isinstance(context, dict)
    assert context["condition"] == condition
    assert context["approximate_invoke_count"] == item.attempt
    assert event["response_context"] == {
        "status_code": 500,
        "function_error": decision.error_message,
    }


def test_any_json_payload_is_passed_as_json() -> None:
    event = event_of(claimed(payload=b"[1, 2, 3]"), Decision(Status.SUCCESS, result=b'"text"'))

    assert event["request_payload"] == [1, 2, 3]
    assert event["response_payload"] == "text"


def test_a_success_without_a_result_reports_no_error() -> None:
    event = event_of(claimed(), Decision(Status.SUCCESS, result=b"null"))

    assert event["response_payload"] is None
    assert event["response_context"] == {"status_code": 200, "function_error": ""}


# -- query parsers ----------------------------------------------------------------------------

FUNCTION = Function(
    id=7,
    project_id="0123456789abcdef0123456789abcdef",
    package="default",
    name="f",
    func_id="id",
    runtime="Python3.9",
    handler="index.handler",
    memory_size=128,
    timeout=30,
    code_type="inline",
    code_digest="d",
    code_size=1,
)


def bad_query(params: dict[str, str], active: bool = False) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        (parse_active_query if active else parse_list_query)(FUNCTION, params)
    assert info.value.status == 400
    assert info.value.error_code == "FSS.1001"
    return info.value


def test_list_query_defaults() -> None:
    query = parse_list_query(FUNCTION, {})

    assert query.function_id == 7
    assert (query.marker, query.limit) == (0, 100)
    assert query.statuses == ()
    assert query.request_ids == ()
    assert query.end - query.begin == 3_600_000


def test_list_query_reads_every_parameter() -> None:
    query = parse_list_query(
        FUNCTION,
        {
            "request_id": "abc",
            "marker": "20",
            "limit": "500",
            "status": "FAIL",
            "query_begin_time": "2024-01-01T00:00:00",
            "query_end_time": "2024-01-01T10:00:00",
        },
    )

    assert query.request_ids == ("abc",)
    assert (query.marker, query.limit) == (20, 500)
    assert query.statuses == (Status.FAIL,)
    assert query.begin == parse_time("2024-01-01T00:00:00")
    assert query.end == parse_time("2024-01-01T10:00:00") + 999


def test_an_end_with_a_fraction_is_taken_as_is() -> None:
    query = parse_list_query(FUNCTION, {"query_end_time": "2024-01-01T10:00:00.250"})

    assert query.end == parse_time("2024-01-01T10:00:00") + 250
    assert query.begin == query.end - 3_600_000


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"marker": "-1"}, "marker"),
        ({"marker": "1.5"}, "marker"),
        ({"status": "DONE"}, "status"),
        ({"status": "wait"}, "status"),
        ({"request_id": "x" * 65}, "request_id"),
        ({"query_begin_time": "yesterday"}, "query_begin_time"),
        ({"query_end_time": "2024-13-01"}, "query_end_time"),
        (
            {"query_begin_time": "2024-01-02T00:00:00", "query_end_time": "2024-01-01T00:00:00"},
            "query_begin_time",
        ),
    ],
)
def test_invalid_list_parameters_name_themselves(params: dict[str, str], named: str) -> None:
    assert f"Invalid query parameter {named}" in bad_query(params).message


def test_active_query_is_waiting_and_running_only() -> None:
    query = parse_active_query(FUNCTION, {"request_id": "ignored"})

    assert query is not None
    assert query.statuses == (Status.WAIT, Status.RUNNING)
    assert query.request_ids == ()


def test_active_query_narrows_by_status() -> None:
    query = parse_active_query(FUNCTION, {"status": "RUNNING"})

    assert query is not None
    assert query.statuses == (Status.RUNNING,)


@pytest.mark.parametrize("status", ["SUCCESS", "FAIL", "DISCARD"])
def test_active_query_with_a_terminal_status_matches_nothing(status: str) -> None:
    assert parse_active_query(FUNCTION, {"status": status}) is None


def test_active_query_takes_up_to_ten_distinct_request_ids() -> None:
    ids = [f"id-{i}" for i in range(10)]
    query = parse_active_query(FUNCTION, {"requests": ",".join([*ids, "id-0", " "])})

    assert query is not None
    assert query.request_ids == tuple(ids)
    assert "requests" in bad_query({"requests": ",".join([*ids, "id-10"])}, active=True).message
    assert "requests" in bad_query({"requests": "x" * 641}, active=True).message
