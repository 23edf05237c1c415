"""Every store operation written once, over the two primitives a backend provides.

An operation runs one named query — a :class:`Step`: fetch one row, fetch all rows, or execute
and count the rows changed — or a *script*: a generator that yields the steps it runs one at a
time and is sent each step's answer. A backend runs either as one read (:meth:`SqlStore._read`)
or as one transaction (:meth:`SqlStore._write`) the way its driver wants: the SQLite store inside its reader or writer thread, the PostgreSQL store on a pooled
connection. Rows are mappings keyed by column name and become models through their
``from_row``. What truly differs stays in the backend: how accepts are batched and how a claim
walks the queue (``insert_invocation``, ``claim_due``), and how wake-ups travel (``subscribe``).
"""

from __future__ import annotations

import abc
import enum
import json
from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, TypeVar, overload

from openfgs.models import (
    LATEST,
    MINUTE_MS,
    AsyncConfig,
    ClaimedInvocation,
    Credential,
    DependencyVersion,
    Function,
    Invocation,
    InvocationDetail,
    InvocationPage,
    InvocationQuery,
    NewInvocation,
    Outcome,
    Status,
    TestEvent,
    Trigger,
    now_ms,
    parse_depend_versions,
)
from openfgs.store.base import DAY_MS, DependencyGone

T = TypeVar("T")
Params = dict[str, Any]
TOP_OFFSET = 100  # offsets below this read their rows straight from the index walk


MINUTE_COLUMNS = (
    "minute",
    "count",
    "active",
    "fail_count",
    "function_error_count",
    "system_error_count",
    "reject_count",
    "timed",
    "duration_sum",
    "max_duration",
    "min_duration",
)


class Kind(enum.Enum):
    """What a step wants back: one row (or None), every row, or the count of rows changed."""

    ONE = 1
    ALL = 2
    EXECUTE = 3


class Step(NamedTuple):
    """One named query with its parameters (a tuple: steps are made on every hot path)."""

    kind: Kind
    name: str
    params: Params


Script = Generator[Step, Any, T]


def fetch_one(name: str, params: Params) -> Step:
    """A step answered with the first row (a mapping by column name), or None."""
    return Step(Kind.ONE, name, params)


def fetch_all(name: str, params: Params) -> Step:
    """A step answered with the list of rows."""
    return Step(Kind.ALL, name, params)


def execute(name: str, params: Params) -> Step:
    """A step answered with the number of rows it changed."""
    return Step(Kind.EXECUTE, name, params)


def claim_scan(limit: int) -> int:
    """How many of the oldest waiting rows a claim looks at to fill ``limit`` slots: enough that
    one function at its concurrency limit does not hide the others behind it."""
    return max(limit * 8, 256)


def claim_params(worker_id: str, now: int, limit: int, lease_until: int) -> Params:
    return {
        "worker_id": worker_id,
        "now": now,
        "limit": limit,
        "lease_until": lease_until,
        "scan": claim_scan(limit),
    }


def invocation_params(invocation: NewInvocation) -> Params:
    return {k: getattr(invocation, k) for k in NewInvocation.__dataclass_fields__}


def function_params(function: Function) -> Params:
    return {k: getattr(function, k) for k in Function.__dataclass_fields__}


def config_params(config: AsyncConfig, function_id: int | None = None) -> Params:
    """Parameters of ``upsert_async_config``, for ``config``'s function or ``function_id``."""
    return {
        "function_id": config.function_id if function_id is None else function_id,
        "max_async_event_age_in_seconds": config.max_async_event_age_in_seconds,
        "max_async_retry_attempts": config.max_async_retry_attempts,
        "destination_config": json.dumps(config.destination_config),
        "enable_async_status_log": config.enable_async_status_log,
        "now": config.last_modified,
    }


def depend_params(function_id: int, function: Function) -> Params:
    return {"id": function_id, "depend_versions": json.dumps(list(function.depend_versions))}


# Days of record partitions made ahead of today (PostgreSQL): the worker's beat makes them at
# least this many days before they are needed, so an accept never waits for one.
PARTITION_DAYS_AHEAD = 3
# The start_time bounds of a record whose start_time the caller does not know.
ANY_START = (0, 2**62)


def start_bounds(start_time: int | None) -> tuple[int, int]:
    """``[start_from, start_to]`` of a record: its start_time when known (on PostgreSQL that
    prunes a lookup to the record's day partition), else any."""
    return ANY_START if start_time is None else (start_time, start_time)


def outcome_params(
    request_id: str, attempt: int, outcome: Outcome, end_time: int, start_time: int | None = None
) -> Params:
    """Parameters of ``record_attempt`` and of the update that ends or requeues the row."""
    start_from, start_to = start_bounds(start_time)
    return {
        "start_from": start_from,
        "start_to": start_to,
        "request_id": request_id,
        "attempt": attempt,
        "status": outcome.status.value,
        "outcome": "RETRY" if outcome.status is Status.WAIT else outcome.status.value,
        "end_time": end_time,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "result": outcome.result,
        "available_at": outcome.retry_at,
    }


