"""The query workload: a store of millions of records, built in bulk, queried through the API.

The store is made the way openfgs makes it (a ``SqliteStore`` / ``PostgresStore`` opened once
applies the schema; the credential and the 50 functions go through the domain's own
operations), then the invocation rows are inserted in bulk straight into that schema, made by
the database itself: one ``INSERT … SELECT`` over a generated series per million rows
(SQLite: a recursive CTE inside one transaction without journal; PostgreSQL:
``generate_series``). That is faster than ``executemany`` or ``COPY`` fed from Python, whose
row generation alone costs 5–10 µs a row. The secondary indexes of ``invocations`` (and on
PostgreSQL the unique constraint on ``request_id`` and the NOTIFY trigger) are dropped for the
load and made again afterwards from their own definitions: one sort beats 10 M inserts.

Records: ``rows`` over 50 functions (round robin), ``start_time`` evenly over the 7 days that
end when the build started; records of the last hour are WAIT 5 % / RUNNING 5 % / SUCCESS
80 % / FAIL 7 % / DISCARD 3 %, older ones SUCCESS 90 % / FAIL 7 % / DISCARD 3 %.

The built SQLite file is cached under ``bench/results/`` with a JSON file describing it; a
cache is used only for the same size, generator version and schema migrations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.loadgen import Client, run
from bench.procs import PG_BASE_URL, RESULTS, Resources, schema_url
from bench.service import HANDLERS, REGION, Service, start_service
from bench.stats import percentile
from bench.workloads import Sample, Scale, _accept, _end_to_end
from openfgs.auth.service import new_credential
from openfgs.client import ApiFailure, FunctionGraphClient
from openfgs.counting import ROLL_UP_BATCH, ROLL_UP_SPAN, SETTLE_MS
from openfgs.functions import FunctionRegistry
from openfgs.models import Credential
from openfgs.schemas import CreateFunctionBody, FuncCode
from openfgs.store.base import Store
from openfgs.store.postgres import PostgresStore
from openfgs.store.queries import migration_files
from openfgs.store.sqlite import SqliteStore

GENERATOR_VERSION = 2
FUNCTIONS = 50
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# Records of the last two minutes are in flight as in a service whose queue keeps up: one in
# ten of them WAIT or RUNNING (until generator 2, those of the whole last hour).
IN_FLIGHT_MS = 120_000
WINDOW_MS = 7 * DAY_MS
CHUNK = 1_000_000
CACHED_POSTGRES_ROWS = 1_000_000  # smaller PostgreSQL stores are built in each run
COLUMNS = (
    "request_id",
    "function_id",
    "version",
    "status",
    "payload",
    "start_time",
    "end_time",
    "error_code",
    "error_message",
    "attempt",
    "available_at",
    "expires_at",
    "lease_until",
    "worker_id",
    "max_attempts",
    "attempt_started_at",
)
RECENT = (("WAIT", 0.05), ("RUNNING", 0.10), ("SUCCESS", 0.90), ("FAIL", 0.97), ("DISCARD", 1.0))
OLDER = (("SUCCESS", 0.90), ("FAIL", 0.97), ("DISCARD", 1.0))
ERRORS = {"FAIL": (4200, "Exception: order 12345 failed"), "DISCARD": (4211, "discarded")}


@dataclass
class BuiltStore:
    """What a built query store holds, and how to open a service on it."""

    backend: str
    rows: int
    requested_rows: int
    built_at: int  # ms: start_time of the newest record
    build_seconds: float
    project_id: str
    access_key: str
    secret_key: str
    function_names: list[str]
    database_url: str
    roll_up_seconds: float = 0.0  # of build_seconds
    cached: bool = False

    @property
    def credential(self) -> Credential:
        return Credential(self.project_id, self.access_key, self.secret_key)


def _schema_digest(dialect: str) -> str:
    text = "".join(f"{n}:{name}:{sql}" for n, name, sql in migration_files(dialect))
    return hashlib.sha256(f"{GENERATOR_VERSION}:{text}".encode()).hexdigest()[:16]


# -- rows -------------------------------------------------------------------------------------

# Rows are made inside the database, one statement per chunk of the series i = start … stop-1:
# start_time advances evenly over the window, the function is i mod 50, the status is drawn
# with the weights in the module docstring and the request id looks like a random UUID v4. The
# "random" numbers are multiplicative hashes of i, so every expression is deterministic (a
# database may evaluate an expression once per use) and the first eight hex digits are a
# bijection of i, which keeps request ids unique. Parameters: start, stop, total, first
# (oldest start_time), window, recent (start of the last hour), fid (the first of the 50
# consecutive function ids).
_HASHES = (2654435761, 2246822519, 3266489917, 668265263, 374761393)


def chunk_sql(dialect: str) -> str:
    """The INSERT … SELECT that makes one chunk of rows in ``dialect``."""
    pg = dialect == "postgres"

    def param(name: str) -> str:
        return f"%({name})s::bigint" if pg else f":{name}"

    def mod(x: str, n: int) -> str:
        return f"mod({x}, {n})" if pg else f"(({x}) % {n})"

    def hashed(k: int, bits: int) -> str:
        return mod(f"i * {_HASHES[k]}", 2**bits)

    pick = f"({hashed(1, 32)} * 1000) / {2**32}"
    status = f"""CASE WHEN st >= {param("recent")} THEN
            CASE WHEN pick < 50 THEN 'WAIT' WHEN pick < 100 THEN 'RUNNING'
                 WHEN pick < 900 THEN 'SUCCESS' WHEN pick < 970 THEN 'FAIL' ELSE 'DISCARD' END
        ELSE CASE WHEN pick < 900 THEN 'SUCCESS' WHEN pick < 970 THEN 'FAIL' ELSE 'DISCARD' END
        END"""
    parts = [hashed(0, 32), hashed(2, 16), hashed(3, 12), hashed(4, 12), hashed(1, 48)]
    request_id = (
        f"lpad(to_hex({parts[0]}), 8, '0') || '-' || lpad(to_hex({parts[1]}), 4, '0') || '-4' "
        f"|| lpad(to_hex({parts[2]}), 3, '0') || '-a' || lpad(to_hex({parts[3]}), 3, '0') "
        f"|| '-' || lpad(to_hex({parts[4]}), 12, '0')"
        if pg
        else f"printf('%08x-%04x-4%03x-a%03x-%012x', {', '.join(parts)})"
    )
    payload = "decode('7b7d', 'hex')" if pg else "X'7B7D'"
    series = f"generate_series({param('start')}, {param('stop')} - 1) AS seq(i)" if pg else "seq"
    recursive = (
        ""
        if pg
        else "WITH RECURSIVE seq(i) AS "
        "(SELECT :start UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < :stop)\n"
    )
    return f"""{recursive}INSERT INTO invocations ({", ".join(COLUMNS)})
