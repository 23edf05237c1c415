"""Liveness and readiness without authentication."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from openfgs.api.deps import ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.errors import ServiceUnavailable, StoreError
from openfgs.schemas import HealthOut

router = APIRouter(responses={503: ERROR_RESPONSES[500] | {"description": "Database down"}})


@router.get("/healthz", response_model=HealthOut, summary="Health")
async def healthz(services: ServicesDep) -> dict[str, Any]:
    try:
        await services.store.ping()
    except StoreError as exc:
        raise ServiceUnavailable(f"database unreachable: {exc}") from None
    sandbox = await services.pool.prepared()
    return {
        "status": "ok",
        "database": "ok",
        "isolation": sandbox.level,
        "isolation_problems": list(sandbox.problems),
    }
