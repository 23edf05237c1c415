"""The Store conformance suite: every backend must pass these tests through the interface alone."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import re
import sqlite3
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from openfgs.errors import ConflictError, StoreError
from openfgs.models import (
    AsyncConfig,
    ClaimedInvocation,
    Credential,
    Function,
    Invocation,
    InvocationQuery,
    NewInvocation,
    Outcome,
    Status,
)
from openfgs.store import common as common_module
from openfgs.store import postgres as postgres_module
from openfgs.store import queries as queries_module
from openfgs.store import sqlite as sqlite_module
from openfgs.store.base import Store
from openfgs.store.postgres import PostgresStore
from openfgs.store.queries import SHARED, load_queries, migration_files, query_blocks
from openfgs.store.sqlite import SqliteStore
from tests.support import database_url

from .conftest import Backend

pytestmark = pytest.mark.anyio

DIALECTS = ("sqlite", "postgres")
BASE = 1_700_000_000_000  # every time in these tests is BASE + a few milliseconds
FAR = BASE + 10**9
HOUR = 3_600_000
PROJECT = "0123456789abcdef0123456789abcdef"
OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
CREDENTIAL = Credential(PROJECT, "STOREACCESSKEY000001", "storesecretkey00000000000000000000000001")


def digest(code: bytes) -> str:
    return hashlib.sha512(code).hexdigest()


def make_function(
    name: str,
    *,
    package: str = "default",
    project: str = PROJECT,
    code: bytes | None = None,
    created_at: int = BASE,
) -> tuple[Function, bytes]:
    if code is None:
        code = f"def handler(event, context):\n    return {name!r}\n".encode()
    function = Function(
        id=0,
        project_id=project,
        package=package,
        name=name,
        func_id=str(uuid.uuid4()),
        runtime="Python3.9",
        handler="index.handler",
        memory_size=128,
        timeout=30,
        code_type="inline",
        code_digest=digest(code),
        code_size=len(code),
        created_at=created_at,
        last_modified=created_at,
    )
    return function, code


async def add_function(
    store: Store,
    name: str,
    *,
    package: str = "default",
    project: str = PROJECT,
    code: bytes | None = None,
    created_at: int = BASE,
) -> Function:
    function, code = make_function(
        name, package=package, project=project, code=code, created_at=created_at
    )
    return await store.insert_function(function, code)


def new_invocation(
    function_id: int,
    start_time: int,
    *,
    available_at: int | None = None,
    request_id: str | None = None,
    expires_at: int | None = None,
    max_attempts: int = 1,
    depth: int = 0,
    rerun_of: str | None = None,
) -> NewInvocation:
    return NewInvocation(
        request_id=request_id or str(uuid.uuid4()),
        function_id=function_id,
        version="latest",
        payload=b'{"n": %d}' % start_time,
        start_time=start_time,
        available_at=start_time if available_at is None else available_at,
        expires_at=start_time + HOUR if expires_at is None else expires_at,
        max_attempts=max_attempts,
        depth=depth,
        rerun_of=rerun_of,
    )


async def add_invocations(store: Store, function_id: int, start_times: list[int]) -> list[str]:
    """Insert one WAIT record per start time; return their request ids in that order."""
    rows = [new_invocation(function_id, t) for t in start_times]
    await asyncio.gather(*(store.insert_invocation(row) for row in rows))
    return [row.request_id for row in rows]


def query(function_id: int, **filters: Any) -> InvocationQuery:
    """Every record of the function (up to 500) unless ``filters`` say otherwise."""
    return replace(InvocationQuery(function_id, begin=0, end=FAR, limit=500), **filters)


async def records(store: Store, function_id: int) -> dict[str, Invocation]:
    page = await store.list_invocations(query(function_id))
    return {r.request_id: r for r in page.invocations}


async def claim(
    store: Store, worker: str, now: int, limit: int, lease_until: int
) -> list[ClaimedInvocation]:
    """Claim runnable rows as the service does (``claim_due``), no expired rows taken."""
    return (await store.claim_due(worker, now, limit, 0, lease_until))[1]


async def claim_expired(
    store: Store, worker: str, now: int, limit: int, lease_until: int
) -> list[ClaimedInvocation]:
    """Claim expired waiting rows only."""
    return (await store.claim_due(worker, now, 0, limit, lease_until))[0]


async def claim_ids(store: Store, now: int, limit: int = 100, worker: str = "w1") -> set[str]:
    claimed = await claim(store, worker, now, limit, now + HOUR)
    return {c.request_id for c in claimed}


# -- credentials and tokens -------------------------------------------------------------------


async def test_credentials_round_trip(store: Store) -> None:
    assert await store.count_credentials() == 0
    await store.insert_credential(CREDENTIAL, BASE)
    assert await store.get_credential(CREDENTIAL.access_key) == CREDENTIAL
    assert await store.get_credential("NOSUCHACCESSKEY00000") is None
    assert await store.count_credentials() == 1


async def test_duplicate_access_key_is_a_conflict(store: Store) -> None:
    await store.insert_credential(CREDENTIAL, BASE)
    with pytest.raises(ConflictError):
        await store.insert_credential(replace(CREDENTIAL, secret_key="x" * 40), BASE)
    assert await store.get_credential(CREDENTIAL.access_key) == CREDENTIAL
    assert await store.count_credentials() == 1


async def test_tokens_round_trip(store: Store) -> None:
    await store.insert_credential(CREDENTIAL, BASE)
    await store.insert_token("hash-1", CREDENTIAL.access_key, PROJECT, BASE + HOUR)
    assert await store.get_token("hash-1") == (PROJECT, BASE + HOUR)
    assert await store.get_token("hash-2") is None


# -- functions and code -----------------------------------------------------------------------


async def test_function_round_trips_every_field(store: Store) -> None:
    function, code = make_function("hello", code=b"PK-zip-bytes")
    function = replace(
        function,
        code_type="zip",
        code_filename="code.zip",
        user_data='{"KEY": "value"}',
        description="a function",
        initializer_handler="index.init",
        initializer_timeout=10,
        concurrency=7,
        concurrent_num=2,
        last_modified=BASE + 5,
    )
    created = await store.insert_function(function, code)
    assert created.id > 0
    assert created == replace(function, id=created.id)
    assert await store.get_function(PROJECT, "default", "hello") == created
    assert await store.get_function_by_id(created.id) == created
    assert await store.get_code(function.code_digest) == code


async def test_missing_function_and_code_are_none(store: Store) -> None:
    created = await add_function(store, "hello")
    assert await store.get_function(PROJECT, "other", "hello") is None
    assert await store.get_function(OTHER_PROJECT, "default", "hello") is None
    assert await store.get_function(PROJECT, "default", "hell") is None
    assert await store.get_function_by_id(created.id + 1000) is None
    assert await store.get_code(digest(b"never stored")) is None


async def test_duplicate_function_is_a_conflict_and_stores_nothing(store: Store) -> None:
    first = await add_function(store, "hello")
    duplicate, code = make_function("hello", code=b"other code")
    with pytest.raises(ConflictError):
        await store.insert_function(duplicate, code)
    assert await store.get_code(duplicate.code_digest) is None
    assert await store.get_function(PROJECT, "default", "hello") == first
    # The same name in another package or another project is another function.
    in_package = await add_function(store, "hello", package="tools")
    in_project = await add_function(store, "hello", project=OTHER_PROJECT)
    assert len({first.id, in_package.id, in_project.id}) == 3


async def test_list_functions_pages_in_creation_order(store: Store) -> None:
    names = [f"fn-{i}" for i in range(5)]
    for i, name in enumerate(names):
        await add_function(store, name, created_at=BASE + i)
    await add_function(store, "fn-tool", package="tools", created_at=BASE + 10)
    await add_function(store, "fn-foreign", project=OTHER_PROJECT)

    everything, count = await store.list_functions(PROJECT, None, None, 0, 100)
    assert [f.name for f in everything] == [*names, "fn-tool"]
    assert count == 6
    page, count = await store.list_functions(PROJECT, None, None, 2, 3)
    assert [f.name for f in page] == ["fn-2", "fn-3", "fn-4"]
    assert count == 6
    page, count = await store.list_functions(PROJECT, None, None, 6, 3)
    assert (page, count) == ([], 6)


async def test_list_functions_filters_by_package_and_name_substring(store: Store) -> None:
    for name in ("alpha", "beta", "alphabet", "a_b", "axb"):
        await add_function(store, name)
    await add_function(store, "alpha", package="tools")

    async def names(package: str | None, name_like: str | None) -> tuple[list[str], int]:
        found, count = await store.list_functions(PROJECT, package, name_like, 0, 100)
        return sorted(f.name for f in found), count

    assert await names("tools", None) == (["alpha"], 1)
    assert await names("default", None) == (["a_b", "alpha", "alphabet", "axb", "beta"], 5)
    assert await names(None, "alpha") == (["alpha", "alpha", "alphabet"], 3)
    assert await names("default", "bet") == (["alphabet", "beta"], 2)
    assert await names(None, "a_b") == (["a_b"], 1)  # a substring, not a LIKE pattern
    assert await names(None, "zzz") == ([], 0)


async def test_update_replaces_code_and_drops_the_unused_package(store: Store) -> None:
    created = await add_function(store, "hello", code=b"version 1")
    updated = replace(
        created,
        code_digest=digest(b"version 2"),
        code_size=len(b"version 2"),
        timeout=60,
        description="second",
        last_modified=BASE + 5,
    )
    await store.update_function(updated, b"version 2")
    assert await store.get_function_by_id(created.id) == updated
    assert await store.get_function(PROJECT, "default", "hello") == updated
    assert await store.get_code(digest(b"version 2")) == b"version 2"
    assert await store.get_code(digest(b"version 1")) is None


async def test_update_without_code_keeps_the_package(store: Store) -> None:
    created = await add_function(store, "hello", code=b"version 1")
    updated = replace(created, memory_size=256, handler="main.run", last_modified=BASE + 5)
    await store.update_function(updated, None)
    assert await store.get_function_by_id(created.id) == updated
    assert await store.get_code(created.code_digest) == b"version 1"


async def test_shared_code_package_stays_while_a_function_uses_it(store: Store) -> None:
    first = await add_function(store, "first", code=b"shared")
    second = await add_function(store, "second", code=b"shared")
    moved = replace(first, code_digest=digest(b"own"), code_size=3)
    await store.update_function(moved, b"own")
    assert await store.get_code(digest(b"shared")) == b"shared"
    await store.delete_function(second)
    assert await store.get_code(digest(b"shared")) is None
    assert await store.get_code(digest(b"own")) == b"own"


async def test_code_size_and_referenced_digests_follow_functions(store: Store) -> None:
    assert await store.total_code_size(PROJECT) == 0
    assert await store.referenced_code_digests() == set()
    first = await add_function(store, "first", code=b"shared")
    second = await add_function(store, "second", code=b"shared")
    await add_function(store, "third", code=b"other project", project=OTHER_PROJECT)
    # Each function counts its code, also when another one shares the package.
    assert await store.total_code_size(PROJECT) == 2 * len(b"shared")
    assert await store.total_code_size(OTHER_PROJECT) == len(b"other project")
    assert await store.referenced_code_digests() == {digest(b"shared"), digest(b"other project")}

    await store.update_function(replace(first, code_digest=digest(b"new"), code_size=3), b"new")
    await store.delete_function(second)

    assert await store.total_code_size(PROJECT) == 3
    assert await store.referenced_code_digests() == {digest(b"new"), digest(b"other project")}


async def test_delete_function_deletes_its_invocations_config_and_code(store: Store) -> None:
    doomed = await add_function(store, "doomed")
    kept = await add_function(store, "kept")
    await add_invocations(store, doomed.id, [BASE, BASE + 1, BASE + 2])
    kept_ids = await add_invocations(store, kept.id, [BASE, BASE + 1])
    await claim_ids(store, BASE + 1)  # some of the doomed function's rows are RUNNING
    await store.upsert_async_config(AsyncConfig(doomed.id, 600, 0, {}, False, BASE, BASE))

    await store.delete_function(doomed)

    assert await store.get_function_by_id(doomed.id) is None
    assert await store.get_function(PROJECT, "default", "doomed") is None
    assert await store.get_code(doomed.code_digest) is None
    assert (await store.list_invocations(query(doomed.id))).count == 0
    assert await store.count_by_status(doomed.id) == {}
    assert await store.get_async_config(doomed.id) is None
    assert set(await records(store, kept.id)) == set(kept_ids)
    assert await store.get_function_by_id(kept.id) == kept


# -- invocation records -----------------------------------------------------------------------


async def test_new_invocation_is_waiting(store: Store) -> None:
    function = await add_function(store, "hello")
    (request_id,) = await add_invocations(store, function.id, [BASE])
    page = await store.list_invocations(query(function.id))
    assert page.invocations == [
        Invocation(
            request_id=request_id,
            function_id=function.id,
            status=Status.WAIT,
            start_time=BASE,
            end_time=None,
            error_code=0,
            error_message="",
            attempt=0,
            version="latest",
        )
    ]


async def test_duplicate_request_id_is_a_conflict_and_spares_its_neighbours(store: Store) -> None:
    function = await add_function(store, "hello")
    taken = new_invocation(function.id, BASE)
    await store.insert_invocation(taken)
    others = [new_invocation(function.id, BASE + i) for i in range(1, 50)]
    results = await asyncio.gather(
        *(store.insert_invocation(row) for row in [*others[:25], taken, *others[25:]]),
        return_exceptions=True,
    )
    assert isinstance(results[25], ConflictError)
    assert [r for i, r in enumerate(results) if i != 25] == [None] * 49
    assert (await store.list_invocations(query(function.id))).count == 50


async def test_list_is_newest_first_with_count_and_next_marker(store: Store) -> None:
    function = await add_function(store, "hello")
    other = await add_function(store, "other")
    ids = await add_invocations(store, function.id, [BASE + i * 1000 for i in range(10)])
    await add_invocations(store, other.id, [BASE + 500, BASE + 1500])
    newest_first = ids[::-1]

    page = await store.list_invocations(query(function.id))
    assert [r.request_id for r in page.invocations] == newest_first
    assert (page.count, page.next_marker) == (10, 10)

    page = await store.list_invocations(query(function.id, marker=0, limit=4))
    assert [r.request_id for r in page.invocations] == newest_first[:4]
    assert (page.count, page.next_marker) == (10, 4)
    page = await store.list_invocations(query(function.id, marker=8, limit=4))
    assert [r.request_id for r in page.invocations] == newest_first[8:]
    assert (page.count, page.next_marker) == (10, 10)
    page = await store.list_invocations(query(function.id, marker=10, limit=4))
    assert (page.invocations, page.count, page.next_marker) == ([], 10, 10)


async def test_equal_start_times_are_ordered_by_request_id_and_page_stably(store: Store) -> None:
    function = await add_function(store, "hello")
    ids = [f"req-{i:02d}" for i in range(12)]
    for request_id in ids:
        await store.insert_invocation(new_invocation(function.id, BASE, request_id=request_id))
    whole = await store.list_invocations(query(function.id))
    assert [r.request_id for r in whole.invocations] == sorted(ids, reverse=True)
    pages = []
    for marker in range(0, 12, 5):
        page = await store.list_invocations(query(function.id, marker=marker, limit=5))
        pages += [r.request_id for r in page.invocations]
    assert pages == sorted(ids, reverse=True)


async def test_status_filter_and_count_by_status(store: Store) -> None:
    function = await add_function(store, "hello")
    other = await add_function(store, "other")
    ids = await add_invocations(store, function.id, [BASE + i for i in range(7)])
    await store.insert_invocation(new_invocation(other.id, BASE, available_at=FAR))
    claimed = await claim(store, "w1", BASE + 4, 5, FAR)  # rows 0-4 are due
    by_id = {c.request_id: c for c in claimed}
    outcomes = {ids[0]: Status.SUCCESS, ids[1]: Status.FAIL, ids[2]: Status.DISCARD}
    for request_id, status in outcomes.items():
        assert await store.finish_invocation(
            request_id, by_id[request_id].attempt, Outcome(status), BASE + 100
        )
    expected = {
        Status.SUCCESS: {ids[0]},
        Status.FAIL: {ids[1]},
        Status.DISCARD: {ids[2]},
        Status.RUNNING: {ids[3], ids[4]},
        Status.WAIT: {ids[5], ids[6]},
    }
    for status, members in expected.items():
        page = await store.list_invocations(query(function.id, statuses=(status,)))
        assert {r.request_id for r in page.invocations} == members, status
        assert {r.status for r in page.invocations} <= {status}
        assert page.count == len(members)
    active = await store.list_invocations(
        query(function.id, statuses=(Status.WAIT, Status.RUNNING))
    )
    assert {r.request_id for r in active.invocations} == {ids[3], ids[4], ids[5], ids[6]}
    assert active.count == 4
    assert await store.count_by_status(function.id) == {s: len(m) for s, m in expected.items()}
    assert await store.count_by_status(other.id) == {Status.WAIT: 1}


async def test_request_ids_filter_with_statuses(store: Store) -> None:
    function = await add_function(store, "hello")
    other = await add_function(store, "other")
    running, waiting, early = (
        new_invocation(function.id, BASE + 10, available_at=BASE),
        new_invocation(function.id, BASE + 20, available_at=FAR),
        new_invocation(function.id, BASE - HOUR, available_at=FAR),
    )
    foreign = new_invocation(other.id, BASE + 30, available_at=FAR)
    for row in (running, waiting, early, foreign):
        await store.insert_invocation(row)
    assert await claim_ids(store, BASE) == {running.request_id}
    wanted = (running.request_id, waiting.request_id, early.request_id, foreign.request_id, "nope")

    page = await store.list_invocations(query(function.id, begin=BASE, request_ids=wanted))
    assert [r.request_id for r in page.invocations] == [waiting.request_id, running.request_id]
    assert (page.count, page.next_marker) == (2, 2)

    page = await store.list_invocations(
        query(function.id, begin=BASE, request_ids=wanted, statuses=(Status.WAIT,))
    )
    assert [r.request_id for r in page.invocations] == [waiting.request_id]
    assert page.count == 1

    page = await store.list_invocations(
        query(function.id, begin=BASE, request_ids=wanted, marker=1, limit=1)
    )
    assert [r.request_id for r in page.invocations] == [running.request_id]
    assert (page.count, page.next_marker) == (2, 2)

    page = await store.list_invocations(
        query(function.id, request_ids=wanted, statuses=(Status.WAIT, Status.RUNNING))
    )
    assert {r.request_id for r in page.invocations} == {
        running.request_id,
        waiting.request_id,
        early.request_id,
    }


async def test_time_window_bounds_are_inclusive(store: Store) -> None:
    function = await add_function(store, "hello")
    ids = await add_invocations(store, function.id, [BASE + i * 1000 for i in range(5)])

    async def window(begin: int, end: int, **kwargs: Any) -> list[str]:
        page = await store.list_invocations(query(function.id, begin=begin, end=end, **kwargs))
        assert page.count == len(page.invocations)
        return [r.request_id for r in page.invocations]

    assert await window(BASE + 1000, BASE + 3000) == [ids[3], ids[2], ids[1]]
    assert await window(BASE + 2000, BASE + 2000) == [ids[2]]
    assert await window(BASE + 1001, BASE + 2999) == [ids[2]]
    assert await window(BASE + 4001, FAR) == []
    assert await window(BASE + 1000, BASE + 3000, statuses=(Status.WAIT,)) == [
        ids[3],
        ids[2],
        ids[1],
    ]


async def test_deep_offset(store: Store) -> None:
    function = await add_function(store, "hello")
    total = 2_500
    ids = await add_invocations(store, function.id, [BASE + i for i in range(total)])
    newest_first = ids[::-1]
    for statuses in ((), (Status.WAIT,)):
        page = await store.list_invocations(
            query(function.id, marker=1200, limit=100, statuses=statuses)
        )
        assert [r.request_id for r in page.invocations] == newest_first[1200:1300]
        assert (page.count, page.next_marker) == (total, 1300)
        page = await store.list_invocations(
            query(function.id, marker=2450, limit=100, statuses=statuses)
        )
        assert [r.request_id for r in page.invocations] == newest_first[2450:]
        assert (page.count, page.next_marker) == (total, total)


# -- the queue --------------------------------------------------------------------------------


async def test_claim_takes_due_waiting_rows_oldest_available_first(store: Store) -> None:
    function = await add_function(store, "hello")
    rows = {
        name: new_invocation(
            function.id, BASE, available_at=BASE + offset, max_attempts=3, depth=offset // 100
        )
        for name, offset in (("a300", 300), ("a100", 100), ("now", 1000), ("a200", 200))
    }
    rows["later"] = new_invocation(function.id, BASE, available_at=BASE + 10_000)
    for row in rows.values():
        await store.insert_invocation(row)

    claimed = await claim(store, "w1", BASE + 1000, 2, BASE + HOUR)
    assert {c.request_id for c in claimed} == {rows["a100"].request_id, rows["a200"].request_id}
    for item in claimed:
        row = next(r for r in rows.values() if r.request_id == item.request_id)
        assert (item.function_id, item.version, item.payload) == (
            function.id,
            "latest",
            row.payload,
        )
        assert (item.attempt, item.expires_at) == (1, row.expires_at)
        assert (item.max_attempts, item.depth, item.last_error) == (3, row.depth, "")
    statuses = {
        r.request_id: (r.status, r.attempt) for r in (await records(store, function.id)).values()
    }
    assert statuses[rows["a100"].request_id] == (Status.RUNNING, 1)
    assert statuses[rows["a300"].request_id] == (Status.WAIT, 0)

    assert await claim_ids(store, BASE + 1000) == {rows["a300"].request_id, rows["now"].request_id}
    assert await claim_ids(store, BASE + 1000) == set()  # running rows are not taken again
    assert await claim_ids(store, BASE + 10_000) == {rows["later"].request_id}


async def test_claim_respects_the_limit_across_functions(store: Store) -> None:
    first = await add_function(store, "first")
    second = await add_function(store, "second")
    await add_invocations(store, first.id, [BASE + 2 * i for i in range(5)])
    await add_invocations(store, second.id, [BASE + 2 * i + 1 for i in range(5)])
    batches = [len(await claim_ids(store, BASE + 100, limit=3)) for _ in range(4)]
    assert batches == [3, 3, 3, 1]


async def test_requeued_row_is_claimed_again_with_the_next_attempt(store: Store) -> None:
    function = await add_function(store, "hello")
    (request_id,) = await add_invocations(store, function.id, [BASE])
    assert await claim_ids(store, BASE) == {request_id}

    assert not await store.requeue_invocation(
        request_id, 2, Outcome(Status.WAIT, 0, "", retry_at=BASE + 5000), BASE + 5000
    )  # wrong attempt
    assert await store.requeue_invocation(
        request_id, 1, Outcome(Status.WAIT, 4200, "boom", retry_at=BASE + 5000), BASE + 5000
    )
    record = (await records(store, function.id))[request_id]
    assert (record.status, record.attempt) == (Status.WAIT, 1)
    assert (record.error_code, record.error_message) == (4200, "boom")  # why it is retried
    assert not await store.requeue_invocation(
        request_id, 1, Outcome(Status.WAIT, 0, "", retry_at=BASE + 6000), BASE + 6000
    )  # no longer RUNNING
    assert await store.next_available_at() == BASE + 5000
    assert await store.list_expired_leases(FAR, 10) == []

    assert await claim_ids(store, BASE + 4999) == set()
    (again,) = await claim(store, "w2", BASE + 5000, 10, BASE + HOUR)
    assert (again.request_id, again.attempt, again.last_error) == (request_id, 2, "boom")
    assert (await records(store, function.id))[request_id].attempt == 2


async def test_concurrent_claims_never_return_the_same_row(store: Store) -> None:
    function = await add_function(store, "hello")
    await store.update_function(replace(function, concurrency=1000), None)
    ids = await add_invocations(store, function.id, [BASE + i for i in range(500)])

    async def claimer(number: int) -> list[str]:
        taken: list[str] = []
        while batch := await claim(store, f"w{number}", BASE + 1000, 7, FAR):
            taken += [c.request_id for c in batch]
        return taken

    results = await asyncio.gather(*(claimer(n) for n in range(20)))
    claimed = Counter(request_id for taken in results for request_id in taken)
    assert set(claimed) == set(ids)
    assert set(claimed.values()) == {1}
    assert await store.count_by_status(function.id) == {Status.RUNNING: 500}


async def test_claims_hold_each_functions_concurrency_together(store: Store) -> None:
    busy = await add_function(store, "busy")
    await store.update_function(replace(busy, concurrency=3), None)
    idle = await add_function(store, "idle")
    # The busy function's backlog comes first; the other function's rows must not hide behind it.
    busy_ids = await add_invocations(store, busy.id, [BASE + i for i in range(50)])
    idle_ids = await add_invocations(store, idle.id, [BASE + 100 + i for i in range(5)])

    async def claimer(number: int) -> list[str]:
        taken: list[str] = []
        while batch := await claim(store, f"w{number}", BASE + 1000, 4, FAR):
            taken += [c.request_id for c in batch]
        return taken

    results = await asyncio.gather(*(claimer(n) for n in range(6)))
    claimed = {request_id for taken in results for request_id in taken}
    assert claimed & set(busy_ids) == set(busy_ids[:3])
    assert set(idle_ids) <= claimed
    assert await store.count_by_status(busy.id) == {Status.RUNNING: 3, Status.WAIT: 47}
    first = busy_ids[0]
    assert await store.finish_invocation(first, 1, Outcome(Status.SUCCESS), BASE + 2000)
    again = await claim(store, "w9", BASE + 1000, 10, FAR)
    assert [c.request_id for c in again] == [busy_ids[3]]


async def test_finish_needs_a_running_row_with_that_attempt(store: Store) -> None:
    function = await add_function(store, "hello")
    started = new_invocation(function.id, BASE, available_at=BASE)
    waiting = new_invocation(function.id, BASE + 1, available_at=FAR)
    for row in (started, waiting):
        await store.insert_invocation(row)
    assert await claim_ids(store, BASE) == {started.request_id}

    assert not await store.finish_invocation(waiting.request_id, 0, Outcome(Status.SUCCESS), BASE)
    assert not await store.finish_invocation(started.request_id, 2, Outcome(Status.SUCCESS), BASE)
    assert not await store.finish_invocation("missing", 1, Outcome(Status.SUCCESS), BASE)
    assert await store.finish_invocation(
        started.request_id, 1, Outcome(Status.FAIL, 4200, "boom"), BASE + 7
    )
    finished = (await records(store, function.id))[started.request_id]
    assert (finished.status, finished.end_time, finished.error_code, finished.error_message) == (
        Status.FAIL,
        BASE + 7,
        4200,
        "boom",
    )
    assert finished.attempt == 1

    assert not await store.finish_invocation(
        started.request_id, 1, Outcome(Status.SUCCESS, 0, "", b"{}"), BASE + 9
    )
    assert (await records(store, function.id))[started.request_id] == finished
    assert (await records(store, function.id))[waiting.request_id].status is Status.WAIT
    assert await store.list_expired_leases(FAR, 10) == []


async def test_list_expired_leases(store: Store) -> None:
    function = await add_function(store, "hello")
    short, long, finished, waiting = (
        new_invocation(function.id, BASE, available_at=BASE + i) for i in range(4)
    )
    for row in (short, long, finished, waiting):
        await store.insert_invocation(row)
    await claim(store, "w1", BASE, 10, BASE + 1000)  # short
    await claim(store, "w2", BASE + 1, 10, BASE + 5000)  # long
    await claim(store, "w3", BASE + 2, 10, BASE + 1000)  # finished
    assert await store.finish_invocation(finished.request_id, 1, Outcome(Status.SUCCESS), BASE)

    assert await store.list_expired_leases(BASE + 1000, 10) == []  # a lease ending now is live
    (expired,) = await store.list_expired_leases(BASE + 1001, 10)
    assert (expired.request_id, expired.attempt, expired.payload) == (
        short.request_id,
        1,
        short.payload,
    )
    both = await store.list_expired_leases(BASE + 5001, 10)
    assert {c.request_id for c in both} == {short.request_id, long.request_id}
    assert len(await store.list_expired_leases(BASE + 5001, 1)) == 1
    # Listing changes nothing: the rows are still RUNNING until decided.
    assert (await records(store, function.id))[short.request_id].status is Status.RUNNING


async def test_renew_leases_extends_only_that_workers_running_rows(store: Store) -> None:
    function = await add_function(store, "hello")
    ids = await add_invocations(store, function.id, [BASE, BASE + 1, BASE + 2, BASE + 3])
    mine = await claim(store, "w1", BASE + 1, 10, BASE + 1000)  # ids 0 and 1
    theirs = await claim(store, "w2", BASE + 2, 10, BASE + 1000)  # id 2
    assert {c.request_id for c in mine} == set(ids[:2])
    await store.finish_invocation(ids[1], 1, Outcome(Status.SUCCESS), BASE)

    assert await store.renew_leases("w1", BASE + 9000) == 1
    expired = await store.list_expired_leases(BASE + 5000, 10)
    assert [c.request_id for c in expired] == [c.request_id for c in theirs]


async def test_next_available_at(store: Store) -> None:
    assert await store.next_available_at() is None
    function = await add_function(store, "hello")
    for offset in (500, 300, 900):
        await store.insert_invocation(new_invocation(function.id, BASE, available_at=BASE + offset))
    assert await store.next_available_at() == BASE + 300
    claimed = await claim(store, "w1", BASE + 300, 1, FAR)
    assert await store.next_available_at() == BASE + 500  # running rows do not count
    claimed += await claim(store, "w1", BASE + 900, 10, FAR)
    for item in claimed:
        await store.finish_invocation(item.request_id, 1, Outcome(Status.SUCCESS), BASE)
    assert await store.next_available_at() is None


# -- the async lifecycle: follow-ups, retries, cancels, configs, idempotency, retention -------


async def claim_and_finish(store: Store, rows: dict[str, Status], now: int) -> None:
    """Claim every due row and finish the ones named in ``rows`` with the status given."""
    for item in await claim(store, "w1", now, 1000, FAR):
        if item.request_id in rows:
            status = rows[item.request_id]
            assert await store.finish_invocation(
                item.request_id, item.attempt, Outcome(status), now
            )


async def test_finish_inserts_its_follow_up_only_when_it_finishes(store: Store) -> None:
    function = await add_function(store, "hello")
    destination = await add_function(store, "destination")
    (request_id,) = await add_invocations(store, function.id, [BASE])
    assert await claim_ids(store, BASE) == {request_id}
    follow_up = new_invocation(destination.id, BASE + 5, depth=1)

    assert not await store.finish_invocation(
        request_id, 2, Outcome(Status.SUCCESS), BASE + 5, follow_up
    )
    assert await records(store, destination.id) == {}
    assert await store.finish_invocation(
        request_id, 1, Outcome(Status.SUCCESS, 0, "", b"{}"), BASE + 5, follow_up
    )
    assert {r: rec.status for r, rec in (await records(store, destination.id)).items()} == {
        follow_up.request_id: Status.WAIT
    }
    (claimed,) = await claim(store, "w1", BASE + 5, 10, FAR)
    assert (claimed.request_id, claimed.depth) == (follow_up.request_id, 1)


async def test_outcomes_written_together_each_answer_for_itself(store: Store) -> None:
    # Outcomes that arrive together may share one write (PostgreSQL: one statement); each
    # still ends only its own row, answers for itself, and a refused one fails alone.
    function = await add_function(store, "hello")
    ids = await add_invocations(store, function.id, [BASE + i for i in range(6)])
    assert len(await claim(store, "w1", BASE + 10, 10, FAR)) == 6
    success, failure, retry, stale, refused, discard = ids
    written = await asyncio.gather(
        store.finish_invocation(success, 1, Outcome(Status.SUCCESS, 0, "", b'"ok"'), BASE + 20),
        store.finish_invocation(failure, 1, Outcome(Status.FAIL, 4200, "boom"), BASE + 21),
        store.requeue_invocation(
            retry, 1, Outcome(Status.WAIT, 4200, "again", retry_at=BASE + 500), BASE + 22
        ),
        store.finish_invocation(stale, 2, Outcome(Status.SUCCESS), BASE + 23),
        store.finish_invocation(refused, 1, Outcome(Status.FAIL, 4200, "\ud800"), BASE + 24),
        store.finish_invocation(discard, 1, Outcome(Status.DISCARD, 4211, "old"), BASE + 25),
        return_exceptions=True,
    )
    assert list(written[:4]) == [True, True, True, False] and written[5] is True
    assert isinstance(written[4], Exception)

    found = await records(store, function.id)
    assert {r: (found[r].status, found[r].error_code, found[r].end_time) for r in ids} == {
        success: (Status.SUCCESS, 0, BASE + 20),
        failure: (Status.FAIL, 4200, BASE + 21),
        retry: (Status.WAIT, 4200, None),
        stale: (Status.RUNNING, 0, None),
        refused: (Status.RUNNING, 0, None),
        discard: (Status.DISCARD, 4211, BASE + 25),
    }
    assert await store.next_available_at() == BASE + 500
    assert {c.request_id for c in await store.list_expired_leases(FAR + 1, 10)} == {
        stale,
        refused,
    }
    history = {}
    for request_id in (success, retry):
        detail = await store.get_invocation(request_id)
        assert detail is not None
        history[request_id] = [
            (a.attempt, a.outcome, a.worker_id, a.start_time, a.end_time, a.error_message)
            for a in detail.attempts
        ]
    assert history == {
        success: [(1, "SUCCESS", "w1", BASE + 10, BASE + 20, "")],
        retry: [(1, "RETRY", "w1", BASE + 10, BASE + 22, "again")],
    }
    (again,) = await claim(store, "w2", BASE + 500, 10, FAR)
    assert (again.request_id, again.attempt, again.last_error) == (retry, 2, "again")


@pytest.mark.postgres
async def test_a_write_waiting_for_its_batch_fails_when_the_store_closes() -> None:
    # Accepts and outcomes wait for a batch; closing the store must answer them, not hang them.
    with database_url("postgres") as url:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        function = await add_function(store, "hello")
        (request_id,) = await add_invocations(store, function.id, [BASE])
        await claim(store, "w1", BASE, 10, FAR)
        ending = asyncio.create_task(
            store.finish_invocation(request_id, 1, Outcome(Status.SUCCESS), BASE + 1)
        )
        accept = asyncio.create_task(store.insert_invocation(new_invocation(function.id, BASE)))
        await asyncio.sleep(0)  # both are queued for their batches
        await store.close()
        answers = await asyncio.wait_for(
            asyncio.gather(ending, accept, return_exceptions=True), timeout=5
        )
        for answer in answers:
            assert answer in (True, None) or isinstance(answer, StoreError), answer


async def test_accepts_written_together_keep_every_column_and_a_duplicate_fails_alone(
    store: Store,
) -> None:
    # Concurrent accepts share one write (PostgreSQL: one statement over arrays; SQLite: one
    # executemany): each row keeps its own values, and a duplicate fails only itself.
    function = await add_function(store, "hello")
    existing = new_invocation(function.id, BASE)
    await store.insert_invocation(existing)
    rows = [
        new_invocation(function.id, BASE + 1, max_attempts=3, depth=2, rerun_of="earlier"),
        # the same record again (PostgreSQL keeps request ids unique per start_time: its
        # partitions' keys hold it; the service draws random ids, unique by construction)
        new_invocation(function.id, BASE, request_id=existing.request_id),
        replace(new_invocation(function.id, BASE + 3), payload=b"\x00\xff binary"),
        new_invocation(function.id, BASE + 4, available_at=BASE + 500),
    ]
    answers = await asyncio.gather(
        *(store.insert_invocation(row) for row in rows), return_exceptions=True
    )
    assert answers[0] is None and answers[2] is None and answers[3] is None
    assert isinstance(answers[1], ConflictError)
    for row in (rows[0], rows[2], rows[3]):
        found = await store.get_invocation(row.request_id)
        assert found is not None
        assert (found.record.start_time, found.max_attempts, found.rerun_of) == (
            row.start_time,
            row.max_attempts,
            row.rerun_of,
        )
    claimed = await claim(store, "w1", BASE + 100, 10, FAR)
    by_id = {c.request_id: c for c in claimed}
    assert set(by_id) == {existing.request_id, rows[0].request_id, rows[2].request_id}
    assert by_id[rows[2].request_id].payload == b"\x00\xff binary"
    assert (by_id[rows[0].request_id].depth, by_id[rows[0].request_id].max_attempts) == (2, 3)
    # rows[3] is not due yet: it waits
    assert await claim_ids(store, BASE + 500) == {rows[3].request_id}


async def test_get_invocation_keeps_the_history_of_attempts(store: Store) -> None:
    function = await add_function(store, "hello")
    row = new_invocation(function.id, BASE, max_attempts=3, rerun_of="earlier-request")
    await store.insert_invocation(row)
    await claim(store, "w1", BASE + 10, 10, FAR)
    assert await store.requeue_invocation(
        row.request_id, 1, Outcome(Status.WAIT, 4200, "boom", retry_at=BASE + 20), BASE + 20
    )
    await claim(store, "w2", BASE + 20, 10, FAR)
    assert await store.finish_invocation(
        row.request_id, 2, Outcome(Status.SUCCESS, 0, "", b"{}"), BASE + 30
    )
    assert not await store.finish_invocation(
        row.request_id, 2, Outcome(Status.FAIL, 4200, "late"), BASE + 40
    )

    detail = await store.get_invocation(row.request_id)
    assert detail is not None
    assert detail.record == Invocation(
        row.request_id, function.id, Status.SUCCESS, BASE, BASE + 30, 0, "", 2, "latest"
    )
    assert (detail.project_id, detail.max_attempts, detail.rerun_of) == (
        PROJECT,
        3,
        "earlier-request",
    )
    history = [
        (a.attempt, a.worker_id, a.start_time, a.outcome, a.error_code, a.error_message)
        for a in detail.attempts
    ]
    assert history == [
        (1, "w1", BASE + 10, "RETRY", 4200, "boom"),
        (2, "w2", BASE + 20, "SUCCESS", 0, ""),
    ]
    assert detail.attempts[1].end_time == BASE + 30
    assert await store.get_invocation("no-such-request") is None


async def test_claim_expired_takes_waiting_rows_past_their_age(store: Store) -> None:
    function = await add_function(store, "hello")
    older, old, live = (
        new_invocation(function.id, BASE, available_at=FAR, expires_at=BASE + 50),
        new_invocation(function.id, BASE, available_at=FAR, expires_at=BASE + 100),
        new_invocation(function.id, BASE, available_at=BASE, expires_at=FAR),
    )
    for row in (older, old, live):
        await store.insert_invocation(row)

    (first,) = await claim_expired(store, "w1", BASE + 100, 1, FAR)
    assert (first.request_id, first.attempt) == (older.request_id, 1)
    (second,) = await claim_expired(store, "w1", BASE + 100, 10, FAR)
    assert second.request_id == old.request_id
    assert await claim_expired(store, "w1", BASE + 100, 10, FAR) == []
    statuses = {r: rec.status for r, rec in (await records(store, function.id)).items()}
    assert statuses == {
        older.request_id: Status.RUNNING,
        old.request_id: Status.RUNNING,
        live.request_id: Status.WAIT,
    }


async def test_claim_due_takes_expired_and_runnable_rows_in_one_call(store: Store) -> None:
    function = await add_function(store, "hello")
    stale = new_invocation(function.id, BASE, available_at=FAR, expires_at=BASE + 50)
    due = [new_invocation(function.id, BASE + i, available_at=BASE + i) for i in range(3)]
    later = new_invocation(function.id, BASE, available_at=FAR)
    for row in (stale, *due, later):
        await store.insert_invocation(row)

    expired, runnable = await store.claim_due("w1", BASE + 100, 2, 10, FAR)
    assert [c.request_id for c in expired] == [stale.request_id]
    assert [c.request_id for c in runnable] == [due[0].request_id, due[1].request_id]
    assert all(c.attempt == 1 for c in (*expired, *runnable))
    expired, runnable = await store.claim_due("w2", BASE + 100, 10, 10, FAR)
    assert (expired, [c.request_id for c in runnable]) == ([], [due[2].request_id])
    assert await store.claim_due("w3", BASE + 100, 10, 10, FAR) == ([], [])
    statuses = {r: rec.status for r, rec in (await records(store, function.id)).items()}
    assert statuses[later.request_id] is Status.WAIT
    assert Counter(statuses.values()) == {Status.RUNNING: 4, Status.WAIT: 1}


async def test_a_claim_planned_on_a_small_table_takes_no_more_than_its_limit(store: Store) -> None:
    """PostgreSQL keeps a prepared statement's plan for the connection: claims made while the
    table held a row or two must not, once it holds thousands, take more than their limit."""
    function = await add_function(store, "hello")
    for i in range(20):  # past psycopg's and PostgreSQL's thresholds for a generic plan
        await store.insert_invocation(new_invocation(function.id, BASE + i, available_at=BASE))
        assert len(await claim(store, "w1", BASE + 100, 1, FAR)) == 1
    await asyncio.gather(
        *(
            store.insert_invocation(new_invocation(function.id, BASE + i, available_at=BASE))
            for i in range(3000)
        )
    )
    for _ in range(3):
        assert len(await claim(store, "w1", BASE + 100, 4, FAR)) == 4


async def test_an_expired_claim_planned_on_a_small_table_takes_no_more_than_its_limit(
    store: Store,
) -> None:
    function = await add_function(store, "hello")
    for i in range(20):
        stale = new_invocation(function.id, BASE + i, available_at=FAR, expires_at=BASE)
        await store.insert_invocation(stale)
        assert len(await claim_expired(store, "w1", BASE + 100, 1, FAR)) == 1
    await asyncio.gather(
        *(
            store.insert_invocation(
                new_invocation(function.id, BASE + i, available_at=FAR, expires_at=BASE)
            )
            for i in range(3000)
        )
    )
    for _ in range(3):
        assert len(await claim_expired(store, "w1", BASE + 100, 4, FAR)) == 4


async def test_every_claimed_row_carries_its_accept_time(store: Store) -> None:
    # The dispatch histogram measures from the accept (start_time), exactly.
    function = await add_function(store, "hello")
    due, expired, canceled, lost = (
        new_invocation(function.id, BASE + 1, available_at=BASE + 10),
        new_invocation(function.id, BASE + 2, available_at=FAR, expires_at=BASE + 10),
        new_invocation(function.id, BASE + 3, available_at=FAR),
        new_invocation(function.id, BASE + 4, available_at=BASE + 10),
    )
    for row in (due, expired, canceled, lost):
        await store.insert_invocation(row)
    expired_rows, runnable = await store.claim_due("w1", BASE + 20, 10, 10, BASE + 30)
    assert {(c.request_id, c.accepted_at) for c in expired_rows + runnable} == {
        (due.request_id, BASE + 1),
        (expired.request_id, BASE + 2),
        (lost.request_id, BASE + 4),
    }
    taken = await store.claim_waiting(canceled.request_id, function.id, "c", BASE + 20, FAR)
    assert taken is not None and taken.accepted_at == BASE + 3
    recovered = await store.list_expired_leases(BASE + 31, 10)
    assert {c.request_id: c.accepted_at for c in recovered}[lost.request_id] == BASE + 4


async def limited_and_other(store: Store) -> tuple[Function, Function]:
    """A function with room for two invocations at once, and another one."""
    limited = await add_function(store, "limited")
    await store.update_function(replace(limited, concurrency=2), None)
    return limited, await add_function(store, "other")


async def test_an_accepted_row_starts_at_once_only_within_the_claims_rules(
    store: Store, backend: Backend
) -> None:
    # PostgreSQL starts the row under the accepting node's worker (no claim round trip) while
    # the function has room and nothing older waits; SQLite inserts it WAIT (it has no round
    # trip to save). Either way the claims' rules hold.
    starts = backend.name == "postgres"
    function, other = await limited_and_other(store)
    rows = [new_invocation(function.id, BASE + i) for i in range(3)]
    started = [await store.insert_started_invocation(row, "w1", FAR) for row in rows]
    assert started == [starts, starts, False]  # the third: no room under concurrency 2
    found = await records(store, function.id)
    expected = Status.RUNNING if starts else Status.WAIT
    assert [(found[r.request_id].status, found[r.request_id].attempt) for r in rows] == [
        (expected, 1 if starts else 0),
        (expected, 1 if starts else 0),
        (Status.WAIT, 0),
    ]
    # Something due waits (the third row, at its limit): the other function's row waits too.
    late = new_invocation(other.id, BASE + 10)
    assert not await store.insert_started_invocation(late, "w1", FAR)
    # A claim counts the started rows: nothing of the function runs past its limit.
    claimed = await claim(store, "w2", BASE + 20, 10, FAR)
    assert {c.request_id for c in claimed} == (
        {late.request_id} if starts else {rows[0].request_id, rows[1].request_id, late.request_id}
    )
    if starts:  # started rows run under w1's lease, and are recovered when it ends
        assert await store.renew_leases("w1", BASE + 500) == 2
        recovered = await store.list_expired_leases(BASE + 501, 10)
        assert {(c.request_id, c.attempt, c.accepted_at) for c in recovered} == {
            (rows[0].request_id, 1, BASE),
            (rows[1].request_id, 1, BASE + 1),
        }


async def test_accepts_started_together_start_each_functions_first_rows_within_its_room(
    store: Store, backend: Backend
) -> None:
    # Accepts that arrive together share one batch, and PostgreSQL starts that batch's rows in
    # one statement: each function's earliest rows up to its room, each under its own lease;
    # the rest wait, unchanged.
    starts = backend.name == "postgres"
    limited, other = await limited_and_other(store)
    rows = [new_invocation(other.id, BASE, rerun_of="earlier")] + [
        new_invocation(limited.id, BASE + 1 + i) for i in range(4)
    ]
    leases = [BASE + 100 + i for i in range(len(rows))]
    started = await asyncio.gather(
        *(
            store.insert_started_invocation(r, "w1", lease)
            for r, lease in zip(rows, leases, strict=True)
        )
    )
    assert started == [starts, starts, starts, False, False]
    found = await records(store, limited.id) | await records(store, other.id)
    assert [(found[r.request_id].status, found[r.request_id].attempt) for r in rows] == [
        (Status.RUNNING, 1) if starts else (Status.WAIT, 0),
        (Status.RUNNING, 1) if starts else (Status.WAIT, 0),
        (Status.RUNNING, 1) if starts else (Status.WAIT, 0),
        (Status.WAIT, 0),
        (Status.WAIT, 0),
    ]
    if starts:  # each under its own lease, its accept time its attempt's start
        assert {
            (c.request_id, c.accepted_at, c.attempt)
            for c in await store.list_expired_leases(BASE + 102, 10)
        } == {(rows[0].request_id, BASE, 1), (rows[1].request_id, BASE + 1, 1)}
    # What waits is claimed as any accepted row, once the function has room again.
    claimed = await claim(store, "w2", BASE + 20, 10, FAR)
    assert {c.request_id for c in claimed} == (
        set() if starts else {rows[0].request_id, rows[1].request_id, rows[2].request_id}
    )
    sent = {r.request_id: r.payload for r in rows}
    assert all(c.payload == sent[c.request_id] for c in claimed)


@pytest.mark.postgres
async def test_an_accepted_row_waits_while_a_claim_holds_the_lock(tmp_path: Path) -> None:
    # Never waited for: a claim running elsewhere means the row waits like any other.
    with database_url("postgres") as url:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        try:
            function = await add_function(store, "hello")
            async with await psycopg.AsyncConnection.connect(url) as conn:
                key = await postgres_module.claim_lock_key(conn)
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                    held = new_invocation(function.id, BASE)
                    assert not await store.insert_started_invocation(held, "w1", FAR)
            free = new_invocation(function.id, BASE + 1)
            # The held row waits and is due, so the next one waits behind it.
            assert not await store.insert_started_invocation(free, "w1", FAR)
            assert await claim_ids(store, BASE + 5) == {held.request_id, free.request_id}
            assert await store.insert_started_invocation(
                new_invocation(function.id, BASE + 6), "w1", FAR
            )
        finally:
            await store.close()


@pytest.mark.postgres
async def test_a_claim_reads_only_its_rows_stretch_whatever_plan_it_keeps() -> None:
    # A prepared claim keeps the plan it made while few rows waited (no statistics yet, or a
    # table analyzed with a short queue): a partial index of waiting rows, read whole. Found
    # within the ranges their walk returns, the picked rows are a short read however long
    # the queue grew behind them.
    with database_url("postgres") as url:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        try:
            function = await add_function(store, "hello")
            for i in range(3):
                await store.insert_invocation(new_invocation(function.id, BASE + i))
            names: list[str] = []

            def positional(match: re.Match[str]) -> str:
                if match.group(1) not in names:
                    names.append(match.group(1))
                return f"${names.index(match.group(1)) + 1}"

            claim_sql = re.sub(
                r"%\((\w+)\)s", positional, postgres_module.postgres_queries()["claim_invocations"]
            )
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                key = await postgres_module.claim_lock_key(conn)
                await conn.execute("SET plan_cache_mode = force_generic_plan")
                await conn.execute(f"PREPARE claim AS {claim_sql}")

                def execute(now: int, limit: int) -> psycopg.sql.Composed:
                    params = {
                        **common_module.claim_params("w1", now, limit, FAR),
                        "claim_lock": key,
                    }
                    values = [psycopg.sql.Literal(params[name]) for name in names]
                    return psycopg.sql.SQL("EXECUTE claim({})").format(
                        psycopg.sql.SQL(", ").join(values)
                    )

                await conn.execute(execute(BASE + 10, 2))  # the plan, made while 3 rows wait
                backlog = [new_invocation(function.id, BASE + 10 + i) for i in range(3000)]
                await asyncio.gather(*(store.insert_invocation(row) for row in backlog))
                cursor = await conn.execute(
                    psycopg.sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(
                        execute(BASE + 5000, 5)
                    )
                )
                row = await cursor.fetchone()
            assert row is not None
            plan = row[0][0]["Plan"]

            def read(node: dict[str, Any]) -> int:
                own = 0
                if node.get("Relation Name", "").startswith("invocations"):
                    own = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                return own + sum(read(child) for child in node.get("Plans", []))

            assert plan["Actual Rows"] == 5  # the one left of the first three, four of the rest
            assert read(plan) <= 20, plan  # not the 3,000 entries of every waiting row
        finally:
            await store.close()


async def test_claim_waiting_takes_only_that_waiting_row_of_that_function(store: Store) -> None:
    function = await add_function(store, "hello")
    other = await add_function(store, "other")
    running = new_invocation(function.id, BASE, available_at=BASE)
    waiting = new_invocation(function.id, BASE + 1, available_at=FAR)
    for row in (running, waiting):
        await store.insert_invocation(row)
    await claim(store, "w1", BASE, 10, FAR)

    assert await store.claim_waiting(running.request_id, function.id, "c", BASE + 7, FAR) is None
    assert await store.claim_waiting(waiting.request_id, other.id, "c", BASE + 7, FAR) is None
    claimed = await store.claim_waiting(waiting.request_id, function.id, "c", BASE + 7, FAR)
    assert claimed is not None
    assert (claimed.request_id, claimed.attempt, claimed.payload) == (
        waiting.request_id,
        1,
        waiting.payload,
    )
    assert (await records(store, function.id))[waiting.request_id].status is Status.RUNNING
    assert await store.claim_waiting(waiting.request_id, function.id, "c", BASE + 9, FAR) is None


async def test_request_cancel_flags_a_running_row_for_its_worker(store: Store) -> None:
    function = await add_function(store, "hello")
    other = await add_function(store, "other")
    mine, theirs, waiting = (
        new_invocation(function.id, BASE, available_at=BASE + i) for i in (0, 1, 10**6)
    )
    for row in (mine, theirs, waiting):
        await store.insert_invocation(row)
    await claim(store, "w1", BASE, 10, FAR)
    await claim(store, "w2", BASE + 1, 10, FAR)

    assert not await store.request_cancel(waiting.request_id, function.id)
    assert not await store.request_cancel(mine.request_id, other.id)
    assert await store.request_cancel(mine.request_id, function.id)
    assert await store.list_cancel_requests("w1") == [mine.request_id]
    assert await store.list_cancel_requests("w2") == []
    # A retried attempt starts afresh: the request does not follow it.
    assert await store.requeue_invocation(
        mine.request_id, 1, Outcome(Status.WAIT, 4208, "canceled", retry_at=BASE), BASE
    )
    await claim(store, "w1", BASE, 10, FAR)
    assert await store.list_cancel_requests("w1") == []


async def test_async_config_round_trip(store: Store) -> None:
    function = await add_function(store, "hello")
    assert await store.get_async_config(function.id) is None
    config = AsyncConfig(
        function_id=function.id,
        max_async_event_age_in_seconds=600,
        max_async_retry_attempts=2,
        destination_config={"on_success": {"destination": "FunctionGraph", "param": "{}"}},
        enable_async_status_log=True,
        created_at=BASE,
        last_modified=BASE,
    )
    await store.upsert_async_config(config)
    assert await store.get_async_config(function.id) == config
    changed = replace(
        config,
        max_async_retry_attempts=0,
        destination_config={},
        enable_async_status_log=False,
        last_modified=BASE + 5,
    )
    await store.upsert_async_config(changed)
    assert await store.get_async_config(function.id) == changed
    assert await store.delete_async_config(function.id)
    assert await store.get_async_config(function.id) is None
    assert not await store.delete_async_config(function.id)


async def test_insert_once_returns_the_first_request_while_the_key_lives(store: Store) -> None:
    function = await add_function(store, "hello")
    other = await add_function(store, "other")
    first = new_invocation(function.id, BASE)
    assert await store.insert_invocation_once(first, "key", BASE - HOUR) == first.request_id
    repeat = new_invocation(function.id, BASE + 10)
    assert await store.insert_invocation_once(repeat, "key", BASE - HOUR) == first.request_id
    assert set(await records(store, function.id)) == {first.request_id}

    elsewhere = new_invocation(other.id, BASE + 10)  # keys belong to one function
    assert await store.insert_invocation_once(elsewhere, "key", BASE - HOUR) == elsewhere.request_id
    later = new_invocation(function.id, BASE + HOUR)  # the key is older than the cutoff
    assert await store.insert_invocation_once(later, "key", BASE + 1) == later.request_id
    assert set(await records(store, function.id)) == {first.request_id, later.request_id}


async def test_a_deleted_functions_idempotency_keys_do_not_reach_a_new_function(
    store: Store,
) -> None:
    old = await add_function(store, "hello")
    first = new_invocation(old.id, BASE)
    assert await store.insert_invocation_once(first, "key", BASE - HOUR) == first.request_id
    await store.delete_function(old)

    new = await add_function(store, "hello")  # SQLite may hand it the old id
    again = new_invocation(new.id, BASE + 1)
    assert await store.insert_invocation_once(again, "key", BASE - HOUR) == again.request_id
    assert set(await records(store, new.id)) == {again.request_id}


async def test_count_waiting(store: Store) -> None:
    function = await add_function(store, "hello")
    other = await add_function(store, "other")
    await add_invocations(store, function.id, [BASE, BASE + 1, BASE + 2])
    await add_invocations(store, other.id, [BASE + 5])
    assert await store.count_waiting(function.id) == 3
    await claim(store, "w1", BASE, 10, FAR)
    assert await store.count_waiting(function.id) == 2
    assert await store.count_waiting(other.id) == 1


async def test_list_rerunnable(store: Store) -> None:
    function = await add_function(store, "hello")
    rows = [new_invocation(function.id, BASE + i, available_at=BASE, depth=i) for i in range(5)]
    rows.append(new_invocation(function.id, BASE - HOUR, available_at=BASE))  # before the window
    for row in rows:
        await store.insert_invocation(row)
    outcome = [Status.SUCCESS, Status.FAIL, Status.DISCARD, Status.FAIL, None, Status.FAIL]
    await claim_and_finish(
        store, {r.request_id: s for r, s in zip(rows, outcome, strict=True) if s}, BASE + 1
    )

    found = await store.list_rerunnable(function.id, (Status.FAIL, Status.DISCARD), BASE, FAR, 10)
    assert found == [(rows[i].request_id, rows[i].payload, i) for i in (1, 2, 3)]
    only_failed = await store.list_rerunnable(function.id, (Status.FAIL,), BASE, FAR, 10)
    assert [r[0] for r in only_failed] == [rows[1].request_id, rows[3].request_id]
    first = await store.list_rerunnable(function.id, (Status.FAIL, Status.DISCARD), BASE, FAR, 1)
    assert [r[0] for r in first] == [rows[1].request_id]


async def test_purge_deletes_old_terminal_records_only(store: Store) -> None:
    function = await add_function(store, "hello")
    old = [new_invocation(function.id, BASE + i, available_at=BASE) for i in range(3)]
    recent, running = (new_invocation(function.id, BASE + 5, available_at=BASE) for _ in range(2))
    waiting = new_invocation(function.id, BASE + 6, available_at=FAR)
    for row in (*old, recent, running, waiting):
        await store.insert_invocation(row)
    await claim_and_finish(store, {r.request_id: Status.SUCCESS for r in old}, BASE + 10)
    assert await store.finish_invocation(
        recent.request_id, 1, Outcome(Status.FAIL, 4200, ""), BASE + HOUR
    )

    assert await store.delete_expired(BASE + 100, 0, 2) == 2
    assert await store.delete_expired(BASE + 100, 0, 2) == 1
    assert await store.delete_expired(BASE + 100, 0, 2) == 0
    left = await records(store, function.id)
    assert set(left) == {recent.request_id, running.request_id, waiting.request_id}
    assert await store.get_invocation(old[0].request_id) is None


async def test_purge_forgets_old_idempotency_keys(store: Store) -> None:
    function = await add_function(store, "hello")
    first = new_invocation(function.id, BASE)
    assert await store.insert_invocation_once(first, "key", 0) == first.request_id
    await store.delete_expired(0, BASE + 1, 100)  # no record is old enough; the key is
    again = new_invocation(function.id, BASE + 5)
    assert await store.insert_invocation_once(again, "key", 0) == again.request_id


# -- durability -------------------------------------------------------------------------------


async def test_concurrent_inserts_all_land_and_survive_reopening(backend: Backend) -> None:
    store = backend.new_store()
    await store.open()
    try:
        function = await add_function(store, "hello")
        ids = await add_invocations(store, function.id, [BASE + i % 97 for i in range(2_000)])
        assert (await store.list_invocations(query(function.id, limit=1))).count == 2_000
    finally:
        await store.close()

    reopened = backend.new_store()
    await reopened.open()
    try:
        found: list[str] = []
        while True:
            page = await reopened.list_invocations(query(function.id, marker=len(found)))
            if not page.invocations:
                break
            found += [r.request_id for r in page.invocations]
        assert sorted(found) == sorted(ids)
        assert await reopened.get_function_by_id(function.id) == function
    finally:
        await reopened.close()


# -- SQL files and migrations (SQLite) --------------------------------------------------------


def sqlite_schema(path: Path) -> list[tuple[str, str, str, str]]:
    """Every table and index but the migration ledger, with its SQL normalised."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name != 'schema_migrations' ORDER BY type, name"
        ).fetchall()
    conn.close()
    return [(kind, name, table, normalise(sql)) for kind, name, table, sql in rows]


