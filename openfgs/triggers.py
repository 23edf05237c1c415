"""Triggers: timers that fire as ordinary async invocations, and HTTP routes to functions.

A trigger is bound to one function row (the latest, a version or an alias) and goes with it.
:class:`TriggerService` validates and keeps them; :class:`TimerScheduler` fires timers. Every
node runs a scheduler: a scheduled time fires once however many do, because a fire moves the
timer's ``next_fire`` from the time it was read with (compare-and-set) in the transaction that
inserts the invocation (``Store.fire_timer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from openfgs.cache import TtlCache
from openfgs.cron import Schedule, ScheduleError, parse_schedule
from openfgs.errors import BadRequest, Conflict, NotFound
from openfgs.functions import FunctionRegistry
from openfgs.invocations import DEFAULT_EVENT_AGE_SECONDS, InvocationService
from openfgs.models import Function, Trigger, now_ms
from openfgs.runtime.families import PYTHON, family_of
from openfgs.store.base import Store

log = logging.getLogger("openfgs.triggers")

TIMER = "TIMER"
HTTP_TYPES = ("APIG", "DEDICATEDGATEWAY")
ACTIVE, DISABLED = "ACTIVE", "DISABLED"
TRIGGERS_PER_QUALIFIER = 10
USER_EVENT_LIMIT = 4096
_TIMER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,63}")
_PATH = re.compile(r"/[A-Za-z0-9_.~/{}+-]{0,1023}")
METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "ANY")
HTTP_TIMEOUT_MS = 60_000
MISSED_FIRES_WALKED = 100_000  # scheduled times stepped over after an outage, at most
DUE_BATCH = 100
ROUTE_CACHE_SECONDS = 2.0
ROUTE_CACHE_ENTRIES = 10_000  # projects whose HTTP routes are remembered


def _bad(code: str, message: str) -> BadRequest:
    return BadRequest(message, error_code=code)


def _text(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _bad("FSS.1109" if key != "path" else "FSS.1107", f"event_data.{key} must be text")
    return value


class TriggerService:
    """Create, read, change and delete triggers; the timer arithmetic is here too."""

    def __init__(self, store: Store, registry: FunctionRegistry, zone: str = "UTC") -> None:
        self._store = store
        self._registry = registry
        self.zone = zone
        self.changed = asyncio.Event()  # set when a timer starts, so the scheduler looks again
        self._routes: TtlCache[str, list[Trigger]] = TtlCache(ROUTE_CACHE_ENTRIES)

    # -- timers -----------------------------------------------------------------------------

    def schedule(self, trigger: Trigger) -> Schedule:
        data = trigger.data
        anchor = datetime.fromtimestamp((trigger.anchor or trigger.created_at) / 1000, UTC)
        return parse_schedule(
            _text(data, "schedule_type"), _text(data, "schedule"), zone=self.zone, anchor=anchor
        )

    def first_fire(self, trigger: Trigger, now: int) -> int | None:
        """When an active timer, anchored now, fires first (None when it never will)."""
        try:
            upcoming = self.schedule(replace(trigger, anchor=now)).next_after(_moment(now))
        except ScheduleError:
            return None
        return _ms(upcoming)

    def _timer_fields(self, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = _text(data, "name")
        if not _TIMER_NAME.fullmatch(name):
            raise _bad(
                "FSS.1109",
                f"Invalid timer trigger name {name[:64]!r}: a letter, then up to 63 letters, "
                "digits, '_' or '-'",
            )
        schedule_type = _text(data, "schedule_type")
        if schedule_type not in ("Rate", "Cron"):
            raise _bad("FSS.1109", "event_data.schedule_type must be Rate or Cron")
        schedule = _text(data, "schedule")
        try:
            parsed = parse_schedule(schedule_type, schedule, zone=self.zone, anchor=_moment(0))
            parsed.next_after(_moment(now_ms()))
        except ScheduleError as exc:
            raise _bad("FSS.1109", f"Invalid timer schedule {schedule[:64]!r}: {exc}") from None
        user_event = _text(data, "user_event")
        if len(user_event.encode()) > USER_EVENT_LIMIT:
            raise _bad("FSS.1109", f"event_data.user_event is longer than {USER_EVENT_LIMIT} bytes")
        kept = {"name": name, "schedule_type": schedule_type, "schedule": schedule}
        if user_event:
            kept["user_event"] = user_event
        return name, kept

    # -- HTTP -------------------------------------------------------------------------------

    def _http_fields(self, data: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
        name = _text(data, "name") or "API_" + uuid.uuid4().hex[:8]
        if not _API_NAME.fullmatch(name):
            raise _bad("FSS.1107", f"Invalid API name {name[:64]!r}")
        path = _text(data, "path") or "/"
        if not _PATH.fullmatch(path) or "//" in path or "/../" in f"{path}/":
            raise _bad("FSS.1107", f"Invalid path {path[:64]!r}: it must start with '/'")
        method = (_text(data, "req_method") or "ANY").upper()
        if method not in METHODS:
            raise _bad("FSS.1107", f"Invalid req_method {method[:16]!r}")
        match_mode = _text(data, "match_mode") or "NORMAL"
        if match_mode not in ("NORMAL", "SWA"):
            raise _bad("FSS.1107", "event_data.match_mode must be NORMAL or SWA (prefix)")
        auth = _text(data, "auth") or "IAM"
        if auth not in ("IAM", "NONE"):
            raise _bad("FSS.1107", f"event_data.auth {auth[:16]!r} is not supported; IAM or NONE")
        info = data.get("func_info") or {}
        if not isinstance(info, dict):
            raise _bad("FSS.1107", "event_data.func_info must be an object")
        invocation_type = info.get("invocation_type") or "sync"
        timeout = info.get("timeout", 5000)
        if invocation_type not in ("sync", "async"):
            raise _bad("FSS.1107", "func_info.invocation_type must be sync or async")
        if not isinstance(timeout, int) or isinstance(timeout, bool):
            raise _bad("FSS.1107", "func_info.timeout must be an integer (ms)")
        if not 1 <= timeout <= HTTP_TIMEOUT_MS:
            raise _bad("FSS.1107", f"func_info.timeout must be 1 to {HTTP_TIMEOUT_MS} ms")
        kept = {
            **{k: v for k, v in data.items() if k != "func_info"},
            "name": name,
            "path": path,
            "req_method": method,
            "match_mode": match_mode,
            "auth": auth,
            "func_info": {**info, "invocation_type": invocation_type, "timeout": timeout},
        }
        return name, method, path, kept

    # -- operations -------------------------------------------------------------------------

    async def create(
        self,
        function: Function,
        type_code: str,
        status: str | None,
        event_type_code: str | None,
        data: dict[str, Any],
    ) -> Trigger:
        status = status or ACTIVE
        if status not in (ACTIVE, DISABLED):
            raise _bad("FSS.0400", f"Invalid trigger_status {status[:16]!r}: ACTIVE or DISABLED")
        existing = await self._store.list_triggers([function.id])
        if len(existing) >= TRIGGERS_PER_QUALIFIER:
            raise _bad(
                "FSS.1306",
                f"Trigger count limit reached: {TRIGGERS_PER_QUALIFIER} per function version",
            )
        now = now_ms()
        method = path = None
        sync_only = not (family_of(function.runtime) or PYTHON).async_invoke
        if sync_only and type_code not in HTTP_TYPES:
            raise _bad("FSS.1101", f"{function.runtime} functions take only HTTP (APIG) triggers")
        if type_code == TIMER:
            name, kept = self._timer_fields(data)
            if any(t.type_code == TIMER and t.name == name for t in existing):
                raise Conflict(f"Timer trigger {name} already exists", error_code="FSS.1148")
        elif type_code in HTTP_TYPES:
            name, method, path, kept = self._http_fields(data)
            if sync_only and kept["func_info"]["invocation_type"] != "sync":
                raise _bad("FSS.1107", f"{function.runtime} functions are invoked synchronously")
            await self._check_route(function.project_id, method, path)
        else:
            raise _bad(
                "FSS.1101",
                f"Invalid trigger type {type_code[:32]!r}: openfgs serves TIMER, APIG and "
                "DEDICATEDGATEWAY triggers",
            )
        trigger = Trigger(
            id=0,
            trigger_id=str(uuid.uuid4()),
            function_id=function.id,
            project_id=function.project_id,
            type_code=type_code,
            status=status,
            name=name,
            event_type_code=(event_type_code or "")[:128],
            event_data=json.dumps(kept),
            route_method=method,
            route_path=path,
            next_fire=None,
            anchor=now,
            created_at=now,
            last_modified=now,
        )
        if type_code == TIMER and status == ACTIVE:
            trigger = replace(trigger, next_fire=self.first_fire(trigger, now))
        created = await self._store.insert_trigger(trigger)
        self._routes.pop(function.project_id)
        self.changed.set()
        return created

    async def _check_route(self, project_id: str, method: str, path: str) -> None:
        for other in await self._store.list_route_triggers(project_id):
            same_method = method == "ANY" or other.route_method in ("ANY", method)
            if other.route_path == path and same_method:
                raise Conflict(
                    f"The request path {method} {path} already exists", error_code="FSS.1147"
                )

    async def routes(self, project_id: str) -> list[Trigger]:
        """A project's HTTP triggers (remembered for a moment: every HTTP request asks)."""
        cached = self._routes.lookup(project_id)
        if cached is not None:
            return cached.value
        found = await self._store.list_route_triggers(project_id)
        self._routes.put(project_id, found, ROUTE_CACHE_SECONDS)
        return found

    async def list_project(self, project_id: str) -> list[Trigger]:
        return await self._store.list_project_triggers(project_id)

    async def list(self, functions: Sequence[Function]) -> list[Trigger]:
        return await self._store.list_triggers([f.id for f in functions])

    async def get(self, functions: Sequence[Function], type_code: str, trigger_id: str) -> Trigger:
        trigger = await self._store.get_trigger(trigger_id[:64])
        if (
            trigger is None
            or trigger.type_code != type_code
            or trigger.function_id not in {f.id for f in functions}
        ):
            raise NotFound(f"The trigger does not exist: {trigger_id[:64]}", error_code="FSS.1131")
        return trigger

    async def update(self, trigger: Trigger, status: str | None, data: Any) -> Trigger:
        """Enable or disable; a timer's schedule or an HTTP route is changed by deleting and
        creating (as Terraform does), so a different ``event_data`` object is refused."""
        if isinstance(data, dict) and data:
            current = trigger.data
            changed = [k for k, v in data.items() if k in current and current[k] != v]
            if changed:
                code = "FSS.1109" if trigger.type_code == TIMER else "FSS.1107"
                raise _bad(
                    code,
                    f"event_data.{changed[0]} cannot change; delete the trigger and create another",
                )
        status = status or trigger.status
        if status not in (ACTIVE, DISABLED):
            raise _bad("FSS.0400", f"Invalid trigger_status {status[:16]!r}: ACTIVE or DISABLED")
        if status == trigger.status:
            return trigger
        now = now_ms()
        updated = replace(trigger, status=status, last_modified=now, next_fire=None, anchor=now)
        if trigger.type_code == TIMER and status == ACTIVE:
            updated = replace(updated, next_fire=self.first_fire(updated, now))
        await self._store.update_trigger(updated)
        self._routes.pop(trigger.project_id)
        self.changed.set()
        return updated

    async def delete(self, triggers: Sequence[Trigger]) -> None:
        await self._store.delete_triggers([t.trigger_id for t in triggers])
        for project_id in {t.project_id for t in triggers}:
            self._routes.pop(project_id)


