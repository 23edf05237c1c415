"""Every operation of the API passes the outer middleware slot and the guard.

The operations come from the OpenAPI document, so a route added later is covered without a
change here; the hot routes answered ahead of FastAPI are among them.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from openfgs.api import create_app
from tests.support import PROJECT, LiveServer, urn

PARAMETERS = {
    "project_id": PROJECT,
    "function_urn": urn("echo"),
    "request_id": "r-1",
    "alias_name": "prod",
    "trigger_type_code": "TIMER",
    "trigger_id": "t-1",
    "event_id": "3b659dc0-12fc-40dc-aa05-a321d9424cb3",
    "depend_id": "d-1",
    "version": "1",
    "period": "5",
}


class Recorder:
    """An outer layer that notes each request it passes on."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def operations(server: LiveServer) -> list[tuple[str, str]]:
    document = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    found = []
    for template, methods in document["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: PARAMETERS[m[1]], template)
        found += [(method.upper(), path) for method in methods]
    return found


def test_every_operation_passes_the_outer_slot_and_is_authenticated_first(
    server: LiveServer,
) -> None:
    seen: list[tuple[str, str]] = []
    app = create_app(server.services, outer=[lambda inner: Recorder(inner, seen)])
    wanted = operations(server)
    assert len(wanted) > 20

    async def send_all() -> list[tuple[str, str, int]]:
        transport = httpx.ASGITransport(app=app)
        answers = []
        async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
            for method, path in wanted:
                response = await client.request(method, path, content=b"{not json")
                answers.append((method, path, response.status_code))
        return answers

    answers: Any = server.run(send_all())

    assert seen == wanted
    for method, path, status in answers:
        if path.startswith("/v2/"):
            assert status == 403, (method, path, status)  # before the body or the route
        else:
            assert status < 500, (method, path, status)


@pytest.mark.parametrize("outer", [0, 2])
def test_outer_layers_wrap_in_order(server: LiveServer, outer: int) -> None:
    seen: list[tuple[str, str]] = []
    app = create_app(server.services, outer=[lambda inner: Recorder(inner, seen)] * outer)

    async def health() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
            return (await client.get("/healthz")).status_code

    assert server.run(health()) == 200
    assert len(seen) == outer
