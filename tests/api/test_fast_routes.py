"""The routes answered ahead of FastAPI (openfgs.api.fast) answer exactly as FastAPI's own.

Each request is sent twice, in process, on the live server's loop and services: once through
the app the service runs (fast routes in front) and once to the FastAPI app behind it, which
declares the same routes. Status, error bodies and list bodies must be equal.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from openfgs.api import create_app, declared_routes
from openfgs.api.fast import FastRoutes
from openfgs.api.guard import Guard
from tests.api.conftest import RawApi, function_path, insert_records, set_concurrency
from tests.support import OTHER, PROJECT, LiveServer, create_function, urn

pytestmark = pytest.mark.usefixtures("echo_urn")


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


NOW_MS = 1_790_000_000_000


def both(server: LiveServer, request: httpx.Request) -> tuple[httpx.Response, httpx.Response]:
    """The answers of the fast routes and of FastAPI alone (both behind the guard)."""
    front = create_app(server.services)
    assert isinstance(front, Guard)
    assert isinstance(front.app, FastRoutes)
    fastapi_alone = Guard(front.app.app, server.services, declared_routes())

    async def send(app: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
            response = await client.send(request)
            await response.aread()
            return response

    return server.run(send(front)), server.run(send(fastapi_alone))


def assert_same(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.headers["content-type"] == slow.headers["content-type"]
    if fast.status_code >= 400:
        assert fast.json() == slow.json()
        assert set(fast.json()) == {"error_code", "error_msg"}
        assert fast.headers["x-request-id"] and slow.headers["x-request-id"]
        assert fast.headers.get("retry-after") == slow.headers.get("retry-after")


ACCEPTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "empty body": {"content": b""},
    "not json": {"content": b"{nope"},
    "too large": {"content": b'{"a": "' + b"x" * (300 * 1024) + b'"}'},
    "idempotency key": {"headers": {"X-Openfgs-Idempotency-Key": "k-1"}},
    "idempotency key too long": {"headers": {"X-Openfgs-Idempotency-Key": "k" * 129}},
    "unsigned": {"credential": None},
    "other project's credential": {"credential": OTHER},
    "bad signature": {"headers": {"X-Sdk-Date": "20200101T000000Z"}},
}


@pytest.mark.parametrize("case", list(ACCEPTS))
def test_async_invoke_answers_as_fastapi_does(
    server: LiveServer, raw: RawApi, echo_urn: str, case: str
) -> None:
    kwargs: dict[str, Any] = {"content": b'{"k": 1}', **ACCEPTS[case]}
    request = raw.build("POST", function_path(echo_urn, "/invocations-async"), **kwargs)
    fast, slow = both(server, request)
    assert_same(fast, slow)
    if fast.status_code == 202:
        assert set(fast.json()) == set(slow.json()) == {"request_id"}
        assert fast.headers["content-length"] == str(len(fast.content))


@pytest.mark.parametrize(
    "path",
    [
        f"/v2/{'p' * 65}/fgs/functions/{{urn}}/invocations-async",
        f"/v2/{PROJECT}/fgs/functions/urn:fss:cn-north-4:{PROJECT}:function:default:nope:latest"
        "/invocations-async",
        f"/v2/{PROJECT}/fgs/functions/not-a-urn/invocations-async",
    ],
    ids=["long project", "unknown function", "malformed urn"],
)
def test_async_invoke_path_errors_match(
    server: LiveServer, raw: RawApi, echo_urn: str, path: str
) -> None:
    request = raw.build("POST", path.replace("{urn}", echo_urn), content=b"{}")
    fast, slow = both(server, request)
    assert fast.status_code >= 400
    assert_same(fast, slow)


def test_disabled_function_answers_429_on_both(server: LiveServer, sdk: Any, raw: RawApi) -> None:
    create_function(sdk, "disabled")
    set_concurrency(sdk, "disabled", 0)
    function_urn = urn("disabled")
    request = raw.build("POST", function_path(function_urn, "/invocations-async"), content=b"{}")
    fast, slow = both(server, request)
    assert fast.status_code == 429
    assert_same(fast, slow)


LISTS: dict[str, dict[str, Any]] = {
    "default": {},
    "window": {"query_begin_time": "2026-09-21T00:00:00", "query_end_time": "2026-09-30T00:00:00"},
    "status": {"status": "WAIT", "query_begin_time": "2026-09-21T00:00:00"},
    "paged": {"marker": "1", "limit": "2", "query_begin_time": "2026-09-21T00:00:00"},
    "request id": {"request_id": "{first}"},
    "bad limit": {"limit": "0"},
    "bad status": {"status": "DONE"},
    "bad time": {"query_begin_time": "yesterday"},
    "repeated parameter": {"limit": ["3", "x"]},
}


@pytest.mark.parametrize("active", [False, True], ids=["all", "active"])
@pytest.mark.parametrize("case", list(LISTS))
def test_lists_answer_as_fastapi_does(
    server: LiveServer, raw: RawApi, echo_urn: str, case: str, active: bool
) -> None:
    ids = insert_records(server, "echo", [NOW_MS + i * 1000 for i in range(5)])
    params = {
        k: v.replace("{first}", ids[0]) if isinstance(v, str) else v for k, v in LISTS[case].items()
    }
    if active and case == "request id":
        params = {"requests": ids[0]}
    suffix = "/active-async-invocations" if active else "/async-invocations"
    request = raw.build("GET", function_path(echo_urn, suffix), params=params)
    fast, slow = both(server, request)
    assert_same(fast, slow)
    if fast.status_code == 200:
        assert fast.json() == slow.json()
        assert fast.content == json.dumps(slow.json(), separators=(",", ":")).encode()


def test_list_with_a_wrong_method_is_still_405(
    server: LiveServer, raw: RawApi, echo_urn: str
) -> None:
    request = raw.build("POST", function_path(echo_urn, "/async-invocations"), content=b"{}")
    fast, slow = both(server, request)
    assert fast.status_code == 405
    assert_same(fast, slow)


def test_a_huge_body_is_refused_by_its_size_without_being_kept(
    server: LiveServer, raw: RawApi, echo_urn: str
) -> None:
    limit = server.settings.max_async_body_bytes
    huge = b'{"a": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    unsigned = raw.build(
        "POST", function_path(echo_urn, "/invocations-async"), content=huge, credential=None
    )
    answer = raw.send(unsigned)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error_code"] == "FSS.0413"
    assert f"{limit // 1024} KB" in answer.json()["error_msg"]
    # The connection and the server go on answering.
    fine = raw.call("POST", function_path(echo_urn, "/invocations-async"), content=b"{}")
    assert fine.status_code == 202
    listed = raw.call("GET", function_path(echo_urn, "/async-invocations"), content=huge[:70_000])
    assert listed.status_code == 413
