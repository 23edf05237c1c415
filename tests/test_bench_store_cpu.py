"""``python -m bench.store_cpu --small`` still runs on both stores and reports every figure.

The figures of a tiny run mean nothing; only that each measurement went through all its rows
(the command fails otherwise) and that CPU was counted — for PostgreSQL, the server's too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.postgres]


@pytest.mark.timeout(180)
def test_small_run_reports_client_and_server_cpu_per_row() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENFGS_")}
    result = subprocess.run(
        [sys.executable, "-m", "bench.store_cpu", "--small"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    reports = {report["backend"]: report for report in lines}
    assert set(reports) == {"sqlite", "postgres"}
    measured = ("accept", "claim+finish, batches of 4", "claim+finish, batches of 16")
    for backend, report in reports.items():
        for what in measured:
            figures = report[what]
            assert figures["rows_per_second"] > 0, (backend, what)
            assert figures["client_us_per_row"] > 0, (backend, what)
            if backend == "postgres":
                # Counted in clock ticks (10 ms): 200 accepts may cost the server less than one.
                assert figures["server_us_per_row"] >= 0, (backend, what)
                assert figures["total_us_per_row"] == pytest.approx(
                    figures["client_us_per_row"] + figures["server_us_per_row"]
                )
            else:
                assert "server_us_per_row" not in figures
    # 200 rows claimed four at a time cost the server well over a tick.
    assert reports["postgres"]["claim+finish, batches of 4"]["server_us_per_row"] > 0


def test_an_unknown_backend_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.store_cpu", "--backend", "mysql"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown backend 'mysql'" in result.stderr
