"""HTTP triggers: requests to ``/apig/{project_id}/{path}`` run the function whose APIG (or
DEDICATEDGATEWAY) trigger matches the method and path, as API Gateway would.

The function receives FunctionGraph's APIG event (body base64, lower-case single-valued
headers, query and path parameters, request context) and answers
``{statusCode, headers, body, isBase64Encoded}``, which becomes the HTTP response; anything
else is a 502. A trigger with ``auth: IAM`` needs the same AK/SK signature or token as the API,
for the trigger's project. Bodies are bounded as the invoke routes are (sync 6 MB, async
256 KB); header and query sizes by the HTTP layer.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response

from openfgs.api.deps import ServicesDep, authenticate_scope
from openfgs.api.invocations import check_enabled
from openfgs.errors import BadGateway, GatewayTimeout, NotFound, PayloadTooLarge
from openfgs.models import ErrorCode, Trigger, new_request_id
from openfgs.services import Services

router = APIRouter()
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
HEADER_PREFIX = "x-cff-"


def match_route(
    triggers: list[Trigger], method: str, path: str
) -> tuple[Trigger, dict[str, str]] | None:
    """The trigger serving ``method path``, with its path parameters: an exact route (``{name}``
    segments bind parameters) before a prefix route (``match_mode`` SWA, the longest first)."""
    exact, prefix = [], []
    for trigger in triggers:
        if trigger.status != "ACTIVE" or trigger.route_method not in ("ANY", method):
            continue
        route = trigger.route_path or "/"
        params = _bind(route, path)
        if params is not None:
            exact.append((trigger, params))
        elif trigger.data.get("match_mode") == "SWA" and _under(route, path):
            prefix.append((len(route), trigger, {"": path[len(route.rstrip("/")) :].lstrip("/")}))
    if exact:
        return exact[0]
    if prefix:
        _, trigger, params = max(prefix, key=lambda found: found[0])
        return trigger, params
    return None


def _bind(route: str, path: str) -> dict[str, str] | None:
    wanted, given = route.strip("/").split("/"), path.strip("/").split("/")
    if len(wanted) != len(given):
        return None
    params = {}
    for part, value in zip(wanted, given, strict=True):
        if len(part) > 2 and part[0] == "{" and part[-1] == "}":
            if not value:
                return None
            params[part[1:-1].rstrip("+")] = value
        elif part != value:
            return None
    return params


def _under(route: str, path: str) -> bool:
    base = route.rstrip("/")
    return path == base or path.startswith(base + "/") or base == ""


def apig_event(
    request: Request, body: bytes, path: str, params: dict[str, str], trigger: Trigger
) -> dict[str, Any]:
    """FunctionGraph's APIG event for this request."""
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        name = key.lower()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    client = request.client.host if request.client else ""
    return {
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
        "headers": headers,
        "httpMethod": request.method,
        "path": path,
        "queryStringParameters": dict(parse_qsl(request.url.query, keep_blank_values=True)),
        "pathParameters": params,
        "requestContext": {
            "apiId": trigger.trigger_id,
            "requestId": new_request_id(),
            "stage": "RELEASE",
            "sourceIp": client,
        },
    }


def http_answer(result: str) -> Response:
    """The function's ``{statusCode, headers, body, isBase64Encoded}`` as an HTTP response."""
    try:
        answer = json.loads(result)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict) or not _status(answer.get("statusCode")):
        raise BadGateway(
            "The function's answer is not an API Gateway response: expected an object "
            "with statusCode, headers, body and isBase64Encoded"
        )
    body = answer.get("body")
    if body is None:
        content = b""
    elif not isinstance(body, str):
        raise BadGateway("The function's answer has a body that is not a string")
    elif answer.get("isBase64Encoded") is True:
        try:
            content = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadGateway("The function's answer body is not base64") from None
    else:
        content = body.encode()
    response = Response(content, status_code=answer["statusCode"])
    headers = answer.get("headers") or {}
    if not isinstance(headers, dict):
        raise BadGateway("The function's answer has headers that are not an object")
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        for one in values:
            text = str(one)
            if _header_safe(str(name)) and "\r" not in text and "\n" not in text:
                response.headers.append(str(name), text)
    return response


def _status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


# The response's framing is the server's: a function's own Content-Length or
# Transfer-Encoding beside ours would let it split or desynchronise the connection.
_FRAMING = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"}
)


def _header_safe(name: str) -> bool:
    return (
        bool(name)
        and name.isascii()
        and all(c.isalnum() or c in "-_" for c in name)
        and name.lower() not in _FRAMING
    )


async def _trigger_for(
    services: Services, request: Request, project_id: str, path: str
) -> tuple[Trigger, dict[str, str]]:
    found = match_route(await services.triggers.routes(project_id), request.method, path)
    if found is None:
        raise NotFound(
            "The API does not exist or has not been published in the environment",
            error_code="APIGW.0101",
        )
    return found


async def http_trigger(
    project_id: str, path: str, request: Request, services: ServicesDep
) -> Response:
    route = "/" + path
    trigger, params = await _trigger_for(services, request, project_id, route)
    body = await request.body()
    if trigger.data.get("auth", "IAM") == "IAM":
        await authenticate_scope(services, request.scope, body, project_id)
    function = await services.registry.get_by_id(trigger.function_id)
    if function is None:
        raise NotFound("The function of this API no longer exists", error_code="FSS.1051")
    check_enabled(function)
    event = json.dumps(apig_event(request, body, route, params, trigger)).encode()
    info = trigger.data.get("func_info") or {}
    if info.get("invocation_type") == "async":
        if len(body) > services.settings.max_async_body_bytes:
            raise PayloadTooLarge(
                f"The request body is larger than {services.settings.max_async_body_bytes} "
                "bytes, the limit of an asynchronous invocation"
            )
        request_id = await services.invocations.submit(function, event)
        return Response(json.dumps({"request_id": request_id}), 202, media_type="application/json")
    timeout = math.ceil(int(info.get("timeout", 5000)) / 1000)
    request_id, ran, outcome = await services.executor.invoke_sync(
        function, event, timeout_seconds=timeout
    )
    if not outcome.ok:
        if outcome.error_code == ErrorCode.TIMEOUT:
            raise GatewayTimeout(f"The function did not answer within {timeout} s")
        raise BadGateway(f"The function failed: {outcome.error_message[:512]}")
    response = http_answer(outcome.result)
    response.headers["X-Cff-Request-Id"] = request_id
    response.headers["X-Cff-Function-Version"] = ran
    return response


# Not in the OpenAPI document: what these routes answer is the function's to say.
router.add_api_route(
    "/apig/{project_id}/{path:path}",
    http_trigger,
    methods=METHODS,
    name="http_trigger",
    include_in_schema=False,
)
