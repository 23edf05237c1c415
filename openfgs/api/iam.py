"""IAM's token API, enough of it to issue ``X-Auth-Token`` tokens for a credential."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from openfgs.api.deps import ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.errors import BadRequest
from openfgs.models import format_time
from openfgs.schemas import TokenOut, TokenRequest

router = APIRouter(responses=ERROR_RESPONSES)


def _key_pair(body: TokenRequest) -> tuple[str, str]:
    identity = body.auth.identity
    if "hw_ak_sk" in identity.methods and identity.hw_ak_sk is not None:
        return identity.hw_ak_sk.access.key, identity.hw_ak_sk.secret.key
    if "password" in identity.methods and identity.password is not None:
        return identity.password.user.name, identity.password.user.password
    raise BadRequest("auth.identity must use the method hw_ak_sk or password")


@router.post(
    "/v3/auth/tokens",
    status_code=201,
    response_model=TokenOut,
    summary="KeystoneCreateUserTokenByPassword",
    responses={201: {"headers": {"X-Subject-Token": {"schema": {"type": "string"}}}}},
)
async def create_token(body: TokenRequest, services: ServicesDep, request: Request) -> Response:
    access_key, secret_key = _key_pair(body)
    project = body.auth.scope.project if body.auth.scope else None
    client = request.client.host if request.client else ""
    issued = await services.auth.issue_token(
        access_key, secret_key, project.id if project else None, client
    )
    payload: dict[str, Any] = {
        "token": {
            "methods": body.auth.identity.methods,
            "issued_at": format_time(issued.issued_at) + ".000000Z",
            "expires_at": format_time(issued.expires_at) + ".000000Z",
            "project": {"id": issued.project_id, "name": services.settings.region},
            "user": {"id": issued.access_key, "name": issued.access_key},
        }
    }
    return Response(
        orjson.dumps(payload),
        201,
        media_type="application/json",
        headers={"X-Subject-Token": issued.token},
    )
