"""Authentication: AK/SK signatures, IAM-style tokens, project scoping, the open health check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import ListFunctionsRequest

from openfgs.models import Credential
from tests.support import (
    CREDENTIAL,
    OTHER,
    PROJECT,
    LiveServer,
    create_function,
    sdk_client,
    token_body,
    urn,
)

from .conftest import RawApi, function_path

FUNCTIONS = f"/v2/{PROJECT}/fgs/functions"
HELLO = "def handler(event, context):\n    return 'hi'\n"


def issue_token(server: LiveServer, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v3/auth/tokens", json=token_body(**kwargs), timeout=30)


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error_code"]


# -- AK/SK --------------------------------------------------------------------------------


def test_the_sdk_credential_is_accepted(sdk: Any) -> None:
    assert sdk.list_functions(ListFunctionsRequest()).count == 0


@pytest.mark.parametrize(
    "credential",
    [
        Credential(PROJECT, CREDENTIAL.access_key, "wrong" + CREDENTIAL.secret_key[5:]),
        Credential(PROJECT, "UNKNOWNACCESSKEY0000", CREDENTIAL.secret_key),
    ],
    ids=["wrong-secret", "unknown-access-key"],
)
def test_a_bad_key_pair_is_unauthorized(server: LiveServer, credential: Credential) -> None:
    client = sdk_client(server.url, credential)

    with pytest.raises(ClientRequestException) as info:
        client.list_functions(ListFunctionsRequest())

    assert (info.value.status_code, info.value.error_code) == (401, "APIGW.0301")


@pytest.mark.parametrize("minutes", [-20, 20])
def test_a_signature_dated_out_of_range_is_unauthorized(raw: RawApi, minutes: int) -> None:
    when = datetime.now(UTC) + timedelta(minutes=minutes)

    response = raw.call("GET", FUNCTIONS, now=when)

    assert error_of(response) == (401, "APIGW.0301")


def test_a_signature_ten_minutes_old_is_accepted(raw: RawApi) -> None:
    response = raw.call("GET", FUNCTIONS, now=datetime.now(UTC) - timedelta(minutes=10))

    assert response.status_code == 200, response.text


def test_a_tampered_body_is_unauthorized(raw: RawApi, sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)
    path = function_path(urn("hello"), "/invocations-async")
    signed = raw.build("POST", path, content=b'{"amount": 1}')
    tampered = httpx.Request(
        "POST",
        signed.url,
        headers={k: v for k, v in signed.headers.items() if k.lower() != "content-length"},
        content=b'{"amount": 9}',
    )

    assert raw.send(signed).status_code == 202
    assert error_of(raw.send(tampered)) == (401, "APIGW.0301")


def test_a_tampered_query_is_unauthorized(raw: RawApi) -> None:
    signed = raw.build("GET", FUNCTIONS, params={"maxitems": "1"})
    tampered = httpx.Request(
        "GET", signed.url.copy_with(query=b"maxitems=2"), headers=signed.headers
    )

    assert raw.send(signed).status_code == 200
    assert error_of(raw.send(tampered)) == (401, "APIGW.0301")


def test_a_tampered_signed_header_is_unauthorized(raw: RawApi) -> None:
    signed = raw.build("GET", FUNCTIONS, headers={"X-Extra": "a"})
    signed.headers["X-Extra"] = "b"

    assert error_of(raw.send(signed)) == (401, "APIGW.0301")


@pytest.mark.parametrize(
    "authorization",
    [
        "SDK-HMAC-SHA256 garbage",
        "SDK-HMAC-SHA256 Access=X, SignedHeaders=host",
        "SDK-HMAC-SHA256 Access=TESTACCESSKEY0000001, SignedHeaders=host, Signature=00",
    ],
)
def test_a_malformed_signature_is_unauthorized(raw: RawApi, authorization: str) -> None:
    request = raw.build("GET", FUNCTIONS)
    request.headers["Authorization"] = authorization

    assert error_of(raw.send(request)) == (401, "APIGW.0301")


def test_another_projects_credential_is_forbidden_here(server: LiveServer, raw: RawApi) -> None:
    # Signed correctly with OTHER's key pair, but for this project's path.
    response = raw.call("GET", FUNCTIONS, credential=OTHER)
    client = sdk_client(server.url, Credential(PROJECT, OTHER.access_key, OTHER.secret_key))

    assert error_of(response)[0] == 403
    with pytest.raises(ClientRequestException) as info:
        client.list_functions(ListFunctionsRequest())
    assert info.value.status_code == 403


def test_each_project_sees_only_its_own_functions(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "mine", HELLO)
    other = sdk_client(server.url, OTHER)

    assert other.list_functions(ListFunctionsRequest()).count == 0
    assert [f.func_name for f in sdk.list_functions(ListFunctionsRequest()).functions] == ["mine"]


def test_no_credentials_at_all_is_forbidden(raw: RawApi) -> None:
    response = raw.call("GET", FUNCTIONS, credential=None)

    assert error_of(response) == (403, "FSS.0403")


def test_an_unsigned_bearer_header_is_forbidden(raw: RawApi) -> None:
    response = raw.call("GET", FUNCTIONS, credential=None, headers={"Authorization": "Bearer x"})

    assert error_of(response) == (403, "FSS.0403")


# -- tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["hw_ak_sk", "password"])
def test_a_token_is_issued_for_a_key_pair(server: LiveServer, method: str) -> None:
    response = issue_token(server, method=method)

    assert response.status_code == 201, response.text
    token = response.headers["X-Subject-Token"]
    assert token
    body = response.json()["token"]
    assert body["project"]["id"] == PROJECT
    assert body["methods"] == [method]
    listed = httpx.get(f"{server.url}{FUNCTIONS}", headers={"X-Auth-Token": token}, timeout=30)
    assert listed.status_code == 200, listed.text
    assert listed.json()["count"] == 0


def test_a_token_works_on_every_kind_of_route(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "hello", HELLO)
    token = issue_token(server).headers["X-Subject-Token"]
    headers = {"X-Auth-Token": token, "Content-Type": "application/json"}
    base = server.url

    invoked = httpx.post(
        base + function_path(urn("hello"), "/invocations-async"),
        headers=headers,
        content=b"{}",
        timeout=30,
    )
    config = httpx.get(base + function_path(urn("hello"), "/config"), headers=headers, timeout=30)
    listed = httpx.get(
        base + function_path(urn("hello"), "/async-invocations"), headers=headers, timeout=30
    )

    assert invoked.status_code == 202, invoked.text
    assert config.json()["func_name"] == "hello"
    assert listed.json()["count"] == 1


def test_a_token_without_scope_is_for_the_credentials_project(server: LiveServer) -> None:
    response = issue_token(server, project_id=None)

    assert response.status_code == 201
    token = response.headers["X-Subject-Token"]
    listed = httpx.get(f"{server.url}{FUNCTIONS}", headers={"X-Auth-Token": token}, timeout=30)
    assert listed.status_code == 200


def test_another_projects_token_is_forbidden_here(server: LiveServer) -> None:
    response = issue_token(
        server, access_key=OTHER.access_key, secret_key=OTHER.secret_key, project_id=None
    )
    token = response.headers["X-Subject-Token"]

    listed = httpx.get(f"{server.url}{FUNCTIONS}", headers={"X-Auth-Token": token}, timeout=30)

    assert listed.status_code == 403


@pytest.mark.parametrize("token", ["MIIwrong", "x" * 500])
def test_a_wrong_token_is_forbidden(server: LiveServer, token: str) -> None:
    response = httpx.get(f"{server.url}{FUNCTIONS}", headers={"X-Auth-Token": token}, timeout=30)

    assert error_of(response) == (403, "FSS.0403")


@pytest.mark.parametrize("method", ["hw_ak_sk", "password"])
def test_a_wrong_secret_gets_no_token(server: LiveServer, method: str) -> None:
    response = issue_token(server, secret_key="not-the-secret", method=method)

    assert response.status_code == 401
    assert response.json()["error_code"] == "APIGW.0301"
    assert "X-Subject-Token" not in response.headers


def test_a_token_scoped_to_another_project_is_refused(server: LiveServer) -> None:
    response = issue_token(server, project_id=OTHER.project_id)

    assert response.status_code in (401, 403)
    assert "X-Subject-Token" not in response.headers


def test_a_token_request_with_no_usable_method_is_a_bad_request(server: LiveServer) -> None:
    body = {"auth": {"identity": {"methods": ["token"]}}}

    response = httpx.post(f"{server.url}/v3/auth/tokens", json=body, timeout=30)

    assert response.status_code == 400
    assert "X-Subject-Token" not in response.headers


# -- open routes --------------------------------------------------------------------------


def test_healthz_needs_no_credentials(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/healthz", timeout=30)

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert body["isolation"] in ("strict", "relaxed")  # the sandbox it found
