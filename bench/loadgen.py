"""A lean HTTP/1.1 load generator: keep-alive connections over asyncio, AK/SK-signed requests.

One Python process on one core must drive a server on the other core, so the per-request
client cost is kept small: requests are written as raw bytes on ``asyncio.Protocol``
connections (no HTTP library), and a request is made and signed once per distinct
(method, path, query, body, ``X-Sdk-Date``) — the date has a one-second resolution, so a
closed loop that sends the same small body re-signs once a second, and otherwise pays a
clock read and a dictionary lookup per request. Every request is still signed exactly as the
official SDK does it (``openfgs.auth.signing.sign_headers``) and the server verifies every one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from openfgs.auth.signing import DATE_FORMAT, sign_headers
from openfgs.models import Credential


class HttpError(Exception):
    """The connection broke or the answer was not HTTP."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport does not derive from asyncio.Transport.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        try:
            status = int(head[9:12])
        except ValueError:
            self._waiter.set_exception(HttpError(f"not HTTP: {head[:40]!r}"))
            return
        body = bytes(self._buffer[end + 4 : total])
        del self._buffer[:total]
        self._waiter.set_result((status, body))

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise HttpError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Client:
    """A pool of keep-alive connections to one ``127.0.0.1`` port, with an AK/SK signer."""

    def __init__(self, port: int, credential: Credential | None = None) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.credential = credential
        self._made: dict[tuple[str, str, tuple[tuple[str, str], ...], bytes, bool], bytes] = {}
        self._second = 0
        self._date = ""
        self._connections: list[_Connection] = []
        self._control: _Connection | None = None

    async def connect(self, count: int) -> list[_Connection]:
        loop = asyncio.get_running_loop()
        made = []
        for _ in range(count):
            _, protocol = await loop.create_connection(_Connection, "127.0.0.1", self.port)
            made.append(protocol)
        self._connections += made
        return made

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections.clear()
        self._control = None

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        """One request on the client's own keep-alive connection (setup, probes, polling)."""
        if self._control is None or self._control.transport is None or self._control.closed:
            (self._control,) = await self.connect(1)
        return await self._control.send(raw)

    def request_bytes(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        signed: bool = True,
    ) -> bytes:
        """The raw request; signed with the client's credential unless ``signed`` is False."""
        second = int(time.time())
        if second != self._second:  # a new X-Sdk-Date: every signed request is made anew
            self._second, self._date = second, time.strftime(DATE_FORMAT, time.gmtime(second))
            self._made.clear()
        key = (method, path, tuple(sorted((query or {}).items())), body, signed)
        made = self._made.get(key)
        if made is None:
            if len(self._made) > 4096:
                self._made.clear()
            made = self._made[key] = self._make(method, path, key[2], body, signed)
        return made

    def _make(
        self,
        method: str,
        path: str,
        query: tuple[tuple[str, str], ...],
        body: bytes,
        signed: bool,
    ) -> bytes:
        encoded = "/".join(quote(seg, safe="") for seg in path.split("/"))
        qs = urlencode(query, quote_via=quote)
        target = encoded + (f"?{qs}" if qs else "")
        if not signed or self.credential is None:
            head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
            return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        headers = sign_headers(
            method,
            encoded,
            qs,
            {
                "Host": self.host,
                "Content-Type": "application/json",
                "X-Project-Id": self.credential.project_id,
                "X-Sdk-Date": self._date,
            },
            body,
            self.credential.access_key,
            self.credential.secret_key,
        )
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = f"{method} {target} HTTP/1.1\r\n{lines}Content-Length: {len(body)}\r\n\r\n"
        return head.encode() + body


@dataclass
class LoadResult:
    """What a closed-loop run measured inside its measurement window."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def closed_loop(
    client: Client,
    make_request: Callable[[], bytes],
    *,
    clients: int,
    duration: float,
    warmup: float,
) -> LoadResult:
    """``clients`` connections each send a request as soon as the previous one is answered.

    Only requests sent and answered inside the window after ``warmup`` are counted.
    """
    connections = await client.connect(clients)
    start = time.perf_counter()
    begin, end = start + warmup, start + warmup + duration
    result = LoadResult(seconds=duration)

    async def drive(connection: _Connection) -> None:
        latencies, statuses = result.latencies_ms, result.statuses
        while True:
            sent = time.perf_counter()
            if sent >= end:
                return
            try:
                status, _ = await connection.send(make_request())
            except HttpError:
                result.errors += 1
                return
            done = time.perf_counter()
            if sent >= begin and done <= end:
                latencies.append((done - sent) * 1000)
                statuses[status] = statuses.get(status, 0) + 1

    try:
        await asyncio.gather(*(drive(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    return result


async def fixed_count(
    client: Client,
    make_request: Callable[[], bytes],
    *,
    clients: int,
    count: int,
    on_answer: Callable[[int, bytes], None] | None = None,
) -> LoadResult:
    """Send exactly ``count`` requests over ``clients`` connections, as fast as answered."""
    connections = await client.connect(clients)
    remaining = count
    started = time.perf_counter()
    result = LoadResult(seconds=0.0)

    async def drive(connection: _Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            sent = time.perf_counter()
            try:
                status, body = await connection.send(make_request())
            except HttpError:
                result.errors += 1
                return
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if on_answer is not None:
                on_answer(status, body)

    try:
        await asyncio.gather(*(drive(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    result.seconds = time.perf_counter() - started
    return result


def run(coro: Awaitable[object]) -> object:
    """Run a coroutine on uvloop when it is installed (it is, with openfgs)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with openfgs on Linux
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]