SELECT {request_id}, {param("fid")} + {mod("i", 50)}, 'latest', status, {payload}, st,
    CASE WHEN status IN ('WAIT', 'RUNNING') THEN NULL ELSE st + 3 + {mod("i", 50)} END,
    CASE status WHEN 'FAIL' THEN 4200 WHEN 'DISCARD' THEN 4211 ELSE 0 END,
    CASE status WHEN 'FAIL' THEN 'Exception: order 12345 failed'
                WHEN 'DISCARD' THEN 'discarded' ELSE '' END,
    CASE status WHEN 'WAIT' THEN 0 ELSE 1 END,
    st, st + 3600000,
    CASE status WHEN 'RUNNING' THEN st + 60000 END,
    CASE status WHEN 'WAIT' THEN NULL ELSE 'bench:1' END,
    1,
    CASE status WHEN 'WAIT' THEN NULL ELSE st + 1 END
FROM (
    SELECT i, st, {status} AS status
    FROM (
        SELECT i, {param("first")} + (i * {param("window")}) / {param("total")} AS st,
               {pick} AS pick
        FROM {series}
    ) AS r
) AS s"""


def chunk_params(start: int, stop: int, total: int, built_at: int, fid: int) -> dict[str, int]:
    return {
        "start": start,
        "stop": stop,
        "total": total,
        "first": built_at - WINDOW_MS,
        "window": WINDOW_MS,
        "recent": built_at - IN_FLIGHT_MS,
        "fid": fid,
    }


async def _prepare(store: Store, credential: Credential) -> list[tuple[int, str]]:
    """Apply the schema, store the credential, create the functions; ``(id, name)`` pairs."""
    await store.open()
    try:
        await store.insert_credential(credential, int(time.time() * 1000))
        registry = FunctionRegistry(store, REGION)
        code = base64.b64encode(HANDLERS.encode()).decode()
        made = []
        for n in range(FUNCTIONS):
            body = CreateFunctionBody(
                func_name=f"orders-{n:02d}",
                package="default",
                runtime="Python3.9",
                timeout=30,
                handler="index.noop",
                memory_size=128,
                code_type="inline",
                func_code=FuncCode(file=code),
            )
            function = await registry.create(credential.project_id, body)
            made.append((function.id, function.name))
        return made
    finally:
        await store.close()


async def _roll_up(store: Store, now: int) -> float:
    """Roll the history's settled minutes up as the workers of a service that ran through it
    would have (openfgs.counting), the way they do it; the seconds it took."""
    began = time.monotonic()
    await store.open()
    try:
        while await store.roll_up_minutes(now, SETTLE_MS, ROLL_UP_BATCH, ROLL_UP_SPAN):
            pass
    finally:
        await store.close()
    return time.monotonic() - began


# -- SQLite -----------------------------------------------------------------------------------


def _sqlite_cache(rows: int) -> tuple[Path, Path]:
    stem = f"query-sqlite-{rows}-{_schema_digest('sqlite')}"
    return RESULTS / f"{stem}.db", RESULTS / f"{stem}.json"


def build_sqlite(rows: int, budget: float, use_cache: bool = True) -> BuiltStore:
    """The SQLite store of ``rows`` records (cached under bench/results/)."""
    path, meta_path = _sqlite_cache(rows)
    if use_cache and path.exists() and meta_path.exists():
        built = BuiltStore(**json.loads(meta_path.read_text()))
        built.cached = True
        return built
    RESULTS.mkdir(parents=True, exist_ok=True)
    for old in RESULTS.glob(f"query-sqlite-{rows}-*"):
        old.unlink()  # a store of this size for an older schema: they are gigabytes
    began = time.monotonic()
    building = path.with_suffix(".building")
    credential = new_credential()
    functions = asyncio.run(_prepare(SqliteStore(building), credential))
    built_at = int(time.time() * 1000)
    fid = _first_id(functions)
    conn = sqlite3.connect(building, isolation_level=None)
    try:
        # A half-built file is thrown away, so the load needs no journal and no fsync.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-2000000")
        conn.execute("PRAGMA temp_store=MEMORY")
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'invocations' AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("BEGIN")
        done = 0
        while done < rows and time.monotonic() - began < budget * 0.6:
            stop = min(done + CHUNK, rows)
            conn.execute(chunk_sql("sqlite"), chunk_params(done, stop, rows, built_at, fid))
            done = stop
        conn.execute("COMMIT")
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    shutil.move(building, path)
    roll_up_seconds = asyncio.run(_roll_up(SqliteStore(path), built_at))
    built = BuiltStore(
        backend="sqlite",
        rows=done,
        requested_rows=rows,
        built_at=built_at,
        build_seconds=time.monotonic() - began,
        project_id=credential.project_id,
        access_key=credential.access_key,
        secret_key=credential.secret_key,
        function_names=[name for _, name in functions],
        database_url=f"sqlite:///{path}",
        roll_up_seconds=roll_up_seconds,
    )
    if done == rows:  # a store cut short by the time box is used once, not cached
        meta_path.write_text(json.dumps(asdict(built)))
    return built


# -- PostgreSQL -------------------------------------------------------------------------------


def _first_id(functions: list[tuple[int, str]]) -> int:
    ids = sorted(fid for fid, _ in functions)
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise RuntimeError(f"function ids are not consecutive: {ids}")
    return ids[0]


def _postgres_cache(rows: int) -> tuple[str, Path]:
    """The database a store of ``rows`` records is kept in between runs, and its description."""
    return (
        f"openfgs_query_{rows}",
        RESULTS / f"query-postgres-{rows}-{_schema_digest('postgres')}.json",
    )


def _database_url(database: str) -> str:
    base, _, _ = PG_BASE_URL.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}"


def _database_exists(database: str) -> bool:
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        return found.fetchone() is not None


def build_postgres(res: Resources, rows: int, budget: float, use_cache: bool = True) -> BuiltStore:
    """The PostgreSQL store of ``rows`` records. From ``CACHED_POSTGRES_ROWS`` on, a database
    of its own kept between runs (``openfgs_query_<rows>``, described by a JSON file under
    bench/results/), made again when missing or made for another schema; a build cut short by
    the time box is described nowhere, so it is used once. Smaller stores: a fresh schema of
    the test database, each run."""
    if rows < CACHED_POSTGRES_ROWS or not use_cache:
        return _build_in_schema(res, rows, budget)
    database, meta_path = _postgres_cache(rows)
    if meta_path.exists() and _database_exists(database):
        built = BuiltStore(**json.loads(meta_path.read_text()))
        built.cached = True
        return built
    return build_postgres_database(rows, budget)


def build_postgres_database(rows: int, budget: float) -> BuiltStore:
    """Build the cached database of ``rows`` records (dropping an older one of that size)."""
    database, meta_path = _postgres_cache(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for old in RESULTS.glob(f"query-postgres-{rows}-*.json"):
        old.unlink()
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    built = _load_postgres(_database_url(database), rows, budget)
    if built.rows == rows:
        meta_path.write_text(json.dumps(asdict(built)))
    return built


def _build_in_schema(res: Resources, rows: int, budget: float) -> BuiltStore:
    return _load_postgres(schema_url(res.new_schema("query")), rows, budget)


def _load_postgres(url: str, rows: int, budget: float) -> BuiltStore:
    """Apply the schema and fill ``invocations`` with ``rows`` records made by the database.

    ``invocations`` is partitioned by day (migration 0009): the day partitions of the window
    are made first, so every row is routed to its day, none to the DEFAULT partition. The
    indexes are dropped on the partitioned table (which drops every partition's) and made
    again afterwards, each partition's in turn."""
    began = time.monotonic()
    credential = new_credential()
    functions = asyncio.run(_prepare(PostgresStore(url, pool_size=2), credential))
    built_at = int(time.time() * 1000)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "SELECT openfgs_ensure_partitions(%s, %s, 60000)",
            ((built_at - WINDOW_MS) // DAY_MS, built_at // DAY_MS),
        )
        schema = conn.execute("SELECT current_schema()").fetchone()
        assert schema is not None
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'invocations' AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = 'invocations'::regclass)",
            (schema[0],),
        ).fetchall()
        unique = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'invocations'::regclass AND contype = 'u'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        for name, _ in unique:
            conn.execute(f"ALTER TABLE invocations DROP CONSTRAINT {name}")
        # The NOTIFY trigger fires per WAIT row; loading history is not work to wake for.
        conn.execute("ALTER TABLE invocations DISABLE TRIGGER USER")
        fid = _first_id(functions)
        done = 0
        while done < rows and time.monotonic() - began < budget * 0.5:
            stop = min(done + CHUNK, rows)
            conn.execute(chunk_sql("postgres"), chunk_params(done, stop, rows, built_at, fid))
            done = stop
        for name, definition in unique:
            conn.execute(f"ALTER TABLE invocations ADD CONSTRAINT {name} {definition}")
        for _, definition in indexes:
            # A partitioned table's index is listed "ON ONLY" the parent, which would make an
            # empty, invalid index: made on the whole table, every partition gets its own.
            conn.execute(definition.replace(" ON ONLY ", " ON ", 1))
        conn.execute("ALTER TABLE invocations ENABLE TRIGGER USER")
        conn.execute("VACUUM ANALYZE invocations")  # what autovacuum does after a bulk load
    roll_up_seconds = asyncio.run(_roll_up(PostgresStore(url, pool_size=2), built_at))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE invocation_minutes")
    return BuiltStore(
        backend="postgres",
        rows=done,
        requested_rows=rows,
        built_at=built_at,
        build_seconds=time.monotonic() - began,
        project_id=credential.project_id,
        access_key=credential.access_key,
        secret_key=credential.secret_key,
        function_names=[name for _, name in functions],
        database_url=url,
        roll_up_seconds=roll_up_seconds,
    )


