"""Who is calling: credentials, AK/SK verification and IAM-style tokens, scoped to projects."""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass

from openfgs.auth import signing
from openfgs.errors import ConflictError, Forbidden, Unauthorized
from openfgs.models import Credential, now_ms
from openfgs.store.base import Store

_CACHE_SECONDS = 30.0
_MISS_CACHE_SECONDS = 2.0  # a credential created elsewhere is usable this soon
_ALPHANUM = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class IssuedToken:
    token: str
    project_id: str
    access_key: str
    issued_at: int
    expires_at: int


def new_credential(project_id: str | None = None) -> Credential:
    """A fresh credential: a 32-hex project id (as FunctionGraph's), a 20-char AK, 40-char SK."""
    return Credential(
        project_id=project_id or secrets.token_hex(16),
        access_key="".join(secrets.choice(_ALPHANUM) for _ in range(20)),
        secret_key="".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40)),
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Verifies request credentials against the store, caching what it has seen briefly."""

    def __init__(self, store: Store, *, skew_seconds: int, token_ttl_seconds: int) -> None:
        self._store = store
        self._skew = skew_seconds
        self._token_ttl = token_ttl_seconds
        self._secrets: dict[str, tuple[float, Credential | None]] = {}
        self._tokens: dict[str, tuple[float, tuple[str, int] | None]] = {}

    async def ensure_credential(self, credential: Credential) -> bool:
        """Store the credential unless its access key exists; True when it was created.

        Nodes starting together on a fresh database race to create the same credential: the
        loser finds it stored by the winner."""
        existing = await self._store.get_credential(credential.access_key)
        if existing is None:
            try:
                await self._store.insert_credential(credential, now_ms())
                return True
            except ConflictError:
                existing = await self._store.get_credential(credential.access_key)
        if existing != credential:
            raise SystemExit(
                f"access key {credential.access_key} exists with another secret or project"
            )
        return False

    async def authenticate(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> str:
        """Return the caller's project id, or raise Unauthorized / Forbidden.

        ``headers`` must have lower-case names.
        """
        authorization = headers.get("authorization", "")
        if authorization.startswith(signing.ALGORITHM):
            return await self._verify_signature(
                method, raw_path, raw_query, headers, body, authorization
            )
        token = headers.get("x-auth-token")
        if token:
            return await self._verify_token(token)
        raise Forbidden("invalid token: the request has no X-Auth-Token or AK/SK signature")

    async def _verify_signature(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        authorization: str,
    ) -> str:
        parsed = signing.parse_authorization(authorization)
        if parsed is None:
            raise Unauthorized("Incorrect IAM authentication information: malformed authorization")
        date = signing.parse_sdk_date(headers.get("x-sdk-date", ""))
        if date is None or "x-sdk-date" not in parsed.signed_headers:
            raise Unauthorized("Incorrect IAM authentication information: x-sdk-date is missing")
        if abs(time.time() - date) > self._skew:
            raise Unauthorized(
                "Incorrect IAM authentication information: x-sdk-date is out of the allowed range"
            )
        credential = await self._credential(parsed.access_key)
        text = signing.string_to_sign(
            method, raw_path, raw_query, headers, parsed.signed_headers, body
        )
        # The comparison runs whether or not the key exists, so timing tells nothing.
        expected = signing.compute_signature(credential.secret_key if credential else "\x00", text)
        if credential is None or not signing.signature_matches(expected, parsed.signature):
            raise Unauthorized(
                "Incorrect IAM authentication information: verify aksk signature fail"
            )
        return credential.project_id

    async def _credential(self, access_key: str) -> Credential | None:
        cached = self._secrets.get(access_key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        credential = await self._store.get_credential(access_key)
        ttl = _CACHE_SECONDS if credential is not None else _MISS_CACHE_SECONDS
        self._secrets[access_key] = (time.monotonic() + ttl, credential)
        return credential

    async def _verify_token(self, token: str) -> str:
        key = token_hash(token)
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > time.monotonic():
            found = cached[1]
        else:
            found = await self._store.get_token(key)
            ttl = _CACHE_SECONDS if found is not None else _MISS_CACHE_SECONDS
            self._tokens[key] = (time.monotonic() + ttl, found)
        if found is None:
            raise Forbidden("invalid token")
        project_id, expires_at = found
        if expires_at <= now_ms():
            raise Forbidden("invalid token: the token has expired")
        return project_id

    async def issue_token(
        self, access_key: str, secret_key: str, project_id: str | None
    ) -> IssuedToken:
        """Exchange an access key pair for a token valid for the configured lifetime."""
        credential = await self._store.get_credential(access_key)
        presented = secret_key.encode()
        actual = (credential.secret_key if credential else "\x00").encode()
        if credential is None or not secrets.compare_digest(presented, actual):
            raise Unauthorized("The username or password is wrong.", error_code="APIGW.0301")
        if project_id and project_id != credential.project_id:
            raise Forbidden(f"the credential has no access to project {project_id}")
        token = "MII" + secrets.token_urlsafe(48)
        issued = now_ms()
        expires = issued + self._token_ttl * 1000
        await self._store.insert_token(
            token_hash(token), access_key, credential.project_id, expires
        )
        return IssuedToken(token, credential.project_id, access_key, issued, expires)
