"""``openfgs serve`` as a new user meets it: first start, the README flow, restarts, credentials."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    InvokeFunctionRequest,
    ListAsyncInvocationsRequest,
    ListFunctionsRequest,
)

from openfgs.models import Credential
from tests.support import CREDENTIAL, create_function, sdk_client, urn, wait_for

from .conftest import Serve, clean_env, openfgs

pytestmark = pytest.mark.slow

# Fails (and so records FAIL) unless it receives exactly the event the test sends.
GREETER = """
def handler(event, context):
    assert event == {"name": "you"}, event
    return {"greeting": "hello, " + event["name"]}
"""


def function_names(client: Any) -> list[str]:
    return sorted(f.func_name for f in client.list_functions(ListFunctionsRequest()).functions)


def async_status(client: Any, function_urn: str, request_id: str) -> str | None:
    page = client.list_async_invocations(ListAsyncInvocationsRequest(function_urn=function_urn))
    statuses = [r.status for r in page.invocations or [] if r.request_id == request_id]
    assert len(statuses) <= 1, statuses
    return statuses[0] if statuses else None


def greet_demo(client: Any, project_id: str) -> str:
    """Invoke the demo function synchronously; return the message in its HTTP-style body."""
    request = InvokeFunctionRequest(
        function_urn=urn("hello", project_id),
        x_cff_request_version="v1",  # the JSON answer the SDK reads (v0, raw, is the default)
        body={"name": "you"},
    )
    response = client.invoke_function(request)
    assert response.status == 200, response
    message: str = json.loads(json.loads(response.result)["body"])["message"]
    return message


def test_first_start_prints_a_credential_that_runs_the_readme_flow(
    serve: Serve, tmp_path: Path
) -> None:
    first = serve.start(tmp_path / "data", credential=None)

    credential = first.printed_credential()
    assert credential is not None, first.stdout()
    assert re.fullmatch(r"[0-9a-f]{32}", credential.project_id)
    assert credential.access_key and credential.secret_key
    assert first.exports()["OPENFGS_ENDPOINT"] == first.url
    assert f"deployed the demo function {urn('hello', credential.project_id)}" in first.stdout()

    client = sdk_client(first.url, credential)
    assert greet_demo(client, credential.project_id) == "hello, you"

    create_function(client, "greeter", GREETER)
    greeter = urn("greeter", credential.project_id)
    accepted = client.async_invoke_function(
        AsyncInvokeFunctionRequest(function_urn=greeter, body={"name": "you"})
    )
    assert accepted.request_id
    wait_for(lambda: async_status(client, greeter, accepted.request_id) == "SUCCESS", 30)
    assert function_names(client) == ["greeter", "hello"]


def test_restart_prints_no_new_credential_and_keeps_the_functions(
    serve: Serve, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = serve.start(data_dir, credential=None)
    credential = first.printed_credential()
    assert credential is not None, first.stdout()
    create_function(sdk_client(first.url, credential), "greeter", GREETER)
    first.stop()

    second = serve.start(data_dir, credential=None)
    assert second.exports() == {}, second.stdout()
    assert "deployed the demo function" not in second.stdout()
    client = sdk_client(second.url, credential)
    assert function_names(client) == ["greeter", "hello"]
    assert greet_demo(client, credential.project_id) == "hello, you"


def test_second_serve_on_the_same_data_dir_is_refused(serve: Serve, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = serve.start(data_dir)
    second = serve.spawn(data_dir)
    assert second.wait_exit() != 0
    assert "another openfgs process serves" in second.stderr(), second.stderr()
    assert first.healthy()
    assert function_names(sdk_client(first.url, CREDENTIAL)) == ["hello"]


def test_second_serve_says_why_in_one_line(serve: Serve, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    serve.start(data_dir)
    second = serve.spawn(data_dir)
    assert second.wait_exit() != 0
    assert f"openfgs: another openfgs process serves {data_dir}" in second.stderr()
    assert "Traceback" not in second.stderr(), second.stderr()


def test_credential_from_the_environment_works(serve: Serve, tmp_path: Path) -> None:
    started = serve.start(tmp_path / "data", credential=CREDENTIAL)
    assert started.exports() == {}, started.stdout()  # nothing to print: the user chose it
    client = sdk_client(started.url, CREDENTIAL)
    assert function_names(client) == ["hello"]
    assert greet_demo(client, CREDENTIAL.project_id) == "hello, you"


def test_credentials_create_adds_a_working_credential(serve: Serve, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    started = serve.start(data_dir)
    project = "89abcdef0123456789abcdef01234567"

    result = openfgs(
        "credentials", "create", "--data-dir", str(data_dir), "--project-id", project,
        env=clean_env(),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"project_id", "access_key", "secret_key"}
    assert created["project_id"] == project
    credential = Credential(project, created["access_key"], created["secret_key"])
    client = sdk_client(started.url, credential)
    assert function_names(client) == []  # a new project: the demo belongs to another one
    create_function(client, "greeter", GREETER)
    assert function_names(client) == ["greeter"]
    assert function_names(sdk_client(started.url, CREDENTIAL)) == ["hello"]