def status_weights(statuses: tuple[Status, ...]) -> Params:
    """1 for each terminal status a filter takes (all when it names none), else 0."""
    wanted = statuses or tuple(Status)
    return {
        "success": int(Status.SUCCESS in wanted),
        "fail": int(Status.FAIL in wanted),
        "discard": int(Status.DISCARD in wanted),
    }


def count_ranges(query: InvocationQuery) -> tuple[tuple[int, int], ...]:
    """The parts of the query's window its ``count`` covers."""
    if query.count_ranges is None:
        return ((query.begin, query.end),)
    return query.count_ranges


def page_script(
    names: tuple[str, str], params: Params, query: InvocationQuery
) -> Script[InvocationPage]:
    """One page of records and the count of every match, read together (with
    ``query.rolled``, the count in one statement: ``count_window``)."""
    rows = yield fetch_all(names[0], {**params, "limit": query.limit, "offset": query.marker})
    count = 0
    if query.rolled is not None:
        first, stop = query.rolled
        statuses = [s.value for s in query.statuses or tuple(Status)]
        window = {
            "function_id": query.function_id,
            "begin": query.begin,
            "end": query.end,
            "first": first,
            "first_ms": first * MINUTE_MS,
            "stop": stop,
            **status_weights(query.statuses),
            **{f"s{n}": v for n, v in enumerate(statuses + [""] * (5 - len(statuses)), 1)},
        }
        count = int((yield fetch_one("count_window", window))["count"])
    else:
        for begin, end in count_ranges(query):
            found = yield fetch_one(names[1], {**params, "begin": begin, "end": end})
            count += int(found["count"])
    invocations = [Invocation.from_row(row) for row in rows]
    return InvocationPage(invocations, count, query.marker + len(invocations))


