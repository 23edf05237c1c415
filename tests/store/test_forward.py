"""A front's store: writes carried to the primary's writer over the channel, and nothing else.

The conformance suite runs over the channel too (the ``forwarded`` backend of conftest.py);
these tests hold what only the channel does: the wake-up, the allow-list, and frames that are
not what they should be.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import pickle
import socket
import sqlite3
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from openfgs.api import create_app
from openfgs.errors import ConflictError, StoreError
from openfgs.models import Credential
from openfgs.services import Services
from openfgs.store import common, sqlite
from openfgs.store.forward import (
    FORWARDED,
    HEADER,
    MAX_FRAME,
    ChannelError,
    ForwardChannel,
    dumps,
    frame,
    loads,
)
from tests.api.conftest import RawApi, function_path
from tests.support import CREDENTIAL, make_settings, urn

from .conftest import ForwardedStore
from .test_store import PROJECT, add_function, new_invocation, records

pytestmark = pytest.mark.anyio
BASE = 1_700_000_000_000


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[ForwardedStore]:
    store = ForwardedStore(tmp_path / "openfgs.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_an_accept_is_written_by_the_primary_and_wakes_its_worker(
    pair: ForwardedStore,
) -> None:
    function = await add_function(pair, "hello")
    row = new_invocation(function.id, BASE)
    await pair.insert_invocation(row)
    assert pair.wakes == 1
    # The primary's own store sees it: it was committed there, not in the front.
    assert row.request_id in await records(pair.primary, function.id)
    assert row.request_id in await records(pair, function.id)


async def test_a_front_cannot_write_the_database_itself(pair: ForwardedStore) -> None:
    conn = pair._connect_read_only()
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM invocations")
    finally:
        conn.close()
    with pytest.raises(StoreError, match="does not write"):
        await pair._write(common.execute("insert_token", {}))


async def test_errors_arrive_as_themselves(pair: ForwardedStore) -> None:
    credential = Credential(PROJECT, "FORWARDKEY0000000001", "s" * 40)
    await pair.insert_credential(credential, BASE)
    with pytest.raises(ConflictError):
        await pair.insert_credential(credential, BASE)
    assert await pair.count_credentials() == 1


def _writing_methods() -> set[str]:
    """Every method of the SQL stores that writes: calls _write, _in_writer or an insert, itself
    or through a private helper of its class."""
    writes = {"_write", "_in_writer", "submit", "submit_insert", "insert_invocation"}
    calls: dict[str, set[str]] = {}
    for cls in (common.SqlStore, sqlite.SqliteStore):
        for name, method in vars(cls).items():
            if not inspect.iscoroutinefunction(method):
                continue
            tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
            calls.setdefault(name, set()).update(
                node.func.attr
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            )

    def writes_through(name: str, seen: frozenset[str] = frozenset()) -> bool:
        called = calls.get(name, set())
        helpers = {c for c in called if c.startswith("_") and c in calls and c not in seen}
        return bool(called & writes) or any(writes_through(h, seen | {name}) for h in helpers)

    lifecycle = {"open", "close"}
    return {
        name
        for name in calls
        if not name.startswith("_") and name not in lifecycle and writes_through(name)
    }


def test_every_writing_store_method_is_forwarded() -> None:
    writing = _writing_methods()
    assert "insert_invocation" in writing and "update_function" in writing
    assert writing <= FORWARDED, f"not forwarded: {sorted(writing - FORWARDED)}"
    assert not FORWARDED - writing - {"insert_started_invocation"}, "forwarded reads"


class RawFront:
    """The front's end of a channel, written to by hand."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_unix_connection(sock=self.sock)

    async def ask(self, call_id: int, payload: bytes) -> tuple[bool, object]:
        self.writer.write(frame(call_id, payload))
        head = await asyncio.wait_for(self.reader.readexactly(HEADER.size), 10)
        length, answered = HEADER.unpack(head)
        assert answered == call_id
        answer = loads(await self.reader.readexactly(length))
        assert isinstance(answer, tuple)
        return answer