class TimerScheduler:
    """Fires due timers as async invocations; one runs in every node.

    It sleeps until the earliest ``next_fire`` in the store, or ``poll_seconds`` at most (a
    timer made on another node), or until a timer starts here. A time missed while every node
    was down fires once, the most recent one, when it is younger than the function's max
    event age; the ones before it are skipped.
    """

    def __init__(
        self,
        triggers: TriggerService,
        invocations: InvocationService,
        registry: FunctionRegistry,
        store: Store,
        poll_seconds: float = 1.0,
    ) -> None:
        self._triggers = triggers
        self._invocations = invocations
        self._registry = registry
        self._store = store
        self._poll_seconds = poll_seconds

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.fire_due()
                wait = await self._until_next()
            except Exception:
                log.exception("firing timers failed; trying again")
                wait = self._poll_seconds
            self._triggers.changed.clear()
            await _first(stop.wait(), self._triggers.changed.wait(), timeout=wait)

    async def _until_next(self) -> float:
        upcoming = await self._store.next_timer_fire()
        if upcoming is None:
            return self._poll_seconds
        return min(max(upcoming - now_ms(), 0) / 1000, self._poll_seconds)

    async def fire_due(self) -> int:
        """Fire every timer due now; how many invocations were queued."""
        fired = 0
        while due := await self._store.due_timers(now_ms(), DUE_BATCH):
            for timer in due:
                try:
                    fired += await self._fire(timer)
                except Exception:
                    log.exception("timer %s could not fire", timer.trigger_id)
                    await self._store.fire_timer(timer, None, None)  # stop it, not loop on it
            if len(due) < DUE_BATCH:
                break
        if fired:
            self._invocations.notifier.notify()
        return fired

    async def _fire(self, timer: Trigger) -> int:
        if timer.next_fire is None:  # disabled since it was read
            return 0
        now = now_ms()
        schedule = self._triggers.schedule(timer)
        latest, after = timer.next_fire, schedule.next_after(_moment(timer.next_fire))
        for _ in range(MISSED_FIRES_WALKED):
            if _ms(after) > now:
                break
            latest, after = _ms(after), schedule.next_after(after)
        else:
            after = schedule.next_after(_moment(now))
        function = await self._registry.get_by_id(timer.function_id)
        invocation = None
        if function is not None and function.concurrency != 0:
            config = await self._invocations.config(function)
            age = config.max_async_event_age_in_seconds if config else DEFAULT_EVENT_AGE_SECONDS
            if now - latest <= age * 1000:
                event = self.event(timer, latest)
                invocation = await self._invocations.new_invocation(function, event)
        if invocation is not None and latest != timer.next_fire:
            log.warning("timer %s skipped fires missed before %d", timer.trigger_id, latest)
        # Step over the missed times first (their fires are skipped), then fire the last one.
        if latest != timer.next_fire and not await self._store.fire_timer(timer, latest, None):
            return 0
        moved = replace(timer, next_fire=latest)
        fired = await self._store.fire_timer(moved, _ms(after), invocation)
        return int(fired and invocation is not None)

    def event(self, timer: Trigger, scheduled: int) -> bytes:
        """FunctionGraph's timer event for the fire scheduled at ``scheduled``."""
        moment = _moment(scheduled).astimezone(ZoneInfo(self._triggers.zone))
        return json.dumps(
            {
                "version": "v1.0",
                "time": moment.isoformat(timespec="seconds"),
                "trigger_type": TIMER,
                "trigger_name": timer.name,
                "user_event": timer.data.get("user_event", ""),
            }
        ).encode()


async def _first(*waits: Any, timeout: float) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
