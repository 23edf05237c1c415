"""Async invocations as business operations: submit, list, claim, complete, cancel, recover.

The invocation table is the queue. Every outcome goes through one decision function,
:func:`decide`, and is persisted under ``asyncio.shield`` so a shutdown cannot cut it in half.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from openfgs.cache import TtlCache
from openfgs.counting import ROLL_UP_BATCH, ROLL_UP_SPAN, SETTLE_MS, WindowCounter
from openfgs.errors import BadRequest, NotFound, TooManyRequests
from openfgs.functions import FunctionRegistry
from openfgs.metrics import Metrics
from openfgs.models import (
    CANCELED_MESSAGE,
    AsyncConfig,
    ClaimedInvocation,
    ErrorCode,
    Function,
    InvocationDetail,
    InvocationPage,
    InvocationQuery,
    NewInvocation,
    Outcome,
    Status,
    new_request_id,
    now_ms,
)
from openfgs.runtime.families import family_of
from openfgs.runtime.types import RunResult
from openfgs.schemas import AsyncConfigBody, FuncDestinationConfig
from openfgs.statistics import Statistics
from openfgs.store.base import DAY_MS, Store

log = logging.getLogger("openfgs.invocations")

DEFAULT_EVENT_AGE_SECONDS = 3600
DEFAULT_RETRIES_WITH_CONFIG = 1  # FunctionGraph's request-side default
EXPIRED_BATCH = 500  # expired waiting rows discarded per claim
RECOVERY_ATTEMPTS = 2  # an attempt cut short by a dead worker is tried once more
MAX_DESTINATION_DEPTH = 8
MAX_LIMIT = 500
DEFAULT_WINDOW_MS = 3600 * 1000
MAX_ACTIVE_IDS = 10
MESSAGE_EXCERPT = 500  # characters of a message quoted in the message of an unrecorded outcome
IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
ACTIVE = (Status.WAIT, Status.RUNNING)
CANCEL_WORKER = "cancel"  # the worker id a canceled waiting record is claimed under
_CACHE_SECONDS = 2.0
CONFIG_CACHE_ENTRIES = 10_000


class Notifier:
    """Wakes waiting workers when work arrives; a lost wake-up costs a poll interval."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        """Return once notified since the last return (at once if that already happened)."""
        await self._event.wait()
        self._event.clear()


class LocalSlots(Protocol):
    """A worker in this process that starts what this node accepts without a claim."""

    def reserve(self) -> tuple[str, int] | None:
        """Hold a free slot for one accept: ``(worker id, lease until)``, or None when there
        is none or the queue may hold older work."""

    def started(self, claimed: ClaimedInvocation | None) -> None:
        """End a reservation: run ``claimed`` in its slot, or (None) give the slot back."""


def started_claim(invocation: NewInvocation) -> ClaimedInvocation:
    """The first attempt of a row inserted already RUNNING, as a claim would return it."""
    return ClaimedInvocation(
        request_id=invocation.request_id,
        function_id=invocation.function_id,
        version=invocation.version,
        payload=invocation.payload,
        attempt=1,
        expires_at=invocation.expires_at,
        max_attempts=invocation.max_attempts,
        depth=invocation.depth,
        accepted_at=invocation.start_time,
    )


# -- the decision -----------------------------------------------------------------------------


# What becomes of an attempt: the store records the decision as it is.
Decision = Outcome


def _start(claimed: ClaimedInvocation) -> int | None:
    """The claimed record's start_time for the store to find it by (0: a claim made without
    it, found by request id alone)."""
    return claimed.accepted_at or None


def backoff_ms(attempt: int, base_seconds: float, max_seconds: float) -> int:
    """Exponential backoff: base, 2×base, 4×base, … capped at ``max_seconds``."""
    return int(min(base_seconds * 2 ** max(attempt - 1, 0), max_seconds) * 1000)


def decide(
    claimed: ClaimedInvocation,
    outcome: RunResult | None,
    now: int,
    backoff: Callable[[int], int] = lambda attempt: 0,
) -> Decision:
    """The one place an invocation's fate is decided.

    ``outcome`` is None when the attempt never ran to an answer (its worker died or is shutting
    down); it is tried again while attempts remain and the event has not expired.
    """
    if outcome is None:
        if claimed.attempt < max(claimed.max_attempts, RECOVERY_ATTEMPTS):
            return Decision(Status.WAIT, retry_at=now, error_message=claimed.last_error)
        return Decision(
            Status.FAIL,
            ErrorCode.INTERRUPTED,
            f"interrupted: the worker stopped while attempt {claimed.attempt} was running",
        )
    if outcome.ok:
        return Decision(Status.SUCCESS, result=outcome.result.encode())
    if outcome.error_code != ErrorCode.CANCELED and claimed.attempt < claimed.max_attempts:
        return Decision(
            Status.WAIT,
            outcome.error_code,
            f"attempt {claimed.attempt} failed: {outcome.error_message}",
            retry_at=now + backoff(claimed.attempt),
        )
    return Decision(Status.FAIL, outcome.error_code, outcome.error_message)


def expiry_decision(claimed: ClaimedInvocation, now: int) -> Decision | None:
    """DISCARD for an event that aged past its limit before this attempt could start."""
    if now < claimed.expires_at:
        return None
    message = f"discarded: the event exceeded its maximum age before attempt {claimed.attempt}"
    if claimed.last_error:
        message += f"; {claimed.last_error}"
    return Decision(Status.DISCARD, ErrorCode.EXPIRED, message)


# -- destinations -----------------------------------------------------------------------------


def destination_condition(claimed: ClaimedInvocation, decision: Decision) -> str:
    if decision.status is Status.SUCCESS:
        return "Success"
    if decision.error_code == ErrorCode.CANCELED:
        return "Canceled"
    if decision.status is Status.DISCARD:
        return "EventAgeExceeded"
    return "RetriesExhausted" if claimed.attempt > 1 else "Failure"


def json_or_text(data: bytes) -> Any:
    """``data`` as a destination event carries it: its JSON value, or its text when it is not
    JSON or nests too deep for the parser — a hostile payload must not fail the outcome."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data.decode(errors="replace")


