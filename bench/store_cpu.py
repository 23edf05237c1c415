"""CPU per record in the store itself: accepts, and claims with their outcomes, per backend.

    python -m bench.store_cpu [--rows 20000] [--backend sqlite,postgres] [--small]

Rates depend on the machine and on what else runs on it; CPU time per record much less, so this
is the figure to compare two versions of the store on a shared machine. Through the store's own
operations, as the service calls them (no HTTP, no instances):

- **accept**: ``rows`` calls of ``insert_invocation`` from 64 concurrent tasks (the service's
  accept path: concurrent accepts share a batch);
- **claim + finish**: every row claimed by ``claim_due`` in batches of 4 and of 16 (a busy
  worker's claims are small: a freed slot is refilled within 2 ms) and each batch's outcomes
  written concurrently (``finish_invocation``, which PostgreSQL batches).

For each, the CPU of this process (the client: the service's side, psycopg or SQLite's writer
thread included) and, on PostgreSQL, of the server — the postmaster and every process under
it, ended backends included — divided by the rows. The server must run on this machine and
serve nothing else meanwhile (the CI database is fine when no test runs); its data directory's
``postmaster.pid`` names the postmaster. ``--small`` runs a tiny version for the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg

from bench.procs import PG_BASE_URL, schema_url
from bench.service import TICKS, cpu_ticks, descendants
from openfgs.models import Function, NewInvocation, Outcome, Status, new_request_id, now_ms
from openfgs.store.base import Store
from openfgs.store.postgres import PostgresStore
from openfgs.store.sqlite import SqliteStore

ACCEPT_CONCURRENCY = 64
CLAIM_BATCHES = (4, 16)
PAYLOAD = b'{"order": 12345, "items": ["a", "b"]}'


def postmaster_pid() -> int:
    """The local PostgreSQL server's postmaster, from its data directory."""
    with psycopg.connect(PG_BASE_URL) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    return int((Path(row[0]) / "postmaster.pid").read_text().split()[0])


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the server so far: the postmaster, its live processes, the ended ones."""
    pids = [postmaster] + [pid for pid, _ in descendants(postmaster)]
    return sum(cpu_ticks(pid, reaped=True) or 0 for pid in pids) / TICKS


def a_function(function_id: int = 0) -> tuple[Function, bytes]:
    now = now_ms()
    code = b"def handler(event, context):\n    return event\n"
    digest = hashlib.sha512(code).hexdigest()
    function = Function(
        id=function_id,
        project_id="bench",
        package="default",
        name="store-cpu",
        func_id=str(uuid.uuid4()),
        runtime="Python3.10",
        handler="index.handler",
        memory_size=128,
        timeout=3,
        code_type="inline",
        code_digest=digest,
        code_size=len(code),
        created_at=now,
        last_modified=now,
        concurrency=1_000_000,
    )
    return function, code


class Meter:
    """CPU of this process and (PostgreSQL) of the server between ``start`` and ``stop``."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster

    def read(self) -> tuple[float, float, float]:
        server = server_cpu(self.postmaster) if self.postmaster else 0.0
        return time.process_time(), server, time.monotonic()

    async def measure(self, rows: int, work: Callable[[], Awaitable[int]]) -> dict[str, float]:
        client0, server0, wall0 = self.read()
        done = await work()
        client1, server1, wall1 = self.read()
        if done != rows:
            raise RuntimeError(f"{done} rows of {rows} went through")
        figures = {
            "rows_per_second": rows / (wall1 - wall0),
            "client_us_per_row": 1e6 * (client1 - client0) / rows,
        }
        if self.postmaster:
            figures["server_us_per_row"] = 1e6 * (server1 - server0) / rows
            figures["total_us_per_row"] = (
                figures["client_us_per_row"] + figures["server_us_per_row"]
            )
        return figures


async def accept_rows(store: Store, function_id: int, rows: int) -> int:
    gate = asyncio.Semaphore(ACCEPT_CONCURRENCY)

    async def one() -> None:
        async with gate:
            now = now_ms()
            invocation = NewInvocation(
                new_request_id(), function_id, "latest", PAYLOAD, now, now, now + 3_600_000
            )
            await store.insert_invocation(invocation)

    await asyncio.gather(*(one() for _ in range(rows)))
    return rows


async def claim_and_finish(store: Store, batch: int) -> int:
    done = 0
    while True:
        now = now_ms()
        _, claimed = await store.claim_due("bench-worker", now, batch, 0, now + 60_000)
        if not claimed:
            return done
        ended = await asyncio.gather(
            *(
                store.finish_invocation(c.request_id, c.attempt, Outcome(Status.SUCCESS), now)
                for c in claimed
            )
        )
        done += sum(ended)


async def measure_backend(backend: str, rows: int) -> dict[str, dict[str, float]]:
    directory = Path(tempfile.mkdtemp(prefix="openfgs-store-cpu-"))
    schema = f"store_cpu_{uuid.uuid4().hex[:12]}"
    store: Store
    postmaster = None
    if backend == "postgres":
        postmaster = postmaster_pid()
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        store = PostgresStore(schema_url(schema))
    else:
        store = SqliteStore(directory / "openfgs.db")
    meter = Meter(postmaster)
    results: dict[str, dict[str, float]] = {}
    try:
        await store.open()
        function = await store.insert_function(*a_function())
        await accept_rows(store, function.id, 200)  # warm: prepared statements, pages
        await claim_and_finish(store, 16)
        results["accept"] = await meter.measure(rows, lambda: accept_rows(store, function.id, rows))
        await claim_and_finish(store, rows)  # the accepted rows out of the way
        for batch in CLAIM_BATCHES:
            await accept_rows(store, function.id, rows)
            results[f"claim+finish, batches of {batch}"] = await meter.measure(
                rows, functools.partial(claim_and_finish, store, batch)
            )
    finally:
        await store.close()
        if backend == "postgres":
            with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(directory, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_cpu", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per measurement (20000)")
    parser.add_argument("--backend", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--small", action="store_true", help="a tiny run: checks it works")
    args = parser.parse_args(argv)
    rows = 200 if args.small else args.rows
    backends = args.backend.split(",")
    for backend in backends:
        if backend not in ("sqlite", "postgres"):
            parser.error(f"unknown backend {backend!r}")
    for backend in backends:
        results = asyncio.run(measure_backend(backend, rows))
        for what, figures in results.items():
            line = ", ".join(f"{name} {value:,.0f}" for name, value in figures.items())
            print(f"{backend}: {what}: {line}")
        print(json.dumps({"backend": backend, "rows": rows, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
