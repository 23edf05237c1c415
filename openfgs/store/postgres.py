"""PostgreSQL backend: a psycopg 3 async connection pool, batched accepts, LISTEN/NOTIFY.

The operations are :class:`~openfgs.store.common.SqlStore`'s; this module runs their scripts
on pooled connections (rows as dicts) and accepts and claims in its own way.

Accepted invocations are inserted in batches (one transaction for every insert waiting at that
moment), so durable accepts are not capped by one commit per request; outcomes are written the
same way, every outcome waiting at that moment in one statement. Claims use
``FOR UPDATE SKIP LOCKED``; a trigger NOTIFYs ``openfgs_invocations`` whenever a row becomes
WAIT, and :meth:`PostgresStore.subscribe` turns those notifications into wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Generic, NamedTuple, TypeVar

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from openfgs.errors import ConflictError, StoreError
from openfgs.models import ClaimedInvocation, NewInvocation, Outcome, Status, now_ms
from openfgs.store.common import (
    Kind,
    Script,
    SqlStore,
    Step,
    claim_params,
    invocation_params,
    start_bounds,
)
from openfgs.store.queries import load_queries, migration_files

T = TypeVar("T")
Item = TypeVar("Item")
R = TypeVar("R")
log = logging.getLogger("openfgs.store")
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_MIGRATION_LOCK = 0x0F65  # pg_advisory_xact_lock key: one migrating node at a time
_CLAIM_LOCK = 0x0F66  # and one claiming worker at a time (per schema: see claim_lock_key)
# Claims, outcomes and lease renewals do not wait for the WAL flush: a server crash may lose
# the last few (the record is run again); accepts and all a client is told is done still wait.
_NO_WAL_FLUSH = "SET LOCAL synchronous_commit = off"
# A read that takes a snapshot (a list page with its count, a record with its attempts) also
# runs on generic plans: on the records table, partitioned by day, a custom plan costs ~3 ms of
# planning a statement, more than the statement itself, and a generic plan prunes the days at
# run time (docs/benchmarks.md, "Counts of settled minutes").
_SNAPSHOT = (
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; "
    "SET LOCAL plan_cache_mode = force_generic_plan"
)
_MAX_BATCH = 1000
CHANNEL = "openfgs_invocations"
# The columns of an accepted row, as insert_invocations takes them (each as an array).
_ACCEPT_COLUMNS = ("request_id", "function_id", "version", "payload", "start_time",
                   "available_at", "expires_at", "max_attempts", "depth", "rerun_of")  # fmt: skip
_STARTED_COLUMNS = (*_ACCEPT_COLUMNS, "lease_until", "worker_id")
# Statements whose parameters are arrays of a batch's rows go in binary: psycopg dumps a batch
# of 30 accepted rows' arrays in ~85 µs so, ~290–390 µs as text, on the event loop
# (docs/benchmarks.md, "Arrays in binary").
_BINARY = frozenset({"insert_invocations", "insert_started_invocations", "finish_invocations"})


def _wrap(exc: Exception) -> StoreError:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return ConflictError(str(exc))
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"postgresql: {exc}")


def _settle(future: asyncio.Future[R], result: R | Exception) -> None:
    if future.done():
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)


class _Batches(Generic[Item, R]):
    """Writes that wait for each other: one write at a time takes every item waiting at that
    moment (up to ``_MAX_BATCH``), so concurrent callers share a round trip and a commit.
    ``write`` settles each item's future."""

    def __init__(self, write: Callable[[list[tuple[Item, asyncio.Future[R]]]], Awaitable[None]]):
        self._write = write
        self._pending: list[tuple[Item, asyncio.Future[R]]] = []
        self._wanted = asyncio.Event()

    async def submit(self, item: Item) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wanted.set()
        return await future

    async def run(self) -> None:
        batch: list[tuple[Item, asyncio.Future[R]]] = []
        try:
            while True:
                await self._wanted.wait()
                self._wanted.clear()
                while self._pending:
                    batch = self._pending[:_MAX_BATCH]
                    del self._pending[:_MAX_BATCH]
                    try:
                        await self._write(batch)
                    except Exception as exc:  # a bug must fail its callers, not hang them
                        log.exception("a batched write failed")
                        for _, future in batch:
                            _settle(future, _wrap(exc))
        finally:  # the store closed: nobody waits for a write that will not come
            for _, future in batch + self._pending:
                _settle(future, StoreError("store is closed"))
            self._pending.clear()


