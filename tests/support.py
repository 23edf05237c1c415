"""Helpers shared by the test folders, each written once.

Credentials; waiting on a condition (``wait_for``, and ``wait_for_async`` in a coroutine); the
test databases; a live server on loopback (``live_server``; the fixtures ``make_server`` and
``server`` in ``tests/conftest.py`` build on it); SDK clients; creating a function; and reading
an async record until it ends, through the FunctionGraph list or the openfgs detail endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import os
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    FuncCode,
    ListAsyncInvocationsRequest,
)
from huaweicloudsdkfunctiongraph.v2 import FunctionGraphClient as SdkClient

from openfgs.api import create_app
from openfgs.api.server import server_config
from openfgs.cli import main
from openfgs.client import FunctionGraphClient
from openfgs.models import Credential, Status
from openfgs.schemas import CreateFunctionBody
from openfgs.schemas import FuncCode as CodeBody
from openfgs.services import Services
from openfgs.settings import Settings

PROJECT = "0123456789abcdef0123456789abcdef"
CREDENTIAL = Credential(
    PROJECT, "TESTACCESSKEY0000001", "testsecretkey0000000000000000000000000001"
)
OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
OTHER = Credential(
    OTHER_PROJECT, "TESTACCESSKEY0000002", "testsecretkey0000000000000000000000000002"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail the test at
    the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout} s")
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "",
) -> Any:
    """``wait_for`` inside a coroutine: ``predicate`` may be a coroutine function too, and the
    loop runs on while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout} s")
        await asyncio.sleep(interval)


# -- databases ---------------------------------------------------------------------------------

PG_URL = os.environ.get("OPENFGS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The ``params`` of a ``backend`` fixture that runs its tests on each store.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def database_url(backend: str) -> Iterator[str]:
    """A database for one test: "" (SQLite in the data dir) or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        yield ""
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    base = Settings(
        data_dir=data_dir,
        project_id=PROJECT,
        access_key=CREDENTIAL.access_key,
        secret_key=CREDENTIAL.secret_key,
        poll_interval=0.2,
        port=free_port(),
    )
    return base.with_overrides(**overrides)


@dataclass
class LiveServer:
    url: str
    services: Services
    settings: Settings
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (e.g. to reach the store directly)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


# The fixture ``make_server``: a live server with these settings over the test defaults.
ServerFactory = Callable[..., LiveServer]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own
        pass


@contextlib.contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """The service with ``settings`` in a thread of this process, over loopback; stopped after."""
    services = Services.build(settings)
    app = create_app(services)
    server = _Server(server_config(app, settings, host="127.0.0.1", log_level="warning"))
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), what="server started")
    assert server.started, "server did not start"
    live = LiveServer(f"http://127.0.0.1:{settings.port}", services, settings, loops[0])
    live.run(services.auth.ensure_credential(OTHER))
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(30)


# Holds the newest function of a shared server between tests (see ``empty_projects``).
HIGH_WATER_PROJECT = "0000000000000000000000000000ffff"


def empty_projects(live: LiveServer) -> None:
    """Delete every function and dependency of both test projects (records, attempts, keys,
    configs, versions, aliases, triggers, tags and test events go with the functions), so that a server shared by a module's tests is, for the next test, a server
    with nothing in it.

    A function of another project is made first and kept until the next call, as the newest
    function: SQLite gives a new row the highest id plus one, so without it the next test's
    functions would get the ids of this test's, and the service's caches keyed by id (an async
    config for two seconds) would carry over.
    """

    async def empty() -> None:
        registry = live.services.registry
        high_water = CreateFunctionBody(
            func_name=f"high-water-{uuid.uuid4().hex[:12]}",
            package="default",
            runtime="Python3.9",
            timeout=3,
            handler="index.handler",
            memory_size=128,
            code_type="inline",
            func_code=CodeBody(file=b64(ECHO_CODE)),
        )
        kept = await registry.create(HIGH_WATER_PROJECT, high_water)
        for project in (PROJECT, OTHER_PROJECT, HIGH_WATER_PROJECT):
            listed = (await registry.list_functions(project, None, None, 0, 1000))[0]
            for function in listed:
                if function.id != kept.id:
                    await registry.delete(function)
            dependencies = registry.dependencies
            while True:  # a dependency goes with its last version
                found, _ = await dependencies.list_latest(
                    project, name=None, runtime=None, dependency_type=None, offset=0, limit=500
                )
                if not found:
                    break
                for version in found:
                    for each in (await dependencies.list_versions(project, version.dep_id, 0, 500))[
                        0
                    ]:
                        await dependencies.delete(project, each.dep_id, each.version)

    live.run(empty())


# SDK clients made so far; ``close_sdk_clients`` closes them when a test ends (one a module
# fixture made reconnects if it is used again).
_sdk_clients: list[Any] = []


def sdk_client(url: str, credential: Credential = CREDENTIAL) -> Any:
    """The official SDK's client for the server at ``url``; closed when the test ends."""
    config = HttpConfig.get_default_config()
    config.timeout = (5, 60)
    client = (
        SdkClient.new_builder()
        .with_http_config(config)
        .with_credentials(
            BasicCredentials(credential.access_key, credential.secret_key, credential.project_id)
        )
        .with_endpoints([url])
        .build()
    )
    _sdk_clients.append(client)
    return client


def close_sdk_clients() -> None:
    """Close the SDK clients made so far, and their keep-alive connections."""
    while _sdk_clients:
        _sdk_clients.pop().close()


def cli_in_process(argv: list[str]) -> int:
    """``openfgs`` with ``argv`` in this process (``openfgs.cli.main``); its exit status."""
    return main(argv)


def urn(name: str, project: str = PROJECT, qualifier: str | None = "latest") -> str:
    base = f"urn:fss:cn-north-4:{project}:function:default:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def token_body(
    access_key: str = CREDENTIAL.access_key,
    secret_key: str = CREDENTIAL.secret_key,
    project_id: str | None = PROJECT,
    method: str = "hw_ak_sk",
) -> dict[str, Any]:
    if method == "hw_ak_sk":
        identity: dict[str, Any] = {
            "methods": ["hw_ak_sk"],
            "hw_ak_sk": {"access": {"key": access_key}, "secret": {"key": secret_key}},
        }
    else:
        identity = {
            "methods": ["password"],
            "password": {"user": {"name": access_key, "password": secret_key}},
        }
    auth: dict[str, Any] = {"identity": identity}
    if project_id is not None:
        auth["scope"] = {"project": {"id": project_id}}
    return {"auth": auth}


