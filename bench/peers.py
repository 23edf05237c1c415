"""The peers (Celery and RQ over Redis), run from a virtualenv of their own.

The virtualenv lives in ``bench/results/peers-venv`` (git-ignored) and is made on first use
with pinned versions from PyPI; py-spy comes along for ``python -m bench profile``. Each
peer workload runs ``python -m bench.peer_driver`` in that virtualenv, in a session of its
own, and reads one line of JSON back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import REDIS_DB, REDIS_HOST, REDIS_PORT, RESULTS, ROOT, Resources
from bench.workloads import Sample, Scale

PEERS = ("celery", "rq")
REQUIREMENTS = ("celery[redis]==5.7.0", "rq==2.12.0", "redis==8.1.0", "py-spy==0.4.3")
VENV = RESULTS / "peers-venv"
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(log: bool = True) -> Path:
    """Create the peers' virtualenv unless it exists with the pinned requirements."""
    marker = VENV / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if venv_python().exists() and marker.exists() and marker.read_text() == wanted:
        return venv_python()
    if log:
        print(f"bench: creating {VENV} ({', '.join(REQUIREMENTS)})", file=sys.stderr)
    began = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    result = subprocess.run(
        [
            str(venv_python()),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *REQUIREMENTS,
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"installing the peers failed:\n{result.stdout}{result.stderr}")
    marker.write_text(wanted)
    if log:
        print(f"bench: peers installed in {time.monotonic() - began:.0f} s", file=sys.stderr)
    return venv_python()


def py_spy() -> Path:
    ensure_venv()
    return VENV / "bin" / "py-spy"


def versions() -> dict[str, str]:
    """Installed versions of the peers, for the machine description."""
    if not venv_python().exists():
        return {}
    script = (
        "import celery, rq, redis, json; "
        "print(json.dumps({'celery': celery.__version__, 'rq': rq.__version__, "
        "'redis-py': redis.__version__}))"
    )
    result = subprocess.run(
        [str(venv_python()), "-c", script], capture_output=True, text=True, cwd=ROOT
    )
    return json.loads(result.stdout) if result.returncode == 0 else {}


def run_peer(res: Resources, peer: str, workload: str, scale: Scale, procs: int = 0) -> Sample:
    """One repetition of ``workload`` (enqueue, e2e or dispatch) on ``peer``."""
    argv = [
        str(ensure_venv()),
        "-m",
        "bench.peer_driver",
        peer,
        workload,
        "--clients",
        str(scale.clients),
        "--duration",
        str(scale.accept_seconds),
        "--warmup",
        str(scale.accept_warmup),
        "--count",
        str(scale.e2e_count if workload == "e2e" else scale.dispatch_count),
        "--gap",
        str(scale.dispatch_gap),
        "--procs",
        str(procs),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_REDIS_URL": REDIS_URL}
    process = res.start(f"peer-{peer}-{workload}", argv, env=env)
    timeout = 600 + scale.e2e_count / 20
    try:
        process.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        res.stop(process)
        raise TimeoutError(f"{peer} {workload}: no answer within {timeout:.0f} s") from None
    res.stop(process)
    lines = [line for line in process.log.read_text().splitlines() if line.startswith("{")]
    if process.popen.returncode != 0 or not lines:
        print(process.tail(40), file=sys.stderr)
        last = [line for line in process.tail(40).splitlines() if line.strip()]
        raise RuntimeError(f"{peer} {workload}: {last[-1] if last else 'no output'}")
    figures: Sample = json.loads(lines[-1])
    return figures