class _Accept(NamedTuple):
    """An accepted row waiting for the batch that inserts it; ``start``: the worker, lease
    and claim lock it is started under at once, when the claims' rules allow."""

    params: dict[str, Any]
    start: dict[str, Any] | None


class _Ending(NamedTuple):
    """One attempt's outcome waiting for the batch that writes it."""

    request_id: str
    attempt: int
    outcome: Outcome
    end_time: int
    start_time: int | None  # the record's, when known: its day partition is searched alone


def _column_arrays(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> dict[str, list[Any]]:
    """The parameters of a statement of many rows: one array per column (``_ACCEPT_COLUMNS``
    for ``insert_invocations``, ``_STARTED_COLUMNS`` for ``insert_started_invocations``)."""
    return {column: [row[column] for row in rows] for column in columns}


def _ending_arrays(batch: list[_Ending]) -> dict[str, Any]:
    """The parameters of ``finish_invocations``: one array per column, and the range of the
    records' start_times (any time when one of them is not known)."""
    known = [e.start_time for e in batch if e.start_time is not None]
    start_from, start_to = (
        (min(known), max(known)) if len(known) == len(batch) else start_bounds(None)
    )
    return {
        "start_from": start_from,
        "start_to": start_to,
        "request_ids": [e.request_id for e in batch],
        "attempts": [e.attempt for e in batch],
        "statuses": [e.outcome.status.value for e in batch],
        "end_times": [e.end_time for e in batch],
        "error_codes": [e.outcome.error_code for e in batch],
        "error_messages": [e.outcome.error_message for e in batch],
        "results": [e.outcome.result for e in batch],
        "available_ats": [e.outcome.retry_at for e in batch],
    }


def postgres_queries() -> dict[str, str]:
    """The named queries with ``:name`` parameters turned into psycopg's ``%(name)s``, or
    ``%(name)b`` (binary) for the statements of many rows in arrays."""
    return {
        name: _PARAM.sub(r"%(\1)b" if name in _BINARY else r"%(\1)s", sql)
        for name, sql in load_queries("postgres").items()
    }


async def claim_lock_key(conn: psycopg.AsyncConnection[Any]) -> int:
    """The claims' advisory lock of the schema ``conn`` works in: advisory locks are
    database-wide, and deployments in other schemas of one database need not wait for ours."""
    cursor = await conn.execute("SELECT hashtext(current_schema())")
    row = await cursor.fetchone()
    assert row is not None
    return (_CLAIM_LOCK << 32) | (int(row[0]) & 0xFFFFFFFF)


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


class PostgresStore(SqlStore):
    """The cluster store: every node of a deployment shares one PostgreSQL database."""

    starts_accepted_rows = True
    retention_by_day = True

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self._q = postgres_queries()
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Claims and outcomes skip the pool: each on a connection of its own, in autocommit
        # and without waiting for the WAL flush (a lost claim or outcome runs the record again).
        self._claims = _OwnConnection(url)
        self._claim_lock = asyncio.Lock()
        self._claim_lock_key = _CLAIM_LOCK
        self._outcomes = _OwnConnection(url)

    async def open(self) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(self.url) as conn:
                await migrate(conn)
                self._claim_lock_key = await claim_lock_key(conn)
            self._pool = AsyncConnectionPool(
                self.url,
                connection_class=psycopg.AsyncConnection[DictRow],
                kwargs={"row_factory": dict_row},
                min_size=1,
                max_size=self._pool_size,
                open=False,
            )
            await self._pool.open(wait=True, timeout=30)
            await self.ensure_partitions(now_ms())
        except psycopg.Error as exc:
            raise _wrap(exc) from exc
        self._accepts: _Batches[_Accept, bool] = _Batches(self._flush)
        self._endings: _Batches[_Ending, bool] = _Batches(self._write_endings)
        self._tasks += [
            asyncio.create_task(self._accepts.run()),
            asyncio.create_task(self._endings.run()),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._claims.drop()
        await self._outcomes.drop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

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

    # -- the primitives -------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._pool is None:
            raise StoreError("store is closed")
        return self._pool.connection()

    async def _read(self, work: Step | Script[T], snapshot: bool = False) -> Any:
        try:
            async with self._connection() as conn:
                if not snapshot:
                    return await self._run(conn, work)
                async with conn.transaction():
                    await conn.execute(_SNAPSHOT)
                    return await self._run(conn, work)
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    async def _write(self, work: Step | Script[T], durable: bool = True) -> Any:
        try:
            async with self._connection() as conn, conn.transaction():
                if not durable:
                    await conn.execute(_NO_WAL_FLUSH)
                return await self._run(conn, work)
        except psycopg.Error as exc:
            raise _wrap(exc) from exc

    @staticmethod
    def _array(values: list[str]) -> Any:
        return values

    async def _run(self, conn: psycopg.AsyncConnection[DictRow], work: Step | Script[T]) -> Any:
        """Run a step, or a script's steps, on ``conn`` (one loop: no coroutine per step)."""
        script, step = (None, work) if isinstance(work, Step) else (work, None)
        answer: Any = None
        while True:
            if script is not None:
                try:
                    step = script.send(answer)
                except StopIteration as done:
                    return done.value
            assert step is not None
            cursor = await conn.execute(self._q[step.name], step.params)
            if step.kind is Kind.ONE:
                answer = await cursor.fetchone()
            elif step.kind is Kind.ALL:
                answer = await cursor.fetchall()
            else:
                answer = cursor.rowcount
            if script is None:
                return answer

    # -- what the cluster store does its own way ------------------------------------------

    async def insert_invocation(self, invocation: NewInvocation) -> None:
        await self._accept(_Accept(invocation_params(invocation), None))

    async def insert_started_invocation(
        self, invocation: NewInvocation, worker_id: str, lease_until: int
    ) -> bool:
        start = {
            "worker_id": worker_id,
            "lease_until": lease_until,
            "claim_lock": self._claim_lock_key,
        }
        return await self._accept(_Accept(invocation_params(invocation), start))

    async def _accept(self, accept: _Accept) -> bool:
        if self._pool is None:
            raise StoreError("store is closed")
        return await self._accepts.submit(accept)

    async def _flush(self, batch: list[tuple[_Accept, asyncio.Future[bool]]]) -> None:
        """Insert every accept waiting at that moment in one transaction (group commit)."""
        try:
            started = await self._insert_rows([accept for accept, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            # One bad row must not fail its neighbours: insert them one by one instead.
            for accept, future in batch:
                try:
                    (alone,) = await self._insert_rows([accept])
                except Exception as single:
                    _settle(future, single)
                else:
                    _settle(future, alone)
            return
        for (_, future), running in zip(batch, started, strict=True):
            _settle(future, running)

    async def _insert_rows(self, rows: list[_Accept]) -> list[bool]:
        """Insert ``rows`` in one durable transaction, pipelined (one round trip): the plain
        ones in one statement, the ones this node's worker would start in another; whether
        each was started at once (see ``insert_started_invocation``)."""
        plain = [row.params for row in rows if row.start is None]
        starts = [{**row.params, **row.start} for row in rows if row.start is not None]
        statuses: dict[str, str] = {}
        try:
            async with self._connection() as conn:
                started = None
                async with conn.pipeline(), conn.transaction():
                    if plain:
                        await conn.execute(
                            self._q["insert_invocations"], _column_arrays(plain, _ACCEPT_COLUMNS)
                        )
                    if starts:
                        await conn.execute(self._q["try_claim_lock"], starts[0])
                        started = await conn.execute(
                            self._q["insert_started_invocations"],
                            _column_arrays(starts, _STARTED_COLUMNS),
                        )
                if started is not None:
                    statuses = {r["request_id"]: r["status"] for r in await started.fetchall()}
        except psycopg.Error as exc:
            raise _wrap(exc) from exc
        return [
            row.start is not None and statuses.get(row.params["request_id"]) == "RUNNING"
            for row in rows
        ]

    async def claim_due(
        self, worker_id: str, now: int, limit: int, expired_limit: int, lease_until: int
    ) -> tuple[list[ClaimedInvocation], list[ClaimedInvocation]]:
        # Claims take turns (openfgs_pick_due_window locks), so per-function concurrency holds
        # across every worker.
        params = {
            **claim_params(worker_id, now, limit, lease_until),
            "claim_lock": self._claim_lock_key,
        }
        expired_params = {**params, "limit": expired_limit}
        expired_rows: list[DictRow] = []
        rows: list[DictRow] = []
        async with self._claim_lock:  # one claim at a time per process, on its own connection
            try:
                if self._pool is None:
                    raise StoreError("store is closed")
                conn = await self._claims.get()
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
                await self._claims.drop()
                raise _wrap(exc) from exc
        return (
            [ClaimedInvocation.from_row(r) for r in expired_rows],
            [ClaimedInvocation.from_row(r) for r in rows],
        )

    # -- outcomes, in batches -----------------------------------------------------------------

    async def finish_invocation(
        self,
        request_id: str,
        attempt: int,
        outcome: Outcome,
        end_time: int,
        follow_up: NewInvocation | None = None,
        start_time: int | None = None,
    ) -> bool:
        if follow_up is not None:  # the destination's insert commits with it: a script
            return await super().finish_invocation(
                request_id, attempt, outcome, end_time, follow_up, start_time
            )
        return await self._end(_Ending(request_id, attempt, outcome, end_time, start_time))

    async def requeue_invocation(
        self,
        request_id: str,
        attempt: int,
        outcome: Outcome,
        end_time: int,
        start_time: int | None = None,
    ) -> bool:
        return await self._end(_Ending(request_id, attempt, outcome, end_time, start_time))

    async def _end(self, ending: _Ending) -> bool:
        if self._pool is None:
            raise StoreError("store is closed")
        return await self._endings.submit(ending)

    async def _write_endings(self, batch: list[tuple[_Ending, asyncio.Future[bool]]]) -> None:
        """Every outcome waiting at that moment in one statement; when that fails, each one
        alone, so an outcome the store refuses (a message it cannot hold) fails only itself."""
        try:
            conn = await self._outcomes.get()
            cursor = await conn.execute(
                self._q["finish_invocations"], _ending_arrays([e for e, _ in batch])
            )
            written = {row["request_id"] for row in await cursor.fetchall()}
        except Exception as exc:
            if isinstance(exc, psycopg.Error):
                await self._outcomes.drop()
            if len(batch) == 1:
                _settle(batch[0][1], _wrap(exc) if isinstance(exc, psycopg.Error) else exc)
                return
            for ending, future in batch:
                try:
                    ended = await self._end_alone(ending)
                except Exception as single:
                    _settle(future, single)
                else:
                    _settle(future, ended)
            return
        for ending, future in batch:
            _settle(future, ending.request_id in written)

    async def _end_alone(self, ending: _Ending) -> bool:
        request_id, attempt, outcome, end_time, start_time = ending
        if outcome.status is Status.WAIT:
            return await super().requeue_invocation(
                request_id, attempt, outcome, end_time, start_time
            )
        return await super().finish_invocation(
            request_id, attempt, outcome, end_time, None, start_time
        )


class _OwnConnection:
    """A connection kept apart from the pool for one hot path: autocommit, and commits that do
    not wait for the WAL flush (what it writes is bookkeeping a crash may lose)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.AsyncConnection[DictRow] | None = None

    async def get(self) -> psycopg.AsyncConnection[DictRow]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, row_factory=dict_row
            )
            await self._conn.execute("SET synchronous_commit = off")
        return self._conn

    async def drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None
