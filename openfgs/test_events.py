"""Test events: a function's saved events (FunctionGraph's CreateEvent, ListEvents, ShowEvent,
UpdateEvent and DeleteEvent), kept with its latest and shared by its versions and aliases."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
from dataclasses import replace

import orjson

from openfgs.errors import BadRequest, Conflict, ConflictError, NotFound
from openfgs.functions import FunctionRegistry
from openfgs.models import Function, TestEvent, now_ms
from openfgs.store.base import Store

MAX_EVENTS = 10  # test events of a function (FunctionGraph's limit)
MAX_ID_LENGTH = 64  # an event id longer than this names no event
OFF_LOOP_BYTES = 64 * 1024  # content decoded and parsed in a thread from this size on
# 1 to 25 letters, digits, "_" and "-"; first a letter, last a letter or digit.
_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9_-]{0,23}[A-Za-z0-9])?")


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"Invalid test event name: {name[:64]!r}; 1 to 25 letters, digits, '_' and '-', "
            "starting with a letter and ending with a letter or digit"
        )


def decode_content(content: str, max_bytes: int) -> bytes:
    """The event a ``content`` carries: the base64 of JSON text of at most ``max_bytes``."""
    if len(content) > (max_bytes + 2) // 3 * 4:
        raise BadRequest(f"Invalid test event content: the event is larger than {max_bytes} bytes")
    try:
        event = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Invalid test event content: not base64") from None
    if len(event) > max_bytes:
        raise BadRequest(f"Invalid test event content: the event is larger than {max_bytes} bytes")
    try:
        orjson.loads(event)  # orjson refuses nesting past 1024 levels: no RecursionError here
    except orjson.JSONDecodeError:
        raise BadRequest("Invalid test event content: the base64 of JSON text expected") from None
    return event


class TestEventService:
    """The test events of functions. An event belongs to a function's latest row, so every
    qualifier of the function sees the same events and they go when the function goes."""

    __test__ = False  # a product class, not a test class

    def __init__(self, store: Store, registry: FunctionRegistry, max_event_bytes: int) -> None:
        self._store = store
        self._registry = registry
        self.max_event_bytes = max_event_bytes

    async def _check_content(self, content: str) -> None:
        if len(content) < OFF_LOOP_BYTES:
            decode_content(content, self.max_event_bytes)
        else:  # megabytes take milliseconds to parse: not on the loop
            await asyncio.to_thread(decode_content, content, self.max_event_bytes)

    async def create(self, function: Function, name: str, content: str) -> TestEvent:
        check_name(name)
        await self._check_content(content)
        latest = await self._registry.latest(function)
        now = now_ms()
        event = TestEvent(str(uuid.uuid4()), latest.id, name, content, now, now)
        try:
            inserted = await self._store.insert_test_event(event, MAX_EVENTS)
        except ConflictError:
            raise _name_taken(name) from None
        if not inserted:
            raise BadRequest(f"A function has at most {MAX_EVENTS} test events")
        return event

    async def list_events(self, function: Function) -> list[TestEvent]:
        latest = await self._registry.latest(function)
        return await self._store.list_test_events(latest.id)

    async def get(self, function: Function, event_id: str) -> TestEvent:
        latest = await self._registry.latest(function)
        found = None
        if len(event_id) <= MAX_ID_LENGTH:
            found = await self._store.get_test_event(latest.id, event_id)
        if found is None:
            raise NotFound(f"The test event does not exist: {event_id[:MAX_ID_LENGTH]}")
        return found

    async def update(
        self, function: Function, event_id: str, content: str, name: str | None = None
    ) -> TestEvent:
        """Replace an event's content and, when ``name`` is given, its name."""
        if name is not None:
            check_name(name)
        await self._check_content(content)
        event = await self.get(function, event_id)
        changed = replace(event, name=name or event.name, content=content, last_modified=now_ms())
        try:
            updated = await self._store.update_test_event(changed)
        except ConflictError:
            raise _name_taken(changed.name) from None
        if not updated:
            raise NotFound(f"The test event does not exist: {event_id}")
        return changed

    async def delete(self, function: Function, event_id: str) -> None:
        event = await self.get(function, event_id)
        if not await self._store.delete_test_event(event.function_id, event.id):
            raise NotFound(f"The test event does not exist: {event_id}")


def _name_taken(name: str) -> Conflict:
    return Conflict(f"The test event already exists: {name}")
