"""Every error the HTTP API returns is rendered here, in FunctionGraph's shape."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from openfgs.errors import ApiError, InternalError
from openfgs.models import new_request_id
from openfgs.schemas import ErrorBody

log = logging.getLogger("openfgs.api")

# Request fields whose validation failure FunctionGraph reports with a code of their own.
FIELD_CODES = {
    "func_name": "FSS.1002",
    "handler": "FSS.1003",
    "package": "FSS.1004",
    "runtime": "FSS.1005",
    "code_type": "FSS.1006",
    "memory_size": "FSS.1007",
    "timeout": "FSS.1008",
    "user_data": "FSS.1009",
    "func_code": "FSS.1011",
    "description": "FSS.1019",
    "concurrency": "FSS.1026",
    "initializer_handler": "FSS.1404",
    "initializer_timeout": "FSS.1405",
}
_STATUS_CODES = {
    400: "FSS.0400",
    401: "FSS.0401",
    403: "FSS.0403",
    404: "FSS.0404",
    405: "FSS.0405",
    406: "FSS.0406",
    408: "FSS.0408",
    409: "FSS.0409",
    413: "FSS.0413",
    415: "FSS.0400",
    429: "FSS.0429",
}


def error_response(
    status: int, error_code: str, error_msg: str, headers: dict[str, str] | None = None
) -> Response:
    """The one renderer of error bodies: ``{"error_code": ..., "error_msg": ...}``."""
    body = orjson.dumps({"error_code": error_code, "error_msg": error_msg})
    headers = {"X-Request-Id": new_request_id(), **(headers or {})}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error_code, exc.message, exc.headers)


def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = "The specified resource was not found."
    elif exc.status_code == 405:
        message = "Method not allowed."
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, _STATUS_CODES.get(exc.status_code, "FSS.0500"), message)


def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: list[Any] = list(exc.errors())
    if not errors:
        return error_response(400, "FSS.0400", "Invalid parameter.")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    if first.get("type") == "json_invalid" or (not loc and first.get("type") != "missing"):
        return error_response(400, "FSS.0400", "Invalid request body: it must be a JSON object")
    field = loc[0] if loc else "body"
    code = next((FIELD_CODES[p] for p in reversed(loc) if p in FIELD_CODES), "FSS.0400")
    where = ".".join(loc) or "body"
    return error_response(400, code, f"Invalid parameter {where}: {first.get('msg', field)}")


def _unexpected(_: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    internal = InternalError()
    return error_response(internal.status, internal.error_code, internal.message)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "model": ErrorBody}
    for status, description in (
        (400, "Bad request"),
        (401, "Signature verification failed"),
        (403, "Forbidden"),
        (404, "Not found"),
        (409, "Already exists"),
        (413, "Request body too large"),
        (429, "Too many requests"),
        (500, "Internal error"),
    )
}
