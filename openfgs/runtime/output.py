"""An instance's log: its stdout+stderr pipe, read continuously and cut into bounded segments.

The pipe is read for as long as the instance lives, so a flooding handler never blocks on a full
pipe and never grows the service's memory: each segment keeps only its last ``limit`` bytes.
The instance writes a marker before every frame it sends; everything up to a marker is the
output belonging to that frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Output:
    """A tail of output bytes and how many bytes before it were dropped."""

    data: bytes = b""
    dropped: int = 0

    def then(self, later: Output, limit: int) -> Output:
        """This output followed by ``later``, keeping the last ``limit`` bytes."""
        data = self.data + later.data
        dropped = self.dropped + later.dropped
        if len(data) > limit:
            dropped += len(data) - limit
            data = data[len(data) - limit :]
        return Output(data, dropped)

    def text(self) -> str:
        """The log text; a note says when the head was dropped."""
        body = self.data.decode("utf-8", "replace")
        if self.dropped:
            return f"[{self.dropped} earlier bytes of output dropped]\n{body}"
        return body


class OutputCollector:
    """Reads one instance's output pipe and splits it at the instance's markers."""

    def __init__(
        self,
        stream: asyncio.StreamReader,
        transport: asyncio.ReadTransport,
        marker: bytes,
        limit: int,
    ) -> None:
        self._stream = stream
        self._transport = transport
        self._marker = marker
        self._limit = limit
        self._current = bytearray()
        self._dropped = 0
        self._held = b""  # a possible start of a marker split across reads
        self._segments: deque[Output] = deque()
        self._changed = asyncio.Event()
        self._eof = False
        self._task = asyncio.create_task(self._pump())

    @classmethod
    async def connect(cls, fd: int, marker: bytes, limit: int) -> OutputCollector:
        """Start reading the read end ``fd`` of the output pipe (the collector owns it)."""
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader()
        pipe = os.fdopen(fd, "rb", buffering=0)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stream), pipe
            )
        except BaseException:
            pipe.close()
            raise
        return cls(stream, transport, marker, limit)

    async def _pump(self) -> None:
        try:
            while chunk := await self._stream.read(1 << 16):
                self._feed(chunk)
        except OSError:
            pass
        finally:
            self._append(self._held)
            self._held = b""
            self._eof = True
            self._changed.set()

    def _feed(self, chunk: bytes) -> None:
        data = self._held + chunk
        while (at := data.find(self._marker)) >= 0:
            self._append(data[:at])
            self._segments.append(self._take_current())
            data = data[at + len(self._marker) :]
        keep = min(len(data), len(self._marker) - 1)
        self._append(data[: len(data) - keep])
        self._held = data[len(data) - keep :]
        self._changed.set()

    def _append(self, data: bytes) -> None:
        self._current += data
        excess = len(self._current) - self._limit
        if excess > 0:
            del self._current[:excess]
            self._dropped += excess

    def _take_current(self) -> Output:
        output = Output(bytes(self._current), self._dropped)
        self._current.clear()
        self._dropped = 0
        return output

    async def next_segment(self, timeout: float) -> Output:
        """The output up to the next marker, or whatever there is at EOF or after ``timeout``."""
        if not self._segments and not self._eof:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while not self._segments and not self._eof:
                        self._changed.clear()
                        await self._changed.wait()
        if self._segments:
            return self._segments.popleft()
        return self._take_current()

    async def drain(self, timeout: float) -> Output:
        """Everything not yet taken, once the pipe is closed (or ``timeout`` passed)."""
        await asyncio.wait({self._task}, timeout=timeout)
        output = Output()
        while self._segments:
            output = output.then(self._segments.popleft(), self._limit)
        return output.then(self._take_current(), self._limit)

    async def close(self) -> None:
        """Stop reading and close the pipe, even if a grandchild still holds its write end."""
        self._transport.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
