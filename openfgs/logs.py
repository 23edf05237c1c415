"""Log lines: plain text (the default) or one JSON object per line, with the request id.

``REQUEST_ID`` holds the id of what the current task is doing — the async invocation a worker
runs, or an HTTP request's ``X-Request-Id`` — and every line logged meanwhile carries it.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

import orjson

from openfgs.errors import ConfigError

REQUEST_ID: ContextVar[str | None] = ContextVar("openfgs_request_id", default=None)
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Puts the current ``REQUEST_ID`` on each record (``record.request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    and the traceback as ``exc_info`` when there is one."""

    converter = time.gmtime  # type: ignore[assignment]  # UTC, as the Z says

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def log_handler(log_format: str) -> logging.Handler:
    """A stderr handler writing ``log_format`` ("text" or "json") lines."""
    if log_format not in ("text", "json"):
        raise ConfigError(f"OPENFGS_LOG_FORMAT: expected text or json, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    return handler
