"""Which minutes of a list's window may be read from the store's per-minute counts."""

from __future__ import annotations

from openfgs.counting import rolled_span
from openfgs.models import MINUTE_MS, Status
from openfgs.statistics import runs
from openfgs.store.common import status_weights

DAY_MS = 24 * 60 * MINUTE_MS
NOW = 1_000_000 * MINUTE_MS + 30_000  # half past minute 1,000,000
RETENTION = 7 * DAY_MS


def test_only_minutes_wholly_inside_the_window() -> None:
    start = 999_000 * MINUTE_MS
    assert rolled_span(start, NOW, NOW, RETENTION) == range(999_000, 1_000_000)
    assert rolled_span(start + 1, NOW, NOW, RETENTION) == range(999_001, 1_000_000)
    assert rolled_span(start, start + 10 * MINUTE_MS - 1, NOW, RETENTION) == range(999_000, 999_010)
    assert rolled_span(start, start + 10 * MINUTE_MS - 2, NOW, RETENTION) == range(999_000, 999_009)
    assert len(rolled_span(NOW - 1, NOW, NOW, RETENTION)) == 0
    assert len(rolled_span(NOW, start, NOW, RETENTION)) == 0  # an empty window


def test_minutes_retention_may_purge_are_not_used() -> None:
    oldest = -(-(NOW - RETENTION) // MINUTE_MS)
    assert rolled_span(0, NOW, NOW, RETENTION).start == oldest
    assert oldest * MINUTE_MS >= NOW - RETENTION
    assert (oldest - 1) * MINUTE_MS < NOW - RETENTION


def test_status_weights_count_terminal_statuses_only() -> None:
    assert status_weights(()) == {"success": 1, "fail": 1, "discard": 1}
    assert status_weights((Status.FAIL,)) == {"success": 0, "fail": 1, "discard": 0}
    assert status_weights((Status.WAIT, Status.RUNNING)) == {"success": 0, "fail": 0, "discard": 0}


def test_runs_of_consecutive_numbers() -> None:
    assert runs([]) == []
    assert runs([1, 2, 3, 7, 9, 10]) == [range(1, 4), range(7, 8), range(9, 11)]
