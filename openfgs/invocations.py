"""Async invocations as business operations: submit, list, claim, complete and recover.

The invocation table is the queue. Every outcome goes through one decision function,
:func:`decide`, and is persisted under ``asyncio.shield`` so a shutdown cannot cut it in half.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from openfgs.errors import BadRequest
from openfgs.models import (
    ClaimedInvocation,
    ErrorCode,
    Function,
    InvocationPage,
    InvocationQuery,
    NewInvocation,
    Status,
    now_ms,
    parse_time,
)
from openfgs.runtime.types import RunResult
from openfgs.store.base import Store

DEFAULT_EVENT_AGE_SECONDS = 3600
RECOVERY_ATTEMPTS = 2  # a run cut short by a dead service is tried once more
MAX_LIMIT = 500
DEFAULT_WINDOW_MS = 3600 * 1000
MAX_ACTIVE_IDS = 10
ACTIVE = (Status.WAIT, Status.RUNNING)


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


def _query_error(parameter: str, message: str) -> BadRequest:
    return BadRequest(f"Invalid query parameter {parameter}: {message}", error_code="FSS.1001")


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if len(raw) > 64 or not raw.strip().lstrip("+-").isdigit():
        raise _query_error(name, f"{raw[:64]!r} is not an integer")
    value = int(raw)
    if not low <= value <= high:
        raise _query_error(name, f"{value} is out of range [{low}, {high}]")
    return value


def _time_window(params: Mapping[str, str]) -> tuple[int, int]:
    bounds: dict[str, int] = {}
    for name in ("query_begin_time", "query_end_time"):
        raw = params.get(name)
        if raw:
            try:
                bounds[name] = parse_time(raw)
            except ValueError:
                raise _query_error(
                    name, f"{raw[:64]!r} is not a time of the form YYYY-MM-DDTHH:mm:ss"
                ) from None
    now = now_ms()
    end = bounds.get("query_end_time")
    # A whole second given as the end bound includes that second.
    end = now if end is None else end + (999 if end % 1000 == 0 else 0)
    begin = bounds.get("query_begin_time", min(now, end) - DEFAULT_WINDOW_MS)
    if begin > end:
        raise _query_error("query_begin_time", "it is later than query_end_time")
    return begin, end


def _status_param(params: Mapping[str, str]) -> tuple[Status, ...]:
    raw = params.get("status")
    if not raw:
        return ()
    try:
        return (Status(raw),)
    except ValueError:
        raise _query_error(
            "status", f"{raw[:64]!r} is not one of WAIT, RUNNING, SUCCESS, FAIL, DISCARD"
        ) from None


def parse_list_query(function: Function, params: Mapping[str, str]) -> InvocationQuery:
    """Validate the list endpoint's query parameters (all strings on the wire)."""
    request_id = params.get("request_id") or ""
    if len(request_id) > 64:
        raise _query_error("request_id", "longer than 64 characters")
    begin, end = _time_window(params)
    return InvocationQuery(
        function_id=function.id,
        begin=begin,
        end=end,
        request_ids=(request_id,) if request_id else (),
        statuses=_status_param(params),
        marker=_int_param(params, "marker", 0, 0, 2**31 - 1),
        limit=_int_param(params, "limit", 100, 1, MAX_LIMIT),
    )


def parse_active_query(function: Function, params: Mapping[str, str]) -> InvocationQuery:
    """The active-invocations endpoint: only WAIT and RUNNING, ``requests`` = up to 10 ids."""
    raw = params.get("requests") or ""
    if len(raw) > 640:
        raise _query_error("requests", "longer than 640 characters")
    ids = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if len(ids) > MAX_ACTIVE_IDS:
        raise _query_error("requests", f"more than {MAX_ACTIVE_IDS} request ids")
    query = parse_list_query(function, {k: v for k, v in params.items() if k != "request_id"})
    statuses = tuple(s for s in ACTIVE if not query.statuses or s in query.statuses)
    return InvocationQuery(
        function_id=query.function_id,
        begin=query.begin,
        end=query.end,
        request_ids=ids,
        statuses=statuses,
        marker=query.marker,
        limit=query.limit,
    )


@dataclass(frozen=True)
class Decision:
    """What becomes of an attempt: a terminal status, or WAIT again at ``retry_at``."""

    status: Status
    error_code: int = ErrorCode.OK
    error_message: str = ""
    result: bytes | None = None
    retry_at: int | None = None