def destination_event(
    claimed: ClaimedInvocation, decision: Decision, function_urn: str, now: int
) -> bytes:
    """FunctionGraph's destination event for the outcome of ``claimed``.

    The request payload and the function's result are carried as JSON values; one too deep to
    parse (or to write back) is carried as its text, so the event can always be built and read.
    """
    succeeded = decision.status is Status.SUCCESS
    result = decision.result if succeeded else None
    event = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000)),
        "request_context": {
            "request_id": claimed.request_id,
            "function_urn": function_urn,
            "condition": destination_condition(claimed, decision),
            "approximate_invoke_count": claimed.attempt,
        },
        "request_payload": json_or_text(claimed.payload),
        "response_context": {
            "status_code": 200 if succeeded else 500,
            "function_error": "" if succeeded else decision.error_message,
        },
        "response_payload": {
            "errorCode": decision.error_code,
            "errorMessage": decision.error_message,
        }
        if result is None
        else json_or_text(result),
    }
    try:
        return json.dumps(event).encode()
    except RecursionError:  # parsed at the edge of the limit, too deep to write: the texts
        event["request_payload"] = claimed.payload.decode(errors="replace")
        if result is not None:
            event["response_payload"] = result.decode(errors="replace")
        return json.dumps(event).encode()


def storable(text: str) -> str:
    """``text`` as every store can hold it: lone surrogates and NUL characters escaped."""
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


