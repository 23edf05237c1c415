"""Dependencies shared by the routers: the services and the authenticated project."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.types import Scope

from openfgs.errors import Forbidden
from openfgs.models import Function
from openfgs.services import Services


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain-def dependency in a thread pool, per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticated_project(
    request: Request, project_id: Annotated[str, Path(max_length=64)]
) -> str:
    """The path's project, whose caller the guard (openfgs.api.guard) has authenticated."""
    return authenticated(request.scope, project_id)


def authenticated(scope: Scope, project_id: str) -> str:
    """``project_id`` if the guard authenticated this request's caller for it."""
    if scope.get("openfgs.project") != project_id:
        raise Forbidden(f"the credential has no access to project {project_id}")
    return project_id


async def check_before_body(services: Services, scope: Scope, project_id: str) -> None:
    """Refuse, before its body is read, a request whose credential is unknown, locked, or of
    another project (the signature itself is verified once the body is there)."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    if await services.auth.check_before_body(headers) != project_id:
        raise Forbidden(f"the credential has no access to project {project_id}")


async def authenticate_scope(services: Services, scope: Scope, body: bytes, project_id: str) -> str:
    """Verify the request's AK/SK signature or token against the path's project."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    caller = await services.auth.authenticate(
        scope["method"],
        raw_path.decode("latin-1"),
        scope.get("query_string", b"").decode("latin-1"),
        headers,
        body,
    )
    if caller != project_id:
        raise Forbidden(f"the credential has no access to project {project_id}")
    return project_id


ProjectDep = Annotated[str, Depends(authenticated_project)]


async def path_function(
    services: ServicesDep, project_id: ProjectDep, function_urn: str
) -> Function:
    return await services.registry.resolve(project_id, function_urn)


FunctionDep = Annotated[Function, Depends(path_function)]


async def path_functions(
    services: ServicesDep, project_id: ProjectDep, function_urn: str
) -> list[Function]:
    """The rows whose records the path's URN covers (unqualified: latest, versions, aliases)."""
    return await services.registry.resolve_all(project_id, function_urn)


FunctionsDep = Annotated[list[Function], Depends(path_functions)]
