"""Who is calling: credentials, AK/SK verification and IAM-style tokens, scoped to projects."""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from openfgs.auth import signing
from openfgs.auth.limits import AuthLimits, ClientRateLimit, KeyLockout
from openfgs.cache import TtlCache
from openfgs.errors import ConfigError, ConflictError, Forbidden, Unauthorized
from openfgs.models import Credential, now_ms
from openfgs.settings import Settings
from openfgs.store.base import Store

_CACHE_SECONDS = 30.0
_MISS_CACHE_SECONDS = 2.0  # a credential created elsewhere is usable this soon
_ALPHANUM = string.ascii_uppercase + string.digits
# Generated access keys are 20 upper-case alphanumerics, as Huawei Cloud's; keys an operator
# gives may be any ASCII letters and digits up to this length. Nothing else reaches the store.
MAX_ACCESS_KEY_LENGTH = 128
MIN_SECRET_KEY_LENGTH = 16
# Issued tokens are 67 characters; anything much longer is not one of them.
MAX_TOKEN_LENGTH = 256
_BAD_SIGNATURE = "Incorrect IAM authentication information: verify aksk signature fail"
_BAD_PASSWORD = "The username or password is wrong."


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


def valid_access_key(access_key: str) -> bool:
    """1 to 128 ASCII letters and digits: the only access keys openfgs stores or looks up."""
    return (
        0 < len(access_key) <= MAX_ACCESS_KEY_LENGTH
        and access_key.isascii()
        and access_key.isalnum()
    )


def check_new_credential(credential: Credential) -> None:
    """Refuse a credential that should not be created: a malformed AK or a short SK."""
    if not valid_access_key(credential.access_key):
        raise ConfigError(
            f"access key {credential.access_key[:MAX_ACCESS_KEY_LENGTH]!r} is not 1 to "
            f"{MAX_ACCESS_KEY_LENGTH} ASCII letters and digits"
        )
    if len(credential.secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"the secret key of access key {credential.access_key} is too short: "
            f"it needs at least {MIN_SECRET_KEY_LENGTH} characters"
        )


