"""Property-based fuzzing of every operation in ``/openapi.json`` with schemathesis.

Requests carry a token for PROJECT and that project id in the path, so they get past
authentication; most of them name a well-formed function URN (one that exists, unqualified or
``:latest``, or one that does not). Every answer must be free of 5xx and must conform to the
document: its status codes, content types and response schemas.
"""

from __future__ import annotations

import zlib
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import CREDENTIAL, PROJECT, LiveServer, create_function, urn

MAX_EXAMPLES = 150
SEED = 2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ECHO = "def handler(event, context):\n    return event\n"


@pytest.fixture
def auth_headers(server: LiveServer) -> dict[str, str]:
    body = {
        "auth": {
            "identity": {
                "methods": ["hw_ak_sk"],
                "hw_ak_sk": {
                    "access": {"key": CREDENTIAL.access_key},
                    "secret": {"key": CREDENTIAL.secret_key},
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    response = httpx.post(f"{server.url}/v3/auth/tokens", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return {"X-Auth-Token": response.headers["X-Subject-Token"]}


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


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(
    case: schemathesis.Case, auth_headers: dict[str, str]
) -> None:
    if "project_id" in case.path_parameters:
        case.path_parameters["project_id"] = PROJECT
    if "function_urn" in case.path_parameters:
        case.path_parameters["function_urn"] = chosen_urn(case.path_parameters["function_urn"])
    case.call_and_validate(headers=auth_headers, checks=CHECKS, timeout=30)
