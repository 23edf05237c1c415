"""Invoking functions and querying async invocation records."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from starlette.types import Scope

from openfgs.api.deps import FunctionsDep, ProjectDep, ServicesDep, authenticated
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.api.params import parse_active_query, parse_int, parse_list_query
from openfgs.errors import BadRequest, TooManyRequests
from openfgs.models import Function, InvocationPage, format_time
from openfgs.runtime.types import RunResult
from openfgs.schemas import AsyncInvocationListOut, AsyncInvokeOut, SyncInvokeOut
from openfgs.services import Services

router = APIRouter(
    prefix="/v2/{project_id}/fgs/functions/{function_urn}", responses=ERROR_RESPONSES
)
EVENT_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": {"type": "object", "additionalProperties": True}}
        },
    }
}
INSTANCE_MEMORY_SIZES = (
    128,
    256,
    512,
    768,
    1024,
    1280,
    1536,
    1792,
    2048,
    2560,
    3072,
    3584,
    4096,
    8192,
    10240,
)
IDEMPOTENCY_KEY_MAX = 128
LOG_TAIL_BYTES = 4096
JSON = "application/json"
HEADER_LOG_BYTES = 2000


def read_event(body: bytes) -> bytes:
    """The whole JSON body is the event; an empty body is the empty object.

    Its size was bounded by the guard (openfgs.api.guard) while it was read."""
    if not body.strip():
        return b"{}"
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Invalid request body: it must be JSON") from None
    return body


def check_enabled(function: Function) -> None:
    if function.concurrency == 0:
        raise TooManyRequests("Function Disabled")


@router.post(
    "/invocations-async",
    status_code=202,
    response_model=AsyncInvokeOut,
    openapi_extra=EVENT_BODY,
    summary="AsyncInvokeFunction",
)
async def async_invoke(
    request: Request,
    project_id: Annotated[str, Path(max_length=64)],
    function_urn: str,
    x_openfgs_idempotency_key: Annotated[str | None, Header(max_length=IDEMPOTENCY_KEY_MAX)] = None,
) -> Response:
    # Served by openfgs.api.fast ahead of FastAPI; declared here for the OpenAPI document.
    services: Services = request.app.state.services
    body = await request.body()
    answer = await accept_async(
        services, request.scope, body, project_id, function_urn, x_openfgs_idempotency_key
    )
    return Response(answer, 202, media_type=JSON)


async def accept_async(
    services: Services,
    scope: Scope,
    body: bytes,
    project_id: str,
    function_urn: str,
    idempotency_key: str | None,
) -> bytes:
    """AsyncInvokeFunction: the record is on disk when this returns; the 202's body."""
    authenticated(scope, project_id)
    function = await services.registry.resolve(project_id, function_urn)
    event = read_event(body)
    check_enabled(function)
    request_id = await services.invocations.submit(function, event, idempotency_key)
    return b'{"request_id":"%s"}' % request_id.encode()


SYNC_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "v1: the wrapped result; v0 (the default): the function's result as is",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/SyncInvokeOut"},
                        {"description": "v0: the function's own result (any JSON)"},
                    ]
                }
            }
        },
    }
}


@router.post(
    "/invocations",
    response_model=SyncInvokeOut,
    responses=SYNC_RESPONSES,
    openapi_extra=EVENT_BODY,
    summary="InvokeFunction",
)
async def invoke(
    request: Request,
    project_id: ProjectDep,
    function_urn: str,
    services: ServicesDep,
    x_cff_log_type: Annotated[str | None, Header()] = None,
    x_cff_request_version: Annotated[str | None, Header()] = None,
    x_cff_instance_memory: Annotated[str | None, Header()] = None,
) -> Response:
    function = await services.registry.resolve(project_id, function_urn, missing_code="FSS.1051")
    event = read_event(await request.body())
    check_enabled(function)
    version = (x_cff_request_version or "v0").lower()
    if version not in ("v0", "v1"):
        raise BadRequest(f"Invalid X-CFF-Request-Version: {version[:16]!r}; use v0 or v1")
    memory = instance_memory(x_cff_instance_memory, function.memory_size)
    request_id, ran, outcome = await services.executor.invoke_sync(function, event, memory)
    response = sync_response(
        request_id, outcome, memory or function.memory_size, x_cff_log_type == "tail", version
    )
    # Which version ran: an alias with additional_version_weights picks one per invocation.
    response.headers["X-Cff-Function-Version"] = ran
    return response