def decide(claimed: ClaimedInvocation, outcome: RunResult | None, now: int) -> Decision:
    """The one place an invocation's fate is decided.

    ``outcome`` is None when the attempt never ran to an answer (its worker died); it is tried
    again while recovery attempts remain and the event has not expired.
    """
    if outcome is None:
        if claimed.attempt < RECOVERY_ATTEMPTS and now < claimed.expires_at:
            return Decision(Status.WAIT, retry_at=now)
        return Decision(
            Status.FAIL,
            ErrorCode.INTERRUPTED,
            f"interrupted: the service stopped while attempt {claimed.attempt} was running",
        )
    if outcome.ok:
        return Decision(Status.SUCCESS, result=outcome.result.encode())
    return Decision(Status.FAIL, outcome.error_code, outcome.error_message)


def expired(claimed: ClaimedInvocation, now: int) -> Decision | None:
    """DISCARD for an event that aged past its limit before this attempt could start."""
    if now < claimed.expires_at:
        return None
    return Decision(
        Status.DISCARD,
        ErrorCode.EXPIRED,
        "discarded: the event was older than its maximum age before it could run",
    )


class InvocationService:
    """Domain operations on async invocation records."""

    def __init__(self, store: Store, notifier: Notifier | None = None) -> None:
        self._store = store
        self.notifier = notifier or Notifier()

    async def submit(self, function: Function, payload: bytes) -> str:
        """Persist an accepted request (durably) and wake the workers; return its request id."""
        now = now_ms()
        request_id = str(uuid.uuid4())
        await self._store.insert_invocation(
            NewInvocation(
                request_id=request_id,
                function_id=function.id,
                version="latest",
                payload=payload,
                start_time=now,
                available_at=now,
                expires_at=now + DEFAULT_EVENT_AGE_SECONDS * 1000,
            )
        )
        self.notifier.notify()
        return request_id

    async def list_records(self, query: InvocationQuery) -> InvocationPage:
        return await self._store.list_invocations(query)

    async def claim(
        self, worker_id: str, limit: int, lease_seconds: int
    ) -> list[ClaimedInvocation]:
        """Claim up to ``limit`` runnable records; expired ones are discarded, not returned."""
        now = now_ms()
        claimed = await self._store.claim_invocations(
            worker_id, now, limit, now + lease_seconds * 1000
        )
        runnable = []
        for item in claimed:
            verdict = expired(item, now)
            if verdict is None:
                runnable.append(item)
            else:
                await self._persist(item, verdict, now)
        return runnable

    async def complete(self, claimed: ClaimedInvocation, outcome: RunResult | None) -> Decision:
        """Decide and persist the outcome of one attempt."""
        now = now_ms()
        decision = decide(claimed, outcome, now)
        await asyncio.shield(self._persist(claimed, decision, now))
        return decision

    async def _persist(self, claimed: ClaimedInvocation, decision: Decision, now: int) -> None:
        if decision.status is Status.WAIT:
            assert decision.retry_at is not None
            await self._store.requeue_invocation(
                claimed.request_id, claimed.attempt, decision.retry_at
            )
            self.notifier.notify()
            return
        await self._store.finish_invocation(
            claimed.request_id,
            claimed.attempt,
            decision.status,
            now,
            decision.error_code,
            decision.error_message,
            decision.result,
        )

    async def recover(self, cutoff: int | None = None, batch: int = 500) -> int:
        """Return RUNNING rows whose lease ends before ``cutoff`` (default: now) to the decision.

        Their worker died; the embedded service passes a cutoff in the far future at start,
        since it alone owns its data directory and nothing it had running survived.
        """
        moment = cutoff if cutoff is not None else now_ms()
        total = 0
        while rows := await self._store.list_expired_leases(moment, batch):
            for claimed in rows:
                await self.complete(claimed, None)
            total += len(rows)
        return total

    async def renew_leases(self, worker_id: str, lease_seconds: int) -> int:
        """Extend the leases of every record ``worker_id`` is running."""
        return await self._store.renew_leases(worker_id, now_ms() + lease_seconds * 1000)

    async def next_wakeup(self) -> int | None:
        return await self._store.next_available_at()

    async def counts(self, function: Function) -> dict[Status, int]:
        return await self._store.count_by_status(function.id)
