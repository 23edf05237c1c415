"""The runtime benchmark still runs: a tiny run prints its table (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)  # instances of three runtimes, started both ways, cold and warm
def test_runtime_bench_small_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.runtime_bench", "--small"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    columns = ["python fork", "python spawn", "node fork", "node spawn", "custom fork"]
    assert lines[1].split() == ["measure", *" ".join(columns).split()]
    labels = "\n".join(lines)
    for label in (
        "cold start, need → handler entry (ms) p50",
        "warm invocation, whole call (µs) p99",
        "instances PSS (sum) with 5 warm instances (MB)",
        "service RSS with 5 warm instances (MB)",
    ):
        assert label in labels
