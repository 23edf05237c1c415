"""ListQuotas: the limits openfgs enforces on a project (openfgs.quotas)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from openfgs.api.deps import ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.quotas import list_quotas
from openfgs.schemas import QuotasOut

router = APIRouter(prefix="/v2/{project_id}/fgs", responses=ERROR_RESPONSES)


@router.get(
    "/quotas", response_model=QuotasOut, response_model_exclude_none=True, summary="ListQuotas"
)
async def list_project_quotas(project_id: ProjectDep, services: ServicesDep) -> dict[str, Any]:
    quotas = await list_quotas(services.registry, project_id)
    return {"quotas": {"resources": [asdict(quota) for quota in quotas]}}