def issue_token(url: str, credential: Credential = CREDENTIAL) -> str:
    """A token for ``credential`` from the server at ``url`` (``POST /v3/auth/tokens``)."""
    body = token_body(credential.access_key, credential.secret_key, credential.project_id)
    response = httpx.post(f"{url}/v3/auth/tokens", json=body, timeout=30)
    assert response.status_code == 201, response.text
    token: str = response.headers["X-Subject-Token"]
    return token


# -- functions -------------------------------------------------------------------------------

ECHO_CODE = """\
import json


def handler(event, context):
    print("echo handler saw", json.dumps(event))
    return {"echo": event}
"""
# Async results are not exposed by the API, but error messages are: this handler reports the
# event it received as its failure message, so tests can see exactly what reached it.
REPORTER_CODE = """\
import json


class EventReport(Exception):
    pass


def handler(event, context):
    raise EventReport("EVENT=" + json.dumps(event, sort_keys=True))
"""


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def create_function(
    sdk: Any,
    name: str,
    code: str = ECHO_CODE,
    *,
    timeout: int = 30,
    user_data: dict[str, str] | None = None,
    runtime: str = "Python3.9",
    handler: str = "index.handler",
    **fields: Any,
) -> Any:
    """Create a function with inline code (``index.py`` for Python, ``index.js`` for Node.js)
    through the SDK; return the response.

    Its ``:latest`` URN is ``urn(name)``.
    """
    body = CreateFunctionRequestBody(
        func_name=name,
        package="default",
        runtime=runtime,
        timeout=timeout,
        handler=handler,
        memory_size=128,
        code_type="inline",
        func_code=FuncCode(file=b64(textwrap.dedent(code))),
        user_data=json.dumps(user_data) if user_data is not None else None,
        **fields,
    )
    return sdk.create_function(CreateFunctionRequest(body=body))


def create_zip_function(sdk: Any, name: str, runtime: str, package: str) -> Any:
    """Create a function from a zip package (its base64) whose handler is ``bootstrap``, as
    custom runtimes and HTTP functions have it, through the SDK; return the response."""
    body = CreateFunctionRequestBody(
        func_name=name,
        package="default",
        runtime=runtime,
        timeout=30,
        handler="bootstrap",
        memory_size=128,
        code_type="zip",
        func_code=FuncCode(file=package),
    )
    return sdk.create_function(CreateFunctionRequest(body=body))


def reported_event(record: Any) -> Any:
    """The event a ``REPORTER_CODE`` function received, read from its FAIL record."""
    assert record.status == "FAIL", record
    assert "EventReport" in record.error_message, record
    return json.loads(record.error_message.split("EVENT=", 1)[1])


# -- async records, read until they end ------------------------------------------------------

TERMINAL = frozenset(s.value for s in Status if s.terminal)


def record_status(sdk: Any, function_urn: str, request_id: str) -> Any:
    """The one record of ``request_id`` (or None), read through ListAsyncInvocations."""
    response = sdk.list_async_invocations(
        ListAsyncInvocationsRequest(function_urn=function_urn, request_id=request_id)
    )
    records = response.invocations or []
    assert len(records) <= 1, records
    return records[0] if records else None


def wait_for_terminal_record(
    sdk: Any, function_urn: str, request_id: str, timeout: float = 30
) -> Any:
    """FunctionGraph's view: poll ListAsyncInvocations (the SDK) until the record of
    ``request_id`` is terminal; return the SDK's record."""

    def done() -> Any:
        record = record_status(sdk, function_urn, request_id)
        return record if record is not None and record.status in TERMINAL else None

    return wait_for(done, timeout, what=f"{request_id} terminal")


def detail(api: FunctionGraphClient, request_id: str) -> dict[str, Any]:
    """The record with every attempt (``GET /v2/{project}/openfgs/async-invocations/{id}``)."""
    found: dict[str, Any] = api.json("GET", f"/async-invocations/{request_id}", section="openfgs")
    return found


def wait_detail(
    api: FunctionGraphClient,
    request_id: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 30,
) -> dict[str, Any]:
    """Poll the detail of ``request_id`` until ``predicate`` holds; return it."""
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        last = detail(api, request_id)
        return predicate(last)

    try:
        wait_for(check, timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(f"condition not met within {timeout} s; last: {last}") from None
    return last


def wait_for_terminal_detail(
    api: FunctionGraphClient, request_id: str, timeout: float = 30
) -> dict[str, Any]:
    """The openfgs view: poll the detail endpoint (the project's own client) until the record
    of ``request_id`` is terminal; return the detail, attempts included."""
    return wait_detail(api, request_id, lambda d: d["status"] in TERMINAL, timeout)
