"""Function management: CreateFunction, ListFunctions, Show/Update config and code, Delete."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from openfgs.api.dependencies import dependency_fields
from openfgs.api.deps import ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.api.params import parse_int
from openfgs.errors import BadRequest
from openfgs.models import LATEST, Function, cpu_millicores, format_modified
from openfgs.schemas import (
    CreateFunctionBody,
    FunctionCodeOut,
    FunctionListOut,
    FunctionOut,
    MaxInstanceBody,
    UpdateFunctionCodeBody,
    UpdateFunctionConfigBody,
)

router = APIRouter(prefix="/v2/{project_id}/fgs/functions", responses=ERROR_RESPONSES)
MAX_ITEMS = 400


def describe(function: Function, region: str, *, qualified: bool = True) -> dict[str, Any]:
    """FunctionGraph's function model for ``function``."""
    urn = function.urn(region)
    return {
        "func_id": function.func_id,
        "func_urn": urn.qualified(function.qualifier) if qualified else urn.unqualified,
        "func_name": function.name,
        "domain_id": function.project_id,
        "namespace": function.project_id,
        "project_name": region,
        "package": function.package,
        "runtime": function.runtime,
        "timeout": function.timeout,
        "handler": function.handler,
        "memory_size": function.memory_size,
        "cpu": cpu_millicores(function.memory_size),
        "code_type": function.code_type,
        "code_url": "",
        "code_filename": function.code_filename or "",
        "code_size": function.code_size,
        "user_data": function.user_data,
        "encrypted_user_data": "",
        "digest": function.code_digest,
        "version": function.version,
        "image_name": f"{function.version}-{function.last_modified}",
        "xrole": "",
        "app_xrole": "",
        "description": function.description,
        "last_modified": format_modified(function.last_modified),
        "initializer_handler": function.initializer_handler or "",
        "initializer_timeout": function.initializer_timeout or 0,
        "type": "v2",
        "strategy_config": {
            "concurrency": function.concurrency,
            "concurrent_num": function.concurrent_num,
        },
    }


async def describe_code(services: ServicesDep, function: Function) -> dict[str, Any]:
    code = await services.registry.code(function.code_digest)
    model = describe(function, services.settings.region)
    keys = (
        "func_urn",
        "func_name",
        "domain_id",
        "runtime",
        "code_type",
        "code_url",
        "code_filename",
        "code_size",
        "digest",
        "last_modified",
        "strategy_config",
    )
    return {
        **{k: model[k] for k in keys},
        "func_code": {"file": base64.b64encode(code).decode(), "link": ""},
        **await dependency_fields(services, function),
    }


@router.post("", response_model=FunctionOut, summary="CreateFunction")
async def create_function(
    body: CreateFunctionBody, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    function = await services.registry.create(project_id, body)
    return {
        **describe(function, services.settings.region),
        **await dependency_fields(services, function),
    }


@router.get("", response_model=FunctionListOut, summary="ListFunctions")
async def list_functions(
    project_id: ProjectDep,
    services: ServicesDep,
    marker: Annotated[str | None, Query(max_length=64)] = None,
    maxitems: Annotated[str | None, Query(max_length=64)] = None,
    package_name: Annotated[str | None, Query(max_length=64)] = None,
    func_name: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    offset = parse_int(marker, "marker", default=0)
    # FunctionGraph reads 0, an absent value and anything over 400 as 400.
    limit = min(parse_int(maxitems, "maxitems", default=0) or MAX_ITEMS, MAX_ITEMS)
    functions, count = await services.registry.list_functions(
        project_id, package_name or None, func_name or None, offset, limit
    )
    region = services.settings.region
    return {
        "functions": [
            {**describe(f, region, qualified=False), **await dependency_fields(services, f)}
            for f in functions
        ],
        "next_marker": offset + len(functions),
        "count": count,
    }


@router.get("/{function_urn}/config", response_model=FunctionOut, summary="ShowFunctionConfig")
async def show_function_config(
    function_urn: str, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    function = await services.registry.resolve(project_id, function_urn, missing_code="FSS.1051")
    return {
        **describe(function, services.settings.region),
        **await dependency_fields(services, function),
    }


@router.put("/{function_urn}/config", response_model=FunctionOut, summary="UpdateFunctionConfig")
async def update_function_config(
    function_urn: str,
    body: UpdateFunctionConfigBody,
    project_id: ProjectDep,
    services: ServicesDep,
) -> dict[str, Any]:
    function = await services.registry.resolve(project_id, function_urn, missing_code="FSS.1051")
    updated = await services.registry.update_config(function, body)
    return {
        **describe(updated, services.settings.region),
        **await dependency_fields(services, updated),
    }


@router.put(
    "/{function_urn}/config-max-instance",
    response_model=FunctionOut,
    summary="UpdateFunctionMaxInstanceConfig",
)
async def update_max_instance_config(
    function_urn: str, body: MaxInstanceBody, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    function = await services.registry.resolve(project_id, function_urn, missing_code="FSS.1051")
    updated = await services.registry.set_max_instances(function, body.max_instance_num)
    return describe(updated, services.settings.region)


@router.get("/{function_urn}/code", response_model=FunctionCodeOut, summary="ShowFunctionCode")
async def show_function_code(
    function_urn: str, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    function = await services.registry.resolve(project_id, function_urn, missing_code="FSS.1051")
    return await describe_code(services, function)


@router.put("/{function_urn}/code", response_model=FunctionCodeOut, summary="UpdateFunctionCode")
async def update_function_code(
    function_urn: str,
    body: UpdateFunctionCodeBody,
    project_id: ProjectDep,
    services: ServicesDep,
) -> dict[str, Any]:
    function = await services.registry.resolve(project_id, function_urn, missing_code="FSS.1051")
    updated = await services.registry.update_code(function, body)
    return await describe_code(services, updated)


@router.delete(
    "/{function_urn}", status_code=204, response_class=Response, summary="DeleteFunction"
)
async def delete_function(
    function_urn: str, project_id: ProjectDep, services: ServicesDep
) -> Response:
    function = await services.registry.resolve(project_id, function_urn, missing_code="FSS.1051")
    if function_urn.endswith(f":{LATEST}"):
        raise BadRequest("The latest version cannot be deleted alone", error_code="FSS.1015")
    await services.registry.delete(function)
    return Response(status_code=204)
