"""PostgreSQL backend: a psycopg 3 async connection pool, batched accepts, LISTEN/NOTIFY.

Accepted invocations are inserted in batches (one transaction for every insert waiting at that
moment), so durable accepts are not capped by one commit per request. Claims use
``FOR UPDATE SKIP LOCKED``; a trigger NOTIFYs ``openfgs_invocations`` whenever a row becomes
WAIT, and :meth:`PostgresStore.subscribe` turns those notifications into wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from openfgs.errors import ConflictError, StoreError
from openfgs.models import (
    AsyncConfig,
    ClaimedInvocation,
    Credential,
    Function,
    InvocationDetail,
    InvocationPage,
    InvocationQuery,
    NewInvocation,
    Status,
    now_ms,
)
from openfgs.store.base import (
    claim_params,
    claimed_from_row,
    config_from_row,
    config_params,
    count_ranges,
    credential_params,
    detail_from_rows,
    finish_params,
    function_from_row,
    function_params,
    idempotency_params,
    invocation_from_row,
    invocation_params,
    requeue_params,
    rerun_params,
    token_params,
)
from openfgs.store.queries import load_queries, migration_files

log = logging.getLogger("openfgs.store")
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_MIGRATION_LOCK = 0x0F65  # pg_advisory_xact_lock key: one migrating node at a time
_CLAIM_LOCK = 0x0F66  # and one claiming worker at a time
# Claims and outcomes do not wait for the WAL flush: a server crash may lose the last few
# (the record is run again); accepts and everything a client is told is done still wait.
_NO_WAL_FLUSH = "SET LOCAL synchronous_commit = off"
_MAX_BATCH = 1000
CHANNEL = "openfgs_invocations"


def _wrap(exc: Exception) -> StoreError:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return ConflictError(str(exc))
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"postgresql: {exc}")


def _settle(future: asyncio.Future[None], error: StoreError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def postgres_queries() -> dict[str, str]:
    """The named queries with ``:name`` parameters turned into psycopg's ``%(name)s``."""
    return {name: _PARAM.sub(r"%(\1)s", sql) for name, sql in load_queries("postgres").items()}


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Apply the numbered migrations not yet applied, under an advisory lock."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for number, name, sql in migration_files("postgres"):
            if number in done:
                continue
            await conn.execute(sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s, %s)", (number, name, now_ms())
            )
            applied.append(name)
    return applied