class Authenticator:
    """Verifies request credentials against the store, caching what it has seen briefly.

    Its caches and failure tables are bounded (``limits.table_entries`` each), and take time
    from ``clock``, which tests replace to move time on.
    """

    def __init__(
        self,
        store: Store,
        *,
        skew_seconds: int,
        token_ttl_seconds: int,
        limits: AuthLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limits = limits or AuthLimits.from_settings(Settings())
        self._store = store
        self._skew = skew_seconds
        self._token_ttl = token_ttl_seconds
        self._secrets: TtlCache[str, Credential | None] = TtlCache(
            limits.table_entries, clock=clock
        )
        self._tokens: TtlCache[str, tuple[str, int] | None] = TtlCache(
            limits.table_entries, clock=clock
        )
        self.lockout = KeyLockout(limits, clock)
        self.token_clients = ClientRateLimit(
            limits.token_requests_per_minute, limits.table_entries, clock
        )

    def table_sizes(self) -> dict[str, int]:
        """Entries held per cache and table (each bounded by ``limits.table_entries``)."""
        return {
            "credentials": len(self._secrets),
            "tokens": len(self._tokens),
            "failures": self.lockout.tracked(),
            "token_clients": self.token_clients.tracked(),
        }

    async def ensure_credential(self, credential: Credential) -> bool:
        """Store the credential unless its access key exists; True when it was created.

        A malformed access key or a secret key under 16 characters is refused. Nodes starting
        together on a fresh database race to create the same credential: the loser finds it
        stored by the winner."""
        check_new_credential(credential)
        existing = await self._store.get_credential(credential.access_key)
        if existing is None:
            try:
                await self._store.insert_credential(credential, now_ms())
                return True
            except ConflictError:
                existing = await self._store.get_credential(credential.access_key)
        if existing != credential:
            raise ConfigError(
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

    async def check_before_body(self, headers: Mapping[str, str]) -> str:
        """What can be verified before a request's body is read; the caller's project.

        A token is verified wholly. A signature needs the body, so only its header's form, its
        date, and that its access key exists and is not locked are checked here: a large body
        is read only for a key that exists (openfgs.api.guard). ``headers`` as for
        :meth:`authenticate`."""
        authorization = headers.get("authorization", "")
        if authorization.startswith(signing.ALGORITHM):
            parsed, credential = await self._signer(headers, authorization)
            if credential is None:
                self.lockout.record_failure(parsed.access_key, known=False)
                raise Unauthorized(_BAD_SIGNATURE)
            return credential.project_id
        token = headers.get("x-auth-token")
        if token:
            return await self._verify_token(token)
        raise Forbidden("invalid token: the request has no X-Auth-Token or AK/SK signature")

    async def _signer(
        self, headers: Mapping[str, str], authorization: str
    ) -> tuple[signing.Authorization, Credential | None]:
        """The parsed ``Authorization`` of a current request, and its key's credential (None:
        no such key). Malformed, stale or locked: Unauthorized."""
        parsed = signing.parse_authorization(authorization)
        if parsed is None:
            raise Unauthorized("Incorrect IAM authentication information: malformed authorization")
        if not valid_access_key(parsed.access_key):
            raise Unauthorized(_BAD_SIGNATURE)
        date = signing.parse_sdk_date(headers.get("x-sdk-date", ""))
        if date is None or "x-sdk-date" not in parsed.signed_headers:
            raise Unauthorized("Incorrect IAM authentication information: x-sdk-date is missing")
        if abs(time.time() - date) > self._skew:
            raise Unauthorized(
                "Incorrect IAM authentication information: x-sdk-date is out of the allowed range"
            )
        credential = await self._credential(parsed.access_key)
        self.lockout.check(parsed.access_key, known=credential is not None)
        return parsed, credential

    async def _verify_signature(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        authorization: str,
    ) -> str:
        parsed, credential = await self._signer(headers, authorization)
        access_key = parsed.access_key
        known = credential is not None
        text = signing.string_to_sign(
            method, raw_path, raw_query, headers, parsed.signed_headers, body
        )
        # The comparison runs whether or not the key exists, so timing tells nothing.
        expected = signing.compute_signature(credential.secret_key if credential else "\x00", text)
        if credential is None or not signing.signature_matches(expected, parsed.signature):
            self.lockout.record_failure(access_key, known=known)
            raise Unauthorized(_BAD_SIGNATURE)
        self.lockout.record_success(access_key)
        return credential.project_id

    async def _credential(self, access_key: str) -> Credential | None:
        cached = self._secrets.lookup(access_key)
        if cached is not None:
            return cached.value
        credential = await self._store.get_credential(access_key)
        ttl = _CACHE_SECONDS if credential is not None else _MISS_CACHE_SECONDS
        self._secrets.put(access_key, credential, ttl)
        return credential

    async def _verify_token(self, token: str) -> str:
        if len(token) > MAX_TOKEN_LENGTH:
            raise Forbidden("invalid token")
        key = token_hash(token)
        cached = self._tokens.lookup(key)
        if cached is not None:
            found = cached.value
        else:
            found = await self._store.get_token(key)
            ttl = _CACHE_SECONDS if found is not None else _MISS_CACHE_SECONDS
            self._tokens.put(key, found, ttl)
        if found is None:
            raise Forbidden("invalid token")
        project_id, expires_at = found
        if expires_at <= now_ms():
            raise Forbidden("invalid token: the token has expired")
        return project_id

    async def issue_token(
        self, access_key: str, secret_key: str, project_id: str | None, client: str = ""
    ) -> IssuedToken:
        """Exchange an access key pair for a token valid for the configured lifetime.

        ``client`` (the caller's address) is limited in how often it may ask; an access key
        whose secret keeps being wrong is locked, as it is for signatures."""
        self.token_clients.hit(client)
        if not valid_access_key(access_key):
            raise Unauthorized(_BAD_PASSWORD)
        credential = await self._store.get_credential(access_key)
        known = credential is not None
        self.lockout.check(access_key, known=known)
        presented = secret_key.encode()
        actual = (credential.secret_key if credential else "\x00").encode()
        if credential is None or not secrets.compare_digest(presented, actual):
            self.lockout.record_failure(access_key, known=known)
            raise Unauthorized(_BAD_PASSWORD)
        self.lockout.record_success(access_key)
        if project_id and project_id != credential.project_id:
            raise Forbidden(f"the credential has no access to project {project_id}")
        token = "MII" + secrets.token_urlsafe(48)
        issued = now_ms()
        expires = issued + self._token_ttl * 1000
        await self._store.insert_token(
            token_hash(token), access_key, credential.project_id, expires
        )
        return IssuedToken(token, credential.project_id, access_key, issued, expires)
