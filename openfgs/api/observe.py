"""The observability layer: ``GET /metrics`` and the HTTP metrics of every request.

The servers put it first in ``create_app``'s outer layers, so it sees every request — those the fast
routes answer ahead of FastAPI and those the guard refuses too. Requests are labelled by the
route *template* they match (``/v2/{project_id}/fgs/functions/{function_urn}/invocations-async``),
never by their path, so the number of series is bounded by the number of routes; a path no
route matches is labelled ``unmatched``.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openfgs.api.errors import error_response
from openfgs.errors import ApiError, NotFound, Unauthorized
from openfgs.logs import REQUEST_ID
from openfgs.metrics import CONTENT_TYPE, Metrics
from openfgs.services import Services

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PATH_CACHE_ENTRIES = 10_000  # matched paths remembered (a function's accept path, …)
_REQUEST_ID_HEADER = b"x-request-id"


def route_templates(routes: Sequence[BaseRoute]) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, template) of each route, in the order FastAPI routes in (the fast routes'
    patterns are FastAPI's own: openfgs.api.fast.declared). A router included in the app is
    walked into (FastAPI keeps it as one entry: the routers here are included without a
    prefix of their own, theirs is in each route's path)."""
    found: list[tuple[re.Pattern[str], str]] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += route_templates(included.routes)
        elif isinstance(route, Route | Mount):
            found.append((route.path_regex, route.path))
    return found


def observed(services: Services) -> Callable[[ASGIApp], ASGIApp]:
    """The layer for ``create_app(services, outer=[observed(services), …])``."""
    return lambda inner: Observed(inner, services)


def behind(app: ASGIApp) -> FastAPI:
    """The FastAPI app behind ``app``'s layers (each keeps the next as ``.app``)."""
    while not isinstance(app, FastAPI):
        app = app.app  # type: ignore[attr-defined]
    return app


class Observed:
    """ASGI layer: answers ``GET /metrics``; counts and times every other request."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.metrics: Metrics = services.invocations.metrics
        self.scrape = Scrape(services)
        self.routes = route_templates(behind(app).routes)
        self._paths: dict[str, str] = {}
        self._children: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            await self._scrape(scope, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        for name, value in scope["headers"]:
            if name == _REQUEST_ID_HEADER:
                REQUEST_ID.set(value.decode("latin-1")[:128])
                break
        try:
            await self.app(scope, receive, send_status)
        finally:
            self._count(self._route(path), scope["method"], status, started)

    def _route(self, path: str) -> str:
        template = self._paths.get(path)
        if template is None:
            template = next((t for pattern, t in self.routes if pattern.match(path)), UNMATCHED)
            if template != UNMATCHED:
                if len(self._paths) >= PATH_CACHE_ENTRIES:
                    self._paths.clear()
                self._paths[path] = template
        return template

    def _count(self, route: str, method: str, status: int, started: float) -> None:
        if method not in METHODS:
            method = "OTHER"
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.metrics.http_requests.labels(
                route, method, str(status)
            )
        child.inc()
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self.metrics.http_duration.labels(route)
        timer.observe(time.perf_counter() - started)

    async def _scrape(self, scope: Scope, send: Send) -> None:
        started = time.perf_counter()
        status = await self.scrape(scope, send)
        self._count(METRICS_PATH, scope["method"], status, started)


class Scrape:
    """Answers ``GET /metrics``: the bearer token checked (when one is set), the store's
    gauges refreshed, the registry written out. Returns the status it answered."""

    def __init__(self, services: Services) -> None:
        self.metrics: Metrics = services.invocations.metrics
        self.token = services.settings.metrics_token.encode()
        self.gauges = self.metrics.watch(
            services.store.waiting_by_function, services.pool.instance_states
        )

    async def __call__(self, scope: Scope, send: Send) -> int:
        if self.token and not self._authorized(scope):
            exc = Unauthorized("a bearer token is required for /metrics")
            await _send_error(send, exc, [(b"www-authenticate", b"Bearer")])
            return exc.status
        await self.gauges.refresh()
        body = self.metrics.exposition()
        headers = [
            (b"content-type", CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})
        return 200

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self.token
                )
        return False


def metrics_app(services: Services) -> ASGIApp:
    """An ASGI app serving only ``GET /metrics``: for worker nodes, which serve no API."""
    scrape = Scrape(services)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            await scrape(scope, send)
        else:
            await _send_error(send, NotFound("only /metrics is served here"))

    return app


async def _send_error(
    send: Send, exc: ApiError, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    response = error_response(exc.status, exc.error_code, exc.message, exc.headers)
    headers = [*response.raw_headers, *(extra or [])]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
