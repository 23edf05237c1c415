"""SQLite backend: one writer thread with group commit, a few reader threads, WAL.

Every write is queued to the writer thread, which takes all writes waiting at that moment, runs
each inside its own savepoint of one transaction (plain inserts all in one ``executemany``) and
commits once: a durable write (``synchronous=FULL``) is on disk when its coroutine returns, and
concurrent writers share the fsync. Claims and outcomes commit without the fsync (see
:class:`_Writer`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
_MAX_BATCH = 1024
_READERS = 4


def connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the numbered migrations not yet applied; return the names applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for number, name, sql in migration_files("sqlite"):
        if number in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (number, name, now_ms()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _wrap(exc: Exception) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError):
        return ConflictError(str(exc))
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"sqlite: {exc}")


class _Insert:
    """A queued plain insert: the writer runs all of a batch's inserts as one ``executemany``."""

    __slots__ = ("params",)

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params


_Job = tuple[Op | _Insert, "asyncio.Future[Any]", bool]


class _Writer(threading.Thread):
    """Runs queued write operations in shared transactions (group commit).

    A batch commits with ``synchronous=FULL`` (the WAL is fsynced before any of its writers
    hears back) when one of its operations is durable — an accept, a cancel, a configuration —
    and with ``synchronous=NORMAL`` when all of them are bookkeeping a crash of the machine may
    lose without harm (claims, outcomes, lease renewals: the record is run again). A process
    crash loses neither: the WAL is written before the commit returns.
    """

    def __init__(self, path: Path, insert_sql: str) -> None:
        super().__init__(name="openfgs-sqlite-writer", daemon=True)
        self._path = path
        self._insert_sql = insert_sql
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._full_sync = True

    def submit(self, op: Op | _Insert, durable: bool = True) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put((op, future, durable))
        return future

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        conn = connect(self._path)
        try:
            while True:
                batch, stopping = self._take_batch()
                if batch:
                    self._run_batch(conn, batch)
                if stopping:
                    return
        finally:
            conn.close()

    def _take_batch(self) -> tuple[list[_Job], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < _MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = [(True, None)] * len(batch)
        inserts = [i for i, job in enumerate(batch) if isinstance(job[0], _Insert)]
        try:
            self._set_sync(conn, any(durable for _, _, durable in batch))
            conn.execute("BEGIN IMMEDIATE")
            if inserts:
                self._run_inserts(conn, batch, inserts, outcomes)
            for i, (op, _, _) in enumerate(batch):
                if not isinstance(op, _Insert):
                    outcomes[i] = self._run_one(conn, op)
            conn.execute("COMMIT")
        except Exception as exc:  # the whole transaction failed: every op fails with it
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, _wrap(exc))] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, _), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, ok, value))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, results)
            except RuntimeError:  # that loop is closed; nobody waits any more
                pass

    def _set_sync(self, conn: sqlite3.Connection, full: bool) -> None:
        if full != self._full_sync:
            conn.execute("PRAGMA synchronous=FULL" if full else "PRAGMA synchronous=NORMAL")
            self._full_sync = full

    def _run_inserts(
        self,
        conn: sqlite3.Connection,
        batch: list[_Job],
        indexes: list[int],
        outcomes: list[tuple[bool, Any]],
    ) -> None:
        """All plain inserts at once; when that fails, one by one so only the bad row fails."""
        rows = [batch[i][0].params for i in indexes]  # type: ignore[union-attr]
        conn.execute("SAVEPOINT inserts")
        try:
            conn.executemany(self._insert_sql, rows)
        except sqlite3.Error:
            conn.execute("ROLLBACK TO inserts")
            conn.execute("RELEASE inserts")
            for i, params in zip(indexes, rows, strict=True):
                insert = functools.partial(_execute, self._insert_sql, params)
                outcomes[i] = self._run_one(conn, insert)
            return
        conn.execute("RELEASE inserts")

    @staticmethod
    def _run_one(conn: sqlite3.Connection, op: Op) -> tuple[bool, Any]:
        conn.execute("SAVEPOINT op")
        try:
            value = op(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return False, _wrap(exc)
        conn.execute("RELEASE op")
        return True, value


def _execute(sql: str, params: dict[str, Any], conn: sqlite3.Connection) -> None:
    conn.execute(sql, params)


def _resolve_all(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SqliteStore:
    """The embedded store: a single SQLite database file in WAL mode."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._q = load_queries("sqlite")
        self._writer: _Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Only the service's user may read the database (SQLite gives the WAL the same mode).
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = connect(self.path)
        try:
            migrate(conn)
        except sqlite3.Error as exc:
            raise _wrap(exc) from exc
        finally:
            conn.close()
        self._writer = _Writer(self.path, self._q["insert_invocation"])
        self._writer.start()
        self._readers = ThreadPoolExecutor(_READERS, thread_name_prefix="openfgs-sqlite-reader")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.submit(lambda: None).result()
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    # -- plumbing -------------------------------------------------------------------------

    async def _write(self, op: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """Run ``op`` in the writer's next transaction; ``durable``: fsynced before it returns."""
        if self._writer is None:
            raise StoreError("store is closed")
        result: T = await self._writer.submit(op, durable)
        return result

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_in_thread, op)

    def _read_in_thread(self, op: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        try:
            return op(conn)
        except sqlite3.Error as exc:
            raise _wrap(exc) from exc

    def _one(self, name: str, params: dict[str, Any]) -> Callable[[sqlite3.Connection], Any]:
        sql = self._q[name]
        return lambda conn: conn.execute(sql, params).fetchone()

    def _all(self, name: str, params: dict[str, Any]) -> Callable[[sqlite3.Connection], Any]:
        sql = self._q[name]
        return lambda conn: conn.execute(sql, params).fetchall()

    def _exec(self, name: str, params: dict[str, Any]) -> Callable[[sqlite3.Connection], int]:
        sql = self._q[name]
        return lambda conn: conn.execute(sql, params).rowcount

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """Nothing to do: the embedded store is written by this process alone."""

    # -- credentials and tokens -----------------------------------------------------------

    async def insert_credential(self, credential: Credential, now: int) -> None:
        params = credential_params(credential, now)
        await self._write(self._exec("insert_credential", params))

    async def get_credential(self, access_key: str) -> Credential | None:
        row = await self._read(self._one("get_credential", {"access_key": access_key}))
        return None if row is None else Credential(*row)

    async def count_credentials(self) -> int:
        row = await self._read(self._one("count_credentials", {}))
        return int(row[0])

    async def insert_token(
        self, token_hash: str, access_key: str, project_id: str, expires_at: int
    ) -> None:
        params = token_params(token_hash, access_key, project_id, expires_at)
        await self._write(self._exec("insert_token", params))

    async def get_token(self, token_hash: str) -> tuple[str, int] | None:
        row = await self._read(self._one("get_token", {"token_hash": token_hash}))
        return None if row is None else (row[0], row[1])

    # -- functions and code ---------------------------------------------------------------

    async def insert_function(self, function: Function, code: bytes) -> Function:
        params = function_params(function)
        params.pop("id")
        code_params = {"digest": function.code_digest, "data": code, "size": len(code)}

        def op(conn: sqlite3.Connection) -> int:
            conn.execute(self._q["insert_code"], code_params)
            return int(conn.execute(self._q["insert_function"], params).fetchone()[0])

        new_id = await self._write(op)
        return Function(**{**function_params(function), "id": new_id})

    async def get_function(self, project_id: str, package: str, name: str) -> Function | None:
        params = {"project_id": project_id, "package": package, "name": name}
        row = await self._read(self._one("get_function", params))
        return None if row is None else function_from_row(row)

    async def get_function_by_id(self, function_id: int) -> Function | None:
        row = await self._read(self._one("get_function_by_id", {"id": function_id}))
        return None if row is None else function_from_row(row)

    async def list_functions(
        self, project_id: str, package: str | None, name_like: str | None, offset: int, limit: int
    ) -> tuple[list[Function], int]:
        params = {"project_id": project_id, "package": package, "name_like": name_like}
        paged = {**params, "offset": offset, "limit": limit}

        def op(conn: sqlite3.Connection) -> tuple[list[Function], int]:
            rows = conn.execute(self._q["list_functions"], paged).fetchall()
            count = conn.execute(self._q["count_functions"], params).fetchone()[0]
            return [function_from_row(r) for r in rows], int(count)

        return await self._read(op)

    async def update_function(self, function: Function, code: bytes | None) -> None:
        params = function_params(function)
        for key in ("project_id", "package", "name", "func_id", "created_at"):
            params.pop(key)

        def op(conn: sqlite3.Connection) -> None:
            old = conn.execute(self._q["get_function_by_id"], {"id": function.id}).fetchone()
            if code is not None:
                code_params = {"digest": function.code_digest, "data": code, "size": len(code)}
                conn.execute(self._q["insert_code"], code_params)
            conn.execute(self._q["update_function"], params)
            if old is not None and old["code_digest"] != function.code_digest:
                conn.execute(self._q["delete_unused_code"], {"digest": old["code_digest"]})

        await self._write(op)

    async def delete_function(self, function: Function) -> None:
        def op(conn: sqlite3.Connection) -> None:
            params = {"function_id": function.id}
            conn.execute(self._q["delete_function_attempts"], params)
            conn.execute(self._q["delete_function_keys"], params)
            conn.execute(self._q["delete_function_invocations"], params)
            conn.execute(self._q["delete_function"], {"id": function.id})
            conn.execute(self._q["delete_unused_code"], {"digest": function.code_digest})

        await self._write(op)

    async def get_code(self, digest: str) -> bytes | None:
        row = await self._read(self._one("get_code", {"digest": digest}))
        return None if row is None else bytes(row[0])

    async def total_code_size(self, project_id: str) -> int:
        row = await self._read(self._one("total_code_size", {"project_id": project_id}))
        return int(row[0])

    async def referenced_code_digests(self) -> set[str]:
        rows = await self._read(self._all("referenced_code_digests", {}))
        return {str(row[0]) for row in rows}

    # -- invocations ----------------------------------------------------------------------

    async def insert_invocation(self, invocation: NewInvocation) -> None:
        if self._writer is None:
            raise StoreError("store is closed")
        await self._writer.submit(_Insert(invocation_params(invocation)))

    async def insert_invocation_once(self, invocation: NewInvocation, key: str, cutoff: int) -> str:
        """Insert unless ``key`` was used for this function since ``cutoff``; the request id."""
        params = invocation_params(invocation)
        key_params = idempotency_params(invocation, key, cutoff)

        def op(conn: sqlite3.Connection) -> str:
            if conn.execute(self._q["claim_idempotency_key"], key_params).fetchone() is None:
                row = conn.execute(self._q["get_idempotency_key"], key_params).fetchone()
                return str(row[0])
            conn.execute(self._q["insert_invocation"], params)
            return invocation.request_id

        return await self._write(op)

    async def list_invocations(self, query: InvocationQuery) -> InvocationPage:
        params: dict[str, Any] = {
            "function_id": query.function_id,
            "begin": query.begin,
            "end": query.end,
            "statuses": json.dumps([s.value for s in query.statuses or tuple(Status)]),
        }
        if query.request_ids:
            params["request_ids"] = json.dumps(list(query.request_ids))
            return await self._read(lambda conn: _page_of_all(conn, self._q, params, query))
        if len(query.statuses) == 1:
            params["status"] = query.statuses[0].value
            names = ("list_invocations_by_status", "count_invocations_by_status")
        elif query.statuses:
            names = ("list_active_invocations", "count_active_invocations")
        else:
            names = ("list_invocations", "count_invocations")
        return await self._read(lambda conn: self._page(conn, names, params, query))

    async def list_active_invocations(self, query: InvocationQuery) -> InvocationPage:
        return await self.list_invocations(query)

    def _page(
        self,
        conn: sqlite3.Connection,
        names: tuple[str, str],
        params: dict[str, Any],
        query: InvocationQuery,
    ) -> InvocationPage:
        paged = {**params, "limit": query.limit, "offset": query.marker}
        rows = conn.execute(self._q[names[0]], paged).fetchall()
        count = 0
        for begin, end in count_ranges(query):
            counted = {**params, "begin": begin, "end": end}
            count += conn.execute(self._q[names[1]], counted).fetchone()[0]
        invocations = [invocation_from_row(r) for r in rows]
        return InvocationPage(invocations, int(count), query.marker + len(invocations))

    async def count_by_hour(
        self, function_id: int, begin: int, end: int
    ) -> list[tuple[int, Status, int]]:
        params = {"function_id": function_id, "begin": begin, "end": end}
        rows = await self._read(self._all("count_invocations_by_hour", params))
        return [(int(r[0]), Status(r[1]), int(r[2])) for r in rows]

    async def claim_invocations(
        self, worker_id: str, now: int, limit: int, lease_until: int
    ) -> list[ClaimedInvocation]:
        return (await self.claim_due(worker_id, now, limit, 0, lease_until))[1]

    def _claim(self, conn: sqlite3.Connection, params: dict[str, Any]) -> list[Any]:
        """Waiting rows, oldest first, as many per function as its concurrency leaves room for.

        The due rows are walked lazily in the waiting index, so a claim reads about as many
        rows as it takes, and a function at its limit is skipped rather than blocking the
        functions behind it (up to ``claim_scan(limit)`` rows, as PostgreSQL's claim).
        """
        if params["limit"] <= 0:
            return []
        room: dict[int, int] = {}
        picked: list[tuple[int, str]] = []
        due = conn.execute(self._q["list_due_invocations"], params)
        try:
            for walked, (row_id, function_id, request_id) in enumerate(due):
                free = room.get(function_id)
                if free is None:
                    found = conn.execute(
                        self._q["function_room"], {"function_id": function_id}
                    ).fetchone()
                    free = 0 if found is None else int(found[0])
                if free > 0:
                    picked.append((row_id, request_id))
                    free -= 1
                room[function_id] = free
                if len(picked) >= params["limit"] or walked + 1 >= params["scan"]:
                    break
        finally:
            due.close()
        if not picked:
            return []
        ids = json.dumps([row_id for row_id, _ in picked])
        rows = conn.execute(self._q["claim_invocations"], {**params, "ids": ids}).fetchall()
        order = {request_id: n for n, (_, request_id) in enumerate(picked)}
        return sorted(rows, key=lambda row: order[row[0]])

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

        def op(conn: sqlite3.Connection) -> bool:
            conn.execute(self._q["record_attempt"], params)
            if not conn.execute(self._q["finish_invocation"], params).rowcount:
                return False
            if follow_up is not None:
                conn.execute(self._q["insert_invocation"], invocation_params(follow_up))
            return True

        return await self._write(op, durable=False)

    async def requeue_invocation(
        self, request_id: str, attempt: int, available_at: int, error_code: int, error_message: str
    ) -> bool:
        params = requeue_params(
            request_id, attempt, available_at, error_code, error_message, now_ms()
        )

        def op(conn: sqlite3.Connection) -> bool:
            conn.execute(self._q["record_attempt"], params)
            return bool(conn.execute(self._q["requeue_invocation"], params).rowcount)

        return await self._write(op, durable=False)

    async def claim_expired_invocations(
        self, worker_id: str, now: int, limit: int, lease_until: int
    ) -> list[ClaimedInvocation]:
        return (await self.claim_due(worker_id, now, 0, limit, lease_until))[0]

    async def claim_due(
        self, worker_id: str, now: int, limit: int, expired_limit: int, lease_until: int
    ) -> tuple[list[ClaimedInvocation], list[ClaimedInvocation]]:
        params = claim_params(worker_id, now, limit, lease_until)
        expired_params = {**params, "limit": expired_limit}

        def op(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            expired = []
            if expired_limit > 0:
                sql = self._q["claim_expired_invocations"]
                expired = conn.execute(sql, expired_params).fetchall()
            return expired, self._claim(conn, params)

        expired_rows, rows = await self._write(op, durable=False)
        return [claimed_from_row(r) for r in expired_rows], [claimed_from_row(r) for r in rows]

    async def list_cancel_requests(self, worker_id: str) -> list[str]:
        rows = await self._read(self._all("list_cancel_requests", {"worker_id": worker_id}))
        return [str(r[0]) for r in rows]

    async def get_invocation(self, request_id: str) -> InvocationDetail | None:
        def op(conn: sqlite3.Connection) -> InvocationDetail | None:
            params = {"request_id": request_id}
            conn.execute("BEGIN")  # one snapshot: the record and its attempts agree
            try:
                row = conn.execute(self._q["get_invocation"], params).fetchone()
                if row is None:
                    return None
                attempts = conn.execute(self._q["list_attempts"], params).fetchall()
                return detail_from_rows(row, attempts)
            finally:
                conn.execute("COMMIT")

        return await self._read(op)

    async def claim_waiting(
        self, request_id: str, function_id: int, worker_id: str, now: int, lease_until: int
    ) -> ClaimedInvocation | None:
        params = {
            **claim_params(worker_id, now, 1, lease_until),
            "request_id": request_id,
            "function_id": function_id,
        }
        row = await self._write(self._one("claim_waiting", params))
        return None if row is None else claimed_from_row(row)

    async def request_cancel(self, request_id: str, function_id: int) -> bool:
        params = {"request_id": request_id, "function_id": function_id}
        return bool(await self._write(self._exec("request_cancel", params)))

    async def upsert_async_config(self, config: AsyncConfig) -> None:
        params = config_params(config, config.last_modified)
        await self._write(self._exec("upsert_async_config", params))

    async def get_async_config(self, function_id: int) -> AsyncConfig | None:
        row = await self._read(self._one("get_async_config", {"function_id": function_id}))
        return None if row is None else config_from_row(tuple(row))

    async def delete_async_config(self, function_id: int) -> bool:
        params = {"function_id": function_id}
        return bool(await self._write(self._exec("delete_async_config", params)))

    async def list_rerunnable(
        self, function_id: int, statuses: tuple[Status, ...], begin: int, end: int, limit: int
    ) -> list[tuple[str, bytes, int]]:
        params = rerun_params(function_id, statuses, begin, end, limit)
        rows = await self._read(self._all("list_rerunnable", params))
        return [(str(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    async def count_waiting(self, function_id: int) -> int:
        row = await self._read(self._one("count_waiting", {"function_id": function_id}))
        return int(row[0])

    async def purge(self, cutoff: int, key_cutoff: int, limit: int) -> int:
        """Delete up to ``limit`` records that ended before ``cutoff``, with their history."""
        params = {"cutoff": cutoff, "limit": limit}

        def op(conn: sqlite3.Connection) -> int:
            conn.execute(self._q["purge_attempts"], params)
            deleted = conn.execute(self._q["purge_invocations"], params).rowcount
            conn.execute(self._q["purge_idempotency_keys"], {"cutoff": key_cutoff})
            conn.execute(self._q["delete_expired_tokens"], {"now": now_ms()})
            return int(deleted)

        return await self._write(op)

    async def renew_leases(self, worker_id: str, lease_until: int) -> int:
        params = {"worker_id": worker_id, "lease_until": lease_until}
        return await self._write(self._exec("renew_leases", params), durable=False)

    async def list_expired_leases(self, now: int, limit: int) -> list[ClaimedInvocation]:
        rows = await self._read(self._all("list_expired_leases", {"now": now, "limit": limit}))
        return [claimed_from_row(r) for r in rows]

    async def next_available_at(self) -> int | None:
        row = await self._read(self._one("next_available_at", {}))
        return None if row[0] is None else int(row[0])

    async def count_by_status(self, function_id: int) -> dict[Status, int]:
        rows = await self._read(self._all("count_by_status", {"function_id": function_id}))
        return {Status(r[0]): int(r[1]) for r in rows}


def _page_of_all(
    conn: sqlite3.Connection, q: dict[str, str], params: dict[str, Any], query: InvocationQuery
) -> InvocationPage:
    """Requests named by id are few (at most ten): fetch them all, then page in memory."""
    rows = conn.execute(q["list_invocations_by_ids"], params).fetchall()
    matches = [invocation_from_row(r) for r in rows]
    page = matches[query.marker : query.marker + query.limit]
    return InvocationPage(page, len(matches), query.marker + len(page))
