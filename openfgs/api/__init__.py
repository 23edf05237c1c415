"""The HTTP API: FunctionGraph's REST surface over the openfgs services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from openfgs.api import (
    apig,
    async_config,
    console,
    dependencies,
    extensions,
    functions,
    health,
    iam,
    invocations,
    quotas,
    statistics,
    tags,
    test_events,
    triggers,
    versions,
)
from openfgs.api.errors import install_error_handlers
from openfgs.api.fast import FastRoutes
from openfgs.api.guard import Guard
from openfgs.api.operations import install_not_implemented
from openfgs.services import Services

# Every router, in the order routes are tried: static paths under /fgs/functions/ come before
# the routes that would take them as a function URN.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    iam.router,
    statistics.project_router,
    statistics.router,
    statistics.report_router,
    async_config.project_router,
    invocations.router,
    async_config.router,
    functions.router,
    versions.router,
    dependencies.router,
    triggers.project_router,
    triggers.router,
    test_events.router,
    extensions.router,
    tags.router,
    quotas.router,
    apig.router,
    console.router,
)


def declared_routes() -> list[BaseRoute]:
    """Every route of :data:`ROUTERS` as declared (the guard's body limits name them)."""
    return [route for router in ROUTERS for route in router.routes]


def create_app(
    services: Services,
    after_start: Callable[[Services], Awaitable[None]] | None = None,
    *,
    outer: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
) -> ASGIApp:
    """An ASGI app serving ``services``; it starts and stops them with its lifespan.

    Layers, outermost first: ``outer`` (each wraps the next; the slot where observability
    and the like go, seeing every request), the :class:`Guard` (bounds, authentication),
    :class:`FastRoutes` (the hottest routes, with the same code behind them as FastAPI's),
    and the FastAPI app, which serves every route and makes the OpenAPI document.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        if after_start is not None:
            await after_start(services)
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="openfgs",
        version="0.1.0",
        description="A self-hosted service speaking the Huawei Cloud FunctionGraph REST API.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # Last: every SDK operation no router above answers gets a 404 saying so, not a 405.
    install_not_implemented(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    wrapped: ASGIApp = Guard(FastRoutes(app, services), services, declared_routes())
    for layer in outer:
        wrapped = layer(wrapped)
    return wrapped


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, less the 422 responses: validation errors answer 400 here."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                responses.pop("422", None)
                for response in responses.values():
                    for content in response.get("content", {}).values():
                        # A declared anyOf replaces the response model's $ref (see sync invoke).
                        if "anyOf" in content.get("schema", {}):
                            content["schema"].pop("$ref", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
