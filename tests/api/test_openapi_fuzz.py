"""Property-based fuzzing of every operation in ``/openapi.json`` with schemathesis.

Requests carry a token for PROJECT and that project id in the path, so they get past
authentication; most of them name a well-formed function URN (one that exists, unqualified or
``:latest``, or one that does not). Every answer must be free of 5xx and must conform to the
document: its status codes, content types and response schemas.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import PROJECT, LiveServer, b64, create_function, issue_token, urn

MAX_EXAMPLES = 20
SEED = 20261126  # a fixed seed keeps CI reproducible; change it to explore other inputs
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ECHO = "def handler(event, context):\n    return event\n"


@pytest.fixture
def auth_headers(server: LiveServer) -> dict[str, str]:
    return {"X-Auth-Token": issue_token(server.url)}


@pytest.fixture
def api_schema(server: LiveServer, sdk: Any) -> Any:
    create_function(sdk, "fuzzed", ECHO, timeout=3)
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES},
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        }
    )
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


def chosen_urn(generated: Any) -> Any:
    """The generated URN one time in four; else one that passes URN parsing.

    The choice is a function of the generated value, so it holds in every phase (``@given``
    would switch off schemathesis's coverage phase) and a failure replays the same request.
    """
    choices = [generated, urn("fuzzed"), urn("fuzzed", qualifier=None), urn("missing")]
    return choices[zlib.crc32(repr(generated).encode()) % len(choices)]


FUNCTIONS = "/v2/{project_id}/fgs/functions"
DELETE_FUNCTION = FUNCTIONS + "/{function_urn}"


@pytest.mark.timeout(120)  # every operation of the document, many examples each
@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(
    case: schemathesis.Case[Any], auth_headers: dict[str, str], sdk: Any
) -> None:
    if "project_id" in case.path_parameters:
        case.path_parameters["project_id"] = PROJECT
    if "function_urn" in case.path_parameters:
        case.path_parameters["function_urn"] = chosen_urn(case.path_parameters["function_urn"])

    response = case.call(headers=auth_headers, timeout=30)
    case.validate_response(response, checks=CHECKS, headers=auth_headers)
    if case.method == "DELETE" and case.path == DELETE_FUNCTION and response.status_code == 204:
        create_function(sdk, "fuzzed", ECHO, timeout=3)  # later cases still find it


# -- chosen requests: states random inputs rarely reach, validated by the same checks -------


def valid_create(name: str) -> dict[str, Any]:
    return {
        "func_name": name,
        "package": "default",
        "runtime": "Python3.9",
        "timeout": 3,
        "handler": "index.handler",
        "memory_size": 128,
        "code_type": "inline",
        "func_code": {"file": b64(ECHO)},
    }


def valid_config(name: str, concurrency: int) -> dict[str, Any]:
    return {
        "func_name": name,
        "runtime": "Python3.9",
        "timeout": 5,
        "handler": "index.handler",
        "memory_size": 256,
        "strategy_config": {"concurrency": concurrency},
    }


def conforming(schema: Any, auth: dict[str, str], path: str, method: str, **parts: Any) -> int:
    """Send one chosen request through schemathesis and validate the answer; its status."""
    case = schema[path][method].Case(**parts)
    response = case.call_and_validate(headers=auth, checks=CHECKS, timeout=30)
    status: int = response.status_code
    return status


def test_a_function_lifecycle_conforms_to_the_document(
    api_schema: Any, auth_headers: dict[str, str]
) -> None:
    project = {"project_id": PROJECT}
    function = {"project_id": PROJECT, "function_urn": urn("cycle")}
    unqualified = {"project_id": PROJECT, "function_urn": urn("cycle", qualifier=None)}
    steps: list[tuple[str, str, dict[str, Any], int]] = [
        (FUNCTIONS, "POST", {"path_parameters": project, "body": valid_create("cycle")}, 200),
        (FUNCTIONS, "GET", {"path_parameters": project, "query": {"maxitems": "1"}}, 200),
        (FUNCTIONS + "/{function_urn}/config", "GET", {"path_parameters": function}, 200),
        (FUNCTIONS + "/{function_urn}/code", "GET", {"path_parameters": function}, 200),
        (
            FUNCTIONS + "/{function_urn}/code",
            "PUT",
            {
                "path_parameters": function,
                "body": {"code_type": "inline", "func_code": {"file": b64(ECHO + "# v2\n")}},
            },
            200,
        ),
        (
            FUNCTIONS + "/{function_urn}/invocations",
            "POST",
            {
                "path_parameters": function,
                "body": {"a": 1},
                "headers": {"X-Cff-Log-Type": "tail", "X-CFF-Request-Version": "v1"},
            },
            200,
        ),
        (
            FUNCTIONS + "/{function_urn}/invocations-async",
            "POST",
            {"path_parameters": function, "body": {"a": 1}},
            202,
        ),
        (
            FUNCTIONS + "/{function_urn}/async-invocations",
            "GET",
            {"path_parameters": function},
            200,
        ),
        (
            FUNCTIONS + "/{function_urn}/active-async-invocations",
            "GET",
            {"path_parameters": function},
            200,
        ),
        (
            FUNCTIONS + "/{function_urn}/async-invoke-config",
            "GET",
            {"path_parameters": function},
            404,
        ),
        (
            FUNCTIONS + "/{function_urn}/async-invoke-config",
            "PUT",
            {
                "path_parameters": function,
                "body": {"max_async_event_age_in_seconds": 600, "max_async_retry_attempts": 2},
            },
            200,
        ),
        (
            FUNCTIONS + "/{function_urn}/async-invoke-config",
            "GET",
            {"path_parameters": function},
            200,
        ),
        (
            FUNCTIONS + "/{function_urn}/async-invoke-configs",
            "GET",
            {"path_parameters": function},
            200,
        ),
        (
            FUNCTIONS + "/{function_urn}/async-invoke-config",
            "DELETE",
            {"path_parameters": function},
            204,
        ),
        (
            FUNCTIONS + "/{function_urn}/cancel",
            "POST",
            {"path_parameters": function, "body": {"request_id": "no-such-request"}},
            400,
        ),
        (
            FUNCTIONS + "/{function_urn}/config",
            "PUT",
            {"path_parameters": function, "body": valid_config("cycle", 0)},
            200,
        ),
        (
            FUNCTIONS + "/{function_urn}/invocations-async",
            "POST",
            {"path_parameters": function, "body": {}},
            429,
        ),
        (FUNCTIONS + "/{function_urn}", "DELETE", {"path_parameters": function}, 400),
        (FUNCTIONS + "/{function_urn}", "DELETE", {"path_parameters": unqualified}, 204),
        (FUNCTIONS + "/{function_urn}/config", "GET", {"path_parameters": function}, 404),
    ]
    for path, method, parts, expected in steps:
        status = conforming(api_schema, auth_headers, path, method, **parts)
        assert status == expected, (method, path)


def test_a_duplicate_create_conforms_to_the_document(
    api_schema: Any, auth_headers: dict[str, str]
) -> None:
    parts = {"path_parameters": {"project_id": PROJECT}, "body": valid_create("twice")}
    assert conforming(api_schema, auth_headers, FUNCTIONS, "POST", **parts) == 200

    status = conforming(api_schema, auth_headers, FUNCTIONS, "POST", **parts)

    assert status == 409


def test_a_v0_sync_invoke_conforms_to_the_document(
    api_schema: Any, auth_headers: dict[str, str]
) -> None:
    function = {"project_id": PROJECT, "function_urn": urn("fuzzed")}
    path = FUNCTIONS + "/{function_urn}/invocations"

    status = conforming(api_schema, auth_headers, path, "POST", path_parameters=function, body={})

    assert status == 200
