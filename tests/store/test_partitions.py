"""Records by day: PostgreSQL keeps invocations and attempts in one partition per UTC day
(migration 0009) — the migration that moves an existing database's records, partitions made
ahead (by two nodes at once), the DEFAULT partition for a day without one, retention by whole
days, and outcomes that find their row by (request_id, start_time). SQLite keeps one table."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from openfgs.functions import FunctionRegistry
from openfgs.invocations import InvocationService, LifecycleSettings
from openfgs.models import Outcome, Status, now_ms
from openfgs.store.base import Store
from openfgs.store.common import PARTITION_DAYS_AHEAD
from openfgs.store.postgres import PostgresStore
from openfgs.store.queries import migration_files
from tests.support import database_url

from .test_store import BASE, HOUR, PROJECT, add_function, claim, new_invocation, query

pytestmark = pytest.mark.anyio
DAY = 86_400_000
DAY0 = BASE // DAY * DAY  # midnight UTC of the day BASE falls in


def part(table: str, time: int) -> str:
    """The name of ``table``'s partition holding ``time``."""
    return f"{table}_p{datetime.fromtimestamp(time / 1000, UTC):%Y%m%d}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    with database_url("postgres") as url:
        yield url


def relations(url: str, *names: str) -> dict[str, bool]:
    """Whether each of ``names`` exists in the test's schema."""
    with psycopg.connect(url) as conn:
        found = {}
        for name in names:
            row = conn.execute(
                "SELECT to_regclass(quote_ident(current_schema()) || '.' || %s)", (name,)
            ).fetchone()
            found[name] = row is not None and row[0] is not None
        return found


def scalar(url: str, sql: str, *params: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode(), params).fetchone()
        assert row is not None
        return int(row[0])


async def finish(store: Store, request_id: str, start_time: int, when: int) -> bool:
    (claimed,) = await claim(store, "w1", when, 1, when + HOUR)
    assert claimed.request_id == request_id and claimed.accepted_at == start_time
    return await store.finish_invocation(
        request_id, 1, Outcome(Status.SUCCESS), when + 10, None, start_time
    )


# -- the migration ----------------------------------------------------------------------------

_OLD_FUNCTION = (
    "INSERT INTO code_packages (digest, data, size) VALUES (%s, 'code', 4);"
    "INSERT INTO functions (project_id, package, name, func_id, runtime, handler, memory_size,"
    " timeout, code_type, code_digest, code_size, created_at, last_modified)"
    " VALUES (%s, 'default', 'old', 'f-1', 'Python3.9', 'index.handler', 128, 30, 'inline',"
    " %s, 4, 1, 1) RETURNING id"
)
_OLD_RECORD = (
    "INSERT INTO invocations (request_id, function_id, version, status, payload, start_time,"
    " end_time, attempt, available_at, expires_at, lease_until, worker_id, attempt_started_at)"
    " VALUES (%s, %s, 'latest', %s, '{}', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)


def _database_at_0008(url: str) -> dict[str, tuple[str, int]]:
    """Migrations 0001…0008 and records of four days (``{request_id: (status, start_time)}``),
    terminal ones with an attempt each, as a deployment before 0009 holds them."""
    digest = hashlib.sha512(b"code").hexdigest()
    made = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )
        for number, name, sql in migration_files("postgres"):
            if number <= 8:
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, 0)", (number, name))
        first, second = _OLD_FUNCTION.split(";")
        conn.execute(first.encode(), (digest,))
        row = conn.execute(second.encode(), (PROJECT, digest)).fetchone()
        assert row is not None
        function_id = row[0]
        statuses = [Status.SUCCESS, Status.FAIL, Status.RUNNING, Status.WAIT]
        for day, status in enumerate(statuses):
            start = DAY0 + day * DAY + 1000
            request_id = str(uuid.uuid4())
            ran = status is not Status.WAIT
            ended = start + 50 if status in (Status.SUCCESS, Status.FAIL) else None
            conn.execute(
                _OLD_RECORD.encode(),
                (
                    request_id,
                    function_id,
                    status.value,
                    start,
                    ended,
                    int(ran),
                    start,
                    start + HOUR,
                    start + HOUR if status is Status.RUNNING else None,
                    "w0" if ran else None,
                    start + 5 if ran else None,
                ),
            )
            if ended is not None:
                conn.execute(
                    "INSERT INTO invocation_attempts (request_id, attempt, worker_id,"
                    " start_time, end_time, outcome) VALUES (%s, 1, 'w0', %s, %s, %s)",
                    (request_id, start + 5, ended, status.value),
                )
            made[request_id] = (status.value, start)
    return made