def instance_memory(raw: str | None, configured: int) -> int | None:
    """``X-Cff-Instance-Memory``: a per-call memory size from FunctionGraph's list.

    A caller may run a call with less memory than the function's ``memory_size``, never with
    more: the function's configuration is the limit its owner set.
    """
    if not raw:
        return None
    size = parse_int(raw, "X-Cff-Instance-Memory", default=0, where="header", error_code="FSS.1007")
    if size not in INSTANCE_MEMORY_SIZES:
        raise BadRequest(f"Invalid X-Cff-Instance-Memory: {raw[:16]!r}", error_code="FSS.1007")
    if size > configured:
        raise BadRequest(
            f"Invalid X-Cff-Instance-Memory: {size} MB is more than the function's "
            f"memory_size of {configured} MB",
            error_code="FSS.1007",
        )
    return size


def sync_response(
    request_id: str, outcome: RunResult, memory_size: int, tail: bool, version: str
) -> Response:
    """FunctionGraph's sync answer: v1 wraps the result; v0 is the raw result."""
    log_bytes = outcome.log.encode()
    billed = int(outcome.duration_ms) + 1
    summary = {
        "duration": round(outcome.duration_ms, 3),
        "billingDuration": billed,
        "memorySize": memory_size,
        "memoryUsed": round(outcome.memory_used_mb, 2),
    }
    headers = {
        "X-Cff-Request-Id": request_id,
        "X-Func-Err-Code": str(outcome.error_code),
        "X-Is-Func-Err": "false" if outcome.ok else "true",
        "X-Cff-Response-Version": version,
        "X-Cff-Billing-Duration": str(billed),
        "X-Cff-Invoke-Summary": orjson.dumps(summary).decode(),
    }
    if tail:
        headers["X-Cff-Function-Log"] = base64.b64encode(log_bytes[-HEADER_LOG_BYTES:]).decode()
    result = (
        outcome.result
        if outcome.ok
        else outcome.error_result
        or orjson.dumps(
            {"errorCode": outcome.error_code, "errorMessage": outcome.error_message}
        ).decode()
    )
    if version == "v0":
        return Response(result, 200, media_type="application/json", headers=headers)
    body = {
        "request_id": request_id,
        "result": result,
        "log": log_bytes[-LOG_TAIL_BYTES:].decode(errors="ignore") if tail else "",
        "status": 200 if outcome.ok else 500,
    }
    return Response(orjson.dumps(body), 200, media_type="application/json", headers=headers)


def render_page(page: InvocationPage) -> bytes:
    """A page of records as FunctionGraph's JSON (the field order of AsyncInvocationListOut)."""
    return orjson.dumps(
        {
            "invocations": [
                {
                    "request_id": record.request_id,
                    "status": record.status.value,
                    "error_code": int(record.error_code),
                    "error_message": record.error_message,
                    "start_time": format_time(record.start_time),
                    "end_time": format_time(record.end_time),
                }
                for record in page.invocations
            ],
            "count": page.count,
            "next_marker": page.next_marker,
        }
    )


async def list_records(
    services: Services,
    functions: list[Function],
    params: Mapping[str, str],
    *,
    active: bool,
) -> bytes:
    """ListAsyncInvocations (or its active-only twin) for an authorized caller, over the
    rows the URN covers (an unqualified URN: the function's latest, versions and aliases)."""
    if not active:
        query = parse_list_query(functions[0], params)
        return render_page(await services.invocations.list_records(functions, query))
    found = parse_active_query(functions[0], params)
    if found is None:
        marker = parse_int(params.get("marker"), "marker", default=0)
        return render_page(InvocationPage(next_marker=marker))
    return render_page(await services.invocations.list_records(functions, found))


# Both list routes are served by openfgs.api.fast ahead of FastAPI; declared here for the
# OpenAPI document (each query parameter listed) and reached only through FastAPI itself.
@router.get(
    "/async-invocations", response_model=AsyncInvocationListOut, summary="ListAsyncInvocations"
)
async def list_async_invocations(
    request: Request,
    functions: FunctionsDep,
    services: ServicesDep,
    request_id: Annotated[str | None, Query()] = None,
    marker: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query()] = None,
    query_begin_time: Annotated[str | None, Query()] = None,
    query_end_time: Annotated[str | None, Query()] = None,
) -> Response:
    answer = await list_records(services, functions, request.query_params, active=False)
    return Response(answer, media_type=JSON)


@router.get(
    "/active-async-invocations",
    response_model=AsyncInvocationListOut,
    summary="ListActiveAsyncInvocations",
)
async def list_active_async_invocations(
    request: Request,
    functions: FunctionsDep,
    services: ServicesDep,
    requests: Annotated[str | None, Query()] = None,
    marker: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query()] = None,
    query_begin_time: Annotated[str | None, Query()] = None,
    query_end_time: Annotated[str | None, Query()] = None,
) -> Response:
    answer = await list_records(services, functions, request.query_params, active=True)
    return Response(answer, media_type=JSON)
