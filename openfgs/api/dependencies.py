"""Dependencies: CreateDependencyVersion, ListDependencies, ListDependencyVersion,
ShowDependencyVersion and DeleteDependencyVersion, and the dependency fields of functions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from openfgs.api.deps import ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.api.params import parse_int
from openfgs.errors import BadRequest
from openfgs.models import DependencyVersion, Function
from openfgs.schemas import (
    CreateDependencyBody,
    DependencyListOut,
    DependencyOut,
    DependencyVersionDetailOut,
    DependencyVersionListOut,
)

router = APIRouter(
    prefix="/v2/{project_id}/fgs/dependencies",
    responses={
        **ERROR_RESPONSES,
        412: {"description": "In use", "model": ERROR_RESPONSES[400]["model"]},
    },
)
MAX_ITEMS = 400
DependId = Annotated[str, Path(max_length=64)]
VersionParam = Annotated[str, Path(max_length=32)]
QueryText = Annotated[str | None, Query(max_length=128)]


def link(version: DependencyVersion) -> str:
    """Where a version is: a locator in openfgs's own scheme (it is not downloadable)."""
    return f"openfgs://dependencies/{version.dep_id}/versions/{version.version}/{version.file_name}"


def describe_version(version: DependencyVersion) -> dict[str, Any]:
    """FunctionGraph's ``Dependency`` model of a version (``id``: the version id)."""
    return {
        "id": version.id,
        "dep_id": version.dep_id,
        "owner": version.project_id,
        "link": link(version),
        "runtime": version.runtime,
        "etag": version.etag,
        "size": version.size,
        "name": version.name,
        "description": version.description,
        "file_name": version.file_name,
        "version": version.version,
        "last_modified": version.created_at // 1000,
    }


def describe_dependency(latest: DependencyVersion) -> dict[str, Any]:
    """A ListDependencies item: ``id`` is the dependency id, the rest its latest version's."""
    model = describe_version(latest)
    del model["dep_id"]
    return {**model, "id": latest.dep_id}


async def dependency_fields(services: ServicesDep, function: Function) -> dict[str, Any]:
    """The dependency fields of a function's model and code model."""
    versions = await services.dependencies.of_function(function)
    return {
        "depend_list": list(dict.fromkeys(v.dep_id for v in versions)),
        "depend_version_list": list(function.depend_versions),
        "dependencies": [describe_version(v) for v in versions],
    }


def _page(marker: str | None, maxitems: str | None, limit: str | None) -> tuple[int, int]:
    """``marker`` (an offset) and the page size: ``maxitems``, else ``limit``, at most 400."""
    offset = parse_int(marker, "marker", default=0, error_code="FSS.1024")
    size = parse_int(maxitems, "maxitems", default=0, error_code="FSS.1024") or parse_int(
        limit, "limit", default=0, error_code="FSS.1024"
    )
    return offset, min(size or MAX_ITEMS, MAX_ITEMS)


def _version_number(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadRequest(f"Invalid dependency version {raw[:32]!r}", error_code="FSS.1024")
    return int(raw)


@router.post("/version", response_model=DependencyOut, summary="CreateDependencyVersion")
async def create_dependency_version(
    body: CreateDependencyBody, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    return describe_version(await services.dependencies.create(project_id, body))


@router.get("", response_model=DependencyListOut, summary="ListDependencies")
async def list_dependencies(
    project_id: ProjectDep,
    services: ServicesDep,
    marker: QueryText = None,
    maxitems: QueryText = None,
    limit: QueryText = None,
    ispublic: QueryText = None,
    dependency_type: QueryText = None,
    runtime: QueryText = None,
    name: QueryText = None,
) -> dict[str, Any]:
    offset, size = _page(marker, maxitems, limit)
    found, count = await services.dependencies.list_latest(
        project_id,
        name=name or None,
        runtime=runtime or None,
        dependency_type=dependency_type or None,
        offset=offset,
        limit=size,
    )
    items = [describe_dependency(v) for v in found]
    return {"dependencies": items, "next_marker": offset + len(items), "count": count}


@router.get(
    "/{depend_id}/version", response_model=DependencyVersionListOut, summary="ListDependencyVersion"
)
async def list_dependency_versions(
    depend_id: DependId,
    project_id: ProjectDep,
    services: ServicesDep,
    marker: QueryText = None,
    maxitems: QueryText = None,
) -> dict[str, Any]:
    offset, size = _page(marker, maxitems, None)
    found, count = await services.dependencies.list_versions(project_id, depend_id, offset, size)
    items = [{**describe_version(v), "is_shared": False} for v in found]
    return {"dependencies": items, "next_marker": offset + len(items), "count": count}


@router.get(
    "/{depend_id}/version/{version}",
    response_model=DependencyVersionDetailOut,
    summary="ShowDependencyVersion",
)
async def show_dependency_version(
    depend_id: DependId, version: VersionParam, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    found = await services.dependencies.show(project_id, depend_id, _version_number(version))
    return {**describe_version(found), "is_shared": False, "download_link": ""}


@router.delete(
    "/{depend_id}/version/{version}",
    status_code=204,
    response_class=Response,
    summary="DeleteDependencyVersion",
)
async def delete_dependency_version(
    depend_id: DependId, version: VersionParam, project_id: ProjectDep, services: ServicesDep
) -> Response:
    await services.dependencies.delete(project_id, depend_id, _version_number(version))
    return Response(status_code=204)