@pytest.mark.postgres
async def test_the_migration_moves_every_record_into_its_day(pg_url: str) -> None:
    old = _database_at_0008(pg_url)
    old_max_id = scalar(pg_url, "SELECT max(id) FROM invocations")
    store = PostgresStore(pg_url, pool_size=2)
    await store.open()
    try:
        for request_id, (status, start) in old.items():
            detail = await store.get_invocation(request_id)
            assert detail is not None
            assert (detail.record.status.value, detail.record.start_time) == (status, start)
            assert len(detail.attempts) == (1 if status in ("SUCCESS", "FAIL") else 0)
        days = [part(t, start) for _, start in old.values() for t in ("invocations",)]
        attempt_days = [part("invocation_attempts", DAY0), part("invocation_attempts", DAY0 + DAY)]
        assert all(relations(pg_url, *days, *attempt_days).values())
        assert not relations(pg_url, "invocations_unpartitioned")["invocations_unpartitioned"]
        assert scalar(pg_url, "SELECT count(*) FROM invocations_default") == 0
        assert scalar(pg_url, "SELECT count(*) FROM invocation_attempts") == 2
        function_id = scalar(pg_url, "SELECT id FROM functions")
        page = await store.list_invocations(query(function_id))
        assert [r.request_id for r in page.invocations] == list(old)[::-1]

        # ids continue from the old table's sequence; claims and outcomes work on the moved rows
        fresh = new_invocation(function_id, DAY0 + 3 * DAY + 2000)
        await store.insert_invocation(fresh)
        new_id = scalar(
            pg_url, "SELECT id FROM invocations WHERE request_id = %s", fresh.request_id
        )
        assert new_id > old_max_id
        waiting = next(r for r, (s, _) in old.items() if s == "WAIT")
        assert await finish(store, waiting, old[waiting][1], DAY0 + 3 * DAY + 1500)
        assert await finish(store, fresh.request_id, fresh.start_time, DAY0 + 3 * DAY + 3000)
        for request_id in (waiting, fresh.request_id):
            detail = await store.get_invocation(request_id)
            assert detail is not None and detail.record.status is Status.SUCCESS
            assert [a.outcome for a in detail.attempts] == ["SUCCESS"]
    finally:
        await store.close()


# -- partitions made ahead --------------------------------------------------------------------


@pytest.mark.postgres
async def test_partitions_are_made_ahead_by_two_stores_at_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url, pool_size=2) for _ in range(2)]
    await asyncio.gather(*(s.open() for s in stores))  # both make today's days at start
    try:
        later = DAY0 + 1000 * DAY  # days nobody has made yet
        made = await asyncio.gather(*(s.ensure_partitions(later) for s in stores))
        days = PARTITION_DAYS_AHEAD + 1
        assert sorted(made) == [0, 2 * days]  # one made them all, the other found them made
        names = [
            part(table, later + n * DAY)
            for n in range(days)
            for table in ("invocations", "invocation_attempts")
        ]
        assert all(relations(pg_url, *names).values())
        assert await stores[0].ensure_partitions(later) == 0  # cheap when there is nothing to do
    finally:
        await asyncio.gather(*(s.close() for s in stores))


@pytest.mark.postgres
async def test_a_record_whose_day_has_no_partition_lands_in_default(pg_url: str) -> None:
    store = PostgresStore(pg_url, pool_size=2)
    await store.open()
    try:
        function = await add_function(store, "hello")
        record = new_invocation(function.id, BASE)  # a day long before any partition
        await store.insert_invocation(record)
        assert scalar(pg_url, "SELECT count(*) FROM invocations_default") == 1
        assert (await store.get_invocation(record.request_id)) is not None

        # Making the day's partition later moves the row out of DEFAULT into it.
        assert await store.ensure_partitions(BASE) > 0
        assert scalar(pg_url, "SELECT count(*) FROM invocations_default") == 0
        assert scalar(pg_url, f"SELECT count(*) FROM {part('invocations', BASE)}") == 1
        assert await finish(store, record.request_id, BASE, BASE + 100)
    finally:
        await store.close()


# -- retention by whole days ------------------------------------------------------------------


