"""Test events in the store (every backend): kept per function row, named once, bounded in
number under concurrent inserts, and deleted with their function."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest

from openfgs.errors import ConflictError
from openfgs.models import Function, TestEvent
from openfgs.store.base import Store

from .test_store import BASE, PROJECT, add_function

pytestmark = pytest.mark.anyio


def event_of(function: Function, name: str, content: str = "e30=", at: int = BASE) -> TestEvent:
    return TestEvent(str(uuid.uuid4()), function.id, name, content, at, at)


async def test_an_event_is_inserted_listed_read_updated_and_deleted(store: Store) -> None:
    function = await add_function(store, "fn")
    first = event_of(function, "first", at=BASE)
    second = event_of(function, "second", "eyJrIjogInYifQ==", at=BASE + 1)
    assert await store.insert_test_event(second, 10)
    assert await store.insert_test_event(first, 10)
    assert await store.list_test_events(function.id) == [first, second]  # in the order made
    assert await store.get_test_event(function.id, second.id) == second

    changed = replace(second, name="renamed", content="W10=", last_modified=BASE + 5)
    assert await store.update_test_event(changed)
    assert await store.get_test_event(function.id, second.id) == changed

    assert await store.delete_test_event(function.id, first.id)
    assert not await store.delete_test_event(function.id, first.id)
    assert await store.get_test_event(function.id, first.id) is None
    assert not await store.update_test_event(replace(first, content="e30="))
    assert await store.list_test_events(function.id) == [changed]


async def test_events_belong_to_their_function(store: Store) -> None:
    mine = await add_function(store, "mine")
    other = await add_function(store, "other")
    event = event_of(mine, "shared-name")
    assert await store.insert_test_event(event, 10)
    assert await store.insert_test_event(event_of(other, "shared-name"), 10)
    assert await store.get_test_event(other.id, event.id) is None
    assert not await store.delete_test_event(other.id, event.id)
    assert not await store.update_test_event(replace(event, function_id=other.id))
    assert [e.name for e in await store.list_test_events(other.id)] == ["shared-name"]
    assert await store.get_test_event(mine.id, event.id) == event


async def test_a_name_is_used_once_per_function(store: Store) -> None:
    function = await add_function(store, "fn")
    assert await store.insert_test_event(event_of(function, "dup"), 10)
    with pytest.raises(ConflictError):
        await store.insert_test_event(event_of(function, "dup"), 10)
    other = event_of(function, "other")
    assert await store.insert_test_event(other, 10)
    with pytest.raises(ConflictError):
        await store.update_test_event(replace(other, name="dup"))
    assert sorted(e.name for e in await store.list_test_events(function.id)) == ["dup", "other"]


async def test_concurrent_inserts_stop_at_the_limit(store: Store) -> None:
    function = await add_function(store, "fn")
    events = [event_of(function, f"e{n}", at=BASE + n) for n in range(12)]
    inserted = await asyncio.gather(*(store.insert_test_event(e, 10) for e in events))
    assert inserted.count(True) == 10
    assert len(await store.list_test_events(function.id)) == 10


async def test_no_event_is_inserted_for_a_function_that_is_gone(store: Store) -> None:
    function = await add_function(store, "fn")
    await store.delete_function(function)
    assert not await store.insert_test_event(event_of(function, "late"), 10)
    assert await store.list_test_events(function.id) == []


async def test_deleting_a_function_deletes_its_events(store: Store) -> None:
    function = await add_function(store, "fn")
    kept = await add_function(store, "kept")
    for n in range(3):
        assert await store.insert_test_event(event_of(function, f"e{n}"), 10)
    assert await store.insert_test_event(event_of(kept, "e0"), 10)
    await store.delete_function(function)
    assert await store.list_test_events(function.id) == []
    assert [e.name for e in await store.list_test_events(kept.id)] == ["e0"]
    again = await add_function(store, "fn")  # a new function of the same name starts empty
    assert await store.list_test_events(again.id) == []
    assert (await store.get_function(PROJECT, "default", "kept")) == kept
