"""The hottest routes, answered ahead of FastAPI's request machinery.

FastAPI solves dependencies, validates parameters and runs middleware on every request; on these
machines that machinery alone caps a route at ~2.7 k requests/s, below what the async invoke
must accept (docs/benchmarks.md). :class:`FastRoutes` wraps the FastAPI app and answers
``POST …/invocations-async`` and the two list queries as plain ASGI, calling the same functions
the FastAPI routes call (``openfgs.api.invocations``). The routes stay declared in FastAPI: they
make the OpenAPI document, and ``tests/api/test_fast_routes.py`` holds both answers equal.
Everything else goes to FastAPI unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from urllib.parse import parse_qsl

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from openfgs.api import invocations
from openfgs.api.deps import authenticated
from openfgs.api.errors import error_response
from openfgs.api.invocations import IDEMPOTENCY_KEY_MAX, accept_async, list_records
from openfgs.errors import ApiError, BadRequest, InternalError
from openfgs.services import Services

log = logging.getLogger("openfgs.api")

_JSON_HEADERS = [(b"content-type", b"application/json")]
_IDEMPOTENCY_HEADER = b"x-openfgs-idempotency-key"


def declared(router: APIRouter, name: str) -> re.Pattern[str]:
    """The path pattern of the route ``name`` as FastAPI declares it: one source for both."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.name == name:
            return route.path_regex
    raise LookupError(name)


_ASYNC_INVOKE = declared(invocations.router, "async_invoke")
_LIST = declared(invocations.router, "list_async_invocations")
_LIST_ACTIVE = declared(invocations.router, "list_active_async_invocations")


class FastRoutes:
    """ASGI app: the async invoke and list routes answered directly, the rest by ``app``.

    It runs behind the guard (openfgs.api.guard), which has read the body and authenticated
    the caller of every project route."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "POST" and (match := _ASYNC_INVOKE.match(path)):
                await self._answer(send, 202, self._accept(scope, match))
                return
            if method == "GET" and (match := _LIST.match(path)):
                await self._answer(send, 200, self._list(scope, match, active=False))
                return
            if method == "GET" and (match := _LIST_ACTIVE.match(path)):
                await self._answer(send, 200, self._list(scope, match, active=True))
                return
        await self.app(scope, receive, send)

    async def _accept(self, scope: Scope, match: re.Match[str]) -> bytes:
        key = next((v for k, v in scope["headers"] if k == _IDEMPOTENCY_HEADER), None)
        idempotency_key = None if key is None else key.decode("latin-1")
        if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
            # FastAPI's (pydantic's) wording for the same Header(max_length=…) declaration.
            raise BadRequest(
                "Invalid parameter header.x-openfgs-idempotency-key: "
                f"String should have at most {IDEMPOTENCY_KEY_MAX} characters"
            )
        return await accept_async(
            self.services,
            scope,
            scope["openfgs.body"],
            match["project_id"],
            match["function_urn"],
            idempotency_key,
        )

    async def _list(self, scope: Scope, match: re.Match[str], *, active: bool) -> bytes:
        project_id = authenticated(scope, match["project_id"])
        functions = await self.services.registry.resolve_all(project_id, match["function_urn"])
        query = scope.get("query_string", b"").decode("latin-1")
        params = dict(parse_qsl(query, keep_blank_values=True))
        return await list_records(self.services, functions, params, active=active)

    async def _answer(self, send: Send, status: int, answer: Awaitable[bytes]) -> None:
        try:
            body = await answer
        except ApiError as exc:
            await _send_error(send, exc)
            return
        except Exception as exc:
            log.error("unhandled error", exc_info=exc)
            await _send_error(send, InternalError())
            return
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, exc: ApiError) -> None:
    response = error_response(exc.status, exc.error_code, exc.message, exc.headers)
    start = {"type": "http.response.start", "status": response.status_code}
    await send({**start, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