# -- the queries ------------------------------------------------------------------------------


def _fmt(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def query_shapes(built: BuiltStore) -> dict[str, dict[str, str]]:
    """The three list queries as query parameters.

    ``default`` sends none (FunctionGraph's defaults: the last hour, marker 0, limit 100) on a
    store built in this run; a store reused from the cache is asked for its own last hour
    explicitly (``query_begin_time``/``query_end_time``), which runs the same SQL.
    """
    fresh = not built.cached and time.time() * 1000 - built.built_at < 900_000
    default = {} if fresh else {"query_begin_time": _fmt(built.built_at - HOUR_MS + 1000)}
    if not fresh:
        default["query_end_time"] = _fmt(built.built_at)
    week = {
        "query_begin_time": _fmt(built.built_at - WINDOW_MS),
        "query_end_time": _fmt(built.built_at),
    }
    per_function = built.rows // FUNCTIONS
    return {
        "default": default,
        "status_7d": {**week, "status": "SUCCESS"},
        "deep_page": {**week, "marker": str(min(100_000, per_function // 2))},
    }


def query(res: Resources, backend: str, scale: Scale) -> list[Sample]:
    """Build (or reuse) the store, then time the three list queries, ``scale.repeat`` rounds."""
    if backend == "sqlite":
        built = build_sqlite(scale.query_rows, scale.query_build_budget)
    else:
        built = build_postgres(res, scale.query_rows, scale.query_build_budget)
    service = start_service(
        res,
        backend,
        worker=False,
        database_url=built.database_url,
        credential=built.credential,
        tag="query",
    )
    try:
        rounds = [
            _as_samples(run(_time_queries(service, built, scale)))
            for _ in range(max(scale.repeat, 1))
        ]
    finally:
        res.stop(service.process)
    for sample in rounds:
        sample["rows"] = float(built.rows)
        sample["build_seconds"] = built.build_seconds
        sample["cached"] = float(built.cached)
    return rounds


def _as_samples(value: object) -> Sample:
    assert isinstance(value, dict)
    return value


async def _time_queries(service: Service, built: BuiltStore, scale: Scale) -> Sample:
    client = Client(service.port, service.credential)
    sample: Sample = {}
    try:
        for shape, params in query_shapes(built).items():
            latencies, counts = [], []
            deadline = time.perf_counter() + scale.query_round_seconds
            for k in range(scale.query_samples + 5):  # five to warm up
                if k > 25 and time.perf_counter() > deadline:
                    break  # a slow query gets fewer samples, not more of the run's time
                name = built.function_names[k % len(built.function_names)]
                raw = client.request_bytes(
                    "GET", service.path(name, "async-invocations"), query=params
                )
                sent = time.perf_counter()
                status, body = await client.call(raw)
                elapsed = (time.perf_counter() - sent) * 1000
                if status != 200:
                    raise RuntimeError(f"query {shape}: {status} {body[:300]!r}")
                if k >= 5:
                    latencies.append(elapsed)
                    counts.append(json.loads(body)["count"])
            sample[f"{shape}_p50_ms"] = percentile(latencies, 50)
            sample[f"{shape}_p99_ms"] = percentile(latencies, 99)
            sample[f"{shape}_count"] = float(sorted(counts)[len(counts) // 2])
            sample[f"{shape}_samples"] = float(len(latencies))
    finally:
        client.close()
    return sample


# -- accepts and claims beside the history ----------------------------------------------------


def history(res: Resources, scale: Scale) -> list[Sample]:
    """Accepts (API node only) and end to end (one node with its worker) on the PostgreSQL
    store of ``scale.query_rows`` records and on an empty store, in alternating pairs.

    The built store's records of its last hour that were left WAIT or RUNNING are long due
    (and expired) when it is reused: a worker settles them first, as a service coming back
    would, so that what is measured is new work beside a history, not a backlog."""
    built = build_postgres(res, scale.query_rows, scale.query_build_budget)
    _settle(res, built)
    rounds: list[Sample] = []
    for _ in range(max(scale.repeat, 1)):
        sample: Sample = {"rows": float(built.rows)}
        for target in ("empty", "history"):
            # Both workloads of a target share its database and project, so that on each the
            # end to end starts right after the accepts' rows were deleted with their function.
            url = built.database_url
            credential = built.credential
            if target == "empty":
                url, credential = schema_url(res.new_schema("history_empty")), new_credential()
            for workload in ("accept", "e2e"):
                env = {"OPENFGS_MAX_WAITING_PER_FUNCTION": "1000000000"}
                service = start_service(
                    res,
                    "postgres",
                    worker=workload == "e2e",
                    env=env,
                    database_url=url,
                    credential=credential,
                    tag=f"{workload}_{target}",
                )
                try:
                    _redeploy(service)
                    measure = _accept if workload == "accept" else _end_to_end
                    for key, value in _as_samples(run(measure(service, scale))).items():
                        sample[f"{target}_{workload}_{key}"] = value
                finally:
                    res.stop(service.process)
        rounds.append(sample)
    return rounds


def _redeploy(service: Service) -> None:
    """A fresh "noop" function: the one a previous round left (and its records) deleted."""
    client = FunctionGraphClient(service.endpoint, service.credential, timeout=600)
    with client, contextlib.suppress(ApiFailure):
        client.json("DELETE", f"/functions/{client.urn('noop', REGION, qualifier=None)}")
    service.deploy("noop", "noop")


def _unsettled(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM invocations WHERE status = 'WAIT') "
            "+ (SELECT count(*) FROM invocations WHERE status = 'RUNNING')"
        ).fetchone()
        assert row is not None
        return int(row[0])


def _settle(res: Resources, built: BuiltStore) -> None:
    if _unsettled(built.database_url) == 0:
        return
    service = start_service(
        res,
        "postgres",
        worker=True,
        database_url=built.database_url,
        credential=built.credential,
        tag="settle",
    )
    try:
        deadline = time.monotonic() + 1800
        while (left := _unsettled(built.database_url)) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"history: {left} records still WAIT or RUNNING")
            time.sleep(1.0)
    finally:
        res.stop(service.process)


# -- lookups by request id, and retention by day ----------------------------------------------


def detail_lookups(url: str, count: int = 500) -> Sample:
    """``get_invocation`` (a record by request id alone: every day's partition probed) of
    ``count`` records spread over the store, through the store as the API calls it."""
    with psycopg.connect(url) as conn:
        # Pages drawn at random: a sample of about 20 × count rows, wherever they lie.
        rows = conn.execute(
            "SELECT greatest(sum(reltuples), 1) FROM pg_class WHERE oid IN "
            "(SELECT inhrelid FROM pg_inherits WHERE inhparent = 'invocations'::regclass)"
        ).fetchone()
        assert rows is not None
        percent = min(100.0, 100.0 * 20 * count / float(rows[0]))
        ids = [
            row[0]
            for row in conn.execute(
                f"SELECT request_id FROM invocations TABLESAMPLE SYSTEM ({percent:.6f}) "
                "ORDER BY random() LIMIT %s",
                (count,),
            ).fetchall()
        ]

    async def lookups() -> list[float]:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        try:
            times = []
            for request_id in ids:
                began = time.perf_counter()
                found = await store.get_invocation(request_id)
                times.append((time.perf_counter() - began) * 1000)
                assert found is not None
            return times[5:]
        finally:
            await store.close()

    times = asyncio.run(lookups())
    return {"detail_p50_ms": percentile(times, 50), "detail_p99_ms": percentile(times, 99)}


def _records_bytes(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
        "WHERE inhparent IN ('invocations'::regclass, 'invocation_attempts'::regclass)"
    ).fetchone()
    assert row is not None
    return int(row[0])


def drop_oldest_day(rows: int) -> Sample:
    """Retention of the cached store's oldest day: the drop's time and the records' bytes
    before and after (the cache is spent: the next run builds it again)."""
    database, meta_path = _postgres_cache(rows)
    url = _database_url(database)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT min(start_time) FROM invocations").fetchone()
        assert row is not None and row[0] is not None
        cutoff = (int(row[0]) // DAY_MS + 1) * DAY_MS + HOUR_MS  # its day ended over an hour ago
        before = _records_bytes(conn)
        began = time.perf_counter()
        conn.execute("SELECT openfgs_drop_day_partitions(%s, 1000, TRUE)", (cutoff,))
        emptied = time.perf_counter()
        drop = "SELECT openfgs_drop_day_partitions(%s, 1000, FALSE)"
        found = conn.execute(drop, (cutoff,)).fetchone()
        seconds = time.perf_counter() - emptied
        after = _records_bytes(conn)
        left = conn.execute("SELECT count(*) FROM invocations").fetchone()
    meta_path.unlink(missing_ok=True)
    assert found is not None and left is not None
    return {
        "days_dropped": float(len(found[0])),
        "truncate_ms": (emptied - began) * 1000,  # the day's partitions locked
        "drop_ms": seconds * 1000,  # the records table locked
        "bytes_before": float(before),
        "bytes_after": float(after),
        "rows_left": float(left[0]),
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.query --rows N``: build the cached PostgreSQL query store ahead of a
    run (no time box), which ``python -m bench run --only query --query-rows N`` then reuses;
    with ``--history``, then time accepts and end to end beside it and on an empty store
    (``--repeat`` alternating pairs), a JSON sample per round on stdout."""
    import argparse
    from dataclasses import replace

    parser = argparse.ArgumentParser(prog="python -m bench.query")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--history", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--e2e-count", type=int, default=Scale().e2e_count)
    parser.add_argument("--detail", action="store_true", help="time lookups by request id")
    parser.add_argument(
        "--drop-oldest-day", action="store_true", help="retention of one day (spends the cache)"
    )
    args = parser.parse_args(argv)
    database, meta_path = _postgres_cache(args.rows)
    if not (meta_path.exists() and _database_exists(database)):
        print(json.dumps(asdict(build_postgres_database(args.rows, float("inf"))), indent=2))
    if args.history:
        scale = replace(Scale(), query_rows=args.rows, repeat=args.repeat, e2e_count=args.e2e_count)
        res = Resources()
        try:
            for sample in history(res, scale):
                print(json.dumps(sample), flush=True)
        finally:
            res.close()
    if args.detail:
        print(json.dumps(detail_lookups(_database_url(database))), flush=True)
    if args.drop_oldest_day:
        print(json.dumps(drop_oldest_day(args.rows)), flush=True)


if __name__ == "__main__":
    main()
