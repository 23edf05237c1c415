"""The benchmark harness still runs: ``python -m bench run --small`` prints its table.

Every workload runs once at a tiny size on SQLite and PostgreSQL (and Celery and RQ when Redis
answers); nothing here asserts a timing — the figures of a small run mean nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import peers
from bench.procs import redis_available

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.mark.timeout(420)
def test_small_run_prints_the_table() -> None:
    argv = [sys.executable, "-m", "bench", "run", "--small"]
    with_peers = redis_available()
    if not with_peers:
        argv.append("--no-peers")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENFGS_")}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr[-5000:]

    assert "## Machine" in output and "- cores: " in output and "- postgresql: " in output
    header = next(line for line in output.splitlines() if line.startswith("| workload |"))
    if with_peers:
        assert "Celery" in header and "RQ" in header
    rows = [line.split(" | ") for line in output.splitlines() if line.startswith("| ")][1:]
    measured = {(row[0].lstrip("| "), row[2]) for row in rows}
    for workload in ("accept", "procs", "e2e", "dispatch", "query", "memory"):
        for backend in ("sqlite", "postgres"):
            assert (workload, backend) in measured, f"no {workload} row for {backend}"
    # Every figure of every row was measured (a dash would mean a missing value).
    assert all(row[3].strip() not in ("", "—") for row in rows), output
    if with_peers:
        assert peers.venv_python().exists()
