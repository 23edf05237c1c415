"""The web console: static files under ``/console``, a client of the public API only.

Every ``/console/...`` path that is not an asset answers the console's page, so a deep link
(``/console/functions/NAME/async-invocations``) opens that view after sign-in. The console has
no server-side state and no route of its own beyond these files; it signs in with
``POST /v3/auth/tokens`` and calls the ``/v2/`` API with ``X-Auth-Token``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openfgs.errors import NotFound

PREFIX = "/console"
PAGE = "index.html"
# The files served under /console/assets/, with their content types; nothing else is.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# No inline script or style, nothing from elsewhere: record fields the console shows (error
# messages above all) are text written by whoever invoked the function.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The files change with the package: a browser revalidates (cheap, by ETag) every time.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class StaticFile:
    """One console file, read once from the package."""

    body: bytes
    media_type: str
    etag: str


@cache
def static_file(name: str, media_type: str) -> StaticFile:
    body = (resources.files("openfgs") / "console" / name).read_bytes()
    return StaticFile(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _answer(request: Request, file: StaticFile) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": file.etag}
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else file.body
    return Response(body, media_type=file.media_type, headers=headers)


@router.api_route(PREFIX + "/assets/{name}", methods=["GET", "HEAD"])
async def console_asset(name: str, request: Request) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no console file {name}")
    return _answer(request, static_file(name, media_type))


@router.api_route(PREFIX, methods=["GET", "HEAD"])
@router.api_route(PREFIX + "/{view:path}", methods=["GET", "HEAD"])
async def console_page(request: Request) -> Response:
    return _answer(request, static_file(PAGE, "text/html; charset=utf-8"))