def normalise(sql: str | None) -> str:
    without_comments = re.sub(r"--[^\n]*", "", sql or "")
    return " ".join(without_comments.split())


def test_postgres_migrations_are_numbered_without_gaps() -> None:
    numbers = [number for number, _, _ in migration_files("postgres")]
    assert numbers == list(range(1, len(numbers) + 1))


async def test_sqlite_schema_equals_the_migrations_applied_in_order(tmp_path: Path) -> None:
    migrations = migration_files("sqlite")
    numbers = [number for number, _, _ in migrations]
    assert numbers == list(range(1, len(numbers) + 1))  # numbered 1…n, none skipped
    migrated = tmp_path / "migrated.db"
    with sqlite3.connect(migrated) as conn:
        for _, _, sql in migrations:
            conn.executescript(sql)
    conn.close()

    opened = tmp_path / "opened.db"
    for _ in range(2):  # the second open finds every migration applied
        store = SqliteStore(opened)
        await store.open()
        await store.close()

    assert sqlite_schema(opened) == sqlite_schema(migrated)
    with sqlite3.connect(opened) as conn:
        ledger = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert ledger.fetchall() == [(number, name) for number, name, _ in migrations]
    conn.close()


def test_each_dialect_defines_every_query_name_exactly_once() -> None:
    shared = [name for name, _ in query_blocks(SHARED)]
    own = {dialect: [name for name, _ in query_blocks(dialect)] for dialect in DIALECTS}
    for dialect, names in own.items():
        defined = Counter(shared + names)
        assert [name for name, times in defined.items() if times > 1] == [], dialect
        assert set(load_queries(dialect)) == set(defined)
    # The SQLite store claims in two steps (it walks the due rows in Python, where PostgreSQL
    # claims in one statement, one round trip); every other name is in both dialects.
    sqlite_only = {"list_due_invocations", "function_room"}
    # PostgreSQL writes the outcomes waiting at one moment in one statement (the SQLite writer
    # already commits them together, each with the shared queries), and starts an accepted row
    # at once on the accepting node (SQLite's claim has no round trip to save); it inserts the
    # plain accepts of a batch in one statement (SQLite: one executemany, in process).
    postgres_only = {
        "finish_invocations",
        "try_claim_lock",
        "insert_started_invocations",
        "insert_invocations",
    }
    assert set(own["sqlite"]) - sqlite_only == set(own["postgres"]) - postgres_only


def test_every_query_is_used_by_the_code_of_its_dialect() -> None:
    def literals(*modules: object) -> set[str]:
        found: set[str] = set()
        for module in modules:
            tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
            found |= {
                node.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
            }
        return found

    assert set(load_queries("sqlite")) - literals(common_module, sqlite_module) == set()
    assert set(load_queries("postgres")) - literals(common_module, postgres_module) == set()


def test_a_query_defined_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = {SHARED: [("ping", "SELECT 1")], "sqlite": [("ping", "SELECT 2")]}
    monkeypatch.setattr(queries_module, "query_blocks", blocks.__getitem__)
    with pytest.raises(ValueError, match="'ping' is defined twice for sqlite"):
        load_queries("sqlite")
