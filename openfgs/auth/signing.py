"""SDK-HMAC-SHA256, exactly as the official Huawei Cloud SDK signs requests.

The same canonicalisation serves both sides: the server verifies what the SDK signed, and the
openfgs CLI signs its own requests with it.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class Authorization:
    """The parts of an ``Authorization: SDK-HMAC-SHA256 ...`` header."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization | None:
    """Parse the header; None when it is not a well-formed SDK-HMAC-SHA256 value."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    access, signed, signature = (parts.get(k, "") for k in ("Access", "SignedHeaders", "Signature"))
    if not (access and signed and signature):
        return None
    return Authorization(access, tuple(signed.split(";")), signature)


@functools.lru_cache(maxsize=1024)
def canonical_uri(raw_path: str) -> str:
    """The path as signed: each segment unescaped, then escaped again (cached: paths repeat)."""
    uri = "/".join(quote(seg, safe="~") for seg in unquote(raw_path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)


def payload_hash(body: bytes, headers: Mapping[str, str]) -> str:
    if headers.get("x-sdk-content-sha256") == UNSIGNED_PAYLOAD:
        return UNSIGNED_PAYLOAD
    return hashlib.sha256(body).hexdigest()


def string_to_sign(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    body: bytes,
) -> str:
    """The text whose HMAC is the signature; ``headers`` must have lower-case names."""
    signed = list(signed_headers)
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip()}\n" for h in signed)
    request = "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query),
            canonical_headers,
            ";".join(signed),
            payload_hash(body, headers),
        ]
    )
    digest = hashlib.sha256(request.encode()).hexdigest()
    return f"{ALGORITHM}\n{headers.get('x-sdk-date', '')}\n{digest}"


def compute_signature(secret_key: str, text: str) -> str:
    # Not hmac.digest(): its one-shot OpenSSL call releases the GIL, and on a busy server
    # getting it back costs more than the HMAC itself.
    return hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex signatures."""
    return hmac.compare_digest(expected.encode(), given.encode())


@functools.lru_cache(maxsize=64)
def parse_sdk_date(value: str) -> int | None:
    """``X-Sdk-Date`` (``YYYYMMDDTHHMMSSZ``) as seconds since the epoch; None if malformed."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    digits = value[:8] + value[9:15]
    if not digits.isascii() or not digits.isdigit():
        return None
    try:
        parsed = datetime(
            int(value[:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
        )
    except ValueError:  # no such day or hour
        return None
    return calendar.timegm(parsed.utctimetuple())


def sign_headers(
    method: str,
    url_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """Return ``headers`` plus ``X-Sdk-Date`` and ``Authorization``, as the SDK would send them.

    ``headers`` must already hold ``Host``; every header given is signed.
    """
    out = dict(headers)
    out.setdefault("X-Sdk-Date", (now or datetime.now(UTC)).strftime(DATE_FORMAT))
    lower = {k.lower(): v for k, v in out.items()}
    signed = sorted(k for k in lower if "_" not in k)
    text = string_to_sign(method, url_path, query, lower, signed, body)
    signature = compute_signature(secret_key, text)
    out["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return out
