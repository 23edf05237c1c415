"""Request ids and the AK/SK date: the cheap versions behave as the exact ones did."""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime

import pytest

from openfgs.auth.signing import DATE_FORMAT, parse_sdk_date
from openfgs.models import format_time, new_request_id


def test_request_ids_are_version_4_uuids() -> None:
    for _ in range(1000):
        text = new_request_id()
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_request_ids_do_not_repeat_when_someone_seeds_the_global_generator() -> None:
    seen = set()
    for _ in range(50):
        random.seed(1234)  # as test frameworks and user code do
        seen.add(new_request_id())
    assert len(seen) == 50


def test_a_forked_child_draws_other_request_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 4
    assert child != new_request_id()


@pytest.mark.parametrize(
    "value",
    ["20261126T095000Z", "19700101T000000Z", "20240229T235959Z", "20991231T000001Z"],
)
def test_sdk_date_is_read_as_strptime_reads_it(value: str) -> None:
    expected = datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC).timestamp()
    assert parse_sdk_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "20261126T095000",
        "20261126 095000Z",
        "20261326T095000Z",
        "20230229T000000Z",
        "20261126T245000Z",
        "2026112aT095000Z",
        "２0261126T095000Z",
        "20261126T095000Z ",
    ],
)
def test_malformed_sdk_dates_are_refused(value: str) -> None:
    assert parse_sdk_date(value) is None


@pytest.mark.parametrize("ms", [0, 999, 1_000, 1_795_686_600_123, -1, -1_500, None])
def test_format_time_matches_datetime(ms: int | None) -> None:
    expected = (
        "" if ms is None else datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert format_time(ms) == expected
