"""Limits on guessing secrets: access keys locked after repeated failures, token requests per client.

As API Gateway does, an access key whose signatures or token requests keep failing is locked
for a while — the right secret is refused too until the lock lifts by itself. The token
endpoint also limits how often one client address may ask. Every table here is a bounded
:class:`~openfgs.cache.TtlCache`, so no sequence of requests grows the process without bound.
State is per process: each node of a cluster counts for itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from openfgs.cache import TtlCache
from openfgs.errors import TooManyRequests, Unauthorized
from openfgs.settings import Settings


@dataclass(frozen=True)
class AuthLimits:
    """The thresholds, taken from the ``auth_*`` settings."""

    max_failures: int
    failure_window_seconds: float
    lockout_seconds: float
    token_requests_per_minute: int
    table_entries: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthLimits:
        return cls(
            max_failures=settings.auth_max_failures,
            failure_window_seconds=settings.auth_failure_window_seconds,
            lockout_seconds=settings.auth_lockout_seconds,
            token_requests_per_minute=settings.auth_token_requests_per_minute,
            table_entries=settings.auth_table_entries,
        )


@dataclass(frozen=True, slots=True)
class _Failures:
    count: int
    locked: bool


def retry_after(seconds: float) -> dict[str, str]:
    """A ``Retry-After`` header for a wait of ``seconds`` (whole seconds, at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class KeyLockout:
    """Counts authentication failures per access key; enough of them lock the key.

    ``max_failures`` 0 turns locking off.

    Failures of keys that exist and of keys that do not are kept apart: the second table may
    be filled by anyone sending made-up keys and then forgets its oldest entries, but that
    cannot push an existing key's count or lock out of the first, whose size is bounded by
    the number of credentials.
    """

    def __init__(self, limits: AuthLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._known: TtlCache[str, _Failures] = TtlCache(limits.table_entries, clock=clock)
        self._unknown: TtlCache[str, _Failures] = TtlCache(limits.table_entries, clock=clock)
        self.clock = clock

    def _table(self, known: bool) -> TtlCache[str, _Failures]:
        return self._known if known else self._unknown

    def check(self, access_key: str, *, known: bool, now: float | None = None) -> None:
        """Raise Unauthorized (with ``Retry-After``) while ``access_key`` is locked."""
        now = self.clock() if now is None else now
        entry = self._table(known).lookup(access_key, now)
        if entry is not None and entry.value.locked:
            wait = entry.expires_at - now
            raise Unauthorized(
                "Incorrect IAM authentication information: the access key is locked for "
                f"{max(1, math.ceil(wait))} s after repeated authentication failures",
                headers=retry_after(wait),
            )

    def record_failure(self, access_key: str, *, known: bool, now: float | None = None) -> None:
        """Count one failure; the ``max_failures``-th within the window locks the key."""
        limits = self._limits
        if limits.max_failures <= 0:
            return
        now = self.clock() if now is None else now
        table = self._table(known)
        entry = table.lookup(access_key, now)
        if entry is None:
            count, ttl = 1, limits.failure_window_seconds
        elif entry.value.locked:
            return
        else:  # the window runs from the first failure
            count, ttl = entry.value.count + 1, entry.expires_at - now
        if count >= limits.max_failures:
            table.put(access_key, _Failures(count, locked=True), limits.lockout_seconds, now)
        else:
            table.put(access_key, _Failures(count, locked=False), ttl, now)

    def record_success(self, access_key: str) -> None:
        """The key's secret was presented: its failures so far no longer count."""
        if len(self._known):
            self._known.pop(access_key)

    def tracked(self) -> int:
        """Entries held in both tables (for tests and diagnostics)."""
        return len(self._known) + len(self._unknown)


class ClientRateLimit:
    """At most ``per_minute`` requests per client address in each minute (a fixed window).

    ``per_minute`` 0 turns the limit off."""

    WINDOW_SECONDS = 60.0

    def __init__(
        self, per_minute: int, table_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_minute = per_minute
        self._counts: TtlCache[str, int] = TtlCache(table_entries, clock=clock)
        self.clock = clock

    def hit(self, client: str, now: float | None = None) -> None:
        """Count one request of ``client``; raise TooManyRequests past the limit."""
        if self._per_minute <= 0:
            return
        now = self.clock() if now is None else now
        entry = self._counts.lookup(client, now)
        if entry is None:
            self._counts.put(client, 1, self.WINDOW_SECONDS, now)
            return
        if entry.value >= self._per_minute:
            raise TooManyRequests(
                "Too many token requests from this client; retry later.",
                headers=retry_after(entry.expires_at - now),
            )
        self._counts.put(client, entry.value + 1, entry.expires_at - now, now)

    def tracked(self) -> int:
        return len(self._counts)
