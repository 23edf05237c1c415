"""The Store interface every backend implements, and row-to-model mapping they share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from openfgs.models import (
    ClaimedInvocation,
    Credential,
    Function,
    Invocation,
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

    async def insert_invocation(self, invocation: NewInvocation) -> None: ...
    async def list_invocations(self, query: InvocationQuery) -> InvocationPage: ...
    async def list_active_invocations(self, query: InvocationQuery) -> InvocationPage: ...
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
    ) -> bool: ...
    async def requeue_invocation(
        self, request_id: str, attempt: int, available_at: int
    ) -> bool: ...
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


def claimed_from_row(row: Any) -> ClaimedInvocation:
    request_id, function_id, version, payload, attempt, expires_at = row
    return ClaimedInvocation(request_id, function_id, version, bytes(payload), attempt, expires_at)
