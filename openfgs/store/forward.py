"""A front's writes, carried to the primary's store (``serve --processes N`` on SQLite).

With more than one process on one data directory, only the *primary* writes the database: a
*front* opens it for reading (WAL lets readers of other processes read while the writer
writes) and sends every write to the primary, whose writer commits it in the same group
commit as every other process's writes and answers only after the commit — so a front's 202,
like the primary's, follows the fsync.

The channel is a socket pair the primary made and the front inherited: there is no path on
disk, so no other process can reach it. On it, frames: a 4-byte payload length, an 8-byte
call id, then a pickle. A call is ``(method, args)``; its answer, under the same id, is
``(True, value)`` or ``(False, (error class name, message))``. Many calls are in flight at
once (a front sends each accept as it comes and matches answers by id).

The primary trusts nothing it reads: only the methods of :data:`FORWARDED` are called, a pickle
may name only the model classes of :data:`MODEL_CLASSES` (a restricted unpickler, so a pickle
cannot call anything), and a frame longer than :data:`MAX_FRAME` closes the channel. A call
that cannot be read gets an error answer; the channel and the primary go on.
"""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import logging
import pickle
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openfgs import models
from openfgs.errors import ConflictError, StoreError
from openfgs.models import NewInvocation
from openfgs.store.base import DependencyGone, Store
from openfgs.store.sqlite import SqliteStore

log = logging.getLogger("openfgs.forward")

HEADER = struct.Struct("!IQ")  # payload length, call id
# The largest call: a function's code zip (50 MB) with its pickle's overhead.
MAX_FRAME = 64 * 1024 * 1024

# Every store method that writes, and only those: what a front sends and the primary runs.
# tests/store/test_forward.py checks that each SqlStore method that writes is here.
FORWARDED = frozenset(
    {
        "insert_invocation",
        "insert_started_invocation",
        "insert_invocation_once",
        "insert_credential",
        "insert_token",
        "insert_function",
        "update_function",
        "delete_function",
        "insert_dependency_version",
        "delete_dependency_version",
        "finish_invocation",
        "requeue_invocation",
        "claim_due",
        "claim_waiting",
        "request_cancel",
        "upsert_async_config",
        "delete_async_config",
        "delete_expired",
        "ensure_partitions",
        "drop_expired_days",
        "roll_up_minutes",
        "insert_trigger",
        "update_trigger",
        "delete_triggers",
        "fire_timer",
        "renew_leases",
        "insert_test_event",
        "update_test_event",
        "delete_test_event",
        "put_function_tags",
        "delete_function_tags",
    }
)
# Whose accepted rows the primary's worker must hear about (as a local accept wakes it).
WAKES = frozenset({"insert_invocation", "insert_started_invocation", "insert_invocation_once"})

MODEL_CLASSES = frozenset(
    {
        "Status",
        "ErrorCode",
        "Urn",
        "Credential",
        "Function",
        "DependencyVersion",
        "Trigger",
        "NewInvocation",
        "Invocation",
        "ClaimedInvocation",
        "Outcome",
        "Attempt",
        "InvocationDetail",
        "AsyncConfig",
        "TestEvent",
    }
)
# The errors an answer may carry as themselves; any other arrives as a StoreError.
ERRORS: dict[str, type[StoreError]] = {
    cls.__name__: cls for cls in (StoreError, ConflictError, DependencyGone)
}


class ChannelError(StoreError):
    """The channel to the primary is closed, or a frame on it could not be read."""


class _ModelsOnly(pickle.Unpickler):
    """Builds the models of :data:`MODEL_CLASSES` and plain values, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "openfgs.models" and name in MODEL_CLASSES:
            return getattr(models, name)
        raise pickle.UnpicklingError(f"{module}.{name} may not travel between processes")


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    return _ModelsOnly(io.BytesIO(data)).load()


def frame(call_id: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), call_id) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """The next frame, or None at the end of the stream; ChannelError when it is too long."""
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    length, call_id = HEADER.unpack(head)
    if length > MAX_FRAME:
        raise ChannelError(f"a frame of {length} bytes (at most {MAX_FRAME})")
    try:
        return call_id, await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None


# -- the primary's side ----------------------------------------------------------------------


class ForwardServer:
    """Runs a front's calls on the primary's store and answers each after its commit.

    An accept goes straight to the writer's queue (no task of its own); answers written while
    the loop runs one turn leave in one write.
    """

    def __init__(self, store: Store, wake: Callable[[], None]) -> None:
        self._store = store
        self._wake = wake
        self._submit_insert: Callable[[NewInvocation], asyncio.Future[None]] | None = getattr(
            store, "submit_insert", None
        )

    async def serve(self, sock: socket.socket) -> None:
        """Answer the calls arriving on ``sock`` until the front closes it (or breaks it)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        out = _Batcher(writer)
        tasks: set[asyncio.Future[Any]] = set()
        try:
            while True:
                got = await read_frame(reader)
                if got is None:
                    return
                running = self._start(out, *got)
                if running is not None:
                    tasks.add(running)
                    running.add_done_callback(tasks.discard)
        except (ChannelError, OSError) as exc:
            log.warning("closing a front's channel: %s", exc)
        finally:
            if tasks:  # calls already running commit and answer (to a closed channel at worst)
                await asyncio.gather(*tasks, return_exceptions=True)
            out.flush()
            writer.close()

    def _start(self, out: _Batcher, call_id: int, payload: bytes) -> asyncio.Future[Any] | None:
        try:
            method, args = self._read_call(payload)
            if method == "insert_invocation" and self._submit_insert is not None:
                if len(args) != 1 or not isinstance(args[0], NewInvocation):
                    raise ChannelError("insert_invocation takes one NewInvocation")
                running: asyncio.Future[Any] = self._submit_insert(args[0])
            else:
                running = asyncio.ensure_future(getattr(self._store, method)(*args))
        except Exception as exc:
            out.send(call_id, _failure(exc))
            return None
        running.add_done_callback(functools.partial(self._finished, out, call_id, method))
        return running

    @staticmethod
    def _read_call(payload: bytes) -> tuple[str, tuple[Any, ...]]:
        call = loads(payload)
        if not (isinstance(call, tuple) and len(call) == 2 and isinstance(call[1], tuple)):
            raise ChannelError("a call is (method, args)")
        method, args = call
        if not isinstance(method, str) or method not in FORWARDED:
            raise ChannelError(f"{method!r} is not a store method a front may call")
        return method, args

    def _finished(
        self, out: _Batcher, call_id: int, method: str, running: asyncio.Future[Any]
    ) -> None:
        if running.cancelled():
            out.send(call_id, (False, ("StoreError", "the primary process is stopping")))
            return
        exc = running.exception()
        if exc is not None:
            out.send(call_id, _failure(exc))
            return
        if method in WAKES:
            self._wake()
        out.send(call_id, (True, running.result()))


