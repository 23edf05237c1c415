"""Running a function's version: what an async worker and a synchronous invoke share.

The row an invocation names (latest, a version, an alias) and the version it runs are told
apart here: the version's own row gives the code and config an instance is made from, so a
warm instance belongs to one version and a new publication never runs old code.
"""

from __future__ import annotations

from dataclasses import replace

from openfgs.errors import NotFound
from openfgs.functions import FunctionRegistry
from openfgs.models import ErrorCode, Function, new_request_id
from openfgs.runtime.pool import InstancePool
from openfgs.runtime.types import RunResult

ASYNC_RESULT_LIMIT = 256 * 1024
SYNC_RESULT_LIMIT = 6 * 1024 * 1024


class Executor:
    """Runs invocations of function rows in the instance pool."""

    def __init__(self, registry: FunctionRegistry, pool: InstancePool) -> None:
        self._registry = registry
        self._pool = pool

    async def run(
        self,
        function: Function,
        version: str,
        payload: bytes,
        request_id: str,
        *,
        max_result_bytes: int = ASYNC_RESULT_LIMIT,
        memory_size: int | None = None,
        timeout_seconds: int | None = None,
        invoke_type: str = "async",
    ) -> RunResult:
        """Run ``version`` of ``function``'s function with ``payload``; a version deleted
        since the invocation was accepted ends it as a function error."""
        try:
            target = await self._registry.version_row(function, version)
        except NotFound:
            return RunResult(
                ok=False,
                error_code=ErrorCode.FUNCTION_ERROR,
                error_message=f"version {version} was deleted before the invocation could run",
            )
        spec = self._registry.spec(target, target.version)
        if memory_size is not None:
            spec = replace(spec, memory_size=memory_size)
        if timeout_seconds is not None:  # a caller's shorter wait (an HTTP trigger's)
            spec = replace(spec, timeout=min(spec.timeout, timeout_seconds))
        digest = target.code_digest
        return await self._pool.invoke(
            spec,
            payload,
            request_id,
            lambda: self._registry.code(digest),
            max_result_bytes=max_result_bytes,
            invoke_type=invoke_type,
            alias=function.alias or "",
        )

    async def invoke_sync(
        self,
        function: Function,
        event: bytes,
        memory_size: int | None = None,
        *,
        timeout_seconds: int | None = None,
    ) -> tuple[str, str, RunResult]:
        """Run ``function`` now, outside the queue: its request id, the version that ran
        (an alias picks one) and the outcome."""
        request_id = new_request_id()
        version = self._registry.pick_version(function)
        outcome = await self.run(
            function,
            version,
            event,
            request_id,
            max_result_bytes=SYNC_RESULT_LIMIT,
            memory_size=memory_size,
            timeout_seconds=timeout_seconds,
            invoke_type="sync",
        )
        return request_id, version, outcome
