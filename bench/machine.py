"""What the benchmark ran on, and whether anything else was using the CPU meanwhile."""

from __future__ import annotations

import os
import platform
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import psycopg

from bench.procs import PG_BASE_URL, REDIS_HOST, REDIS_PORT, ROOT


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _postgres_version() -> str:
    try:
        with psycopg.connect(PG_BASE_URL, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    except psycopg.Error:
        return "not reachable"


def _redis_version() -> str:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as sock:
            sock.sendall(b"INFO server\r\n")
            data = b""
            while b"redis_version" not in data or not data.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > 1 << 16:
                    break
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1]
    except OSError:
        pass
    return "not reachable"


def git_commit() -> str:
    """The openfgs commit the services run, and whether openfgs/ has local changes."""
    return _git_commit()


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "openfgs"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return head + (" + uncommitted changes under openfgs/" if dirty else "")
    except OSError:
        return "?"


def describe(peer_versions: dict[str, str]) -> dict[str, str]:
    """CPU, cores, memory, OS and the versions of everything measured."""
    info = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_memory_gib():.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(),
        "redis": _redis_version(),
        "openfgs": _git_commit(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    info.update(peer_versions)
    return info


def _cpu_times() -> tuple[int, int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values), idle


def busy_percent(seconds: float = 1.0) -> float:
    """How busy all CPUs were over ``seconds`` (100 = every core busy)."""
    total0, idle0 = _cpu_times()
    time.sleep(seconds)
    total1, idle1 = _cpu_times()
    spent = total1 - total0
    return 100.0 * (spent - (idle1 - idle0)) / spent if spent else 0.0


def wait_quiet(max_wait: float, threshold: float = 15.0) -> float:
    """Wait (up to ``max_wait`` s) for the machine to be idle; the busy % last measured.

    The machine may be shared: a test suite running next to the benchmark halves its figures.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy = busy_percent(1.0)
        if busy < threshold or time.monotonic() >= deadline:
            return busy
