"""The Store interface every backend implements, and row-to-model mapping they share."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from openfgs.models import (
    AsyncConfig,
    Attempt,
    ClaimedInvocation,
    Credential,
    Function,
    Invocation,
    InvocationDetail,
    InvocationPage,
    InvocationQuery,
    NewInvocation,
    Status,
)


class Store(Protocol):
    """Persistence of credentials, functions, code packages and invocation records.

    Every method is a coroutine; every write is durable when it returns. Driver errors
    surface as :class:`openfgs.errors.StoreError`.
    """

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def subscribe(self, wake: Callable[[], None]) -> None: ...

    async def insert_credential(self, credential: Credential, now: int) -> None: ...
    async def get_credential(self, access_key: str) -> Credential | None: ...
    async def count_credentials(self) -> int: ...
    async def insert_token(
        self, token_hash: str, access_key: str, project_id: str, expires_at: int
    ) -> None: ...
    async def get_token(self, token_hash: str) -> tuple[str, int] | None: ...

    async def insert_function(self, function: Function, code: bytes) -> Function: ...
    async def get_function(self, project_id: str, package: str, name: str) -> Function | None: ...
    async def get_function_by_id(self, function_id: int) -> Function | None: ...
    async def list_functions(
        self, project_id: str, package: str | None, name_like: str | None, offset: int, limit: int
    ) -> tuple[list[Function], int]: ...
    async def update_function(self, function: Function, code: bytes | None) -> None: ...
    async def delete_function(self, function: Function) -> None: ...
    async def get_code(self, digest: str) -> bytes | None: ...
    async def total_code_size(self, project_id: str) -> int: ...
    async def referenced_code_digests(self) -> set[str]: ...

    async def insert_invocation(self, invocation: NewInvocation) -> None: ...
    async def list_invocations(self, query: InvocationQuery) -> InvocationPage: ...
    async def list_active_invocations(self, query: InvocationQuery) -> InvocationPage: ...
    async def count_by_hour(
        self, function_id: int, begin: int, end: int
    ) -> list[tuple[int, Status, int]]:
        """A function's records with ``start_time`` in ``[begin, end]``, counted per hour
        (``start_time // 3600000``) and status: (hour, status, count) for every pair seen."""
        ...

    async def claim_invocations(
        self, worker_id: str, now: int, limit: int, lease_until: int
    ) -> list[ClaimedInvocation]: ...
    async def finish_invocation(
        self,
        request_id: str,
        attempt: int,
        status: Status,
        end_time: int,
        error_code: int,
        error_message: str,
        result: bytes | None,
        follow_up: NewInvocation | None = None,
    ) -> bool: ...
    async def requeue_invocation(
        self, request_id: str, attempt: int, available_at: int, error_code: int, error_message: str
    ) -> bool: ...
    async def insert_invocation_once(
        self, invocation: NewInvocation, key: str, cutoff: int
    ) -> str: ...
    async def claim_expired_invocations(
        self, worker_id: str, now: int, limit: int, lease_until: int
    ) -> list[ClaimedInvocation]: ...
    async def claim_due(
        self, worker_id: str, now: int, limit: int, expired_limit: int, lease_until: int
    ) -> tuple[list[ClaimedInvocation], list[ClaimedInvocation]]:
        """Both claims in one transaction: (expired waiting rows, runnable rows)."""
        ...

    async def list_cancel_requests(self, worker_id: str) -> list[str]: ...
    async def get_invocation(self, request_id: str) -> InvocationDetail | None: ...
    async def claim_waiting(
        self, request_id: str, function_id: int, worker_id: str, now: int, lease_until: int
    ) -> ClaimedInvocation | None: ...
    async def request_cancel(self, request_id: str, function_id: int) -> bool: ...
    async def upsert_async_config(self, config: AsyncConfig) -> None: ...
    async def get_async_config(self, function_id: int) -> AsyncConfig | None: ...
    async def delete_async_config(self, function_id: int) -> bool: ...
    async def list_rerunnable(
        self, function_id: int, statuses: tuple[Status, ...], begin: int, end: int, limit: int
    ) -> list[tuple[str, bytes, int]]: ...
    async def count_waiting(self, function_id: int) -> int: ...
    async def purge(self, cutoff: int, key_cutoff: int, limit: int) -> int: ...
    async def renew_leases(self, worker_id: str, lease_until: int) -> int: ...
    async def list_expired_leases(self, now: int, limit: int) -> list[ClaimedInvocation]: ...
    async def next_available_at(self) -> int | None: ...
    async def count_by_status(self, function_id: int) -> dict[Status, int]: ...


def function_from_row(row: Mapping[str, Any]) -> Function:
    return Function(**dict(row))


def function_params(function: Function) -> dict[str, Any]:
    params = {k: getattr(function, k) for k in Function.__dataclass_fields__}
    return params


def invocation_from_row(row: Any) -> Invocation:
    request_id, function_id, status, start, end, code, message, attempt, version = row
    return Invocation(
        request_id=request_id,
        function_id=function_id,
        status=Status(status),
        start_time=start,
        end_time=end,
        error_code=code,
        error_message=message,
        attempt=attempt,
        version=version,
    )


def claim_scan(limit: int) -> int:
    """How many of the oldest waiting rows a claim looks at to fill ``limit`` slots: enough that
    one function at its concurrency limit does not hide the others behind it."""
    return max(limit * 8, 256)


def claimed_from_row(row: Any) -> ClaimedInvocation:
    request_id, function_id, version, payload, attempt, expires_at, max_attempts, depth, last = row
    return ClaimedInvocation(
        request_id,
        function_id,
        version,
        bytes(payload),
        attempt,
        expires_at,
        max_attempts,
        depth,
        last,
    )


def invocation_params(invocation: NewInvocation) -> dict[str, Any]:
    return {k: getattr(invocation, k) for k in NewInvocation.__dataclass_fields__}


def detail_from_rows(row: Any, attempts: list[Any]) -> InvocationDetail:
    record = invocation_from_row(tuple(row[:9]))
    max_attempts, rerun_of, project_id = row[9], row[10], row[11]
    history = [Attempt(a[0], a[1] or "", a[2], a[3], a[4], a[5], a[6]) for a in attempts]
    return InvocationDetail(record, project_id, max_attempts, rerun_of, history)


def config_from_row(row: Any) -> AsyncConfig:
    fid, age, retries, destinations, status_log, created, modified = row
    return AsyncConfig(
        fid, age, retries, json.loads(destinations or "{}"), bool(status_log), created, modified
    )


def config_params(config: AsyncConfig, now: int) -> dict[str, Any]:
    return {
        "function_id": config.function_id,
        "max_async_event_age_in_seconds": config.max_async_event_age_in_seconds,
        "max_async_retry_attempts": config.max_async_retry_attempts,
        "destination_config": json.dumps(config.destination_config),
        "enable_async_status_log": config.enable_async_status_log,
        "now": now,
    }


def rerun_params(
    function_id: int, statuses: tuple[Status, ...], begin: int, end: int, limit: int
) -> dict[str, Any]:
    first = statuses[0].value
    second = statuses[1].value if len(statuses) > 1 else first
    return {
        "function_id": function_id,
        "status_a": first,
        "status_b": second,
        "begin": begin,
        "end": end,
        "limit": limit,
    }


# -- parameters of the named queries, the same for every backend ---------------------------


def credential_params(credential: Credential, now: int) -> dict[str, Any]:
    return {
        "access_key": credential.access_key,
        "secret_key": credential.secret_key,
        "project_id": credential.project_id,
        "created_at": now,
    }


def token_params(
    token_hash: str, access_key: str, project_id: str, expires_at: int
) -> dict[str, Any]:
    return {
        "token_hash": token_hash,
        "access_key": access_key,
        "project_id": project_id,
        "expires_at": expires_at,
    }


def idempotency_params(invocation: NewInvocation, key: str, cutoff: int) -> dict[str, Any]:
    return {
        "function_id": invocation.function_id,
        "key": key,
        "request_id": invocation.request_id,
        "now": invocation.start_time,
        "cutoff": cutoff,
    }


def count_ranges(query: InvocationQuery) -> tuple[tuple[int, int], ...]:
    """The parts of the query's window its ``count`` covers."""
    if query.count_ranges is None:
        return ((query.begin, query.end),)
    return query.count_ranges


def claim_params(worker_id: str, now: int, limit: int, lease_until: int) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "now": now,
        "limit": limit,
        "lease_until": lease_until,
        "scan": claim_scan(limit),
    }


def finish_params(
    request_id: str,
    attempt: int,
    status: Status,
    end_time: int,
    error_code: int,
    error_message: str,
    result: bytes | None,
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "attempt": attempt,
        "status": status.value,
        "outcome": status.value,
        "end_time": end_time,
        "error_code": error_code,
        "error_message": error_message,
        "result": result,
    }


def requeue_params(
    request_id: str, attempt: int, available_at: int, error_code: int, error_message: str, now: int
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "attempt": attempt,
        "available_at": available_at,
        "outcome": "RETRY",
        "end_time": now,
        "error_code": error_code,
        "error_message": error_message,
    }
