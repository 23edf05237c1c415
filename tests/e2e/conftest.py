"""Real ``openfgs serve`` processes on loopback: started per test, killed at teardown.

Each process gets its own port, data directory and output files, and an environment with no
``OPENFGS_*`` variable but the ones the test asks for.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from openfgs.models import Credential
from tests.support import CREDENTIAL, free_port, wait_for

STARTUP_SECONDS = 30.0
STOP_SECONDS = 20.0
SERVE = (sys.executable, "-m", "openfgs.cli", "serve")
_EXPORT = re.compile(r"^\s*export (OPENFGS_[A-Z_]+)=(\S*)\s*$", re.MULTILINE)


def clean_env(credential: Credential | None = None, **settings: str) -> dict[str, str]:
    """This process's environment without any ``OPENFGS_*``, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENFGS_")}
    env["PYTHONUNBUFFERED"] = "1"
    if credential is not None:
        env["OPENFGS_PROJECT_ID"] = credential.project_id
        env["OPENFGS_ACCESS_KEY"] = credential.access_key
        env["OPENFGS_SECRET_KEY"] = credential.secret_key
    env.update({f"OPENFGS_{name.upper()}": value for name, value in settings.items()})
    return env


def openfgs(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one ``openfgs`` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "openfgs.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class ServeProcess:
    """One ``openfgs serve`` child process and where its output goes."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def exports(self) -> dict[str, str]:
        """The ``export OPENFGS_…=…`` lines printed on stdout."""
        return dict(_EXPORT.findall(self.stdout()))

    def printed_credential(self) -> Credential | None:
        exports = self.exports()
        if not exports:
            return None
        return Credential(
            exports["OPENFGS_PROJECT_ID"],
            exports["OPENFGS_ACCESS_KEY"],
            exports["OPENFGS_SECRET_KEY"],
        )

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = STARTUP_SECONDS) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"openfgs serve exited with {self.process.returncode}:\n"
                    f"{self.stdout()}\n{self.stderr()}"
                )
            return self.healthy()

        wait_for(ready, timeout, interval=0.05)

    def wait_exit(self, timeout: float = STOP_SECONDS) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM) and check the process ended as it should."""
        self.process.send_signal(signal.SIGTERM)
        assert self.wait_exit() == 0, self.stderr()

    def kill(self) -> None:
        """``kill -9`` the service process alone, as a crash would."""
        self.process.kill()
        self.process.wait(STOP_SECONDS)


@dataclass
class Serve:
    """Starts ``openfgs serve`` processes; every one still running is killed at teardown."""

    tmp_path: Path
    processes: list[ServeProcess] = field(default_factory=list)

    def spawn(
        self, data_dir: Path, *, credential: Credential | None = CREDENTIAL, **settings: str
    ) -> ServeProcess:
        """Start a process without waiting for it to serve."""
        port = free_port()
        number = len(self.processes)
        out = self.tmp_path / f"serve-{number}.out"
        err = self.tmp_path / f"serve-{number}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [*SERVE, "--data-dir", str(data_dir), "--port", str(port)],
                env=clean_env(credential, poll_interval="0.2", **settings),
                cwd=self.tmp_path,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        started = ServeProcess(process, f"http://127.0.0.1:{port}", data_dir, out, err)
        self.processes.append(started)
        return started

    def start(
        self, data_dir: Path, *, credential: Credential | None = CREDENTIAL, **settings: str
    ) -> ServeProcess:
        """Start a process and wait until ``/healthz`` answers."""
        started = self.spawn(data_dir, credential=credential, **settings)
        started.wait_healthy()
        return started

    def close(self) -> None:
        for started in self.processes:
            if started.process.poll() is None:
                started.process.kill()
                started.process.wait(STOP_SECONDS)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    processes = Serve(tmp_path)
    try:
        yield processes
    finally:
        processes.close()
