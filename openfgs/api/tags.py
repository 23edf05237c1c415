"""Function tags: CreateTags, DeleteTags, ListFunctionTags and ShowProjectTagsList.

FunctionGraph serves them outside ``/fgs/``, under ``/v2/{project_id}/{resource_type}``, where
the resource type is ``functions`` and the resource id a function URN (unqualified, or
``:latest``): any other resource type is not found.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from openfgs.api.deps import ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.errors import BadRequest
from openfgs.schemas import FunctionTagsOut, ProjectTagsOut, TagsBody
from openfgs.tags import SYSTEM_TAGS

router = APIRouter(prefix="/v2/{project_id}/functions", responses=ERROR_RESPONSES)


def _check_action(body: TagsBody, action: str) -> None:
    if body.action is not None and body.action != action:
        raise BadRequest(f"Invalid action: {body.action[:16]!r}; this request takes {action!r}")


@router.get("/tags", response_model=ProjectTagsOut, summary="ShowProjectTagsList")
async def show_project_tags(project_id: ProjectDep, services: ServicesDep) -> dict[str, Any]:
    found = await services.registry.project_tags(project_id)
    return {
        "tags": [{"key": key, "values": values} for key, values in found.items()],
        "sys_tags": [{"key": key, "values": [value]} for key, value in SYSTEM_TAGS],
    }


@router.get("/{function_urn}/tags", response_model=FunctionTagsOut, summary="ListFunctionTags")
async def list_function_tags(
    function_urn: str, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    function = await services.registry.resolve(project_id, function_urn)
    return {
        "tags": [{"key": k, "value": v} for k, v in await services.registry.tags(function)],
        "sys_tags": [{"key": k, "value": v} for k, v in SYSTEM_TAGS],
    }


@router.post(
    "/{function_urn}/tags/create", status_code=204, response_class=Response, summary="CreateTags"
)
async def create_tags(
    function_urn: str, body: TagsBody, project_id: ProjectDep, services: ServicesDep
) -> Response:
    _check_action(body, "create")
    function = await services.registry.resolve(project_id, function_urn)
    tags = [(item.key, item.value or "") for item in body.tags]
    await services.registry.add_tags(function, tags)
    return Response(status_code=204)


@router.delete(
    "/{function_urn}/tags/delete", status_code=204, response_class=Response, summary="DeleteTags"
)
async def delete_tags(
    function_urn: str, body: TagsBody, project_id: ProjectDep, services: ServicesDep
) -> Response:
    _check_action(body, "delete")
    function = await services.registry.resolve(project_id, function_urn)
    await services.registry.remove_tags(function, [item.key for item in body.tags])
    return Response(status_code=204)
