"""``python -m bench simulate`` still runs: a tiny cluster under a low load loses nothing.

One API node and one worker on a fresh PostgreSQL schema, a few seconds at a low rate; the
report must hold every row and ``lost`` must be 0. No timing is asserted: the figures of so
short a run on a shared machine mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.simulate import ROWS

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_tiny_simulated_run_reports_every_row_and_loses_nothing(tmp_path: Path) -> None:
    raw = tmp_path / "simulate.json"
    argv = [sys.executable, "-m", "bench", "simulate", "--api", "1", "--workers", "1"]
    argv += ["--seconds", "3", "--rate", "40", "--warmup", "1", "--drain", "30"]
    argv += ["--json", str(raw)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENFGS_")}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=100, env=env)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr[-5000:]

    shown = {line.split(" | ")[0].lstrip("| ") for line in output.splitlines() if "|" in line}
    for _, label, _ in ROWS:
        assert label in shown, f"no row {label!r} in:\n{output}"
    assert "| records by status at the end | SUCCESS 160 |" in output, output

    figures = json.loads(raw.read_text())["result"]
    assert figures["lost"] == 0
    # Every request due in the 4 s was answered 202, and each has its record.
    assert figures["answered_202"] == 160
    assert figures["invocations_inserted"] == 160