@pytest.fixture
async def raw(tmp_path: Path) -> AsyncIterator[tuple[ForwardedStore, RawFront]]:
    """A primary serving a second channel, whose front end the test writes by hand."""
    store = ForwardedStore(tmp_path / "openfgs.db")
    await store.open()
    primary_end, front_end = socket.socketpair()
    from openfgs.store.forward import ForwardServer

    serving = asyncio.create_task(ForwardServer(store.primary, lambda: None).serve(primary_end))
    front = RawFront(front_end)
    await front.open()
    try:
        yield store, front
    finally:
        front.writer.close()
        await asyncio.wait_for(serving, 10)
        await store.close()


class Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("true",))


GARBAGE = [
    b"",
    b"not a pickle",
    pickle.dumps(Boom()),  # names os.system: refused before anything runs
    pickle.dumps(("__init__", ())),  # not a store method
    pickle.dumps(("_write", ())),
    pickle.dumps(("open", ())),
    pickle.dumps(("insert_invocation", "not a tuple")),
    pickle.dumps(("insert_invocation", (1, 2, 3))),  # wrong arguments
    pickle.dumps(("delete_expired", ("a", "b", "c"))),  # wrong types: the driver refuses
    pickle.dumps([1, 2]),
    pickle.dumps(None)[:-1],  # truncated
]


async def test_malformed_calls_are_answered_with_errors_and_the_primary_goes_on(
    raw: tuple[ForwardedStore, RawFront],
) -> None:
    store, front = raw
    for n, payload in enumerate(GARBAGE, start=1):
        ok, value = await front.ask(n, payload)
        assert ok is False, payload
        assert isinstance(value, tuple) and isinstance(value[1], str)
    # Both channels still work.
    function = await add_function(store, "after")
    ok, value = await front.ask(99, dumps(("request_cancel", ("no-such-id", function.id))))
    assert (ok, value) == (True, False)


async def test_a_frame_too_long_closes_that_channel_only(
    raw: tuple[ForwardedStore, RawFront],
) -> None:
    store, front = raw
    front.writer.write(HEADER.pack(MAX_FRAME + 1, 1))
    assert await asyncio.wait_for(front.reader.read(), 10) == b""  # closed
    function = await add_function(store, "still")  # the other channel goes on
    await store.insert_invocation(new_invocation(function.id, BASE))


async def test_calls_in_flight_fail_when_the_primary_goes(tmp_path: Path) -> None:
    primary_end, front_end = socket.socketpair()
    lost: list[bool] = []
    channel = ForwardChannel(front_end, on_lost=lambda: lost.append(True))
    await channel.open()
    call = asyncio.create_task(channel.call("count_credentials", ()))
    await asyncio.sleep(0)  # the call is written and waits for its answer
    primary_end.close()
    with pytest.raises(ChannelError, match="primary process"):
        await asyncio.wait_for(call, 10)
    assert lost == [True]
    with pytest.raises(ChannelError):
        await channel.call("count_credentials", ())
    await channel.close()


async def test_many_accepts_in_flight_share_commits(pair: ForwardedStore) -> None:
    function = await add_function(pair, "many")
    rows = [new_invocation(function.id, BASE + n) for n in range(300)]
    await asyncio.gather(*(pair.insert_invocation(row) for row in rows))
    assert set(await records(pair.primary, function.id)) == {r.request_id for r in rows}
    assert pair.wakes == 300


async def test_a_front_whose_primary_is_gone_answers_in_functiongraph_shape(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "data", worker=False)
    store = ForwardedStore(settings.database_path)
    services = Services.build(settings, store=store, front=1)
    await services.start()
    try:
        await store.insert_credential(CREDENTIAL, BASE)
        await add_function(store, "accepted")
        app = create_app(services)
        raw = RawApi("http://front")
        path = function_path(urn("accepted"), "/invocations-async")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://front") as client:
            first = await client.send(raw.build("POST", path, content=b"{}"))
            assert first.status_code == 202
            store._primary_end.shutdown(socket.SHUT_RDWR)  # the primary is gone
            await asyncio.wait_for(store._serving, 10)
            broken = await client.send(raw.build("POST", path, content=b"{}"))
        raw.close()
        assert broken.status_code == 500
        body = broken.json()
        assert body["error_code"].startswith("FSS.") and body["error_msg"]
        # What was answered 202 is on disk.
        detail = await store.primary.get_invocation(first.json()["request_id"])
        assert detail is not None
    finally:
        await services.stop()