@pytest.mark.postgres
async def test_retention_drops_old_days_and_keeps_a_day_with_a_waiting_record(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url, pool_size=2)
    await store.open()
    try:
        await store.ensure_partitions(DAY0)  # DAY0 … DAY0 + 3 days
        function = await add_function(store, "hello")
        done = [new_invocation(function.id, DAY0 + 1000 + n) for n in range(3)]
        for record in done:  # day 0: every record ran (its attempt is in day 0 too)
            await store.insert_invocation(record)
            assert await finish(store, record.request_id, record.start_time, DAY0 + 2000)
        kept_ended = new_invocation(function.id, DAY0 + DAY + 1000)
        await store.insert_invocation(kept_ended)
        assert await finish(store, kept_ended.request_id, kept_ended.start_time, DAY0 + DAY + 2000)
        waiting = new_invocation(function.id, DAY0 + DAY + 3000, available_at=DAY0 + 50 * DAY)
        await store.insert_invocation(waiting)  # day 1: one record still waiting
        recent = new_invocation(function.id, DAY0 + 2 * DAY + 1000)
        await store.insert_invocation(recent)
        day0, day1 = part("invocations", DAY0), part("invocations", DAY0 + DAY)
        attempts0 = part("invocation_attempts", DAY0)
        size_before = scalar(pg_url, "SELECT pg_total_relation_size(%s)", day1)

        cutoff = DAY0 + 2 * DAY  # days 0 and 1 are wholly older
        assert await store.drop_expired_days(cutoff) == 1
        assert relations(pg_url, day0, attempts0, day1) == {
            day0: False,
            attempts0: False,
            day1: True,
        }
        for record in done:
            assert await store.get_invocation(record.request_id) is None
        # The day kept is purged by row deletes: its terminal record goes, the waiting stays.
        assert await store.delete_expired(cutoff, cutoff, 100) == 1
        assert await store.get_invocation(kept_ended.request_id) is None
        assert await store.get_invocation(waiting.request_id) is not None
        assert await store.get_invocation(recent.request_id) is not None
        assert scalar(pg_url, "SELECT pg_total_relation_size(%s)", day1) == size_before
        assert await store.drop_expired_days(cutoff) == 0  # nothing more to drop
    finally:
        await store.close()


@pytest.mark.postgres
async def test_retention_keeps_a_day_whose_record_ended_after_the_cutoff(pg_url: str) -> None:
    store = PostgresStore(pg_url, pool_size=2)
    await store.open()
    try:
        await store.ensure_partitions(DAY0)
        function = await add_function(store, "hello")
        late = new_invocation(function.id, DAY0 + DAY - 1000)
        await store.insert_invocation(late)
        assert await finish(store, late.request_id, late.start_time, DAY0 + DAY + 5000)
        assert await store.drop_expired_days(DAY0 + DAY + 1000) == 0
        assert await store.drop_expired_days(DAY0 + DAY + 6000) == 1
    finally:
        await store.close()


# -- outcomes by (request_id, start_time), on every backend ------------------------------------


async def test_an_outcome_with_the_records_start_time_finds_it_and_no_other(store: Store) -> None:
    function = await add_function(store, "hello")
    record = new_invocation(function.id, BASE)
    await store.insert_invocation(record)
    (claimed,) = await claim(store, "w1", BASE + 10, 1, BASE + HOUR)
    outcome = Outcome(Status.WAIT, 4200, "again", retry_at=BASE + 500)
    assert not await store.requeue_invocation(record.request_id, 1, outcome, BASE + 20, BASE + 1)
    assert not await store.finish_invocation(
        record.request_id, 1, Outcome(Status.SUCCESS), BASE + 20, None, BASE + 1
    )
    detail = await store.get_invocation(record.request_id)
    assert detail is not None and detail.record.status is Status.RUNNING and detail.attempts == []

    assert await store.requeue_invocation(record.request_id, 1, outcome, BASE + 20, BASE)
    (claimed,) = await claim(store, "w1", BASE + 600, 1, BASE + HOUR)
    assert claimed.attempt == 2
    assert await store.finish_invocation(
        record.request_id, 2, Outcome(Status.SUCCESS), BASE + 700, None, BASE
    )
    detail = await store.get_invocation(record.request_id)
    assert detail is not None and detail.record.status is Status.SUCCESS
    assert [a.outcome for a in detail.attempts] == ["RETRY", "SUCCESS"]


async def test_a_store_without_partitions_has_nothing_to_make_or_drop(store: Store) -> None:
    """SQLite keeps one table and row deletes; PostgreSQL made today's days at start."""
    now = DAY0 + 5 * DAY
    made = await store.ensure_partitions(now)
    assert made == (0 if not isinstance(store, PostgresStore) else 2 * (PARTITION_DAYS_AHEAD + 1))
    assert await store.ensure_partitions(now) == 0
    assert await store.drop_expired_days(BASE) == 0


async def test_the_purge_leaves_the_day_the_cutoff_falls_in_to_the_drop(store: Store) -> None:
    """With a retention of days, PostgreSQL deletes no row of the day the cutoff falls in (the
    day goes whole once it is wholly past); SQLite deletes every row past the cutoff."""
    function = await add_function(store, "hello")
    service = InvocationService(
        store, FunctionRegistry(store, "cn-north-4"), LifecycleSettings(retention_seconds=86400)
    )
    wait = 1000 - (now_ms() - DAY) % DAY
    if wait > 0:  # the first second of a day, when nothing has ended before it: let it pass
        await asyncio.sleep(wait / 1000)
    cutoff = now_ms() - DAY
    day_start = cutoff - cutoff % DAY
    record = new_invocation(function.id, day_start + 10)
    await store.ensure_partitions(day_start)
    await store.insert_invocation(record)
    assert await finish(store, record.request_id, record.start_time, day_start + 20)

    purged = await service.purge_expired_records()
    assert purged == (0 if store.retention_by_day else 1)
    assert (await store.get_invocation(record.request_id) is None) == (not store.retention_by_day)
