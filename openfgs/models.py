"""Plain data of the domain: functions, invocations, statuses, URNs and times.

Times inside openfgs are integer milliseconds since the Unix epoch (UTC); they become
FunctionGraph's ``YYYY-MM-DDTHH:mm:ss`` strings only at the HTTP edge.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from openfgs.errors import BadRequest

LATEST = "latest"
CANCELED_MESSAGE = "function invocation canceled"


def cpu_millicores(memory_size: int) -> int:
    """FunctionGraph's CPU share of a memory size, in millicores: proportional to memory,
    100 for 128 MB (``RUNTIME_CPU``, ``getCPUNumber()`` and the function model's ``cpu``)."""
    return max(100, memory_size * 100 // 128)


class Status(enum.StrEnum):
    """The five statuses of an async invocation record."""

    WAIT = "WAIT"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"
    DISCARD = "DISCARD"

    @property
    def terminal(self) -> bool:
        return self in (Status.SUCCESS, Status.FAIL, Status.DISCARD)


# Status(text) without the enum machinery: a page of rows calls it once a row.
_STATUS_OF = {status.value: status for status in Status}


class ErrorCode(enum.IntEnum):
    """Integer ``error_code`` values of async records (FunctionGraph documents only 4208)."""

    OK = 0
    FUNCTION_ERROR = 4200
    TIMEOUT = 4201
    INSTANCE_CRASHED = 4202
    OUT_OF_MEMORY = 4203
    RESULT_TOO_LARGE = 4204
    INITIALIZER_FAILED = 4205
    CANCELED = 4208
    INTERRUPTED = 4210
    EXPIRED = 4211
    NOT_RECORDED = 4212


class Row(Protocol):
    """A row as a store's driver returns it: its columns by name (``sqlite3.Row``, a dict)."""

    def __getitem__(self, column: str, /) -> Any: ...


MINUTE_MS = 60_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_V4_CLEAR = ~(0xF000 << 64 | 0xC000 << 48)
_V4_SET = 0x4000 << 64 | 0x8000 << 48
# A generator of its own: nobody else's random.seed() may make two request ids alike.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def new_request_id() -> str:
    """A random (version 4) UUID, as FunctionGraph's request ids are.

    Drawn from a Mersenne Twister seeded from ``os.urandom`` rather than from ``os.urandom``
    itself: a request id names a record and guards nothing, and a system call per accepted
    request is measurable. The generator is private and reseeded in every forked child.
    """
    return str(uuid.UUID(int=_ids.getrandbits(128) & _V4_CLEAR | _V4_SET))


def format_time(ms: int | None) -> str:
    """FunctionGraph's response time format: ``YYYY-MM-DDTHH:mm:ss`` in UTC, no zone."""
    if ms is None:
        return ""
    return _format_second(ms // 1000)


@functools.lru_cache(maxsize=4096)
def _format_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def format_modified(ms: int) -> str:
    """``last_modified`` as FunctionGraph shows it on function models (``YYYY-MM-DD HH:mm:ss``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_time(text: str) -> int:
    """Parse a query time into epoch milliseconds.

    Accepts ``YYYY-MM-DDTHH:mm:ss`` (UTC, as documented), optionally with fractional seconds and
    a ``Z`` or numeric offset suffix, which the SDK sends for aware or sub-second datetimes.
    Raises ValueError when the text is none of these.
    """
    value = text.strip()
    if not re.fullmatch(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?", value
    ):
        raise ValueError(f"not a time: {text!r}")
    value = value.replace("Z", "+00:00")
    frac = re.search(r"\.(\d+)", value)
    if frac and len(frac.group(1)) > 6:
        value = value.replace(frac.group(0), "." + frac.group(1)[:6])
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,58}[A-Za-z0-9]|[A-Za-z]")
_PACKAGE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_QUALIFIER = re.compile(r"!?[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Urn:
    """A function URN: ``urn:fss:{region}:{project_id}:function:{package}:{name}[:{qualifier}]``."""

    region: str
    project_id: str
    package: str
    name: str
    qualifier: str | None = None

    @classmethod
    def parse(cls, text: str) -> Urn:
        parts = text.split(":")
        if len(parts) not in (7, 8) or parts[:2] != ["urn", "fss"] or parts[4] != "function":
            raise BadRequest(f"Invalid function URN: {text!r}", error_code="FSS.1309")
        _, _, region, project_id, _, package, name, *rest = parts
        qualifier = rest[0] if rest else None
        if not (region and project_id and _PACKAGE.fullmatch(package) and _NAME.fullmatch(name)):
            raise BadRequest(f"Invalid function URN: {text!r}", error_code="FSS.1309")
        if qualifier is not None and not _QUALIFIER.fullmatch(qualifier):
            raise BadRequest(f"Invalid function URN: {text!r}", error_code="FSS.1309")
        return cls(region, project_id, package, name, qualifier)

    @property
    def unqualified(self) -> str:
        return f"urn:fss:{self.region}:{self.project_id}:function:{self.package}:{self.name}"

    def qualified(self, qualifier: str = LATEST) -> str:
        return f"{self.unqualified}:{qualifier}"

    def __str__(self) -> str:
        return self.unqualified if self.qualifier is None else self.qualified(self.qualifier)


def valid_function_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def valid_package_name(name: str) -> bool:
    return bool(_PACKAGE.fullmatch(name))


@dataclass(frozen=True)
class Credential:
    """An access key pair bound to one project."""

    project_id: str
    access_key: str
    secret_key: str

    @classmethod
    def from_row(cls, row: Row) -> Credential:
        return cls(row["project_id"], row["access_key"], row["secret_key"])


@dataclass(frozen=True)
class Function:
    """A deployed function (its ``latest`` version) and the digest of its code package."""

    id: int
    project_id: str
    package: str
    name: str
    func_id: str
    runtime: str
    handler: str
    memory_size: int
    timeout: int
    code_type: str
    code_digest: str
    code_size: int
    code_filename: str | None = None
    user_data: str = ""
    description: str = ""
    initializer_handler: str | None = None
    initializer_timeout: int | None = None
    concurrency: int = 400
    concurrent_num: int = 1
    created_at: int = 0
    last_modified: int = 0
    # Which of the function's rows this is: its latest, a published version (immutable), or
    # an alias ("!" + name) that routes to ``version`` and, by ``weights``, to another.
    qualifier: str = LATEST
    version: str = LATEST
    version_description: str = ""
    alias_weights: str = ""  # JSON {version: percent}, aliases only
    # Dependency version ids, in the order they are merged over the code (column
    # ``depend_versions``, a JSON array).
    depend_versions: tuple[str, ...] = ()

    def urn(self, region: str) -> Urn:
        return Urn(region, self.project_id, self.package, self.name)

    def qualified_urn(self, region: str) -> str:
        """This row's URN: ``…:latest``, ``…:v1`` or ``…:!alias``."""
        return self.urn(region).qualified(self.qualifier)

    @property
    def is_latest(self) -> bool:
        return self.qualifier == LATEST

    @property
    def alias(self) -> str | None:
        """The alias name of an alias row, None for the latest and versions."""
        return self.qualifier[1:] if self.qualifier.startswith("!") else None

    @property
    def weights(self) -> dict[str, int]:
        """An alias's ``additional_version_weights``: percent of invocations per version."""
        if not self.alias_weights:
            return {}
        found: dict[str, int] = json.loads(self.alias_weights)
        return found

    @classmethod
    def from_row(cls, row: Row) -> Function:
        """A ``functions`` row: its columns are the fields, by name."""
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["depend_versions"] = parse_depend_versions(values["depend_versions"])
        return cls(**values)


def parse_depend_versions(text: str | None) -> tuple[str, ...]:
    """The ``depend_versions`` column: a JSON array of version ids (anything else: none)."""
    try:
        ids = json.loads(text or "[]")
    except ValueError:
        return ()
    return tuple(i for i in ids if isinstance(i, str)) if isinstance(ids, list) else ()


@dataclass(frozen=True)
class DependencyVersion:
    """One immutable version of a dependency: a zip merged over the code of functions that
    list it. ``digest`` (sha512) names its zip among the code packages; ``etag`` is its MD5."""

    id: str
    dep_id: str
    project_id: str
    name: str
    version: int
    runtime: str
    description: str
    file_name: str
    digest: str
    etag: str
    size: int
    created_at: int

    @classmethod
    def from_row(cls, row: Row) -> DependencyVersion:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Trigger:
    """A trigger bound to one function row (latest, version or alias).

    ``event_data`` is the JSON object it was created with. A timer keeps ``next_fire`` (its
    next scheduled time, None while disabled) and ``anchor`` (when its schedule started); an
    HTTP trigger keeps its route (``route_method``, ``route_path``)."""

    id: int
    trigger_id: str
    function_id: int
    project_id: str
    type_code: str
    status: str
    name: str
    event_type_code: str
    event_data: str
    route_method: str | None
    route_path: str | None
    next_fire: int | None
    anchor: int | None
    created_at: int
    last_modified: int

    @classmethod
    def from_row(cls, row: Row) -> Trigger:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @functools.cached_property
    def data(self) -> dict[str, Any]:
        """``event_data`` read once (an HTTP trigger's is asked on every request)."""
        found: dict[str, Any] = json.loads(self.event_data)
        return found


@dataclass(frozen=True)
class NewInvocation:
    """An accepted async request, as the store inserts it."""

    request_id: str
    function_id: int
    version: str
    payload: bytes
    start_time: int
    available_at: int
    expires_at: int
    max_attempts: int = 1
    depth: int = 0  # how many destination hops led here
    rerun_of: str | None = None


@dataclass(frozen=True)
class Invocation:
    """One async invocation record."""

    request_id: str
    function_id: int
    status: Status
    start_time: int
    end_time: int | None = None
    error_code: int = 0
    error_message: str = ""
    attempt: int = 0
    version: str = LATEST

    @classmethod
    def from_row(cls, row: Row) -> Invocation:
        # Positional: list pages map many rows, and keywords cost more per row.
        return cls(
            row["request_id"],
            row["function_id"],
            _STATUS_OF[row["status"]],
            row["start_time"],
            row["end_time"],
            row["error_code"],
            row["error_message"],
            row["attempt"],
            row["version"],
        )


@dataclass(frozen=True)
class ClaimedInvocation:
    """A record a worker has claimed to run: the record plus its payload."""

    request_id: str
    function_id: int
    version: str
    payload: bytes
    attempt: int
    expires_at: int
    max_attempts: int = 1
    depth: int = 0
    last_error: str = ""  # the message the previous attempt ended with, if any
    accepted_at: int = 0  # the record's start_time: when its 202 was sent

    @classmethod
    def from_row(cls, row: Row) -> ClaimedInvocation:
        return cls(
            row["request_id"],
            row["function_id"],
            row["version"],
            bytes(row["payload"]),
            row["attempt"],
            row["expires_at"],
            row["max_attempts"],
            row["depth"],
            row["last_error"],
            row["accepted_at"],
        )


@dataclass(frozen=True)
class Outcome:
    """What becomes of an attempt, as the store records it: a terminal status, or WAIT again
    at ``retry_at`` (the domain decides it: ``openfgs.invocations.decide``)."""

    status: Status
    error_code: int = ErrorCode.OK
    error_message: str = ""
    result: bytes | None = None
    retry_at: int | None = None


@dataclass(frozen=True)
class Attempt:
    """One attempt of an async invocation, as kept in its history."""

    attempt: int
    worker_id: str
    start_time: int
    end_time: int | None
    outcome: str
    error_code: int
    error_message: str

    @classmethod
    def from_row(cls, row: Row) -> Attempt:
        return cls(
            attempt=row["attempt"],
            worker_id=row["worker_id"] or "",
            start_time=row["start_time"],
            end_time=row["end_time"],
            outcome=row["outcome"],
            error_code=row["error_code"],
            error_message=row["error_message"],
        )


@dataclass(frozen=True)
class InvocationDetail:
    """A record with what the list endpoint does not show: attempts, limits, re-run origin."""

    record: Invocation
    project_id: str
    max_attempts: int
    rerun_of: str | None
    attempts: list[Attempt] = field(default_factory=list)

    @classmethod
    def from_rows(cls, row: Row, attempts: list[Row]) -> InvocationDetail:
        """The record's row (with ``max_attempts``, ``rerun_of``, ``project_id``) and the rows
        of its attempts."""
        history = [Attempt.from_row(attempt) for attempt in attempts]
        record = Invocation.from_row(row)
        return cls(record, row["project_id"], row["max_attempts"], row["rerun_of"], history)


@dataclass(frozen=True)
class AsyncConfig:
    """A function's async invoke config (FunctionGraph's fields)."""

    function_id: int
    max_async_event_age_in_seconds: int
    max_async_retry_attempts: int
    destination_config: dict[str, Any]
    enable_async_status_log: bool
    created_at: int
    last_modified: int

    @classmethod
    def from_row(cls, row: Row) -> AsyncConfig:
        return cls(
            function_id=row["function_id"],
            max_async_event_age_in_seconds=row["max_async_event_age_in_seconds"],
            max_async_retry_attempts=row["max_async_retry_attempts"],
            destination_config=json.loads(row["destination_config"] or "{}"),
            enable_async_status_log=bool(row["enable_async_status_log"]),
            created_at=row["created_at"],
            last_modified=row["last_modified"],
        )


@dataclass(frozen=True)
class InvocationQuery:
    """Filters and paging of the list endpoint, validated."""

    function_id: int
    begin: int
    end: int
    request_ids: tuple[str, ...] = ()
    statuses: tuple[Status, ...] = ()
    marker: int = 0
    limit: int = 100
    # The parts of [begin, end] whose records ``count`` covers (inclusive); None: all of it.
    # The rest of the window is counted by the caller (openfgs.counting).
    count_ranges: tuple[tuple[int, int], ...] | None = None
    # Minutes [first, stop) of the window whose counts may be read from the store's rolled-up
    # minutes, as far as they are rolled up; the rest is counted record by record.
    rolled: tuple[int, int] | None = None

    def around(
        self, first: int, stop: int
    ) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """The parts of the window before minute ``first`` and from minute ``stop`` on (each
        empty or one inclusive range of ms)."""
        first_ms, stop_ms = first * MINUTE_MS, stop * MINUTE_MS
        older = ((self.begin, first_ms - 1),) if self.begin < first_ms else ()
        newer = ((stop_ms, self.end),) if stop_ms <= self.end else ()
        return older, newer


@dataclass
class InvocationPage:
    invocations: list[Invocation] = field(default_factory=list)
    count: int = 0
    next_marker: int = 0


# -- test events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestEvent:
    """A function's saved test event; ``content`` is the base64 of its JSON, as sent."""

    __test__ = False  # a product model, not a test class

    id: str
    function_id: int  # the row of the function's latest
    name: str
    content: str
    created_at: int
    last_modified: int

    @classmethod
    def from_row(cls, row: Row) -> TestEvent:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})
