"""Store conformance of dependencies, on every backend: versions, listing, the functions that
list them, their zips among the code packages, and the migration that added them."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from openfgs.models import DependencyVersion, Function
from openfgs.store.base import DependencyGone, Store
from openfgs.store.postgres import PostgresStore
from openfgs.store.queries import migration_files
from openfgs.store.sqlite import SqliteStore
from tests.support import (
    PG_URL,
)

pytestmark = pytest.mark.anyio

PROJECT = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
BASE = 1_700_000_000_000


def new_version(
    name: str, data: bytes, *, project: str = PROJECT, runtime: str = "Python3.9"
) -> DependencyVersion:
    return DependencyVersion(
        id=str(uuid.uuid4()),
        dep_id=str(uuid.uuid4()),
        project_id=project,
        name=name,
        version=0,
        runtime=runtime,
        description=f"{name} package",
        file_name=f"{name}.zip",
        digest=hashlib.sha512(data).hexdigest(),
        etag=hashlib.md5(data).hexdigest(),
        size=len(data),
        created_at=BASE,
    )


def new_function(name: str, code: bytes, depend_versions: tuple[str, ...] = ()) -> Function:
    return Function(
        id=0,
        project_id=PROJECT,
        package="default",
        name=name,
        func_id=str(uuid.uuid4()),
        runtime="Python3.9",
        handler="index.handler",
        memory_size=128,
        timeout=30,
        code_type="inline",
        code_digest=hashlib.sha512(code).hexdigest(),
        code_size=len(code),
        created_at=BASE,
        last_modified=BASE,
        depend_versions=depend_versions,
    )


async def test_a_new_name_makes_version_1_and_the_same_name_the_next(store: Store) -> None:
    first = await store.insert_dependency_version(new_version("numpy", b"zip-1"), b"zip-1")
    second = await store.insert_dependency_version(new_version("numpy", b"zip-2"), b"zip-2")
    other = await store.insert_dependency_version(
        new_version("numpy", b"zip-1", project=OTHER), b"zip-1"
    )

    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert second.dep_id == first.dep_id and other.dep_id != first.dep_id
    assert await store.get_dependency_version(PROJECT, first.dep_id, 2) == second
    assert await store.get_dependency_version(OTHER, first.dep_id, 1) is None
    assert await store.get_dependency_version(PROJECT, first.dep_id, 3) is None
    assert await store.get_code(first.digest) == b"zip-1"
    assert await store.count_dependency_versions(PROJECT) == 2
    assert await store.total_dependency_size(PROJECT) == 10
    assert await store.total_dependency_size(OTHER) == 5


async def test_listing_shows_each_dependency_once_with_its_latest_version(store: Store) -> None:
    for name, data, runtime in [
        ("beta", b"b1", "Python3.9"),
        ("alpha", b"a1", "Python3.9"),
        ("alpha", b"a2", "Python3.10"),
        ("gamma", b"g1", "Python3.9"),
    ]:
        await store.insert_dependency_version(new_version(name, data, runtime=runtime), data)
    await store.insert_dependency_version(new_version("zeta", b"z", project=OTHER), b"z")

    found, count = await store.list_dependencies(PROJECT, None, None, 0, 10)
    assert count == 3
    assert [(v.name, v.version, v.runtime) for v in found] == [
        ("alpha", 2, "Python3.10"),
        ("beta", 1, "Python3.9"),
        ("gamma", 1, "Python3.9"),
    ]
    page, count = await store.list_dependencies(PROJECT, None, None, 1, 1)
    assert ([v.name for v in page], count) == (["beta"], 3)
    named, count = await store.list_dependencies(PROJECT, "mm", None, 0, 10)
    assert ([v.name for v in named], count) == (["gamma"], 1)
    by_runtime, count = await store.list_dependencies(PROJECT, None, "Python3.9", 0, 10)
    assert ([v.name for v in by_runtime], count) == (["beta", "gamma"], 2)

    alpha = found[0]
    versions, count = await store.list_dependency_versions(PROJECT, alpha.dep_id, 0, 10)
    assert ([v.version for v in versions], count) == ([1, 2], 2)
    versions, count = await store.list_dependency_versions(PROJECT, alpha.dep_id, 1, 10)
    assert ([v.version for v in versions], count) == ([2], 2)
    assert await store.list_dependency_versions(OTHER, alpha.dep_id, 0, 10) == ([], 0)


async def test_versions_by_id_stay_in_their_project(store: Store) -> None:
    mine = await store.insert_dependency_version(new_version("a", b"1"), b"1")
    theirs = await store.insert_dependency_version(new_version("a", b"2", project=OTHER), b"2")

    found = await store.get_dependency_versions(PROJECT, [mine.id, theirs.id, "nope"])
    assert found == [mine]
    assert await store.get_dependency_versions(PROJECT, []) == []


async def test_functions_keep_their_dependency_list_in_order(store: Store) -> None:
    a = await store.insert_dependency_version(new_version("a", b"1"), b"1")
    b = await store.insert_dependency_version(new_version("b", b"2"), b"2")
    created = await store.insert_function(new_function("f", b"code", (b.id, a.id)), b"code")

    read = await store.get_function(PROJECT, "default", "f")
    assert read is not None and read.depend_versions == (b.id, a.id)
    assert await store.function_dependency_digests() == [
        (created.code_digest, (b.digest, a.digest))
    ]

    await store.update_function(replace(created, depend_versions=(a.id,)), None)
    read = await store.get_function_by_id(created.id)
    assert read is not None and read.depend_versions == (a.id,)
    await store.update_function(replace(created, depend_versions=()), None)
    read = await store.get_function_by_id(created.id)
    assert read is not None and read.depend_versions == ()
    assert await store.function_dependency_digests() == []


async def test_a_version_in_use_is_not_deleted(store: Store) -> None:
    version = await store.insert_dependency_version(new_version("a", b"zip"), b"zip")
    function = await store.insert_function(new_function("f", b"code", (version.id,)), b"code")

    assert await store.delete_dependency_version(version) is False
    assert await store.get_dependency_version(PROJECT, version.dep_id, 1) == version

    await store.update_function(replace(function, depend_versions=()), None)
    assert await store.delete_dependency_version(version) is True
    assert await store.get_dependency_version(PROJECT, version.dep_id, 1) is None
    assert await store.get_code(version.digest) is None


async def test_a_function_cannot_list_a_version_that_is_gone(store: Store) -> None:
    version = await store.insert_dependency_version(new_version("a", b"zip"), b"zip")
    function = await store.insert_function(new_function("f", b"code"), b"code")
    assert await store.delete_dependency_version(version)

    with pytest.raises(DependencyGone):
        await store.insert_function(new_function("g", b"code", (version.id,)), b"code")
    with pytest.raises(DependencyGone):
        await store.update_function(replace(function, depend_versions=(version.id,)), None)
    assert await store.get_function(PROJECT, "default", "g") is None
    read = await store.get_function_by_id(function.id)
    assert read is not None and read.depend_versions == ()


async def test_the_last_version_takes_its_dependency_and_numbering_starts_again(
    store: Store,
) -> None:
    first = await store.insert_dependency_version(new_version("a", b"1"), b"1")
    second = await store.insert_dependency_version(new_version("a", b"2"), b"2")

    assert await store.delete_dependency_version(first)
    assert (await store.list_dependencies(PROJECT, None, None, 0, 10))[1] == 1
    assert await store.delete_dependency_version(second)
    assert await store.list_dependencies(PROJECT, None, None, 0, 10) == ([], 0)

    again = await store.insert_dependency_version(new_version("a", b"3"), b"3")
    assert again.version == 1 and again.dep_id != first.dep_id


async def test_a_zip_stays_while_anything_uses_its_bytes(store: Store) -> None:
    data = b"the same bytes"
    one = await store.insert_dependency_version(new_version("a", data), data)
    two = await store.insert_dependency_version(new_version("b", data), data)
    function = await store.insert_function(new_function("f", data), data)

    # A function whose code is the same bytes goes: the dependencies still hold them.
    await store.delete_function(function)
    assert await store.get_code(one.digest) == data
    assert await store.delete_dependency_version(one)
    assert await store.get_code(one.digest) == data  # the other version still holds them
    assert await store.delete_dependency_version(two)
    assert await store.get_code(one.digest) is None

    # And a dependency version going leaves a function's code in place.
    function = await store.insert_function(new_function("g", data), data)
    three = await store.insert_dependency_version(new_version("c", data), data)
    assert await store.delete_dependency_version(three)
    assert await store.get_code(function.code_digest) == data


# -- the migration that added dependencies, over a database with records --------------------


def _before_dependencies(dialect: str) -> list[tuple[int, str, str]]:
    return [m for m in migration_files(dialect) if m[0] < 5]


async def _check_upgraded(store: Store) -> None:
    await store.open()
    try:
        function = await store.get_function(PROJECT, "default", "old")
        assert function is not None
        assert (function.name, function.depend_versions) == ("old", ())
        assert await store.get_code(function.code_digest) == b"old code"
        version = await store.insert_dependency_version(new_version("a", b"zip"), b"zip")
        await store.update_function(replace(function, depend_versions=(version.id,)), None)
        again = await store.get_function_by_id(function.id)
        assert again is not None and again.depend_versions == (version.id,)
    finally:
        await store.close()


_INSERT_OLD = (
    "INSERT INTO code_packages (digest, data, size) VALUES ({p}, {p}, 8);"
    "INSERT INTO functions (project_id, package, name, func_id, runtime, handler, memory_size,"
    " timeout, code_type, code_digest, code_size, created_at, last_modified)"
    " VALUES ({p}, 'default', 'old', 'f-1', 'Python3.9', 'index.handler', 128, 30, 'inline',"
    " {p}, 8, 1, 1)"
)


async def test_sqlite_upgrade_keeps_the_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    digest = hashlib.sha512(b"old code").hexdigest()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        for number, name, sql in _before_dependencies("sqlite"):
            conn.executescript(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (number, name))
        first, second = _INSERT_OLD.format(p="?").split(";")
        conn.execute(first, (digest, b"old code"))
        conn.execute(second, (PROJECT, digest))

    await _check_upgraded(SqliteStore(path))


@pytest.mark.postgres
async def test_postgres_upgrade_keeps_the_records() -> None:
    schema = "store_" + uuid.uuid4().hex[:12]
    digest = hashlib.sha512(b"old code").hexdigest()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            for number, name, sql in _before_dependencies("postgres"):
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, 0)", (number, name))
            first, second = _INSERT_OLD.format(p="%s").split(";")
            conn.execute(first.encode(), (digest, b"old code"))
            conn.execute(second.encode(), (PROJECT, digest))

        await _check_upgraded(PostgresStore(url, pool_size=2))
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.postgres
async def test_postgres_delete_waits_for_a_function_listing_the_version_to_commit() -> None:
    """A function written while a version is deleted either commits first (the delete then
    refuses) or finds the version gone: never a function listing a deleted version."""
    schema = "store_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    store = PostgresStore(url, pool_size=2)
    await store.open()
    try:
        version = await store.insert_dependency_version(new_version("a", b"zip"), b"zip")
        function = await store.insert_function(new_function("f", b"code"), b"code")
        async with await psycopg.AsyncConnection.connect(url) as writer:
            # A function update in flight: it holds the version, as update_function does.
            await writer.execute(
                "SELECT id FROM dependency_versions WHERE id = %s FOR SHARE", (version.id,)
            )
            await writer.execute(
                "UPDATE functions SET depend_versions = %s WHERE id = %s",
                (f'["{version.id}"]', function.id),
            )
            deleting = asyncio.create_task(store.delete_dependency_version(version))
            await _until_a_backend_waits_for_a_lock(url)
            assert not deleting.done()
            await writer.commit()
        assert await deleting is False
        read = await store.get_function_by_id(function.id)
        assert read is not None and read.depend_versions == (version.id,)
    finally:
        await store.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def _until_a_backend_waits_for_a_lock(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%dependency_versions%FOR UPDATE%'"
            )
            row = await cursor.fetchone()
            if row is not None and row[0] > 0:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"no backend waited for a lock within {timeout} s")