class SqlStore(abc.ABC):
    """The operations of :class:`openfgs.store.base.Store` as scripts of named queries.

    A backend provides :meth:`_read`, :meth:`_write` and :meth:`_array`, plus
    ``open``/``close``/``subscribe``, ``insert_invocation`` and ``claim_due``.
    """

    starts_accepted_rows = False
    retention_by_day = False

    @overload
    async def _read(self, work: Step, snapshot: bool = False) -> Any: ...
    @overload
    async def _read(self, work: Script[T], snapshot: bool = False) -> T: ...
    @abc.abstractmethod
    async def _read(self, work: Step | Script[T], snapshot: bool = False) -> Any:
        """Run a step or a script as reads; ``snapshot``: every read sees one snapshot."""

    @overload
    async def _write(self, work: Step, durable: bool = True) -> Any: ...
    @overload
    async def _write(self, work: Script[T], durable: bool = True) -> T: ...
    @abc.abstractmethod
    async def _write(self, work: Step | Script[T], durable: bool = True) -> Any:
        """Run a step or a script in one transaction. ``durable``: on disk before this
        returns; else bookkeeping a machine crash may lose (the record then runs again)."""

    @staticmethod
    @abc.abstractmethod
    def _array(values: list[str]) -> Any:
        """A list of strings as the dialect binds one parameter (``:statuses``)."""

    async def ping(self) -> None:
        await self._read(fetch_one("ping", {}))

    # -- credentials and tokens -----------------------------------------------------------

    async def insert_credential(self, credential: Credential, now: int) -> None:
        params = {
            "access_key": credential.access_key,
            "secret_key": credential.secret_key,
            "project_id": credential.project_id,
            "created_at": now,
        }
        await self._write(execute("insert_credential", params))

    async def get_credential(self, access_key: str) -> Credential | None:
        row = await self._read(fetch_one("get_credential", {"access_key": access_key}))
        return None if row is None else Credential.from_row(row)

    async def count_credentials(self) -> int:
        row = await self._read(fetch_one("count_credentials", {}))
        return int(row["count"])

    async def insert_token(
        self, token_hash: str, access_key: str, project_id: str, expires_at: int
    ) -> None:
        params = {
            "token_hash": token_hash,
            "access_key": access_key,
            "project_id": project_id,
            "expires_at": expires_at,
        }
        await self._write(execute("insert_token", params))

    async def get_token(self, token_hash: str) -> tuple[str, int] | None:
        row = await self._read(fetch_one("get_token", {"token_hash": token_hash}))
        return None if row is None else (str(row["project_id"]), int(row["expires_at"]))

    # -- functions and code ---------------------------------------------------------------

    async def insert_function(
        self, function: Function, code: bytes | None, config: AsyncConfig | None = None
    ) -> Function:
        """Insert a function row with its code package (None: a package already stored, as
        a version's or alias's is) and, for a published version, its async config."""
        params = function_params(function)
        del params["id"]

        def script() -> Script[int]:
            if code is not None:
                code_params = {"digest": function.code_digest, "data": code, "size": len(code)}
                yield execute("insert_code", code_params)
            yield from self._hold_dependencies(function)
            row = yield fetch_one("insert_function", params)
            if function.depend_versions:
                yield execute("set_function_dependencies", depend_params(int(row["id"]), function))
            if config is not None:
                yield execute("upsert_async_config", config_params(config, int(row["id"])))
            return int(row["id"])

        return Function(**{**function_params(function), "id": await self._write(script())})

    def _hold_dependencies(self, function: Function) -> Script[None]:
        """Keep the versions ``function`` lists from being deleted until this transaction
        ends; DependencyGone when one is gone already."""
        wanted = set(function.depend_versions)
        if wanted:
            params = {"ids": self._array(sorted(wanted))}
            rows = yield fetch_all("lock_dependency_versions", params)
            missing = wanted - {str(row["id"]) for row in rows}
            if missing:
                raise DependencyGone(sorted(missing)[0])

    async def get_function(
        self, project_id: str, package: str, name: str, qualifier: str = LATEST
    ) -> Function | None:
        params = {"project_id": project_id, "package": package, "name": name}
        row = await self._read(fetch_one("get_function", {**params, "qualifier": qualifier}))
        return None if row is None else Function.from_row(row)

    async def list_function_qualifiers(
        self, project_id: str, package: str, name: str
    ) -> list[Function]:
        params = {"project_id": project_id, "package": package, "name": name}
        rows = await self._read(fetch_all("list_function_qualifiers", params))
        return [Function.from_row(row) for row in rows]

    async def get_function_by_id(self, function_id: int) -> Function | None:
        row = await self._read(fetch_one("get_function_by_id", {"id": function_id}))
        return None if row is None else Function.from_row(row)

    async def list_functions(
        self, project_id: str, package: str | None, name_like: str | None, offset: int, limit: int
    ) -> tuple[list[Function], int]:
        params = {"project_id": project_id, "package": package, "name_like": name_like}

        def script() -> Script[tuple[list[Function], int]]:
            paged = {**params, "offset": offset, "limit": limit}
            rows = yield fetch_all("list_functions", paged)
            count = yield fetch_one("count_functions", params)
            return [Function.from_row(row) for row in rows], int(count["count"])

        return await self._read(script())

    async def update_function(self, function: Function, code: bytes | None) -> None:
        params = function_params(function)
        for key in ("project_id", "package", "name", "qualifier", "func_id", "created_at"):
            del params[key]

        def script() -> Script[None]:
            old = yield fetch_one("lock_function", {"id": function.id})
            if code is not None:
                code_params = {"digest": function.code_digest, "data": code, "size": len(code)}
                yield execute("insert_code", code_params)
            yield from self._hold_dependencies(function)
            yield execute("update_function", params)
            yield execute("set_function_dependencies", depend_params(function.id, function))
            if old is not None and old["code_digest"] != function.code_digest:
                yield execute("delete_unused_code", {"digest": old["code_digest"]})

        await self._write(script())

    async def delete_function(self, *functions: Function) -> None:
        """Delete function rows (a function's latest with its versions and aliases, or one
        version or alias) and their records, in one transaction."""

        def script() -> Script[None]:
            for function in functions:
                params = {"function_id": function.id}
                yield execute("delete_function_attempts", params)
                yield execute("delete_function_keys", params)
                yield execute("delete_function_test_events", params)
                yield execute("delete_function_invocations", params)
                yield execute("delete_function", {"id": function.id})
            for digest in {function.code_digest for function in functions}:
                yield execute("delete_unused_code", {"digest": digest})

        await self._write(script())

    async def get_code(self, digest: str) -> bytes | None:
        row = await self._read(fetch_one("get_code", {"digest": digest}))
        return None if row is None else bytes(row["data"])

    async def total_code_size(self, project_id: str) -> int:
        row = await self._read(fetch_one("total_code_size", {"project_id": project_id}))
        return int(row["total"])

    async def referenced_code_digests(self) -> set[str]:
        rows = await self._read(fetch_all("referenced_code_digests", {}))
        return {str(row["code_digest"]) for row in rows}

    # -- dependencies ---------------------------------------------------------------------

    async def insert_dependency_version(
        self, version: DependencyVersion, data: bytes
    ) -> DependencyVersion:
        """Store ``version`` as the next version of its project's dependency of that name
        (made, with version 1, when there is none); its ``dep_id`` and ``version`` are
        assigned here."""
        params: Params = {k: getattr(version, k) for k in DependencyVersion.__dataclass_fields__}

        def script() -> Script[DependencyVersion]:
            code_params = {"digest": version.digest, "data": data, "size": len(data)}
            yield execute("insert_code", code_params)
            row = yield fetch_one("upsert_dependency", params)
            stored = {**params, "dep_id": str(row["id"]), "version": int(row["last_version"])}
            yield execute("insert_dependency_version", stored)
            return DependencyVersion(**stored)

        return await self._write(script())

    async def get_dependency_version(
        self, project_id: str, dep_id: str, version: int
    ) -> DependencyVersion | None:
        params = {"project_id": project_id, "dep_id": dep_id, "version": version}
        row = await self._read(fetch_one("get_dependency_version", params))
        return None if row is None else DependencyVersion.from_row(row)

    async def get_dependency_versions(
        self, project_id: str, ids: list[str]
    ) -> list[DependencyVersion]:
        """The versions of ``project_id`` among ``ids`` (in no particular order)."""
        if not ids:
            return []
        params = {"project_id": project_id, "ids": self._array(ids)}
        rows = await self._read(fetch_all("get_dependency_versions_by_ids", params))
        return [DependencyVersion.from_row(row) for row in rows]

    async def latest_dependency_version(
        self, project_id: str, name: str
    ) -> DependencyVersion | None:
        params = {"project_id": project_id, "name": name}
        row = await self._read(fetch_one("latest_dependency_version", params))
        return None if row is None else DependencyVersion.from_row(row)

    async def list_dependencies(
        self, project_id: str, name_like: str | None, runtime: str | None, offset: int, limit: int
    ) -> tuple[list[DependencyVersion], int]:
        """The latest version of each matching dependency, by name, and how many match."""
        params = {"project_id": project_id, "name_like": name_like, "runtime": runtime}

        def script() -> Script[tuple[list[DependencyVersion], int]]:
            rows = yield fetch_all(
                "list_dependencies", {**params, "offset": offset, "limit": limit}
            )
            count = yield fetch_one("count_dependencies", params)
            return [DependencyVersion.from_row(row) for row in rows], int(count["count"])

        return await self._read(script(), snapshot=True)

    async def list_dependency_versions(
        self, project_id: str, dep_id: str, offset: int, limit: int
    ) -> tuple[list[DependencyVersion], int]:
        params = {"project_id": project_id, "dep_id": dep_id}

        def script() -> Script[tuple[list[DependencyVersion], int]]:
            paged = {**params, "offset": offset, "limit": limit}
            rows = yield fetch_all("list_dependency_versions", paged)
            count = yield fetch_one("count_versions_of_dependency", params)
            return [DependencyVersion.from_row(row) for row in rows], int(count["count"])

        return await self._read(script(), snapshot=True)

    async def delete_dependency_version(self, version: DependencyVersion) -> bool:
        """Delete ``version`` (its dependency too when it was the last one, and its zip when
        nothing else uses it); False, deleting nothing, while a function lists it."""

        def script() -> Script[bool]:
            # Locked first: a function listing it either committed before the check below
            # or finds it gone (_hold_dependencies).
            yield fetch_one("lock_dependency_version", {"id": version.id})
            if (yield fetch_one("dependency_version_in_use", {"id": version.id})) is not None:
                return False
            yield execute("delete_dependency_version", {"id": version.id})
            yield execute("delete_dependency_if_empty", {"dep_id": version.dep_id})
            yield execute("delete_unused_code", {"digest": version.digest})
            return True

        return bool(await self._write(script()))

    async def count_dependency_versions(self, project_id: str) -> int:
        row = await self._read(fetch_one("count_dependency_versions", {"project_id": project_id}))
        return int(row["count"])

    async def total_dependency_size(self, project_id: str) -> int:
        row = await self._read(fetch_one("total_dependency_size", {"project_id": project_id}))
        return int(row["total"])

    async def function_dependency_digests(self) -> list[tuple[str, tuple[str, ...]]]:
        """For every function that lists dependencies: its code digest and the zip digests of
        its dependency versions, in order (a version no longer stored is left out)."""

        def script() -> Script[list[tuple[str, tuple[str, ...]]]]:
            functions = yield fetch_all("functions_with_dependencies", {})
            versions = yield fetch_all("referenced_dependency_versions", {})
            digests = {str(row["id"]): str(row["digest"]) for row in versions}
            return [
                (
                    str(row["code_digest"]),
                    tuple(
                        digests[i]
                        for i in parse_depend_versions(row["depend_versions"])
                        if i in digests
                    ),
                )
                for row in functions
            ]

        return await self._read(script(), snapshot=True)

    # -- invocations ----------------------------------------------------------------------

    async def insert_invocation_once(self, invocation: NewInvocation, key: str, cutoff: int) -> str:
        """Insert unless ``key`` was used for this function since ``cutoff``; the request id."""
        key_params = {
            "function_id": invocation.function_id,
            "key": key,
            "request_id": invocation.request_id,
            "now": invocation.start_time,
            "cutoff": cutoff,
        }

        def script() -> Script[str]:
            if (yield fetch_one("claim_idempotency_key", key_params)) is None:
                row = yield fetch_one("get_idempotency_key", key_params)
                return str(row["request_id"])
            yield execute("insert_invocation", invocation_params(invocation))
            return invocation.request_id

        return await self._write(script())

    def _list_queries(self, query: InvocationQuery) -> tuple[tuple[str, str], Params]:
        """The list and count queries of a status filter, with their parameters."""
        params: Params = {
            "function_id": query.function_id,
            "begin": query.begin,
            "end": query.end,
            "statuses": self._array([s.value for s in query.statuses or tuple(Status)]),
        }
        # Near the top, a page's rows are read as the index is walked; deeper, the offset is
        # walked in the index alone and only the page's rows are read.
        top = query.marker < TOP_OFFSET
        if len(query.statuses) == 1:
            params["status"] = query.statuses[0].value
            page = "list_first_invocations_by_status" if top else "list_invocations_by_status"
            return (page, "count_invocations_by_status"), params
        if query.statuses:
            return ("list_active_invocations", "count_active_invocations"), params
        page = "list_first_invocations" if top else "list_invocations"
        return (page, "count_invocations"), params

    async def list_invocations(self, query: InvocationQuery) -> InvocationPage:
        if query.request_ids:
            # Requests named by id are few (at most ten): fetch them all, then page in memory.
            _, params = self._list_queries(query)
            params["request_ids"] = self._array(list(query.request_ids))
            rows = await self._read(fetch_all("list_invocations_by_ids", params))
            matches = [Invocation.from_row(row) for row in rows]
            page = matches[query.marker : query.marker + query.limit]
            return InvocationPage(page, len(matches), query.marker + len(page))
        names, params = self._list_queries(query)
        return await self._read(page_script(names, params, query), snapshot=True)

    async def count_invocations(self, query: InvocationQuery) -> int:
        names, params = self._list_queries(query)
        return int((await self._read(fetch_one(names[1], params), snapshot=True))["count"])

    # -- counts of settled minutes (openfgs.counting) ----------------------------------------

    async def rolled_count(
        self, function_id: int, first: int, stop: int, statuses: tuple[Status, ...]
    ) -> tuple[int, int]:
        params = {"function_id": function_id, "first": first, "stop": stop}
        row = await self._read(fetch_one("rolled_total", {**params, **status_weights(statuses)}))
        if row is None or int(row["stop"]) <= first:
            return first, 0
        return int(row["stop"]), int(row["total"])

    async def rolled_boundary(
        self, function_id: int, first: int, stop: int, statuses: tuple[Status, ...], skip: int
    ) -> tuple[int, int] | None:
        params = {"function_id": function_id, **status_weights(statuses)}

        def script() -> Script[tuple[int, int] | None]:
            newer = 0
            hours = yield fetch_all("rolled_hours", {**params, "first": first, "stop": stop})
            for hour_row in hours:
                hour, n = int(hour_row["hour"]), int(hour_row["n"])
                if newer + n <= skip:
                    newer += n
                    continue
                within = {"first": max(first, hour * 60), "stop": min(stop, (hour + 1) * 60)}
                minutes = yield fetch_all("rolled_minutes", {**params, **within})
                for minute_row in minutes:
                    n = int(minute_row["n"])
                    if newer + n > skip:
                        return int(minute_row["minute"]), newer
                    newer += n
            return None

        return await self._read(script(), snapshot=True)

    async def roll_up_minutes(self, now: int, settle_ms: int, batch: int, span: int) -> int:
        limit = (now - settle_ms) // MINUTE_MS
        behind, after = 0, 0
        while True:
            params = {"limit": limit, "batch": batch, "after": after}
            rows = await self._read(fetch_all("roll_up_candidates", params))
            for row in rows:
                until = None if row["until"] is None else int(row["until"])
                behind += await self._roll_up(int(row["function_id"]), until, limit, span)
            if len(rows) < batch:
                return behind
            after = int(rows[-1]["function_id"])

    async def _roll_up(self, function_id: int, until: int | None, limit: int, span: int) -> bool:
        """Roll one function's settled minutes from ``until`` up, at most ``span`` of them:
        counted in one snapshot (no writer held while records are walked), then written with
        the new ``until``. True when ``span`` cut it short: more minutes are settled now."""
        params: Params = {"function_id": function_id}

        def counting() -> Script[tuple[int, int, list[dict[str, int]]]]:
            first = until
            if first is None:
                found = yield fetch_one("first_record_time", params)
                start = found["start_time"]
                first = limit if start is None else min(limit, start // MINUTE_MS)
            stop = max(first, min(limit, first + span))
            busy = yield fetch_one("first_unsettled_time", {**params, "since": first * MINUTE_MS})
            if busy["start_time"] is not None:
                stop = max(first, min(stop, busy["start_time"] // MINUTE_MS))
            if stop == first:
                return first, stop, []
            span_params = {**params, "begin": first * MINUTE_MS, "end": stop * MINUTE_MS}
            rows = yield fetch_all("count_settled_minutes", span_params)
            counts = [
                {k: int(row[k]) for k in ("minute", "success", "fail", "discard")} for row in rows
            ]
            return first, stop, counts

        first, stop, counts = await self._read(counting(), snapshot=True)
        cut_short = stop == first + span and stop < limit
        if until is not None and not counts and stop - until < span:
            # Nothing new (an idle function, or one held back by a record still waiting or
            # running): its until moves at most once a span; records after it are counted
            # directly, and there are none or few.
            return cut_short

        def writing() -> Script[None]:
            if counts:
                yield execute("insert_minute_counts", {**params, "rows": json.dumps(counts)})
            yield execute("advance_minutes_until", {**params, "minute": stop})

        # Not waited for on disk: lost in a crash, the rows and their until go together.
        await self._write(writing(), durable=False)
        return cut_short

    @abc.abstractmethod
    async def insert_invocation(self, invocation: NewInvocation) -> None:
        """Insert an accepted row WAIT, durably (each backend batches accepts its own way)."""

    async def insert_started_invocation(
        self, invocation: NewInvocation, worker_id: str, lease_until: int
    ) -> bool:
        """A backend whose claim costs no round trip (SQLite) inserts the row WAIT."""
        await self.insert_invocation(invocation)
        return False

    async def finish_invocation(
        self,
        request_id: str,
        attempt: int,
        outcome: Outcome,
        end_time: int,
        follow_up: NewInvocation | None = None,
        start_time: int | None = None,
    ) -> bool:
        """End a RUNNING attempt with a terminal ``outcome`` (and start ``follow_up`` with it);
        False when the row is not running that attempt."""
        params = outcome_params(request_id, attempt, outcome, end_time, start_time)

        def script() -> Script[bool]:
            yield execute("record_attempt", params)
            if not (yield execute("finish_invocation", params)):
                return False
            if follow_up is not None:
                yield execute("insert_invocation", invocation_params(follow_up))
            return True

        return await self._write(script(), durable=False)

    async def requeue_invocation(
        self,
        request_id: str,
        attempt: int,
        outcome: Outcome,
        end_time: int,
        start_time: int | None = None,
    ) -> bool:
        """Return a RUNNING attempt to WAIT until ``outcome.retry_at``; False when the row is
        not running that attempt."""
        params = outcome_params(request_id, attempt, outcome, end_time, start_time)

        def script() -> Script[bool]:
            yield execute("record_attempt", params)
            return bool((yield execute("requeue_invocation", params)))

        return await self._write(script(), durable=False)

    async def list_cancel_requests(self, worker_id: str) -> list[str]:
        rows = await self._read(fetch_all("list_cancel_requests", {"worker_id": worker_id}))
        return [str(row["request_id"]) for row in rows]

    async def get_invocation(self, request_id: str) -> InvocationDetail | None:
        params = {"request_id": request_id}

        def script() -> Script[InvocationDetail | None]:
            row = yield fetch_one("get_invocation", params)
            if row is None:
                return None
            attempts = yield fetch_all("list_attempts", params)
            return InvocationDetail.from_rows(row, attempts)

        # One snapshot: the record and its attempts as one outcome left them.
        return await self._read(script(), snapshot=True)

    async def claim_waiting(
        self, request_id: str, function_id: int, worker_id: str, now: int, lease_until: int
    ) -> ClaimedInvocation | None:
        params = {
            **claim_params(worker_id, now, 1, lease_until),
            "request_id": request_id,
            "function_id": function_id,
        }
        row = await self._write(fetch_one("claim_waiting", params))
        return None if row is None else ClaimedInvocation.from_row(row)

    async def request_cancel(self, request_id: str, function_id: int) -> bool:
        params = {"request_id": request_id, "function_id": function_id}
        return bool(await self._write(execute("request_cancel", params)))

    async def upsert_async_config(self, config: AsyncConfig) -> None:
        await self._write(execute("upsert_async_config", config_params(config)))

    async def get_async_config(self, function_id: int) -> AsyncConfig | None:
        row = await self._read(fetch_one("get_async_config", {"function_id": function_id}))
        return None if row is None else AsyncConfig.from_row(row)

    async def delete_async_config(self, function_id: int) -> bool:
        params = {"function_id": function_id}
        return bool(await self._write(execute("delete_async_config", params)))

    async def list_rerunnable(
        self,
        function_id: int,
        statuses: tuple[Status, ...],
        begin: int,
        end: int,
        limit: int,
        request_id: str | None = None,
    ) -> list[tuple[str, bytes, int]]:
        params = {
            "request_id": request_id,
            "function_id": function_id,
            "status_a": statuses[0].value,
            "status_b": statuses[1].value if len(statuses) > 1 else statuses[0].value,
            "begin": begin,
            "end": end,
            "limit": limit,
        }
        rows = await self._read(fetch_all("list_rerunnable", params))
        return [(str(r["request_id"]), bytes(r["payload"]), int(r["depth"])) for r in rows]

    async def count_waiting(self, function_id: int) -> int:
        row = await self._read(fetch_one("count_waiting", {"function_id": function_id}))
        return int(row["count"])

    async def delete_expired(self, cutoff: int, key_cutoff: int, limit: int) -> int:
        """Delete what has outlived its time: up to ``limit`` records that ended before
        ``cutoff`` with their history, idempotency keys made before ``key_cutoff``, and
        expired tokens; the number of records deleted."""
        params = {"cutoff": cutoff, "limit": limit}

        def script() -> Script[int]:
            yield execute("purge_attempts", params)
            deleted = yield execute("purge_invocations", params)
            yield execute("purge_idempotency_keys", {"cutoff": key_cutoff})
            yield execute("delete_expired_tokens", {"now": now_ms()})
            yield execute("delete_old_trigger_fires", {"cutoff": cutoff})
            yield execute("purge_invocation_minutes", {"minute": cutoff // MINUTE_MS})
            return int(deleted)

        return await self._write(script())

    async def ensure_partitions(self, now: int) -> int:
        today = now // DAY_MS
        params = {"first_day": today, "last_day": today + PARTITION_DAYS_AHEAD, "lock_ms": 1000}
        row = await self._write(fetch_one("ensure_partitions", params))
        return int(row["made"])

    async def drop_expired_days(self, cutoff: int) -> int:
        params = {"cutoff": cutoff, "lock_ms": 1000}
        # Two transactions: the days' files are released first, so that the drop itself holds
        # the records table's lock only for a moment (migration 0009).
        await self._write(fetch_one("empty_day_partitions", params))
        return int((await self._write(fetch_one("drop_day_partitions", params)))["dropped"])

    # -- triggers ---------------------------------------------------------------------------

    async def insert_trigger(self, trigger: Trigger) -> Trigger:
        params = {k: getattr(trigger, k) for k in Trigger.__dataclass_fields__}
        del params["id"]
        row = await self._write(fetch_one("insert_trigger", params))
        return replace(trigger, id=int(row["id"]))

    async def get_trigger(self, trigger_id: str) -> Trigger | None:
        row = await self._read(fetch_one("get_trigger", {"trigger_id": trigger_id}))
        return None if row is None else Trigger.from_row(row)

    async def list_triggers(self, function_ids: Sequence[int]) -> list[Trigger]:
        """The triggers of these function rows, each row's in the order made."""

        def script() -> Script[list[Trigger]]:
            found = []
            for function_id in function_ids:
                rows = yield fetch_all("list_function_triggers", {"function_id": function_id})
                found += [Trigger.from_row(row) for row in rows]
            return found

        return await self._read(script())

    async def list_project_triggers(self, project_id: str) -> list[Trigger]:
        rows = await self._read(fetch_all("list_project_triggers", {"project_id": project_id}))
        return [Trigger.from_row(row) for row in rows]

    async def list_route_triggers(self, project_id: str) -> list[Trigger]:
        rows = await self._read(fetch_all("list_route_triggers", {"project_id": project_id}))
        return [Trigger.from_row(row) for row in rows]

    async def update_trigger(self, trigger: Trigger) -> None:
        params = {
            "trigger_id": trigger.trigger_id,
            "status": trigger.status,
            "next_fire": trigger.next_fire,
            "anchor": trigger.anchor,
            "last_modified": trigger.last_modified,
        }
        await self._write(execute("update_trigger", params))

    async def delete_triggers(self, trigger_ids: Sequence[str]) -> None:
        def script() -> Script[None]:
            for trigger_id in trigger_ids:
                yield execute("delete_trigger", {"trigger_id": trigger_id})

        await self._write(script())

    async def next_timer_fire(self) -> int | None:
        row = await self._read(fetch_one("next_timer_fire", {}))
        return None if row is None or row["next_fire"] is None else int(row["next_fire"])

    async def due_timers(self, now: int, limit: int) -> list[Trigger]:
        rows = await self._read(fetch_all("due_timers", {"now": now, "limit": limit}))
        return [Trigger.from_row(row) for row in rows]

    async def fire_timer(
        self, timer: Trigger, next_fire: int | None, invocation: NewInvocation | None
    ) -> bool:
        """Move ``timer`` from the scheduled time it was read with to ``next_fire`` and, in
        the same transaction, insert ``invocation`` recorded as that time's fire. False, with
        nothing written, when another node moved it first or it was disabled meanwhile."""
        moved = {"id": timer.id, "scheduled_at": timer.next_fire, "next_fire": next_fire}

        def script() -> Script[bool]:
            if not (yield execute("advance_timer", moved)):
                return False
            if invocation is not None:
                fire = {
                    "trigger_id": timer.trigger_id,
                    "scheduled_at": timer.next_fire,
                    "request_id": invocation.request_id,
                    "fired_at": invocation.start_time,
                }
                yield execute("record_trigger_fire", fire)
                yield execute("insert_invocation", invocation_params(invocation))
            return True

        return await self._write(script())

    async def list_trigger_fires(self, trigger_id: str) -> list[tuple[int, str, int]]:
        """``(scheduled_at, request_id, fired_at)`` of a trigger's recorded fires."""
        params = {"trigger_id": trigger_id}
        rows = await self._read(fetch_all("list_trigger_fires", params))
        return [(int(r["scheduled_at"]), str(r["request_id"]), int(r["fired_at"])) for r in rows]

    async def renew_leases(self, worker_id: str, lease_until: int) -> int:
        params = {"worker_id": worker_id, "lease_until": lease_until}
        return int(await self._write(execute("renew_leases", params), durable=False))

    async def list_expired_leases(self, now: int, limit: int) -> list[ClaimedInvocation]:
        rows = await self._read(fetch_all("list_expired_leases", {"now": now, "limit": limit}))
        return [ClaimedInvocation.from_row(row) for row in rows]

    async def next_available_at(self) -> int | None:
        row = await self._read(fetch_one("next_available_at", {}))
        return None if row["available_at"] is None else int(row["available_at"])

    async def count_by_status(self, function_id: int) -> dict[Status, int]:
        rows = await self._read(fetch_all("count_by_status", {"function_id": function_id}))
        return {Status(row["status"]): int(row["count"]) for row in rows}

    # -- test events ----------------------------------------------------------------------

    async def insert_test_event(self, event: TestEvent, max_count: int) -> bool:
        """Insert ``event`` unless its function has ``max_count`` events already or is gone;
        the function's row is locked first, so concurrent inserts count one after another."""
        params = {k: getattr(event, k) for k in TestEvent.__dataclass_fields__}
        owner = {"function_id": event.function_id}

        def script() -> Script[bool]:
            if (yield fetch_one("lock_function", {"id": event.function_id})) is None:
                return False
            found = yield fetch_one("count_test_events", owner)
            if int(found["count"]) >= max_count:
                return False
            yield execute("insert_test_event", params)
            return True

        return await self._write(script())

    async def list_test_events(self, function_id: int) -> list[TestEvent]:
        rows = await self._read(fetch_all("list_test_events", {"function_id": function_id}))
        return [TestEvent.from_row(row) for row in rows]

    async def get_test_event(self, function_id: int, event_id: str) -> TestEvent | None:
        params = {"function_id": function_id, "id": event_id}
        row = await self._read(fetch_one("get_test_event", params))
        return None if row is None else TestEvent.from_row(row)

    async def update_test_event(self, event: TestEvent) -> bool:
        params = {k: getattr(event, k) for k in TestEvent.__dataclass_fields__}
        return bool(await self._write(execute("update_test_event", params)))

    async def delete_test_event(self, function_id: int, event_id: str) -> bool:
        params = {"function_id": function_id, "id": event_id}
        return bool(await self._write(execute("delete_test_event", params)))

    # -- function tags --------------------------------------------------------------------

    async def list_function_tags(self, function_id: int) -> list[tuple[str, str]]:
        rows = await self._read(fetch_all("list_function_tags", {"function_id": function_id}))
        return [(str(row["key"]), str(row["value"])) for row in rows]

    async def put_function_tags(
        self, function_id: int, tags: list[tuple[str, str]], limit: int
    ) -> int | None:
        """Set ``tags`` (a key already there takes the new value) unless the function would
        then have more than ``limit``: the count it would have, which is written only when
        it is within the limit (None when the function is gone)."""

        def script() -> Script[int | None]:
            # The function's row is locked first, so two requests cannot both pass the limit.
            if (yield fetch_one("lock_function", {"id": function_id})) is None:
                return None
            rows = yield fetch_all("list_function_tags", {"function_id": function_id})
            count = len({str(row["key"]) for row in rows} | {key for key, _ in tags})
            if count <= limit:
                for key, value in tags:
                    params = {"function_id": function_id, "key": key, "value": value}
                    yield execute("upsert_function_tag", params)
            return count

        return await self._write(script())

    async def delete_function_tags(self, function_id: int, keys: list[str]) -> None:
        def script() -> Script[None]:
            for key in keys:
                yield execute("delete_function_tag", {"function_id": function_id, "key": key})

        await self._write(script())

    async def list_project_tags(self, project_id: str) -> list[tuple[str, str]]:
        rows = await self._read(fetch_all("list_project_tags", {"project_id": project_id}))
        return [(str(row["key"]), str(row["value"])) for row in rows]

    async def count_functions(self, project_id: str) -> int:
        params = {"project_id": project_id, "package": None, "name_like": None}
        row = await self._read(fetch_one("count_functions", params))
        return int(row["count"])

    # -- statistics and metrics ----------------------------------------------------------------

    async def invocation_minutes(
        self, function_id: int, begin: int, end: int
    ) -> list[dict[str, int | None]]:
        """Per minute of ``start_time`` in ``[begin, end]``: counts and durations (ms); see
        the query ``invocation_minutes`` for the columns. Durations are None without any."""
        params = {"function_id": function_id, "begin": begin, "end": end}
        rows = await self._read(fetch_all("invocation_minutes", params))
        return [{k: None if r[k] is None else int(r[k]) for k in MINUTE_COLUMNS} for r in rows]

    async def waiting_by_function(self) -> list[tuple[str, str, str, str, int, int]]:
        """Function rows with waiting records: (project, package, name, qualifier, how many,
        the oldest one's ``start_time``)."""
        rows = await self._read(fetch_all("waiting_by_function", {}))
        return [
            (
                r["project_id"],
                r["package"],
                r["name"],
                r["qualifier"],
                int(r["waiting"]),
                int(r["oldest"]),
            )
            for r in rows
        ]

    async def async_minutes(
        self, function_id: int, begin: int, end: int
    ) -> list[tuple[int, str, int, int | None, int]]:
        """Per minute of ``start_time`` in ``[begin, end]``: ``(minute, kind, a, b, count)``
        rows of the statuses, binned times and waits of the records (the query
        ``async_minutes`` says what each kind holds)."""
        params = {"function_id": function_id, "begin": begin, "end": end}
        rows = await self._read(fetch_all("async_minutes", params))
        return [
            (
                int(r["minute"]),
                str(r["kind"]),
                int(r["a"]),
                None if r["b"] is None else int(r["b"]),
                int(r["count"]),
            )
            for r in rows
        ]

    async def count_waiting_before(self, function_id: int, before: int) -> int:
        """A function row's waiting records accepted before ``before``."""
        params = {"function_id": function_id, "before": before}
        row = await self._read(fetch_one("count_waiting_before", params))
        return int(row["count"])
