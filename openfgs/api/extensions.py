"""openfgs's own endpoints beyond FunctionGraph's API, under ``/v2/{project_id}/openfgs``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from openfgs.api.deps import ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.api.params import time_window
from openfgs.models import Status, format_time
from openfgs.schemas import InvocationDetailOut, RerunBody, RerunOut, StatsOut

router = APIRouter(prefix="/v2/{project_id}/openfgs", responses=ERROR_RESPONSES)


@router.get(
    "/async-invocations/{request_id}",
    response_model=InvocationDetailOut,
    summary="ShowAsyncInvocation (openfgs)",
)
async def show_async_invocation(
    request_id: str, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    detail = await services.invocations.detail(project_id, request_id)
    record = detail.record
    function = await services.registry.get_by_id(record.function_id)
    urn = function.urn(services.settings.region).qualified(record.version) if function else ""
    return {
        "request_id": record.request_id,
        "func_urn": urn,
        "status": record.status.value,
        "error_code": record.error_code,
        "error_message": record.error_message,
        "start_time": format_time(record.start_time),
        "end_time": format_time(record.end_time),
        "attempt": record.attempt,
        "max_attempts": detail.max_attempts,
        "rerun_of": detail.rerun_of or "",
        "attempts": [
            {
                "attempt": a.attempt,
                "worker_id": a.worker_id,
                "start_time": format_time(a.start_time),
                "end_time": format_time(a.end_time),
                "outcome": a.outcome,
                "error_code": a.error_code,
                "error_message": a.error_message,
            }
            for a in detail.attempts
        ],
    }


@router.post(
    "/functions/{function_urn}/rerun", response_model=RerunOut, summary="RerunAsyncInvocations"
)
async def rerun(
    function_urn: str, body: RerunBody, project_id: ProjectDep, services: ServicesDep
) -> dict[str, Any]:
    begin, end = time_window(body.model_dump())
    status = Status(body.status) if body.status else None
    pairs: list[tuple[str, str]] = []
    for function in await services.registry.resolve_all(project_id, function_urn):
        if len(pairs) < body.limit:
            pairs += await services.invocations.rerun(
                function, begin, end, status, body.limit - len(pairs), body.request_id
            )
    return {
        "reruns": [{"request_id": new, "rerun_of": old} for new, old in pairs],
        "count": len(pairs),
    }


@router.get("/functions/{function_urn}/stats", response_model=StatsOut, summary="InvocationStats")
async def stats(function_urn: str, project_id: ProjectDep, services: ServicesDep) -> dict[str, Any]:
    function = await services.registry.resolve(project_id, function_urn)
    counts = await services.invocations.counts(function)
    by_status = {status.value: counts.get(status, 0) for status in Status}
    return {"accepted": sum(by_status.values()), **by_status}
