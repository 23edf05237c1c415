"""Triggers: CreateFunctionTrigger, ListFunctionTriggers, ShowFunctionTrigger, UpdateTrigger,
DeleteFunctionTrigger, BatchDeleteFunctionTriggers, and the project-wide list."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from openfgs.api.deps import FunctionDep, FunctionsDep, ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.api.params import parse_int
from openfgs.models import Trigger
from openfgs.schemas import (
    CreateTriggerBody,
    TriggerListOut,
    TriggerOut,
    UpdateTriggerBody,
)
from openfgs.services import Services
from openfgs.triggers import HTTP_TYPES

project_router = APIRouter(prefix="/v2/{project_id}/fgs/triggers", responses=ERROR_RESPONSES)
router = APIRouter(prefix="/v2/{project_id}/fgs/triggers/{function_urn}", responses=ERROR_RESPONSES)
MAX_ITEMS = 500


def trigger_time(ms: int) -> str:
    """Trigger times as RFC 3339 in UTC, which both the SDK and Terraform read."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def invoke_url(services: Services, trigger: Trigger) -> str:
    base = (services.settings.public_url or services.settings.api_endpoint).rstrip("/")
    return f"{base}/apig/{trigger.project_id}{trigger.route_path}"


def describe_trigger(services: Services, trigger: Trigger) -> dict[str, Any]:
    data = trigger.data
    if trigger.type_code in HTTP_TYPES:
        data = {
            **data,
            "invoke_url": invoke_url(services, trigger),
            "triggerid": trigger.trigger_id,
        }
    return {
        "trigger_id": trigger.trigger_id,
        "trigger_type_code": trigger.type_code,
        "trigger_status": trigger.status,
        "event_type_code": trigger.event_type_code,
        "event_data": data,
        "last_updated_time": trigger_time(trigger.last_modified),
        "created_time": trigger_time(trigger.created_at),
    }


@project_router.get("", response_model=TriggerListOut, summary="ListTriggers (Terraform)")
async def list_project_triggers(
    project_id: ProjectDep,
    services: ServicesDep,
    marker: Annotated[str | None, Query(max_length=64)] = None,
    maxitems: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    offset = parse_int(marker, "marker", default=0)
    limit = min(parse_int(maxitems, "maxitems", default=0) or MAX_ITEMS, MAX_ITEMS)
    found = []
    region = services.settings.region
    for trigger in await services.triggers.list_project(project_id):
        function = await services.registry.get_by_id(trigger.function_id)
        if function is not None:
            urn = function.qualified_urn(region)
            found.append({**describe_trigger(services, trigger), "func_urn": urn})
    page = found[offset : offset + limit]
    return {"triggers": page, "next_marker": offset + len(page), "count": len(found)}


@router.post("", status_code=201, response_model=TriggerOut, summary="CreateFunctionTrigger")
async def create_trigger(
    body: CreateTriggerBody, function: FunctionDep, services: ServicesDep
) -> dict[str, Any]:
    trigger = await services.triggers.create(
        function, body.trigger_type_code, body.trigger_status, body.event_type_code, body.event_data
    )
    return describe_trigger(services, trigger)


@router.get("", response_model=list[TriggerOut], summary="ListFunctionTriggers")
async def list_triggers(functions: FunctionsDep, services: ServicesDep) -> list[Any]:
    """An unqualified URN lists the triggers of every qualifier; a qualified one its own."""
    return [describe_trigger(services, t) for t in await services.triggers.list(functions)]


@router.delete("", status_code=204, response_class=Response, summary="BatchDeleteFunctionTriggers")
async def delete_triggers(functions: FunctionsDep, services: ServicesDep) -> Response:
    await services.triggers.delete(await services.triggers.list(functions))
    return Response(status_code=204)


@router.get(
    "/{trigger_type_code}/{trigger_id}", response_model=TriggerOut, summary="ShowFunctionTrigger"
)
async def show_trigger(
    trigger_type_code: str, trigger_id: str, functions: FunctionsDep, services: ServicesDep
) -> dict[str, Any]:
    trigger = await services.triggers.get(functions, trigger_type_code, trigger_id)
    return describe_trigger(services, trigger)


@router.put("/{trigger_type_code}/{trigger_id}", response_model=TriggerOut, summary="UpdateTrigger")
async def update_trigger(
    trigger_type_code: str,
    trigger_id: str,
    body: UpdateTriggerBody,
    functions: FunctionsDep,
    services: ServicesDep,
) -> dict[str, Any]:
    trigger = await services.triggers.get(functions, trigger_type_code, trigger_id)
    updated = await services.triggers.update(trigger, body.trigger_status, body.event_data)
    return describe_trigger(services, updated)


@router.delete(
    "/{trigger_type_code}/{trigger_id}",
    status_code=204,
    response_class=Response,
    summary="DeleteFunctionTrigger",
)
async def delete_trigger(
    trigger_type_code: str, trigger_id: str, functions: FunctionsDep, services: ServicesDep
) -> Response:
    trigger = await services.triggers.get(functions, trigger_type_code, trigger_id)
    await services.triggers.delete([trigger])
    return Response(status_code=204)
