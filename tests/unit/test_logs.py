"""Log lines: JSON objects carrying the request id of what the task is doing; text otherwise."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from openfgs.errors import ConfigError
from openfgs.logs import REQUEST_ID, log_handler


def logged(log_format: str, request_id: str | None, exc: bool = False) -> str:
    stream = io.StringIO()
    handler = log_handler(log_format)
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger = logging.getLogger(f"openfgs.test.{log_format}")
    logger.addHandler(handler)
    logger.propagate = False

    async def task() -> None:  # as a worker's attempt: a task of its own
        if request_id is not None:
            REQUEST_ID.set(request_id)
        try:
            if exc:
                raise ValueError("boom")
            logger.warning("ran %s", "it")
        except ValueError:
            logger.exception("failed")

    try:
        asyncio.run(task())
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_lines_carry_the_request_id() -> None:
    line = json.loads(logged("json", "req-1"))
    assert line["message"] == "ran it"
    assert line["level"] == "WARNING"
    assert line["logger"] == "openfgs.test.json"
    assert line["request_id"] == "req-1"
    assert line["time"].endswith("Z")


def test_json_lines_without_a_request_id_and_with_a_traceback() -> None:
    line = json.loads(logged("json", None, exc=True))
    assert "request_id" not in line
    assert "ValueError: boom" in line["exc_info"]


def test_text_is_the_plain_line() -> None:
    assert logged("text", "req-1") == "WARNING openfgs.test.text: ran it\n"


def test_an_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        log_handler("yaml")
