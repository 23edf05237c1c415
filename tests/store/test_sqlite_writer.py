"""The SQLite writer thread: batches of inserts stored as given, a bad row failing alone, fsync
only when owed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from openfgs.errors import ConflictError
from openfgs.models import Function, NewInvocation
from openfgs.store.sqlite import SqliteStore

from .test_store import claim, make_function

pytestmark = pytest.mark.anyio
BASE = 1_700_000_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "openfgs.db")
    await store.open()
    yield store
    await store.close()


async def add_function(store: SqliteStore) -> Function:
    function, code = make_function("hello")
    return await store.insert_function(function, code)


def invocation(function_id: int, request_id: str | None = None) -> NewInvocation:
    return NewInvocation(
        request_id=request_id or str(uuid.uuid4()),
        function_id=function_id,
        version="latest",
        payload=b"{}",
        start_time=BASE,
        available_at=BASE,
        expires_at=BASE + 10**9,
    )


class WriterGate:
    """Holds the writer thread inside one operation, so that what is queued meanwhile is
    taken as one batch when the gate opens."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sync_modes: list[int] = []

    def op(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        assert self.release.wait(30)

    def record_sync(self, conn: sqlite3.Connection) -> None:
        self.sync_modes.append(conn.execute("PRAGMA synchronous").fetchone()[0])


async def queue_behind_gate(store: SqliteStore, gate: WriterGate, *writes: Any) -> list[Any]:
    held = asyncio.ensure_future(store._in_writer(gate.op))
    assert await asyncio.to_thread(gate.entered.wait, 30)
    tasks = [asyncio.ensure_future(write) for write in writes]
    await asyncio.sleep(0)  # every write is queued before the gate opens
    gate.release.set()
    await held
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_duplicate_in_a_batch_of_inserts_fails_alone(store: SqliteStore) -> None:
    function = await add_function(store)
    existing = invocation(function.id)
    await store.insert_invocation(existing)
    fresh = [invocation(function.id) for _ in range(3)]
    duplicate = invocation(function.id, existing.request_id)

    outcomes = await queue_behind_gate(
        store,
        WriterGate(),
        store.insert_invocation(fresh[0]),
        store.insert_invocation(duplicate),
        store.insert_invocation(fresh[1]),
        store.insert_invocation(fresh[2]),
    )

    assert outcomes[0] is None and outcomes[2] is None and outcomes[3] is None
    assert isinstance(outcomes[1], ConflictError)
    stored = await store.count_waiting(function.id)
    assert stored == 4  # the existing row and the three fresh ones


async def test_a_batch_commits_with_fsync_only_when_a_write_in_it_is_durable(
    store: SqliteStore,
) -> None:
    function = await add_function(store)
    await store.insert_invocation(invocation(function.id))
    bookkeeping = WriterGate()
    # Claims and lease renewals alone: the batch commits without waiting for the disk.
    await queue_behind_gate(
        store,
        bookkeeping,
        claim(store, "w1", BASE, 1, BASE + 1000),
        store._in_writer(bookkeeping.record_sync, durable=False),
    )
    # An accept in the batch: every write in it waits for the fsync.
    with_accept = WriterGate()
    await queue_behind_gate(
        store,
        with_accept,
        store.renew_leases("w1", BASE + 2000),
        store.insert_invocation(invocation(function.id)),
        store._in_writer(with_accept.record_sync, durable=False),
    )
    normal, full = 1, 2  # PRAGMA synchronous values
    assert bookkeeping.sync_modes == [normal]
    assert with_accept.sync_modes == [full]


def stored_rows(store: SqliteStore, function_id: int) -> dict[str, tuple[Any, ...]]:
    """Each row of ``function_id`` as the database holds it, by request id."""
    conn = sqlite3.connect(store.path)
    try:
        found = conn.execute(
            "SELECT request_id, version, status, payload, start_time, available_at, expires_at,"
            " max_attempts, depth, rerun_of FROM invocations WHERE function_id = ?",
            (function_id,),
        ).fetchall()
    finally:
        conn.close()
    return {row[0]: row[1:] for row in found}


async def test_a_batch_of_inserts_stores_every_row_as_given(store: SqliteStore) -> None:
    function = await add_function(store)
    # 700 rows in one batch: multi-row statements of 512, 128, 32, 16, 8 and 4 rows.
    rows = [
        NewInvocation(
            request_id=str(uuid.uuid4()),
            function_id=function.id,
            version=f"v{n % 3}",
            payload=bytes([n % 256, 0, 255]) * (n % 5),  # binary, NULs, and empty ones
            start_time=BASE + n,
            available_at=BASE + 2 * n,
            expires_at=BASE + 10**9 + n,
            max_attempts=1 + n % 4,
            depth=n % 2,
            rerun_of=str(uuid.uuid4()) if n % 7 == 0 else None,
        )
        for n in range(700)
    ]

    outcomes = await queue_behind_gate(
        store, WriterGate(), *(store.insert_invocation(row) for row in rows)
    )

    assert outcomes == [None] * len(rows)
    stored = stored_rows(store, function.id)
    assert stored == {
        row.request_id: (
            row.version,
            "WAIT",
            row.payload,
            row.start_time,
            row.available_at,
            row.expires_at,
            row.max_attempts,
            row.depth,
            row.rerun_of,
        )
        for row in rows
    }


async def test_a_bad_row_in_a_later_statement_of_a_batch_fails_alone(store: SqliteStore) -> None:
    function = await add_function(store)
    existing = invocation(function.id)
    await store.insert_invocation(existing)
    # 40 rows: statements of 32 and 8; the duplicate is in the second, after the first ran.
    fresh = [invocation(function.id) for _ in range(39)]
    batch = [*fresh[:35], invocation(function.id, existing.request_id), *fresh[35:]]

    outcomes = await queue_behind_gate(
        store, WriterGate(), *(store.insert_invocation(row) for row in batch)
    )

    assert isinstance(outcomes[35], ConflictError)
    assert [o for n, o in enumerate(outcomes) if n != 35] == [None] * 39
    assert set(stored_rows(store, function.id)) == {
        existing.request_id,
        *(row.request_id for row in fresh),
    }