def unrecorded_message(claimed: ClaimedInvocation, decision: Decision, error: Exception) -> str:
    """The FAIL message of a record whose outcome could not be written: what the outcome was
    and why it was refused, so the user reading the record learns both."""
    outcome = "RETRY" if decision.status is Status.WAIT else decision.status.value
    if decision.error_message:
        outcome += f": {decision.error_message[:MESSAGE_EXCERPT]}"
    reason = f"{type(error).__name__}: {str(error)[:MESSAGE_EXCERPT]}"
    return storable(
        f"not recorded: the outcome of attempt {claimed.attempt} ({outcome}) could not be "
        f"written ({reason})"
    )


# -- the service ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LifecycleSettings:
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 60.0
    max_waiting_per_function: int = 100_000
    retention_seconds: int = 7 * 86400


def check_async_runtime(function: Function) -> None:
    """HTTP functions answer requests; FunctionGraph queues nothing for them."""
    family = family_of(function.runtime)
    if family is not None and not family.async_invoke:
        raise BadRequest(
            f"Invalid parameter: {function.runtime} functions are invoked synchronously only",
            error_code="FSS.0400",
        )


class InvocationService:
    """Domain operations on async invocation records and async invoke configs."""

    def __init__(
        self,
        store: Store,
        registry: FunctionRegistry,
        settings: LifecycleSettings | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._settings = settings or LifecycleSettings()
        self.notifier = notifier or Notifier()
        self._configs: TtlCache[int, AsyncConfig | None] = TtlCache(CONFIG_CACHE_ENTRIES)
        self._counting: dict[int, asyncio.Future[tuple[float, int]]] = {}
        self._counter = WindowCounter(store, self._settings.retention_seconds * 1000)
        self._waiting: dict[int, tuple[float, int]] = {}
        self.cancel_hooks: list[Callable[[str], Any]] = []
        self.local_slots: LocalSlots | None = None  # this process's worker, while it runs
        # Observability: metric series from the records (ListFunctionStatistics).
        self.statistics = Statistics(store)
        self.metrics = Metrics()

    # -- accept -----------------------------------------------------------------------------

    async def submit(
        self, function: Function, payload: bytes, idempotency_key: str | None = None
    ) -> str:
        """Persist an accepted request (durably) and wake the workers; return its request id."""
        await self._check_backlog(function)
        invocation = await self.new_invocation(function, payload)
        if idempotency_key:
            cutoff = invocation.start_time - IDEMPOTENCY_WINDOW_MS
            request_id = await self._store.insert_invocation_once(
                invocation, idempotency_key, cutoff
            )
            self.notifier.notify()
        else:
            request_id = invocation.request_id
            if not await self._insert(invocation):
                self.notifier.notify()
        self.metrics.accepted(function)
        return request_id

    async def _insert(self, invocation: NewInvocation) -> bool:
        """Insert an accepted row; True when this node's worker started it at once (a slot
        was free and the store allowed it), which spares the claim's round trip."""
        slots = self.local_slots if self._store.starts_accepted_rows else None
        slot = slots.reserve() if slots is not None else None
        if slots is None or slot is None:
            await self._store.insert_invocation(invocation)
            return False
        claimed = None
        try:
            if await self._store.insert_started_invocation(invocation, *slot):
                claimed = started_claim(invocation)
        finally:
            slots.started(claimed)
        return claimed is not None

    async def new_invocation(
        self, function: Function, payload: bytes, depth: int = 0, rerun_of: str | None = None
    ) -> NewInvocation:
        check_async_runtime(function)
        config = await self.config(function)
        age = config.max_async_event_age_in_seconds if config else DEFAULT_EVENT_AGE_SECONDS
        retries = config.max_async_retry_attempts if config else 0
        now = now_ms()
        return NewInvocation(
            request_id=new_request_id(),
            function_id=function.id,
            version=self._registry.pick_version(function),
            payload=payload,
            start_time=now,
            available_at=now,
            expires_at=now + age * 1000,
            max_attempts=1 + retries,
            depth=depth,
            rerun_of=rerun_of,
        )

    async def _check_backlog(self, function: Function) -> None:
        """429 when a function already has too many waiting invocations (counted ≤ 1 s ago)."""
        limit = self._settings.max_waiting_per_function
        entry = self._waiting.get(function.id)
        if entry is None or time.monotonic() - entry[0] > 1.0:
            counted = await self._count_waiting(function.id)
            entry = self._waiting.get(function.id)
            if entry is None or entry[0] < counted[0]:
                entry = counted
        checked, waiting = entry
        self._waiting[function.id] = (checked, waiting + 1)
        if waiting >= limit:
            raise TooManyRequests(
                f"the function has {waiting} waiting invocations (limit {limit}); retry later",
                headers={"Retry-After": "1"},
            )

    def _count_waiting(self, function_id: int) -> asyncio.Future[tuple[float, int]]:
        """One count at a time per function, shared by every request that wants it."""
        pending = self._counting.get(function_id)
        if pending is None:

            async def count() -> tuple[float, int]:
                started = time.monotonic()
                return started, await self._store.count_waiting(function_id)

            pending = self._counting[function_id] = asyncio.ensure_future(count())
            pending.add_done_callback(lambda _: self._counting.pop(function_id, None))
        return asyncio.shield(pending)

    # -- read -------------------------------------------------------------------------------

    async def list_records(
        self, functions: Sequence[Function], query: InvocationQuery
    ) -> InvocationPage:
        """A page of the records of ``functions`` (a function's rows: its latest, versions,
        aliases), each row's counted by :class:`WindowCounter`.

        Several rows' pages are merged: each row gives its first ``marker + limit`` records
        and the merge keeps the page, so a deep page of a function with versions reads each
        row's records up to it (documented in docs/api.md)."""
        if len(functions) == 1:
            return await self._counter.list_records(
                functions[0], replace(query, function_id=functions[0].id)
            )
        window = replace(query, marker=0, limit=query.marker + query.limit)
        pages = [
            await self._counter.list_records(f, replace(window, function_id=f.id))
            for f in functions
        ]
        merged = heapq.merge(
            *(page.invocations for page in pages),
            key=lambda record: (record.start_time, record.request_id),
            reverse=True,
        )
        records = list(itertools.islice(merged, query.marker, query.marker + query.limit))
        return InvocationPage(
            records, sum(page.count for page in pages), query.marker + len(records)
        )

    async def roll_up_counts(self) -> int:
        """Count the minutes that settled since the last pass into the store's per-minute
        counts (openfgs.counting); how many function rows are still behind."""
        return await self._store.roll_up_minutes(now_ms(), SETTLE_MS, ROLL_UP_BATCH, ROLL_UP_SPAN)

    async def detail(self, project_id: str, request_id: str) -> InvocationDetail:
        found = await self._store.get_invocation(request_id)
        if found is None or found.project_id != project_id:
            raise NotFound(f"async invocation {request_id[:64]!r} not found")
        return found

    async def counts(self, function: Function) -> dict[Status, int]:
        return await self._store.count_by_status(function.id)

    # -- configs ----------------------------------------------------------------------------

    async def config(self, function: Function) -> AsyncConfig | None:
        cached = self._configs.lookup(function.id)
        if cached is not None:
            return cached.value
        config = await self._store.get_async_config(function.id)
        self._configs.put(function.id, config, _CACHE_SECONDS)
        return config

    async def put_config(self, function: Function, body: AsyncConfigBody) -> AsyncConfig:
        destinations: dict[str, Any] = {}
        if body.destination_config is not None:
            for condition in ("on_success", "on_failure"):
                target = getattr(body.destination_config, condition)
                if target is not None:
                    await self._check_destination(function, condition, target)
                    destinations[condition] = target.model_dump()
        existing = await self._store.get_async_config(function.id)
        now = now_ms()
        config = AsyncConfig(
            function_id=function.id,
            max_async_event_age_in_seconds=body.max_async_event_age_in_seconds
            or DEFAULT_EVENT_AGE_SECONDS,
            max_async_retry_attempts=DEFAULT_RETRIES_WITH_CONFIG
            if body.max_async_retry_attempts is None
            else body.max_async_retry_attempts,
            destination_config=destinations,
            enable_async_status_log=bool(body.enable_async_status_log),
            created_at=existing.created_at if existing else now,
            last_modified=now,
        )
        await self._store.upsert_async_config(config)
        self._configs.pop(function.id)
        return config

    async def _check_destination(
        self, function: Function, condition: str, target: FuncDestinationConfig
    ) -> None:
        if target.destination != "FunctionGraph":
            raise BadRequest(
                f"destination_config.{condition}: destination {target.destination!r} is not "
                "supported by openfgs; use FunctionGraph"
            )
        try:
            param = json.loads(target.param)
            urn = param["func_urn"]
            assert isinstance(urn, str)
        except (ValueError, KeyError, TypeError, AssertionError, RecursionError):
            raise BadRequest(
                f"destination_config.{condition}.param must be a JSON string such as "
                '{"func_urn": "urn:fss:…:function:default:name:latest"}'
            ) from None
        try:
            await self._registry.resolve(function.project_id, urn)
        except (NotFound, BadRequest):
            raise BadRequest(
                f"destination_config.{condition}: function {urn!r} does not exist"
            ) from None

    async def delete_config(self, function: Function) -> None:
        if not await self._store.delete_async_config(function.id):
            raise NotFound("the function has no async invoke config")
        self._configs.pop(function.id)

    # -- run --------------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, limit: int, lease_seconds: int
    ) -> list[ClaimedInvocation]:
        """Claim up to ``limit`` runnable records; expired ones are discarded, not returned."""
        now = now_ms()
        lease_until = now + lease_seconds * 1000
        expired_rows, claimed = await self._store.claim_due(
            worker_id, now, limit, EXPIRED_BATCH, lease_until
        )
        for item in expired_rows:
            verdict = expiry_decision(item, now)
            assert verdict is not None
            await self._settle(item, verdict, now)
        runnable = []
        for item in claimed:
            verdict = expiry_decision(item, now)
            if verdict is None:
                runnable.append(item)
            else:
                await self._settle(item, verdict, now)
        return runnable

    async def complete(self, claimed: ClaimedInvocation, outcome: RunResult | None) -> Decision:
        """Decide and persist the outcome of one attempt."""
        decision, _ = await self._complete(claimed, outcome)
        return decision

    async def _complete(
        self, claimed: ClaimedInvocation, outcome: RunResult | None
    ) -> tuple[Decision, bool]:
        """The decision, and whether the record left RUNNING (see :meth:`_settle`)."""
        now = now_ms()
        s = self._settings
        if outcome is not None and outcome.error_message:
            # A handler's message may hold what no store takes (lone surrogates, NUL).
            outcome = replace(outcome, error_message=storable(outcome.error_message))
        decision = decide(
            claimed,
            outcome,
            now,
            lambda attempt: backoff_ms(
                attempt, s.retry_backoff_seconds, s.retry_backoff_max_seconds
            ),
        )
        return decision, await asyncio.shield(self._settle(claimed, decision, now))

    async def _settle(self, claimed: ClaimedInvocation, decision: Decision, now: int) -> bool:
        """Persist ``decision``; when that fails, end the record FAIL saying why.

        A record whose outcome cannot be written would otherwise stay RUNNING, be recovered
        when its lease ends and fail the same way again, forever, in every loop that meets it.
        False when even the FAIL could not be written (the store refuses every write): the
        record is then left to lease recovery, and the caller goes on with the others.
        """
        try:
            await self._persist(claimed, decision, now)
            await self._count_finished(claimed, decision.status)
            return True
        except Exception as exc:
            log.exception(
                "the outcome of %s could not be written; it ends FAIL", claimed.request_id
            )
            message = unrecorded_message(claimed, decision, exc)
        try:
            failed = Decision(Status.FAIL, ErrorCode.NOT_RECORDED, message)
            await self._store.finish_invocation(
                claimed.request_id, claimed.attempt, failed, now, None, _start(claimed)
            )
            await self._count_finished(claimed, Status.FAIL)
            return True
        except Exception:
            log.exception("%s could not be ended; lease recovery tries again", claimed.request_id)
            return False

    async def _persist(self, claimed: ClaimedInvocation, decision: Decision, now: int) -> None:
        if decision.status is Status.WAIT:
            assert decision.retry_at is not None
            await self._store.requeue_invocation(
                claimed.request_id, claimed.attempt, decision, now, _start(claimed)
            )
            self.notifier.notify()
            return
        follow_up = await self._follow_up(claimed, decision, now)
        await self._store.finish_invocation(
            claimed.request_id, claimed.attempt, decision, now, follow_up, _start(claimed)
        )
        if follow_up is not None:
            self.notifier.notify()

    async def _follow_up(
        self, claimed: ClaimedInvocation, decision: Decision, now: int
    ) -> NewInvocation | None:
        """The destination invocation a terminal outcome starts, if one is configured."""
        function = await self._registry.get_by_id(claimed.function_id)
        if function is None:
            return None
        config = await self.config(function)
        condition = "on_success" if decision.status is Status.SUCCESS else "on_failure"
        target = (config.destination_config.get(condition) if config else None) or None
        if target is None:
            return None
        if claimed.depth >= MAX_DESTINATION_DEPTH:
            log.warning(
                "destination chain of %s stopped at depth %d", claimed.request_id, claimed.depth
            )
            return None
        try:
            urn = json.loads(target["param"])["func_urn"]
            destination = await self._registry.resolve(function.project_id, urn)
        except (ValueError, KeyError, TypeError, RecursionError, NotFound, BadRequest):
            log.warning("destination of %s no longer exists", claimed.request_id)
            return None
        source_urn = function.urn(self._registry.region).qualified(claimed.version)
        try:
            event = destination_event(claimed, decision, source_urn, now)
        except Exception:  # the record still ends as decided; only its destination is lost
            log.exception("destination event of %s could not be built; skipped", claimed.request_id)
            return None
        return await self.new_invocation(destination, event, depth=claimed.depth + 1)

    # -- metrics ----------------------------------------------------------------------------

    async def _count_finished(self, claimed: ClaimedInvocation, status: Status) -> None:
        """Count a terminal outcome; never raises (the outcome is written already)."""
        if not status.terminal:
            return
        try:
            function = await self._registry.get_by_id(claimed.function_id)
        except Exception:
            log.warning("the outcome of %s was not counted", claimed.request_id, exc_info=True)
            return
        if function is not None:
            self.metrics.finished(function, status)

    async def observe_run(
        self, claimed: ClaimedInvocation, started_ms: int, seconds: float
    ) -> None:
        """Metrics of one attempt that ran: its duration, and for a first attempt how long it
        waited from its accept to the handler's start."""
        function = await self._registry.get_by_id(claimed.function_id)
        if function is None:
            return
        self.metrics.ran(function, seconds)
        if claimed.attempt == 1:
            self.metrics.dispatched((started_ms - claimed.accepted_at) / 1000)

    # -- cancel, recover, leases ------------------------------------------------------------

    async def cancel(self, functions: Sequence[Function], request_id: str) -> None:
        """Stop one request of one of ``functions`` (a function's rows): WAIT becomes
        DISCARD, RUNNING has its instance stopped (FAIL)."""
        found = await self._store.get_invocation(request_id)
        if found is None or found.record.function_id not in {f.id for f in functions}:
            raise BadRequest("Invalid RequestId", error_code="FSS.0400")
        function_id = found.record.function_id
        now = now_ms()
        claimed = await self._store.claim_waiting(
            request_id, function_id, CANCEL_WORKER, now, now + 60_000
        )
        if claimed is not None:  # out of the queue: it ends DISCARD, destination included
            canceled = Decision(Status.DISCARD, ErrorCode.CANCELED, CANCELED_MESSAGE)
            await asyncio.shield(self._settle(claimed, canceled, now))
            return
        if await self._store.request_cancel(request_id, function_id):
            for hook in self.cancel_hooks:
                await hook(request_id)
            return
        raise BadRequest(
            f"Invalid RequestId: the invocation has already ended ({found.record.status.value})"
        )

    async def recover(self, cutoff: int | None = None, batch: int = 500) -> int:
        """Return RUNNING rows whose lease ends before ``cutoff`` (default: now) to the decision.

        Their worker died; the embedded service passes a cutoff in the far future at start,
        since it alone owns its data directory and nothing it had running survived.
        Each row is taken once per call: one that cannot be ended (the store refuses even its
        FAIL) is passed over until the next call, so it neither stops nor loops the recovery of
        the others.
        """
        moment = cutoff if cutoff is not None else now_ms()
        total = 0
        seen: set[str] = set()
        while True:
            rows = await self._store.list_expired_leases(moment, batch)
            rows = [claimed for claimed in rows if claimed.request_id not in seen]
            if not rows:
                return total
            for claimed in rows:
                seen.add(claimed.request_id)
                _, ended = await self._complete(claimed, None)
                total += 1 if ended else 0

    async def renew_leases(self, worker_id: str, lease_seconds: int) -> list[str]:
        """Extend this worker's leases; return the requests someone asked to cancel."""
        await self._store.renew_leases(worker_id, now_ms() + lease_seconds * 1000)
        return await self._store.list_cancel_requests(worker_id)

    async def next_wakeup(self) -> int | None:
        return await self._store.next_available_at()

    async def prepare_partitions(self) -> int:
        """Make the store's day partitions of records ahead of time (PostgreSQL); how many."""
        return await self._store.ensure_partitions(now_ms())

    async def purge_expired_records(self, batch: int = 1000) -> int:
        """Drop whole days of records older than the retention period where the store keeps
        records by day (PostgreSQL: O(1) a day, no bloat), then delete the terminal records
        left over (SQLite: all of them) in small batches; the number of rows deleted."""
        now = now_ms()
        cutoff = now - self._settings.retention_seconds * 1000
        if days := await self._store.drop_expired_days(cutoff):
            log.info("dropped %d days of records past their retention", days)
        if self._store.retention_by_day and self._settings.retention_seconds * 1000 >= DAY_MS:
            # Only the days wholly past the cutoff (those the drop kept) lose rows one by one;
            # the day the cutoff falls in goes whole once it is wholly past. A retention shorter
            # than a day is not served by days: its rows are deleted as they expire.
            cutoff -= cutoff % DAY_MS
        total = 0
        while deleted := await self._store.delete_expired(
            cutoff, now - IDEMPOTENCY_WINDOW_MS, batch
        ):
            total += deleted
            await asyncio.sleep(0)  # let accepts in between batches
        return total

    # -- re-run -----------------------------------------------------------------------------

    async def rerun(
        self,
        function: Function,
        begin: int,
        end: int,
        status: Status | None,
        limit: int,
        request_id: str | None = None,
    ) -> list[tuple[str, str]]:
        """Queue FAIL/DISCARD records of a window (or the one ``request_id`` names) again;
        ``(new id, old id)`` pairs.

        A record that cannot be queued again is left out of the pairs (and logged); the error
        is raised only when no record could be, so a failing store still answers as one.
        """
        statuses = (status,) if status else (Status.FAIL, Status.DISCARD)
        rows = await self._store.list_rerunnable(
            function.id, statuses, begin, end, limit, request_id
        )
        pairs = []
        failure: Exception | None = None
        for old_id, payload, depth in rows:
            try:
                invocation = await self.new_invocation(function, payload, depth, rerun_of=old_id)
                await self._store.insert_invocation(invocation)
            except Exception as exc:
                log.exception("%s could not be queued again; left out of the re-run", old_id)
                failure = exc
                continue
            pairs.append((invocation.request_id, old_id))
        if pairs:
            self.notifier.notify()
        elif failure is not None:
            raise failure
        return pairs
