"""Function tags in the store, on every backend: set, replace, limit, delete, per project, and
gone with their function."""

from __future__ import annotations

import asyncio

import pytest

from openfgs.store.base import Store
from tests.store.test_store import OTHER_PROJECT, add_function

pytestmark = pytest.mark.anyio


async def test_tags_are_set_replaced_and_deleted(store: Store) -> None:
    function = await add_function(store, "tagged")
    assert await store.list_function_tags(function.id) == []

    assert await store.put_function_tags(function.id, [("b", "1"), ("a", "")], 20) == 2
    assert await store.put_function_tags(function.id, [("b", "2"), ("c", "3")], 20) == 3
    assert await store.list_function_tags(function.id) == [("a", ""), ("b", "2"), ("c", "3")]

    await store.delete_function_tags(function.id, ["a", "absent"])
    assert await store.list_function_tags(function.id) == [("b", "2"), ("c", "3")]


async def test_a_put_past_the_limit_writes_nothing(store: Store) -> None:
    function = await add_function(store, "full")
    await store.put_function_tags(function.id, [("a", "1"), ("b", "1")], 3)

    assert await store.put_function_tags(function.id, [("c", "1"), ("d", "1")], 3) == 4
    assert await store.list_function_tags(function.id) == [("a", "1"), ("b", "1")]
    assert await store.put_function_tags(function.id, [("a", "2"), ("c", "1")], 3) == 3


async def test_concurrent_puts_do_not_pass_the_limit_together(store: Store) -> None:
    function = await add_function(store, "raced")
    puts = [store.put_function_tags(function.id, [(f"k{i}", "v")], 5) for i in range(12)]
    counts = await asyncio.gather(*puts)

    assert sorted(int(count or 0) for count in counts)[:5] == [1, 2, 3, 4, 5]
    assert len(await store.list_function_tags(function.id)) == 5


async def test_a_missing_function_takes_no_tags(store: Store) -> None:
    assert await store.put_function_tags(987_654, [("k", "v")], 20) is None


async def test_project_tags_and_deletion_with_the_function(store: Store) -> None:
    one = await add_function(store, "one")
    two = await add_function(store, "two")
    foreign = await add_function(store, "foreign", project=OTHER_PROJECT)
    await store.put_function_tags(one.id, [("env", "prod"), ("team", "a")], 20)
    await store.put_function_tags(two.id, [("env", "dev"), ("team", "a")], 20)
    await store.put_function_tags(foreign.id, [("secret", "x")], 20)

    assert await store.list_project_tags(one.project_id) == [
        ("env", "dev"),
        ("env", "prod"),
        ("team", "a"),
    ]
    await store.delete_function(one)
    assert await store.list_function_tags(one.id) == []
    assert await store.list_project_tags(one.project_id) == [("env", "dev"), ("team", "a")]
    assert await store.list_project_tags(OTHER_PROJECT) == [("secret", "x")]


async def test_count_functions_counts_one_project(store: Store) -> None:
    await add_function(store, "a")
    await add_function(store, "b")
    await add_function(store, "c", project=OTHER_PROJECT)
    assert await store.count_functions(OTHER_PROJECT) == 1
    assert await store.count_functions("0123456789abcdef0123456789abcdef") == 2
