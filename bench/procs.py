"""Everything the benchmark starts: processes, temporary directories and PostgreSQL schemas.

All of it is registered in one :class:`Resources` object and undone by its ``close()``, which
the command calls on every exit path (normal end, error, Ctrl-C, SIGTERM). Processes are
started in their own session so that one ``killpg`` also ends what they started (a Celery
worker's pool, an openfgs instance that outlived its parent).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Another server (one with pg_stat_statements loaded, for ``bench statements``) through
# OPENFGS_BENCH_DATABASE_URL.
PG_BASE_URL = os.environ.get(
    "OPENFGS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 7


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy, or raise at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_BASE_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def redis_available() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def schema_url(schema: str) -> str:
    """A URL whose connections use ``schema`` first (libpq's ``options`` parameter)."""
    return f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"


class Process:
    """One started child process with its output going to a log file."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path, name: str) -> None:
        self.popen = popen
        self.log = log
        self.name = name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process (then its whole session); SIGKILL whatever is left at the end."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


class Resources:
    """What one benchmark run started or created; ``close()`` undoes all of it."""

    def __init__(self, keep_logs: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="openfgs-bench-"))
        self.keep_logs = keep_logs
        self._processes: list[Process] = []
        self._schemas: list[str] = []
        self._cleanups: list[Callable[[], None]] = []
        self._counter = 0

    def path(self, name: str) -> Path:
        self._counter += 1
        return self.workdir / f"{self._counter:03d}-{name}"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> Process:
        log = self.path(f"{name}.log")
        handle: IO[bytes] = open(log, "wb")  # noqa: SIM115 - owned by the child from here on
        try:
            popen = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        process = Process(popen, log, name)
        self._processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        if process in self._processes:
            self._processes.remove(process)

    def new_schema(self, tag: str) -> str:
        """A fresh, empty PostgreSQL schema, dropped by ``close()``."""
        self._counter += 1
        schema = f"openfgs_bench_{os.getpid()}_{self._counter}_{tag}"
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self._schemas.append(schema)
        return schema

    def drop_schema(self, schema: str) -> None:
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if schema in self._schemas:
            self._schemas.remove(schema)

    def on_close(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def close(self) -> None:
        for process in reversed(self._processes):
            with contextlib.suppress(Exception):
                process.stop(grace=5.0)
        self._processes.clear()
        for schema in list(self._schemas):
            with contextlib.suppress(Exception):
                self.drop_schema(schema)
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanups.clear()
        if not self.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so ``finally`` blocks run (Ctrl-C already does)."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
