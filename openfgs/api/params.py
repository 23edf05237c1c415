"""Parameters as they arrive over HTTP (query strings and headers): parsed and bounded here.

Every integer a client sends goes through :func:`parse_int`: ASCII digits only, a bounded
length, a range — so ``²``, ``٣``, ``+-5`` or a thousand digits answer 400, never 500 and never
a surprising value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from openfgs.errors import BadRequest
from openfgs.invocations import ACTIVE, DEFAULT_WINDOW_MS, MAX_ACTIVE_IDS, MAX_LIMIT
from openfgs.models import Function, InvocationQuery, Status, now_ms, parse_time

MAX_INT_DIGITS = 18  # any value we take fits a 64-bit integer


def query_error(parameter: str, message: str, error_code: str = "FSS.1001") -> BadRequest:
    return BadRequest(f"Invalid query parameter {parameter}: {message}", error_code=error_code)


def parse_int(
    raw: str | None,
    name: str,
    *,
    default: int,
    low: int = 0,
    high: int = 2**31 - 1,
    where: str = "query parameter",
    error_code: str = "FSS.1001",
) -> int:
    """A non-negative decimal integer in [low, high]; absent or empty gives ``default``."""
    if raw is None or raw == "":
        return default
    if len(raw) > MAX_INT_DIGITS or not (raw.isascii() and raw.isdigit()):
        raise BadRequest(
            f"Invalid {where} {name}: {raw[:32]!r} is not an integer", error_code=error_code
        )
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(
            f"Invalid {where} {name}: {value} is out of range [{low}, {high}]",
            error_code=error_code,
        )
    return value


def time_window(params: Mapping[str, str | None]) -> tuple[int, int]:
    """``query_begin_time`` / ``query_end_time`` as epoch ms, with FunctionGraph's defaults."""
    bounds: dict[str, int] = {}
    for name in ("query_begin_time", "query_end_time"):
        raw = params.get(name)
        if raw:
            try:
                bounds[name] = parse_time(raw)
            except ValueError:
                raise query_error(
                    name, f"{raw[:64]!r} is not a time of the form YYYY-MM-DDTHH:mm:ss"
                ) from None
    now = now_ms()
    end = bounds.get("query_end_time")
    # A whole second given as the end bound includes that second.
    end = now if end is None else end + (999 if end % 1000 == 0 else 0)
    begin = bounds.get("query_begin_time", min(now, end) - DEFAULT_WINDOW_MS)
    if begin > end:
        raise query_error("query_begin_time", "it is later than query_end_time")
    return begin, end


def _status_param(params: Mapping[str, str]) -> tuple[Status, ...]:
    raw = params.get("status")
    if not raw:
        return ()
    try:
        return (Status(raw),)
    except ValueError:
        raise query_error(
            "status", f"{raw[:64]!r} is not one of WAIT, RUNNING, SUCCESS, FAIL, DISCARD"
        ) from None


def parse_list_query(function: Function, params: Mapping[str, str]) -> InvocationQuery:
    """Validate the list endpoint's query parameters (all strings on the wire)."""
    request_id = params.get("request_id") or ""
    if len(request_id) > 64:
        raise query_error("request_id", "longer than 64 characters")
    begin, end = time_window(params)
    return InvocationQuery(
        function_id=function.id,
        begin=begin,
        end=end,
        request_ids=(request_id,) if request_id else (),
        statuses=_status_param(params),
        marker=parse_int(params.get("marker"), "marker", default=0),
        limit=parse_int(params.get("limit"), "limit", default=100, low=1, high=MAX_LIMIT),
    )


def parse_active_query(function: Function, params: Mapping[str, str]) -> InvocationQuery | None:
    """The active-invocations endpoint: only WAIT and RUNNING, ``requests`` = up to 10 ids.

    None when the filters leave nothing that could match (a terminal ``status``).
    """
    raw = params.get("requests") or ""
    if len(raw) > 640:
        raise query_error("requests", "longer than 640 characters")
    ids = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if len(ids) > MAX_ACTIVE_IDS:
        raise query_error("requests", f"more than {MAX_ACTIVE_IDS} request ids")
    query = parse_list_query(function, {k: v for k, v in params.items() if k != "request_id"})
    statuses = tuple(s for s in ACTIVE if not query.statuses or s in query.statuses)
    if not statuses:
        return None
    return replace(query, request_ids=ids, statuses=statuses)
