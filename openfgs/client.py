"""A small FunctionGraph API client that signs requests as the official SDK does (for the CLI)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson

from openfgs.auth.signing import sign_headers
from openfgs.errors import OpenFgsError
from openfgs.models import Credential


class ClientError(OpenFgsError):
    """A request the client could not complete; its message is meant for the user."""


class ServerUnreachable(ClientError):
    """No answer: the endpoint refused the connection, was not found, or timed out."""


class ApiFailure(ClientError):
    """The server answered with an error body."""

    def __init__(self, status: int, error_code: str, error_msg: str) -> None:
        super().__init__(f"{status} {error_code}: {error_msg}")
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg


class FunctionGraphClient:
    """Signed JSON requests to ``/v2/{project_id}/fgs/...`` of one endpoint."""

    def __init__(self, endpoint: str, credential: Credential, timeout: float = 120.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.credential = credential
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FunctionGraphClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def urn(
        self,
        name: str,
        region: str = "cn-north-4",
        package: str = "default",
        qualifier: str | None = "latest",
    ) -> str:
        """A function's URN: ``:latest`` by default, ``qualifier=None`` unqualified."""
        base = f"urn:fss:{region}:{self.credential.project_id}:function:{package}:{name}"
        return base if qualifier is None else f"{base}:{qualifier}"

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        section: str = "fgs",
    ) -> httpx.Response:
        """Send a signed request; ``path`` is below ``/v2/{project_id}/{section}``."""
        full_path = f"/v2/{self.credential.project_id}/{section}{path}"
        encoded_path = "/".join(quote(seg, safe="") for seg in full_path.split("/"))
        qs = urlencode(sorted((query or {}).items()), quote_via=quote)
        data = b"" if body is None else orjson.dumps(body)
        base = {
            "Content-Type": "application/json",
            "Host": urlsplit(self.endpoint).netloc,
            "X-Project-Id": self.credential.project_id,
            **(headers or {}),
        }
        signed = sign_headers(
            method,
            encoded_path,
            qs,
            base,
            data,
            self.credential.access_key,
            self.credential.secret_key,
        )
        url = encoded_path + (f"?{qs}" if qs else "")
        try:
            response = self._http.request(method, url, content=data, headers=signed)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.endpoint}: {exc}") from exc
        if response.status_code >= 400:
            try:
                payload = response.json()
                code, msg = payload["error_code"], payload["error_msg"]
            except (ValueError, KeyError, TypeError):
                code, msg = str(response.status_code), response.text
            raise ApiFailure(response.status_code, code, msg)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None