def _failure(exc: BaseException) -> tuple[bool, tuple[str, str]]:
    if isinstance(exc, StoreError):
        return False, (type(exc).__name__, str(exc))
    # A call that cannot be read or run: its answer says so.
    log.warning("a front's call failed: %s: %s", type(exc).__name__, exc)
    return False, ("StoreError", f"{type(exc).__name__}: {exc}")


class _Batcher:
    """Frames written in one turn of the event loop, sent in one write."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._frames: list[bytes] = []

    def send(self, call_id: int, value: Any) -> None:
        try:
            data = dumps(value)
        except Exception as exc:  # a value that cannot travel: say so rather than hang
            data = dumps((False, ("StoreError", f"the answer cannot be sent: {exc}")))
        self.queue(frame(call_id, data))

    def queue(self, data: bytes) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self.flush)
        self._frames.append(data)

    def flush(self) -> None:
        if self._frames and not self._writer.is_closing():
            self._writer.write(b"".join(self._frames))
        self._frames.clear()


# -- the front's side ------------------------------------------------------------------------


class ForwardChannel:
    """A front's end of the channel: sends calls, matches answers to them by id."""

    def __init__(self, sock: socket.socket, on_lost: Callable[[], None] | None = None) -> None:
        self._sock = sock
        self._on_lost = on_lost
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._out: _Batcher | None = None
        self._reading: asyncio.Task[None] | None = None
        self._lost: str | None = None

    async def open(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        self._out = _Batcher(self._writer)
        self._reading = asyncio.create_task(self._read_answers(reader))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
        self._fail_pending("the channel to the primary process is closed")

    async def call(self, method: str, args: tuple[Any, ...]) -> Any:
        if self._out is None or self._lost is not None:
            raise ChannelError(self._lost or "the channel to the primary process is not open")
        call_id = next(self._ids)
        data = frame(call_id, dumps((method, args)))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._out.queue(data)
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        reason = "the primary process closed the channel"
        try:
            while (got := await read_frame(reader)) is not None:
                call_id, payload = got
                future = self._pending.get(call_id)
                if future is None or future.done():
                    continue
                try:
                    ok, value = loads(payload)
                except Exception as exc:
                    future.set_exception(ChannelError(f"an answer could not be read: {exc}"))
                    continue
                if ok:
                    future.set_result(value)
                else:
                    name, message = value
                    future.set_exception(ERRORS.get(name, StoreError)(message))
        except (ChannelError, OSError) as exc:
            reason = f"the channel to the primary process broke: {exc}"
        self._lost = reason
        self._fail_pending(reason)
        if self._on_lost is not None:
            self._on_lost()

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelError(reason))
        self._pending.clear()


def _forwarder(name: str) -> Callable[..., Any]:
    async def forwarded(self: ForwardingStore, *args: Any) -> Any:
        return await self.channel.call(name, args)

    forwarded.__name__ = forwarded.__qualname__ = name
    forwarded.__doc__ = f"``{name}``, run by the primary's store."
    return forwarded


class ForwardingStore(SqliteStore):
    """A front's store: reads from the database file, read-only; every write by the primary.

    The database must exist and be migrated (the primary opens it before starting fronts).
    """

    def __init__(self, path: Path, channel: ForwardChannel) -> None:
        super().__init__(path)
        self.channel = channel

    async def open(self) -> None:
        if not self.path.exists():
            raise StoreError(f"no database at {self.path}: the primary process creates it")
        await self.channel.open()
        self._open_readers()

    async def close(self) -> None:
        await super().close()
        await self.channel.close()

    def _reader_connection(self) -> Any:
        return self._connect_read_only()

    async def _write(self, work: Any, durable: bool = True) -> Any:
        # Every writing method is forwarded whole; a write reaching here was missed.
        raise StoreError("a front process does not write the database itself")

    async def _in_writer(self, op: Any, durable: bool = True) -> Any:
        raise StoreError("a front process does not write the database itself")


for _name in FORWARDED:
    setattr(ForwardingStore, _name, _forwarder(_name))
