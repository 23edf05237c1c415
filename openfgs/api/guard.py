"""The outermost ASGI layer: every request is bounded, and authenticated, before any work.

In order, for every HTTP request:

1. its body limit is looked up in :data:`BODY_LIMITS` (one table for every route) and a declared
   ``Content-Length`` above it is answered 413 without reading a byte;
2. on a project route (``/v2/{project_id}/…``) the body is read — never more than the limit,
   and, when it is large, only for a caller whose credential exists — and the caller
   authenticated (AK/SK signature or token,
   for the path's project) before anything looks at the body or the route: a request that is
   not authenticated learns nothing of the API but that it is not authenticated;
3. the inner app (the fast routes, then FastAPI) gets the request with the body already read
   (``scope["openfgs.body"]``, and replayed through ``receive``) and the authenticated project
   (``scope["openfgs.project"]``).

Header sizes, read times and the number of connections are bounded below this layer, in the
HTTP protocol (:mod:`openfgs.api.server`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openfgs.api.deps import authenticate_scope, check_before_body
from openfgs.api.errors import error_response
from openfgs.dependencies import DEPENDENCY_ZIP_LIMIT
from openfgs.errors import ApiError, BadRequest, OpenFgsError, PayloadTooLarge
from openfgs.functions import ZIP_LIMIT
from openfgs.services import Services
from openfgs.settings import Settings

PROJECT_MAX = 64
# Bodies up to this size are read before the caller is checked: reading them costs less than
# a lookup would save. Larger ones wait until the credential is known to exist.
READ_BEFORE_CHECK_BYTES = 64 * 1024
_PROJECT_ROUTE = re.compile(r"/v2/(?P<project>[^/]+)/")
_JSON_OVERHEAD = 64 * 1024  # the other fields of a function body beside its base64 code


def code_body_bytes(_: Settings) -> int:
    """A function create or code update carries a package of up to ZIP_LIMIT in base64."""
    return (ZIP_LIMIT + 2) // 3 * 4 + _JSON_OVERHEAD


def test_event_body_bytes(settings: Settings) -> int:
    """A test event is the base64 of an event of up to a sync invoke's body, plus its name."""
    return (settings.max_sync_body_bytes + 2) // 3 * 4 + _JSON_OVERHEAD


def dependency_body_bytes(_: Settings) -> int:
    """A dependency version carries a zip of up to DEPENDENCY_ZIP_LIMIT in base64."""
    return (DEPENDENCY_ZIP_LIMIT + 2) // 3 * 4 + _JSON_OVERHEAD


# Routes (by their declared name) that take more than ``max_body_bytes``; every other route,
# known or not, is held to that.
BODY_LIMITS: dict[str, Callable[[Settings], int]] = {
    "async_invoke": lambda s: s.max_async_body_bytes,
    "invoke": lambda s: s.max_sync_body_bytes,
    "create_function": code_body_bytes,
    "update_function_code": code_body_bytes,
    "http_trigger": lambda s: s.max_sync_body_bytes,
    "create_event": test_event_body_bytes,
    "update_event": test_event_body_bytes,
    "create_dependency_version": dependency_body_bytes,
}


def _body_limits(
    settings: Settings, routes: Iterable[BaseRoute]
) -> list[tuple[set[str], re.Pattern[str], int]]:
    """(methods, path pattern, limit) of each route in :data:`BODY_LIMITS`, as declared."""
    limited = [r for r in routes if isinstance(r, APIRoute) and r.name in BODY_LIMITS]
    if {route.name for route in limited} != set(BODY_LIMITS):
        raise LookupError("a route named in BODY_LIMITS is not declared")
    return [
        (route.methods or set(), route.path_regex, BODY_LIMITS[route.name](settings))
        for route in limited
    ]


class _Disconnected(OpenFgsError):
    """The client went away before its request body arrived."""


class Guard:
    """ASGI app: bounds and authenticates each request, then hands it to ``app``."""

    def __init__(self, app: ASGIApp, services: Services, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.services = services
        settings = services.settings
        self._limits = _body_limits(settings, routes)
        self._default_limit = settings.max_body_bytes

    def body_limit(self, method: str, path: str) -> int:
        for methods, pattern, limit in self._limits:
            if method in methods and pattern.match(path):
                return limit
        return self._default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._admit(scope, receive)
        except _Disconnected:
            return
        except ApiError as exc:
            response = error_response(exc.status, exc.error_code, exc.message, exc.headers)
            await response(scope, receive, send)
            return
        if body is None:
            await self.app(scope, self._bounded(scope, receive), send)
        else:
            await self.app(scope, _replay(body, receive), send)

    async def _admit(self, scope: Scope, receive: Receive) -> bytes | None:
        """The body of a project route, its caller authenticated; None for other routes."""
        limit = self.body_limit(scope["method"], scope["path"])
        scope["openfgs.body_limit"] = limit
        declared = _declared_length(scope, limit)
        match = _PROJECT_ROUTE.match(scope["path"])
        if match is None:
            return None
        project_id = match["project"]
        if len(project_id) > PROJECT_MAX:
            raise BadRequest(
                f"Invalid parameter project_id: String should have at most {PROJECT_MAX} characters"
            )
        if declared is None or declared > READ_BEFORE_CHECK_BYTES:
            # A large (or unannounced) body is read only for a caller who may be genuine.
            await check_before_body(self.services, scope, project_id)
        body = await self.read_body(receive, limit)
        await authenticate_scope(self.services, scope, body, project_id)
        scope["openfgs.body"] = body
        scope["openfgs.project"] = project_id
        return body

    async def read_body(self, receive: Receive, limit: int) -> bytes:
        """The whole body, refused (413) as soon as it passes ``limit``.

        A body that stops arriving is cut by the protocol's read deadlines (server.py): this
        ``receive`` then answers a disconnect."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _bounded(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` for routes that read their own body: same limit, same timeouts."""
        read = False

        async def bounded() -> Message:
            nonlocal read
            if read:
                return await receive()
            read = True
            body = await self.read_body(receive, scope["openfgs.body_limit"])
            return {"type": "http.request", "body": body, "more_body": False}

        return bounded


def _too_large(limit: int) -> PayloadTooLarge:
    size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return PayloadTooLarge(f"The request body is larger than {size}")


def _declared_length(scope: Scope, limit: int) -> int | None:
    """The body's ``Content-Length`` (0 when there is no body); None for a chunked body."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not (value.isdigit() and len(value) <= 18):
                raise BadRequest("Invalid Content-Length header")
            if int(value) > limit:
                raise _too_large(limit)
            return int(value)
        if name == b"transfer-encoding":
            return None
    return 0


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that hands out the already read body once, then waits for a disconnect."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
