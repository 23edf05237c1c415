"""SQLite backend: one writer thread with group commit, a few reader threads, WAL.

The operations are :class:`~openfgs.store.common.SqlStore`'s; this module runs their scripts
(reads on the reader threads, writes on the writer) and claims in its own way.

Every write is queued to the writer thread, which takes all writes waiting at that moment, runs
each inside its own savepoint of one transaction (plain inserts all together, in a few
multi-row statements) and commits once: a durable write (``synchronous=FULL``) is on disk
when its coroutine returns, and concurrent writers share the fsync. Claims and outcomes
commit without the fsync (see :class:`_Writer`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from openfgs.errors import ConflictError, StoreError
from openfgs.models import ClaimedInvocation, NewInvocation, now_ms
from openfgs.store.common import Kind, Script, SqlStore, Step, claim_params, invocation_params
from openfgs.store.queries import load_queries, migration_files

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
_MAX_BATCH = 1024
_READERS = 4
# The most rows one multi-row insert takes: at 10 parameters a row, well below SQLite's limit
# of 32,766 parameters a statement.
_MAX_ROWS_A_STATEMENT = 512


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
        # A migration may rebuild a table others refer to (SQLite's way to change a
        # constraint): foreign keys are off while it runs (the pragma is ignored inside a
        # transaction) and checked before it commits.
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                conn.execute(statement)
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.IntegrityError(f"migration {name} breaks foreign keys: {broken}")
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (number, name, now_ms()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("PRAGMA foreign_keys=ON")
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
    """A queued plain insert: the writer runs all of a batch's inserts together
    (:class:`_RowsInserts`)."""

    __slots__ = ("params",)

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params


_Job = tuple[Op | _Insert, "asyncio.Future[Any]", bool]


class _RowsInserts:
    """One ``INSERT … VALUES (…)`` statement made into statements of many rows each.

    Rows go in as few statements as the batch's size in powers of two (30 rows: 16, 8, 4 and
    2), so a handful of texts are prepared once and kept in the connection's statement cache.
    Each statement is one step of SQLite's, with the GIL released once: ``executemany`` takes a
    step, and so gives up and takes back the GIL, for every row, and while the event loop keeps
    the GIL busy each taking back may wait for the interpreter's switch interval.
    """

    def __init__(self, sql: str) -> None:
        head, values_kw, values = sql.strip().rstrip(";").rpartition("VALUES")
        values = values.strip()
        if not (values_kw and values.startswith("(") and values.endswith(")")):
            raise ValueError("an insert ending in one VALUES (…) row is needed")
        self._head = head
        self._names = re.findall(r":(\w+)", values)
        self._row = re.sub(r":\w+", "?", values)
        self._texts: dict[int, str] = {}

    def run(self, conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
        names = self._names
        at = 0
        while at < len(rows):
            size = 1 << (min(len(rows) - at, _MAX_ROWS_A_STATEMENT).bit_length() - 1)
            text = self._texts.get(size)
            if text is None:
                text = self._texts[size] = f"{self._head}VALUES " + ", ".join([self._row] * size)
            conn.execute(text, [row[name] for row in rows[at : at + size] for name in names])
            at += size


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
        self._inserts = _RowsInserts(insert_sql)
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
        """All plain inserts together; when that fails, one by one so only the bad row fails."""
        rows = [batch[i][0].params for i in indexes]  # type: ignore[union-attr]
        conn.execute("SAVEPOINT inserts")
        try:
            self._inserts.run(conn, rows)
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


def run(queries: dict[str, str], work: Step | Script[T], conn: sqlite3.Connection) -> Any:
    """Run a step, or a script's steps, on ``conn`` (in the thread that owns it)."""
    if isinstance(work, Step):
        return _answer(conn.execute(queries[work.name], work.params), work.kind)
    answer: Any = None
    try:
        while True:
            kind, name, params = work.send(answer)
            answer = _answer(conn.execute(queries[name], params), kind)
    except StopIteration as done:  # the script returned
        return done.value


def _answer(cursor: sqlite3.Cursor, kind: Kind) -> Any:
    if kind is Kind.ONE:
        return cursor.fetchone()
    if kind is Kind.ALL:
        return cursor.fetchall()
    return cursor.rowcount


class SqliteStore(SqlStore):
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
        self._open_readers()

    def _open_readers(self) -> None:
        self._readers = ThreadPoolExecutor(_READERS, thread_name_prefix="openfgs-sqlite-reader")

    def _reader_connection(self) -> sqlite3.Connection:
        """A reader thread's connection (a front process opens it read-only)."""
        return connect(self.path)

    def _connect_read_only(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=10,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

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

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """Nothing to do: the embedded store is written by this process alone."""

    # -- the primitives -------------------------------------------------------------------

    async def _read(self, work: Step | Script[T], snapshot: bool = False) -> Any:
        if self._readers is None:
            raise StoreError("store is closed")
        op = functools.partial(_snapshot if snapshot else run, self._q, work)
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, self._read_in_thread, op
        )

    async def _write(self, work: Step | Script[T], durable: bool = True) -> Any:
        if self._writer is None:
            raise StoreError("store is closed")
        return await self._writer.submit(functools.partial(run, self._q, work), durable)

    @staticmethod
    def _array(values: list[str]) -> Any:
        return json.dumps(values)

    async def _in_writer(self, op: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """Run ``op`` in the writer's next transaction; ``durable``: fsynced before it returns."""
        if self._writer is None:
            raise StoreError("store is closed")
        result: T = await self._writer.submit(op, durable)
        return result

    def _read_in_thread(self, op: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._reader_connection()
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        try:
            return op(conn)
        except sqlite3.Error as exc:
            raise _wrap(exc) from exc

    # -- what the embedded store does its own way -----------------------------------------

    async def insert_invocation(self, invocation: NewInvocation) -> None:
        await self.submit_insert(invocation)

    def submit_insert(self, invocation: NewInvocation) -> asyncio.Future[None]:
        """Queue an accepted row to the writer; the future is done once it is on disk."""
        if self._writer is None:
            raise StoreError("store is closed")
        future: asyncio.Future[None] = self._writer.submit(_Insert(invocation_params(invocation)))
        return future

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

        expired_rows, rows = await self._in_writer(op, durable=False)
        return (
            [ClaimedInvocation.from_row(r) for r in expired_rows],
            [ClaimedInvocation.from_row(r) for r in rows],
        )

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
            for walked, row in enumerate(due):
                function_id = row["function_id"]
                free = room.get(function_id)
                if free is None:
                    found = conn.execute(
                        self._q["function_room"], {"function_id": function_id}
                    ).fetchone()
                    free = 0 if found is None else int(found["room"])
                if free > 0:
                    picked.append((row["id"], row["request_id"]))
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
        return sorted(rows, key=lambda row: order[row["request_id"]])


def _snapshot(queries: dict[str, str], work: Step | Script[T], conn: sqlite3.Connection) -> Any:
    conn.execute("BEGIN")  # one snapshot: every read of the script sees the same database
    try:
        return run(queries, work, conn)
    finally:
        conn.execute("COMMIT")
