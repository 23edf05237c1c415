"""Versions and aliases in the store (every backend): a function's rows by qualifier, deleted
together, code counted once; and the migration that adds them, upgrading a database that
holds functions, configs and records."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from openfgs.errors import ConflictError
from openfgs.models import AsyncConfig, Function, Status
from openfgs.store.base import Store
from openfgs.store.postgres import PostgresStore
from openfgs.store.queries import migration_files
from openfgs.store.sqlite import SqliteStore
from tests.support import (
    PG_URL,
)

from .test_store import BASE, PROJECT, add_function, new_invocation, query

pytestmark = pytest.mark.anyio


def version_of(latest: Function, name: str, **changes: object) -> Function:
    return replace(latest, id=0, qualifier=name, version=name, **changes)  # type: ignore[arg-type]


def config_of(function_id: int, retries: int) -> AsyncConfig:
    return AsyncConfig(function_id, 60, retries, {}, False, BASE, BASE)


async def test_rows_of_a_function_are_found_by_qualifier(store: Store) -> None:
    latest = await add_function(store, "fn")
    v1 = await store.insert_function(version_of(latest, "v1"), None, config_of(0, 2))
    alias = await store.insert_function(
        replace(latest, id=0, qualifier="!prod", version="v1", alias_weights='{"latest": 5}'),
        None,
    )
    assert await store.get_function(PROJECT, "default", "fn") == latest
    assert await store.get_function(PROJECT, "default", "fn", "v1") == v1
    found = await store.get_function(PROJECT, "default", "fn", "!prod")
    assert found is not None and found.weights == {"latest": 5} and found.alias == "prod"
    assert await store.get_function(PROJECT, "default", "fn", "v2") is None
    rows = await store.list_function_qualifiers(PROJECT, "default", "fn")
    assert [row.qualifier for row in rows] == ["latest", "v1", "!prod"]
    config = await store.get_async_config(v1.id)
    assert config is not None and config.max_async_retry_attempts == 2
    assert await store.get_async_config(latest.id) is None
    assert alias.id not in (latest.id, v1.id)


async def test_only_latest_rows_are_listed_as_functions(store: Store) -> None:
    latest = await add_function(store, "fn")
    await store.insert_function(version_of(latest, "v1"), None)
    functions, count = await store.list_functions(PROJECT, None, None, 0, 100)
    assert [f.qualifier for f in functions] == ["latest"] and count == 1


async def test_a_qualifier_is_used_once_per_function(store: Store) -> None:
    latest = await add_function(store, "fn")
    await store.insert_function(version_of(latest, "v1"), None)
    with pytest.raises(ConflictError):
        await store.insert_function(version_of(latest, "v1"), None)
    other = await add_function(store, "other")
    await store.insert_function(version_of(other, "v1"), None)  # another function's v1


async def test_a_package_shared_by_versions_counts_once(store: Store) -> None:
    latest = await add_function(store, "fn")
    await store.insert_function(version_of(latest, "v1"), None)
    await store.insert_function(version_of(latest, "v2"), None)
    assert await store.total_code_size(PROJECT) == latest.code_size


async def test_rows_are_deleted_together_with_their_records(store: Store) -> None:
    latest = await add_function(store, "fn")
    v1 = await store.insert_function(version_of(latest, "v1"), None)
    for row in (latest, v1):
        await store.insert_invocation(new_invocation(row.id, BASE + 1))
    await store.delete_function(v1)
    assert (await store.list_invocations(query(v1.id))).count == 0
    assert (await store.list_invocations(query(latest.id))).count == 1
    v2 = await store.insert_function(version_of(latest, "v2"), None)
    await store.delete_function(latest, v2)
    assert await store.list_function_qualifiers(PROJECT, "default", "fn") == []
    assert await store.get_code(latest.code_digest) is None


# -- the migration, on a database made before it ----------------------------------------------

INSERT_FUNCTION = (
    "INSERT INTO functions (id, project_id, package, name, func_id, runtime, handler, "
    "memory_size, timeout, code_type, code_digest, code_size, created_at, last_modified) "
    "VALUES (7, '{p}', 'default', 'old', 'f-1', 'Python3.9', 'index.handler', 128, 30, "
    "'inline', 'd1', 2, 1, 1)"
)
INSERT_ROWS = [
    "INSERT INTO code_packages (digest, data, size) VALUES ('d1', 'ab', 2)",
    INSERT_FUNCTION.format(p=PROJECT),
    "INSERT INTO async_configs (function_id, max_async_event_age_in_seconds, "
    "max_async_retry_attempts, created_at, last_modified) VALUES (7, 100, 1, 1, 1)",
    "INSERT INTO invocations (request_id, function_id, version, status, start_time, "
    f"payload, available_at, expires_at) VALUES ('r-1', 7, 'latest', 'SUCCESS', {BASE}, "
    "'{}', 0, 0)",
]


async def check_upgraded(store: Store) -> None:
    function = await store.get_function(PROJECT, "default", "old")
    assert function is not None
    assert (function.id, function.qualifier, function.version) == (7, "latest", "latest")
    config = await store.get_async_config(7)
    assert config is not None and config.max_async_event_age_in_seconds == 100
    page = await store.list_invocations(query(7))
    assert [(r.request_id, r.status) for r in page.invocations] == [("r-1", Status.SUCCESS)]
    v1 = await store.insert_function(version_of(function, "v1"), None)
    assert await store.get_function(PROJECT, "default", "old", "v1") == v1


async def test_sqlite_upgrade_keeps_functions_configs_and_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        for number, (_, name, sql) in enumerate(migration_files("sqlite")[:2], start=1):
            conn.executescript(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (number, name))
        for statement in INSERT_ROWS:
            conn.execute(statement)
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        await check_upgraded(store)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_upgrade_keeps_functions_configs_and_records() -> None:
    schema = "upgrade_" + uuid.uuid4().hex[:12]
    before = [m for m in migration_files("postgres") if m[0] < 4]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )
        for number, name, sql in before:
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, 0)", (number, name))
        for statement in INSERT_ROWS:
            conn.execute(statement.replace("'{}'", "'\\x7b7d'").encode())
    store = PostgresStore(f"{PG_URL}?options=-csearch_path%3D{schema}", pool_size=2)
    await store.open()
    try:
        await check_upgraded(store)
    finally:
        await store.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
