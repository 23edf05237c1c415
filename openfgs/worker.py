"""The worker loop: wait for work, claim a batch, run each invocation, persist its outcome.

Besides running invocations, a worker keeps its leases alive, stops invocations someone
canceled, recovers rows whose worker died, and purges records past their retention. While it
runs, it lends its free slots to this node's accepts (:meth:`Worker.reserve`): a row the store
starts at once in the accept's transaction is run here without a claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any

from openfgs.counting import ROLL_UP_INTERVAL_SECONDS
from openfgs.execution import Executor
from openfgs.functions import FunctionRegistry
from openfgs.invocations import InvocationService
from openfgs.logs import REQUEST_ID
from openfgs.models import ClaimedInvocation, ErrorCode, now_ms
from openfgs.runtime.pool import InstancePool
from openfgs.runtime.types import RunResult

log = logging.getLogger("openfgs.worker")
PURGE_INTERVAL_SECONDS = 60.0
# While invocations run, a claim waits until half the slots are free or this long after the
# first one freed: claims (and the outcomes written meanwhile) then go in batches.
REFILL_DELAY_SECONDS = 0.002


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Runs async invocations with at most ``concurrency`` in flight."""

    def __init__(
        self,
        service: InvocationService,
        registry: FunctionRegistry,
        pool: InstancePool,
        *,
        concurrency: int = 8,
        poll_interval: float = 1.0,
        lease_seconds: int = 60,
        grace_seconds: float = 30.0,
        worker_id: str | None = None,
    ) -> None:
        self._service = service
        self._registry = registry
        self._pool = pool
        self._executor = Executor(registry, pool)
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._lease_seconds = lease_seconds
        self._grace_seconds = grace_seconds
        self.worker_id = worker_id or new_worker_id()
        self._tasks: dict[asyncio.Task[None], ClaimedInvocation] = {}
        self._slot_freed = asyncio.Event()
        self._freed_at: float | None = None  # when the first slot freed since the last claim
        self._shutting_down = False
        self._reserved = 0  # slots held for accepts in flight
        self._reservations_over = asyncio.Event()
        self._reservations_over.set()
        # Whether the last claim filled every slot it asked for: the queue may hold more, which
        # then goes first (an accept started at once would overtake it).
        self._backlog = True
        self._lending = False

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then let running invocations finish within the grace
        period; the ones still running after it are stopped and queued again."""
        stopping = asyncio.ensure_future(stop.wait())
        upkeep = asyncio.create_task(self._upkeep(stop))
        roll_up = asyncio.create_task(self._roll_up(stop))
        self._lend_slots(True)
        try:
            while not stop.is_set():
                if await self._fill() == 0:
                    await self._idle(stopping)
        finally:
            stopping.cancel()
            self._lend_slots(False)
            await self._reservations_over.wait()  # an accept in flight may still hand one over
            await self._drain()
            for task in (upkeep, roll_up):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _drain(self) -> None:
        if not self._tasks:
            return
        await asyncio.wait(list(self._tasks), timeout=self._grace_seconds)
        self._shutting_down = True
        for claimed in list(self._tasks.values()):
            await self._pool.cancel(claimed.request_id)
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def run_until_idle(self) -> None:
        """Burst mode: run until nothing is waiting and nothing is in flight (for tests)."""
        while True:
            started = await self._fill()
            if started == 0 and not self._tasks:
                return
            if started == 0:
                waiting = self._refill_wait()
                await asyncio.wait(
                    list(self._tasks),
                    timeout=waiting if waiting > 0 else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )

    def _lend_slots(self, lend: bool) -> None:
        self._lending = lend
        if lend:
            self._service.local_slots = self
        elif self._service.local_slots is self:
            self._service.local_slots = None

    def reserve(self) -> tuple[str, int] | None:
        """A free slot held for an accept of this node: ``(worker id, lease until)`` for the
        store to start the row under, or None (no free slot, stopping, or work queued)."""
        if not self._lending or self._backlog or self._free() <= 0:
            return None
        self._reserved += 1
        self._reservations_over.clear()
        return self.worker_id, now_ms() + self._lease_seconds * 1000

    def started(self, claimed: ClaimedInvocation | None) -> None:
        """The end of a reservation: run ``claimed`` (started by the store), or free the slot."""
        self._reserved -= 1
        if self._reserved == 0:
            self._reservations_over.set()
        if claimed is not None:
            self._start(claimed)
        else:
            self._slot_freed.set()

    def _free(self) -> int:
        return self._concurrency - len(self._tasks) - self._reserved

    def _start(self, claimed: ClaimedInvocation) -> None:
        task = asyncio.create_task(self._run_one(claimed))
        self._tasks[task] = claimed
        task.add_done_callback(self._done)

    async def _fill(self) -> int:
        free = self._free()
        if free <= 0 or self._refill_wait() > 0:
            return 0
        self._freed_at = None
        try:
            claimed = await self._service.claim(self.worker_id, free, self._lease_seconds)
        except Exception:
            log.exception("claiming invocations failed")
            return 0
        self._backlog = len(claimed) >= free
        for item in claimed:
            self._start(item)
        return len(claimed)

    def _refill_wait(self) -> float:
        """Seconds to wait before claiming for the free slots (0: claim now)."""
        if not self._tasks or self._freed_at is None:
            return 0.0
        if self._free() >= max(1, self._concurrency // 2):
            return 0.0
        return self._freed_at + REFILL_DELAY_SECONDS - time.monotonic()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if self._freed_at is None:
            self._freed_at = time.monotonic()
        self._slot_freed.set()

    async def _idle(self, stopping: asyncio.Future[Any]) -> None:
        """Sleep until work may be there: a wake-up, a due retry or the poll, or a freed slot
        while the last claim left work queued (after one that came back short, a freed slot
        alone finds nothing: whatever is queued since comes with a wake-up)."""
        timeout = self._poll_interval
        if self._free() > 0:
            if (refill := self._refill_wait()) > 0:
                timeout = refill
            else:
                due = await self._service.next_wakeup()
                if due is not None:
                    timeout = max(0.0, min(timeout, (due - now_ms()) / 1000))
        deadline = time.monotonic() + timeout
        notified = asyncio.ensure_future(self._service.notifier.wait())
        try:
            while True:
                self._slot_freed.clear()
                freed = asyncio.ensure_future(self._slot_freed.wait())
                done, _ = await asyncio.wait(
                    [notified, freed, stopping],
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                freed.cancel()
                if done != {freed} or self._backlog:
                    return
        finally:
            notified.cancel()

    async def _run_one(self, claimed: ClaimedInvocation) -> None:
        started_ms, started = now_ms(), time.monotonic()
        REQUEST_ID.set(claimed.request_id)  # on every log line of this attempt
        try:
            outcome: RunResult | None = await self._execute(claimed)
            # Metrics: never in the way of the outcome.
            with contextlib.suppress(Exception):
                await self._service.observe_run(claimed, started_ms, time.monotonic() - started)
            if (
                self._shutting_down
                and outcome is not None
                and outcome.error_code == (ErrorCode.CANCELED)
            ):
                outcome = None  # stopped by our shutdown, not by a user: run it again later
            await self._service.complete(claimed, outcome)
        except Exception:
            log.exception("invocation %s could not be completed", claimed.request_id)

    async def _execute(self, claimed: ClaimedInvocation) -> RunResult:
        function = await self._registry.get_by_id(claimed.function_id)
        if function is None:
            return RunResult(
                ok=False,
                error_code=ErrorCode.FUNCTION_ERROR,
                error_message="the function was deleted before the invocation could run",
            )
        return await self._executor.run(
            function, claimed.version, claimed.payload, claimed.request_id
        )

    async def _upkeep(self, stop: asyncio.Event) -> None:
        """Leases, cancel requests, dead workers' rows and retention, on a short beat.

        Each task fails alone: leases that cannot be renewed must not stop the recovery of
        dead workers' rows, nor the retention purge of every tenant.
        """
        interval = min(max(self._lease_seconds / 3, 0.2), 1.0)
        next_purge = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if self._tasks:
                await self._attempt("renewing leases", self._renew_leases())
            await self._attempt("recovering invocations", self._recover())
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
                await self._attempt("purging records", self._purge())

    async def _roll_up(self, stop: asyncio.Event) -> None:
        """Keep the store's per-minute counts up with the minutes that settle, beside the beat
        (a store's history after an upgrade takes many passes, which must not hold up the
        leases): pass after pass while some function is behind, else every
        ``ROLL_UP_INTERVAL_SECONDS``."""
        while not stop.is_set():
            behind = 0
            try:
                behind = await self._service.roll_up_counts()
            except Exception:
                log.exception("worker upkeep: rolling up the counts of settled minutes failed")
            if behind:
                await asyncio.sleep(0)  # the loop's other work runs between passes
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ROLL_UP_INTERVAL_SECONDS)

    @staticmethod
    async def _attempt(task: str, step: Coroutine[Any, Any, object]) -> None:
        """Run one upkeep task; its failure is logged and waits for the next beat."""
        try:
            await step
        except Exception:
            log.exception("worker upkeep: %s failed", task)

    async def _renew_leases(self) -> None:
        """Renew this worker's leases and stop what users canceled, each one on its own."""
        for request_id in await self._service.renew_leases(self.worker_id, self._lease_seconds):
            await self._attempt(f"canceling {request_id}", self._pool.cancel(request_id))

    async def _recover(self) -> None:
        if recovered := await self._service.recover():
            log.warning("recovered %d invocations whose worker stopped", recovered)

    async def _purge(self) -> None:
        # Tomorrow's partition is made here a day or more ahead, never by an accept.
        await self._attempt("making partitions", self._service.prepare_partitions())
        if purged := await self._service.purge_expired_records():
            log.info("purged %d records past their retention", purged)
