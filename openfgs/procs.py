"""``serve --processes N``: the primary's fronts — started, watched, restarted, stopped.

The primary (the process the user started) runs everything a one-process ``serve`` runs. It
starts N - 1 *fronts* (``python -m openfgs.cli.front``), each with one end of a socket pair:
on SQLite the channel its writes travel on (:mod:`openfgs.store.forward`); on PostgreSQL only
a lifeline. A front ends when that socket closes or when the primary dies (the kernel's
parent-death signal), so none outlives it. A front that ends while the primary runs is started
again after a back-off. Stopping stops the fronts first, gracefully: each finishes the
requests it has, whose writes the primary's store — still open — commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("openfgs.procs")

FIRST_BACKOFF = 0.5  # seconds before a front that ended is started again, doubling
MAX_BACKOFF = 10.0
STEADY_SECONDS = 30.0  # a front that ran this long starts over at the first back-off
FRONT_MODULE = "openfgs.cli.front"

ServeChannel = Callable[[socket.socket], Coroutine[Any, Any, None]]


@dataclass
class Front:
    """One front process slot: its current process and how often it was started."""

    index: int
    process: asyncio.subprocess.Process | None = None
    starts: int = 0


@dataclass
class Fronts:
    """Fronts 1..count-1 of a primary; ``environ`` is their environment (their settings)."""

    count: int
    environ: dict[str, str]
    serve_channel: ServeChannel | None = None  # SQLite: the primary's end of each channel
    grace_seconds: float = 30.0
    extra_args: list[str] = field(default_factory=list)
    fronts: dict[int, Front] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        for index in range(1, self.count):
            self.fronts[index] = Front(index)
            self._tasks.append(asyncio.create_task(self._keep(self.fronts[index])))

    def pids(self) -> dict[int, int]:
        """The running fronts' process ids, by index."""
        return {
            i: f.process.pid
            for i, f in self.fronts.items()
            if f.process is not None and f.process.returncode is None
        }

    async def stop(self) -> None:
        """SIGTERM every front, wait for them to finish (SIGKILL past the grace)."""
        self._stopping.set()
        running = [f.process for f in self.fronts.values() if f.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in running]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.grace_seconds)
            for process in running:
                if process.returncode is None:
                    log.warning("front pid %d did not stop in time: killed", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if late:
                await asyncio.wait(late)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _keep(self, front: Front) -> None:
        backoff = FIRST_BACKOFF
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                status = await self._run(front)
            except Exception:
                log.exception("front %d could not be started", front.index)
                status = None
            if self._stopping.is_set():
                return
            if time.monotonic() - began > STEADY_SECONDS:
                backoff = FIRST_BACKOFF
            log.warning(
                "front %d ended (status %s); starting it again in %.1f s",
                front.index,
                status,
                backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _run(self, front: Front) -> int:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                FRONT_MODULE,
                "--index",
                str(front.index),
                "--channel-fd",
                str(theirs.fileno()),
                "--parent",
                str(os.getpid()),
                *self.extra_args,
                pass_fds=(theirs.fileno(),),
                env=self.environ,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        front.process = process
        front.starts += 1
        log.info("front %d started (pid %d)", front.index, process.pid)
        serving: asyncio.Task[None] | None = None
        if self.serve_channel is not None:
            serving = asyncio.create_task(self.serve_channel(ours))
        try:
            return await process.wait()
        finally:
            if serving is not None:
                await asyncio.gather(serving, return_exceptions=True)
            ours.close()
