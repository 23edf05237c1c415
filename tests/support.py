"""Helpers shared by the test folders: credentials, a live server on loopback, SDK clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn

from openfgs.api import create_app
from openfgs.api.server import server_config
from openfgs.models import Credential
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


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


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


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own
        pass


def start_server(settings: Settings) -> Iterator[LiveServer]:
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
    wait_for(lambda: server.started or not thread.is_alive())
    assert server.started, "server did not start"
    live = LiveServer(f"http://127.0.0.1:{settings.port}", services, settings, loops[0])
    live.run(services.auth.ensure_credential(OTHER))
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(30)


def sdk_client(url: str, credential: Credential = CREDENTIAL) -> Any:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkfunctiongraph.v2 import FunctionGraphClient

    config = HttpConfig.get_default_config()
    config.timeout = (5, 60)
    return (
        FunctionGraphClient.new_builder()
        .with_http_config(config)
        .with_credentials(
            BasicCredentials(credential.access_key, credential.secret_key, credential.project_id)
        )
        .with_endpoints([url])
        .build()
    )


def urn(name: str, project: str = PROJECT, qualifier: str | None = "latest") -> str:
    base = f"urn:fss:cn-north-4:{project}:function:default:{name}"
    return f"{base}:{qualifier}" if qualifier else base


PG_URL = os.environ.get("OPENFGS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


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
