"""Async invoke configs, cancel, and the project-level async status log switches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from openfgs.api.deps import FunctionDep, FunctionsDep, ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.api.params import parse_int
from openfgs.errors import NotFound
from openfgs.models import AsyncConfig, Function, format_modified, format_time
from openfgs.schemas import (
    AsyncConfigBody,
    AsyncConfigListOut,
    AsyncConfigOut,
    CancelBody,
    StatusLogDetailOut,
)

project_router = APIRouter(prefix="/v2/{project_id}/fgs/functions", responses=ERROR_RESPONSES)
router = APIRouter(
    prefix="/v2/{project_id}/fgs/functions/{function_urn}", responses=ERROR_RESPONSES
)


def describe_config(config: AsyncConfig, function: Function, region: str) -> dict[str, Any]:
    return {
        "func_urn": function.qualified_urn(region),
        "max_async_event_age_in_seconds": config.max_async_event_age_in_seconds,
        "max_async_retry_attempts": config.max_async_retry_attempts,
        "destination_config": config.destination_config,
        "created_time": format_time(config.created_at),
        "last_modified": format_modified(config.last_modified),
        "enable_async_status_log": config.enable_async_status_log,
    }


@project_router.post(
    "/enable-async-status-logs",
    response_class=Response,
    responses={200: {"description": "Enabled (records are always kept by openfgs)"}},
    summary="EnableAsyncStatusLog",
)
async def enable_async_status_log(project_id: ProjectDep) -> Response:
    return Response(status_code=200)


@project_router.get(
    "/async-status-log-detail",
    response_model=StatusLogDetailOut,
    summary="ShowProjectAsyncStatusLogInfo",
)
async def show_async_status_log(project_id: ProjectDep) -> dict[str, str]:
    return {
        "group_name": "openfgs-async-status",
        "group_id": f"openfgs-{project_id}",
        "stream_id": f"openfgs-{project_id}-async",
        "stream_name": "async-invocations",
    }


@router.put(
    "/async-invoke-config", response_model=AsyncConfigOut, summary="UpdateFunctionAsyncInvokeConfig"
)
async def put_async_config(
    body: AsyncConfigBody, function: FunctionDep, services: ServicesDep
) -> dict[str, Any]:
    config = await services.invocations.put_config(function, body)
    return describe_config(config, function, services.settings.region)


@router.get(
    "/async-invoke-config", response_model=AsyncConfigOut, summary="ShowFunctionAsyncInvokeConfig"
)
async def show_async_config(function: FunctionDep, services: ServicesDep) -> dict[str, Any]:
    config = await services.invocations.config(function)
    if config is None:
        raise NotFound("the function has no async invoke config")
    return describe_config(config, function, services.settings.region)


@router.delete(
    "/async-invoke-config",
    status_code=204,
    response_class=Response,
    summary="DeleteFunctionAsyncInvokeConfig",
)
async def delete_async_config(function: FunctionDep, services: ServicesDep) -> Response:
    await services.invocations.delete_config(function)
    return Response(status_code=204)


@router.get(
    "/async-invoke-configs",
    response_model=AsyncConfigListOut,
    summary="ListFunctionAsyncInvokeConfig",
)
async def list_async_configs(
    functions: FunctionsDep,
    services: ServicesDep,
    marker: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """The configs of the URN's rows: an unqualified URN lists the function's latest,
    versions and aliases that have one."""
    offset = parse_int(marker, "marker", default=0)
    size = min(parse_int(limit, "limit", default=0) or 10, 100)
    region = services.settings.region
    configs = []
    for function in functions:
        config = await services.invocations.config(function)
        if config is not None:
            configs.append(describe_config(config, function, region))
    page = configs[offset : offset + size]
    return {
        "async_invoke_configs": page,
        "count": len(configs),
        "page_info": {
            "next_marker": offset + len(page),
            "previous_marker": max(offset - size, 0),
            "current_count": len(page),
        },
    }


@router.post(
    "/cancel",
    response_class=Response,
    responses={
        200: {
            # FunctionGraph documents a null body; the Node.js SDK throws on null, while {}
            # parses in every SDK.
            "description": "Canceled; the body is an empty object",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    summary="CancelAsyncInvocation",
)
async def cancel_async_invocation(
    body: CancelBody, functions: FunctionsDep, services: ServicesDep
) -> Response:
    await services.invocations.cancel(functions, body.request_id)
    return Response(b"{}", 200, media_type="application/json")
