"""Versions and aliases: CreateFunctionVersion, ListFunctionVersions and the alias
operations (Create/List/Show/Update/DeleteVersionAlias)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from openfgs.api.async_config import describe_config
from openfgs.api.deps import FunctionDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.api.functions import describe
from openfgs.api.params import parse_int
from openfgs.errors import BadRequest
from openfgs.models import Function, format_modified
from openfgs.schemas import (
    AliasBody,
    AliasOut,
    CreateVersionBody,
    FunctionVersionListOut,
    FunctionVersionOut,
)

router = APIRouter(
    prefix="/v2/{project_id}/fgs/functions/{function_urn}", responses=ERROR_RESPONSES
)
MAX_ITEMS = 400


def describe_alias(alias: Function, region: str) -> dict[str, Any]:
    return {
        "name": alias.alias,
        "version": alias.version,
        "description": alias.version_description,
        "last_modified": format_modified(alias.last_modified),
        "alias_urn": alias.qualified_urn(region),
        "additional_version_weights": alias.weights,
    }


@router.post("/versions", response_model=FunctionVersionOut, summary="CreateFunctionVersion")
async def create_function_version(
    body: CreateVersionBody, function: FunctionDep, services: ServicesDep
) -> dict[str, Any]:
    version = await services.registry.publish(function, body.version, body.description)
    config = await services.invocations.config(version)
    region = services.settings.region
    return {
        **describe(version, region),
        "version_description": version.version_description,
        "function_async_config": describe_config(config, version, region) if config else None,
    }


@router.get("/versions", response_model=FunctionVersionListOut, summary="ListFunctionVersions")
async def list_function_versions(
    function: FunctionDep,
    services: ServicesDep,
    marker: Annotated[str | None, Query(max_length=64)] = None,
    maxitems: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    offset = parse_int(marker, "marker", default=0)
    limit = min(parse_int(maxitems, "maxitems", default=0) or MAX_ITEMS, MAX_ITEMS)
    versions, count = await services.registry.list_versions(function, offset, limit)
    region = services.settings.region
    return {
        "versions": [describe(version, region) for version in versions],
        "next_marker": offset + len(versions),
        "count": count,
    }


@router.post("/aliases", response_model=AliasOut, summary="CreateVersionAlias")
async def create_version_alias(
    body: AliasBody, function: FunctionDep, services: ServicesDep
) -> dict[str, Any]:
    alias = await services.registry.create_alias(function, body)
    return describe_alias(alias, services.settings.region)


@router.get("/aliases", response_model=list[AliasOut], summary="ListVersionAliases")
async def list_version_aliases(function: FunctionDep, services: ServicesDep) -> list[Any]:
    region = services.settings.region
    return [describe_alias(alias, region) for alias in await services.registry.aliases(function)]


@router.get("/aliases/{alias_name}", response_model=AliasOut, summary="ShowVersionAlias")
async def show_version_alias(
    alias_name: str, function: FunctionDep, services: ServicesDep
) -> dict[str, Any]:
    alias = await services.registry.alias(function, alias_name)
    return describe_alias(alias, services.settings.region)


@router.put("/aliases/{alias_name}", response_model=AliasOut, summary="UpdateVersionAlias")
async def update_version_alias(
    alias_name: str, body: AliasBody, function: FunctionDep, services: ServicesDep
) -> dict[str, Any]:
    alias = await services.registry.alias(function, alias_name)
    if body.name is not None and body.name != alias_name:
        raise BadRequest("An alias cannot be renamed", error_code="FSS.1014")
    updated = await services.registry.update_alias(alias, body)
    return describe_alias(updated, services.settings.region)


@router.delete(
    "/aliases/{alias_name}",
    status_code=204,
    response_class=Response,
    summary="DeleteVersionAlias",
)
async def delete_version_alias(
    alias_name: str, function: FunctionDep, services: ServicesDep
) -> Response:
    alias = await services.registry.alias(function, alias_name)
    await services.registry.delete(alias)
    return Response(status_code=204)
