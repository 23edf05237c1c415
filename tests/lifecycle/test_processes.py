"""``openfgs serve --processes 2``: real processes on one port, on SQLite and PostgreSQL.

Connections are spread by the kernel (``SO_REUSEPORT``); every answer names its process in
``x-openfgs-process`` (0: the primary, 1: the front), which is how these tests see the spread
and pin a keep-alive client to one process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openfgs.client import FunctionGraphClient
from tests.e2e.conftest import Serve, ServeProcess, clean_env
from tests.support import BACKENDS, CREDENTIAL, b64, database_url, free_port, wait_for

pytestmark = pytest.mark.slow

HEADER = "x-openfgs-process"
TERMINAL = {"SUCCESS", "FAIL", "DISCARD"}
ECHO = "def handler(event, context):\n    return {'n': event.get('n'), 'v': 1}\n"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    processes = Serve(tmp_path)
    try:
        yield processes
    finally:
        for started in processes.processes:  # the primary and its fronts
            kill_group(started)
        processes.close()


_clients: list[FunctionGraphClient] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client_of(url: str) -> FunctionGraphClient:
    client = FunctionGraphClient(url, CREDENTIAL, timeout=30)
    _clients.append(client)
    return client


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    with database_url(request.param) as url:
        yield url


def kill_group(started: ServeProcess) -> None:
    try:
        os.killpg(started.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    started.process.wait(20)


def front_pids(primary: int) -> set[int]:
    """The primary's children that are fronts (function instances are children too)."""
    found = set()
    for pid in Path(f"/proc/{primary}/task/{primary}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"openfgs.cli.front" in cmdline:
            found.add(int(pid))
    return found


def answering(url: str) -> str | None:
    """Which process answers a new connection's ``/healthz`` (None: none does)."""
    try:
        response = httpx.get(f"{url}/healthz", timeout=5, headers={"connection": "close"})
    except httpx.HTTPError:
        return None
    return response.headers.get(HEADER) if response.status_code == 200 else None


def both_answer(url: str) -> bool:
    seen = {answering(url) for _ in range(40)}
    return {"0", "1"} <= seen


def pinned(url: str, process: str) -> FunctionGraphClient:
    """A client whose keep-alive connection is to ``process``."""
    for _ in range(200):
        client = FunctionGraphClient(url, CREDENTIAL, timeout=30)
        response = client._http.get("/healthz")
        if response.headers.get(HEADER) == process:
            _clients.append(client)
            return client
        client.close()
    raise AssertionError(f"no connection reached process {process}")


def start(serve: Serve, data_dir: Path, database: str, processes: int = 2) -> ServeProcess:
    started = serve.start(
        data_dir, processes=str(processes), database_url=database, worker_concurrency="8"
    )
    if processes > 1:
        wait_for(lambda: both_answer(started.url), 60, interval=0.2)
    return started


def create(client: FunctionGraphClient, name: str, code: str = ECHO) -> None:
    client.json(
        "POST",
        "/functions",
        body={
            "func_name": name,
            "package": "default",
            "runtime": "Python3.9",
            "handler": "index.handler",
            "memory_size": 128,
            "timeout": 30,
            "code_type": "inline",
            "func_code": {"file": b64(code)},
        },
    )


def accept(client: FunctionGraphClient, urn: str, n: int) -> tuple[str, str]:
    """An async invoke on a new connection: (request id, the process that answered)."""
    response = client.request(
        "POST",
        f"/functions/{urn}/invocations-async",
        body={"n": n},
        headers={"connection": "close"},
    )
    assert response.status_code == 202
    return response.json()["request_id"], response.headers[HEADER]


def status(client: FunctionGraphClient, request_id: str) -> str | None:
    found = client.json("GET", f"/async-invocations/{request_id}", section="openfgs")
    return found["status"] if found else None


def accepted_total(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("openfgs_async_accepted_total{")
    )


def test_accepts_spread_over_both_and_every_202_survives_kill_9(
    serve: Serve, tmp_path: Path, database: str
) -> None:
    data_dir = tmp_path / "data"
    first = start(serve, data_dir, database)
    client = client_of(first.url)
    create(client, "spread")
    urn = client.urn("spread")
    answers = [accept(client, urn, n) for n in range(120)]
    by_process = Counter(process for _, process in answers)
    assert by_process["0"] > 0 and by_process["1"] > 0, by_process
    # Whichever process answers /metrics counts the accepts of both.
    for _ in range(4):
        scraped = httpx.get(f"{first.url}/metrics", headers={"connection": "close"}).text
        assert accepted_total(scraped) == len(answers)
    kill_group(first)  # kill -9 of the primary and its front, right after the 202s

    second = start(serve, data_dir, database, processes=1)
    client = client_of(second.url)

    def all_terminal() -> bool:
        return all(status(client, request_id) in TERMINAL for request_id, _ in answers)

    wait_for(all_terminal, 60, interval=0.3)
    assert {status(client, request_id) for request_id, _ in answers} == {"SUCCESS"}
    second.stop()


def test_a_killed_front_is_started_again_and_the_service_keeps_answering(
    serve: Serve, tmp_path: Path
) -> None:
    started = start(serve, tmp_path / "data", "")
    (front,) = front_pids(started.process.pid)
    os.kill(front, signal.SIGKILL)
    client = client_of(started.url)
    create(client, "meanwhile")  # answered while the front is down (by the primary)
    restarted = wait_for(lambda: front_pids(started.process.pid) - {front}, 30, interval=0.1)
    wait_for(lambda: both_answer(started.url), 60, interval=0.2)
    again = pinned(started.url, "1")
    request_id, process = accept(again, again.urn("meanwhile"), 1)
    assert process == "1"
    wait_for(lambda: status(client, request_id) == "SUCCESS", 30, interval=0.2)
    assert f"openfgs.procs [pid {started.process.pid}]: front 1 ended" in started.stderr()
    started.stop()  # graceful: the primary stops its front first, and exits 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in restarted)


def test_changes_through_one_process_are_seen_through_the_other(
    serve: Serve, tmp_path: Path, database: str
) -> None:
    started = start(serve, tmp_path / "data", database)
    front, primary = pinned(started.url, "1"), pinned(started.url, "0")
    create(front, "changed")
    urn = front.urn("changed")
    # A sync invoke through the primary runs the function the front created.
    response = primary.request("POST", f"/functions/{urn}/invocations", body={"n": 7})
    assert response.json() == {"n": 7, "v": 1}  # v0: the function's result as it is
    code = ECHO.replace("'v': 1", "'v': 2")
    front.json(
        "PUT",
        f"/functions/{urn}/code",
        body={"code_type": "inline", "func_code": {"file": b64(code)}},
    )

    def updated() -> bool:  # the primary's function cache holds a row for 2 s at most
        result = primary.request("POST", f"/functions/{urn}/invocations", body={"n": 8})
        return bool(result.json() == {"n": 8, "v": 2})

    wait_for(updated, 20, interval=0.2)
    # Accepted through the primary, listed through the front.
    request_id, _ = accept_pinned(primary, urn)
    wait_for(lambda: status(front, request_id) == "SUCCESS", 30, interval=0.2)
    page = front.json("GET", f"/functions/{urn}/async-invocations")
    assert request_id in {record["request_id"] for record in page["invocations"]}
    started.stop()


def accept_pinned(client: FunctionGraphClient, urn: str) -> tuple[str, str]:
    response = client.request("POST", f"/functions/{urn}/invocations-async", body={})
    return response.json()["request_id"], response.headers[HEADER]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_fewer_than_one_process_is_a_usage_error(tmp_path: Path, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openfgs.cli", "serve", "--processes", value],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"OPENFGS_PROCESSES: at least 1, not {value}" in done.stderr
    assert not (tmp_path / ".openfgs").exists()


def test_two_processes_from_a_fresh_folder_with_no_other_flag(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(port=str(port))  # the port only: this machine may run something on 8000
    process = subprocess.Popen(
        [sys.executable, "-m", "openfgs.cli", "serve", "--processes", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: both_answer(url), 60, interval=0.2)
        assert (tmp_path / ".openfgs" / "openfgs.db").exists()
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0
        assert b"export OPENFGS_ACCESS_KEY=" in out  # the first run, printed once
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(20)