class PostgresStore:
    """The cluster store: every node of a deployment shares one PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self._q = postgres_queries()
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flush_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._claims: psycopg.AsyncConnection[Any] | None = None
        self._claim_lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(self.url) as conn:
                await migrate(conn)
            self._pool = AsyncConnectionPool(
                self.url, min_size=1, max_size=self._pool_size, open=False
            )
            await self._pool.open(wait=True, timeout=30)
        except psycopg.Error as exc:
            raise _wrap(exc) from exc
        self._flush_wanted = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._flush_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._drop_claim_connection()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- plumbing -------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._pool is None:
            raise StoreError("store is closed")
        return self._pool.connection()

    async def _fetchone(self, name: str, params: dict[str, Any], dicts: bool = False) -> Any:
        try:
            async with self._connection() as conn:
                cur = conn.cursor(row_factory=dict_row) if dicts else conn.cursor()
                await cur.execute(self._q[name], params)
                return await cur.fetchone()
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def _fetchall(self, name: str, params: dict[str, Any], dicts: bool = False) -> Any:
        try:
            async with self._connection() as conn:
                cur = conn.cursor(row_factory=dict_row) if dicts else conn.cursor()
                await cur.execute(self._q[name], params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def _execute(self, name: str, params: dict[str, Any]) -> int:
        try:
            async with self._connection() as conn:
                cur = await conn.execute(self._q[name], params)
                return int(cur.rowcount)
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def ping(self) -> None:
        try:
            async with self._connection() as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever any node makes a row WAIT (reconnecting as needed)."""
        self._tasks.append(asyncio.create_task(self._listen(wake)))

    async def _listen(self, wake: Callable[[], None]) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    wake()  # anything that arrived while not listening
                    async for _ in conn.notifies():
                        wake()
            except psycopg.Error as exc:
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                await asyncio.sleep(1.0)

    # -- credentials and tokens -----------------------------------------------------------

    async def insert_credential(self, credential: Credential, now: int) -> None:
        params = credential_params(credential, now)
        await self._execute("insert_credential", params)

    async def get_credential(self, access_key: str) -> Credential | None:
        row = await self._fetchone("get_credential", {"access_key": access_key})
        return None if row is None else Credential(*row)

    async def count_credentials(self) -> int:
        row = await self._fetchone("count_credentials", {})
        return int(row[0])

    async def insert_token(
        self, token_hash: str, access_key: str, project_id: str, expires_at: int
    ) -> None:
        params = token_params(token_hash, access_key, project_id, expires_at)
        await self._execute("insert_token", params)

    async def get_token(self, token_hash: str) -> tuple[str, int] | None:
        row = await self._fetchone("get_token", {"token_hash": token_hash})
        return None if row is None else (row[0], int(row[1]))

    # -- functions and code ---------------------------------------------------------------

    async def insert_function(self, function: Function, code: bytes) -> Function:
        params = function_params(function)
        params.pop("id")
        code_params = {"digest": function.code_digest, "data": code, "size": len(code)}
        try:
            async with self._connection() as conn, conn.transaction():
                await conn.execute(self._q["insert_code"], code_params)
                cur = await conn.execute(self._q["insert_function"], params)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise _wrap(exc) from exc
        assert row is not None
        return Function(**{**function_params(function), "id": int(row[0])})

    async def get_function(self, project_id: str, package: str, name: str) -> Function | None:
        params = {"project_id": project_id, "package": package, "name": name}
        row = await self._fetchone("get_function", params, dicts=True)
        return None if row is None else function_from_row(row)

    async def get_function_by_id(self, function_id: int) -> Function | None:
        row = await self._fetchone("get_function_by_id", {"id": function_id}, dicts=True)
        return None if row is None else function_from_row(row)

    async def list_functions(
        self, project_id: str, package: str | None, name_like: str | None, offset: int, limit: int
    ) -> tuple[list[Function], int]:
        params = {"project_id": project_id, "package": package, "name_like": name_like}
        rows = await self._fetchall(
            "list_functions", {**params, "offset": offset, "limit": limit}, dicts=True
        )
        count = await self._fetchone("count_functions", params)
        return [function_from_row(r) for r in rows], int(count[0])

    async def update_function(self, function: Function, code: bytes | None) -> None:
        params = function_params(function)
        for key in ("project_id", "package", "name", "func_id", "created_at"):
            params.pop(key)
        try:
            async with self._connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT code_digest FROM functions WHERE id = %s FOR UPDATE", (function.id,)
                )
                old = await cur.fetchone()
                if code is not None:
                    code_params = {"digest": function.code_digest, "data": code, "size": len(code)}
                    await conn.execute(self._q["insert_code"], code_params)
                await conn.execute(self._q["update_function"], params)
                if old is not None and old[0] != function.code_digest:
                    await conn.execute(self._q["delete_unused_code"], {"digest": old[0]})
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def delete_function(self, function: Function) -> None:
        try:
            async with self._connection() as conn, conn.transaction():
                params = {"function_id": function.id}
                await conn.execute(self._q["delete_function_attempts"], params)
                await conn.execute(self._q["delete_function_keys"], params)
                await conn.execute(self._q["delete_function_invocations"], params)
                await conn.execute(self._q["delete_function"], {"id": function.id})
                await conn.execute(self._q["delete_unused_code"], {"digest": function.code_digest})
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def get_code(self, digest: str) -> bytes | None:
        row = await self._fetchone("get_code", {"digest": digest})
        return None if row is None else bytes(row[0])

    async def total_code_size(self, project_id: str) -> int:
        row = await self._fetchone("total_code_size", {"project_id": project_id})
        return int(row[0])

    async def referenced_code_digests(self) -> set[str]:
        rows = await self._fetchall("referenced_code_digests", {})
        return {str(row[0]) for row in rows}

    # -- invocations ----------------------------------------------------------------------

    async def insert_invocation(self, invocation: NewInvocation) -> None:
        params = invocation_params(invocation)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((params, future))
        self._flush_wanted.set()
        await future

    async def _flush_loop(self) -> None:
        """Insert every accept waiting at that moment in one transaction (group commit)."""
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        try:
            await self._insert_rows([params for params, _ in batch])
        except StoreError as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            # One bad row must not fail its neighbours: insert them one by one instead.
            for params, future in batch:
                try:
                    await self._insert_rows([params])
                except StoreError as single:
                    _settle(future, single)
                else:
                    _settle(future, None)
            return
        for _, future in batch:
            _settle(future, None)

    async def _insert_rows(self, rows: list[dict[str, Any]]) -> None:
        try:
            async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.executemany(self._q["insert_invocation"], rows)
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def list_invocations(self, query: InvocationQuery) -> InvocationPage:
        params: dict[str, Any] = {
            "function_id": query.function_id,
            "begin": query.begin,
            "end": query.end,
            "statuses": [s.value for s in query.statuses or tuple(Status)],
        }
        if query.request_ids:
            params["request_ids"] = list(query.request_ids)
            rows = await self._fetchall("list_invocations_by_ids", params)
            matches = [invocation_from_row(r) for r in rows]
            page = matches[query.marker : query.marker + query.limit]
            return InvocationPage(page, len(matches), query.marker + len(page))
        if len(query.statuses) == 1:
            params["status"] = query.statuses[0].value
            names = ("list_invocations_by_status", "count_invocations_by_status")
        elif query.statuses:
            names = ("list_active_invocations", "count_active_invocations")
        else:
            names = ("list_invocations", "count_invocations")
        paged = {**params, "limit": query.limit, "offset": query.marker}
        try:
            async with self._connection() as conn:
                cur = await conn.execute(self._q[names[0]], paged)
                rows = await cur.fetchall()
                count = 0
                for begin, end in count_ranges(query):
                    cur = await conn.execute(
                        self._q[names[1]], {**params, "begin": begin, "end": end}
                    )
                    count += int((await cur.fetchone())[0])
        except psycopg.Error as exc:
            raise _wrap(exc) from exc
        invocations = [invocation_from_row(r) for r in rows]
        return InvocationPage(invocations, count, query.marker + len(invocations))

    async def count_by_hour(
        self, function_id: int, begin: int, end: int
    ) -> list[tuple[int, Status, int]]:
        params = {"function_id": function_id, "begin": begin, "end": end}
        rows = await self._fetchall("count_invocations_by_hour", params)
        return [(int(r[0]), Status(r[1]), int(r[2])) for r in rows]

    async def list_active_invocations(self, query: InvocationQuery) -> InvocationPage:
        return await self.list_invocations(query)

    async def claim_invocations(
        self, worker_id: str, now: int, limit: int, lease_until: int
    ) -> list[ClaimedInvocation]:
        return (await self.claim_due(worker_id, now, limit, 0, lease_until))[1]

    async def insert_invocation_once(self, invocation: NewInvocation, key: str, cutoff: int) -> str:
        """Insert unless ``key`` was used for this function since ``cutoff``; the request id."""
        key_params = idempotency_params(invocation, key, cutoff)
        try:
            async with self._connection() as conn, conn.transaction():
                cur = await conn.execute(self._q["claim_idempotency_key"], key_params)
                if await cur.fetchone() is None:
                    cur = await conn.execute(self._q["get_idempotency_key"], key_params)
                    row = await cur.fetchone()
                    return str(row[0])
                await conn.execute(self._q["insert_invocation"], invocation_params(invocation))
                return invocation.request_id
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

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
    ) -> bool:
        params = finish_params(
            request_id, attempt, status, end_time, error_code, error_message, result
        )
        try:
            async with self._connection() as conn, conn.transaction():
                await conn.execute(_NO_WAL_FLUSH)
                await conn.execute(self._q["record_attempt"], params)
                cur = await conn.execute(self._q["finish_invocation"], params)
                if not cur.rowcount:
                    return False
                if follow_up is not None:
                    await conn.execute(self._q["insert_invocation"], invocation_params(follow_up))
                return True
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def requeue_invocation(
        self, request_id: str, attempt: int, available_at: int, error_code: int, error_message: str
    ) -> bool:
        params = requeue_params(
            request_id, attempt, available_at, error_code, error_message, now_ms()
        )
        try:
            async with self._connection() as conn, conn.transaction():
                await conn.execute(_NO_WAL_FLUSH)
                await conn.execute(self._q["record_attempt"], params)
                cur = await conn.execute(self._q["requeue_invocation"], params)
                return bool(cur.rowcount)
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def claim_expired_invocations(
        self, worker_id: str, now: int, limit: int, lease_until: int
    ) -> list[ClaimedInvocation]:
        return (await self.claim_due(worker_id, now, 0, limit, lease_until))[0]

    async def claim_due(
        self, worker_id: str, now: int, limit: int, expired_limit: int, lease_until: int
    ) -> tuple[list[ClaimedInvocation], list[ClaimedInvocation]]:
        # Claims take turns (openfgs_pick_due locks), so per-function concurrency holds across
        # every worker.
        params = {**claim_params(worker_id, now, limit, lease_until), "claim_lock": _CLAIM_LOCK}
        expired_params = {**params, "limit": expired_limit}
        expired_rows: list[Any] = []
        rows: list[Any] = []
        async with self._claim_lock:  # one claim at a time per process, on its own connection
            try:
                conn = await self._claim_connection()
                # One round trip: both statements pipelined, the results read at the end.
                async with conn.pipeline():
                    expired = claimed = None
                    if expired_limit > 0:
                        sql = self._q["claim_expired_invocations"]
                        expired = await conn.execute(sql, expired_params)
                    if limit > 0:
                        claimed = await conn.execute(self._q["claim_invocations"], params)
                if expired is not None:
                    expired_rows = await expired.fetchall()
                if claimed is not None:
                    rows = await claimed.fetchall()
            except psycopg.Error as exc:
                await self._drop_claim_connection()
                raise _wrap(exc) from exc
        return [claimed_from_row(r) for r in expired_rows], [claimed_from_row(r) for r in rows]

    async def _claim_connection(self) -> psycopg.AsyncConnection[Any]:
        """The worker's claims skip the pool: a connection of their own, in autocommit and
        without waiting for the WAL flush (a lost claim is claimed again)."""
        if self._pool is None:
            raise StoreError("store is closed")
        if self._claims is None or self._claims.closed:
            self._claims = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            await self._claims.execute("SET synchronous_commit = off")
        return self._claims

    async def _drop_claim_connection(self) -> None:
        if self._claims is not None:
            with contextlib.suppress(psycopg.Error):
                await self._claims.close()
            self._claims = None

    async def list_cancel_requests(self, worker_id: str) -> list[str]:
        rows = await self._fetchall("list_cancel_requests", {"worker_id": worker_id})
        return [str(r[0]) for r in rows]

    async def get_invocation(self, request_id: str) -> InvocationDetail | None:
        params = {"request_id": request_id}
        try:
            async with self._connection() as conn, conn.transaction():
                # One snapshot: the record and its attempts as one outcome left them.
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur = await conn.execute(self._q["get_invocation"], params)
                row = await cur.fetchone()
                if row is None:
                    return None
                cur = await conn.execute(self._q["list_attempts"], params)
                return detail_from_rows(row, await cur.fetchall())
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def claim_waiting(
        self, request_id: str, function_id: int, worker_id: str, now: int, lease_until: int
    ) -> ClaimedInvocation | None:
        params = {
            **claim_params(worker_id, now, 1, lease_until),
            "request_id": request_id,
            "function_id": function_id,
        }
        row = await self._fetchone("claim_waiting", params)
        return None if row is None else claimed_from_row(row)

    async def request_cancel(self, request_id: str, function_id: int) -> bool:
        params = {"request_id": request_id, "function_id": function_id}
        return bool(await self._execute("request_cancel", params))

    async def upsert_async_config(self, config: AsyncConfig) -> None:
        await self._execute("upsert_async_config", config_params(config, config.last_modified))

    async def get_async_config(self, function_id: int) -> AsyncConfig | None:
        row = await self._fetchone("get_async_config", {"function_id": function_id})
        return None if row is None else config_from_row(tuple(row))

    async def delete_async_config(self, function_id: int) -> bool:
        return bool(await self._execute("delete_async_config", {"function_id": function_id}))

    async def list_rerunnable(
        self, function_id: int, statuses: tuple[Status, ...], begin: int, end: int, limit: int
    ) -> list[tuple[str, bytes, int]]:
        params = rerun_params(function_id, statuses, begin, end, limit)
        rows = await self._fetchall("list_rerunnable", params)
        return [(str(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    async def count_waiting(self, function_id: int) -> int:
        row = await self._fetchone("count_waiting", {"function_id": function_id})
        return int(row[0])

    async def purge(self, cutoff: int, key_cutoff: int, limit: int) -> int:
        """Delete up to ``limit`` records that ended before ``cutoff``, with their history."""
        params = {"cutoff": cutoff, "limit": limit}
        try:
            async with self._connection() as conn, conn.transaction():
                await conn.execute(self._q["purge_attempts"], params)
                cur = await conn.execute(self._q["purge_invocations"], params)
                await conn.execute(self._q["purge_idempotency_keys"], {"cutoff": key_cutoff})
                await conn.execute(self._q["delete_expired_tokens"], {"now": now_ms()})
                return int(cur.rowcount)
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def renew_leases(self, worker_id: str, lease_until: int) -> int:
        params = {"worker_id": worker_id, "lease_until": lease_until}
        return await self._execute("renew_leases", params)

    async def list_expired_leases(self, now: int, limit: int) -> list[ClaimedInvocation]:
        rows = await self._fetchall("list_expired_leases", {"now": now, "limit": limit})
        return [claimed_from_row(r) for r in rows]

    async def next_available_at(self) -> int | None:
        row = await self._fetchone("next_available_at", {})
        return None if row[0] is None else int(row[0])

    async def count_by_status(self, function_id: int) -> dict[Status, int]:
        rows = await self._fetchall("count_by_status", {"function_id": function_id})
        return {Status(r[0]): int(r[1]) for r in rows}
