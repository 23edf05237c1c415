"""The async lifecycle's invariant under chaos.

Thousands of async invocations run through successes, failures, flaky retries, timeouts and
cancels, with a ``kill -9`` of the service in the middle. At every sample, every request that
got a 202 is listed exactly once; at the end every one is terminal, with the status its
handler's behaviour calls for, and no attempt started after its record became terminal.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from openfgs.client import ApiFailure, FunctionGraphClient
from tests.support import CREDENTIAL, create_function, sdk_client, wait_for

from .conftest import Serve, ServeProcess

pytestmark = pytest.mark.slow
TERMINAL = {"SUCCESS", "FAIL", "DISCARD"}
HANDLER = """
import os, random, time, uuid

def handler(event, context):
    with open(os.path.join(os.environ["RUNS_DIR"],
                           context.getRequestID() + "." + uuid.uuid4().hex), "w") as mark:
        mark.write(repr(time.time()))
    mode = event["mode"]
    if mode == "fail":
        raise RuntimeError("always fails")
    if mode == "flaky" and random.random() < 0.6:
        raise RuntimeError("fails sometimes")
    if mode == "timeout":
        while True:
            pass
    if mode == "slow":
        time.sleep(0.3)
    return {"mode": mode}
"""
MODES = ["ok"] * 60 + ["fail"] * 12 + ["flaky"] * 15 + ["slow"] * 12 + ["timeout"] * 1


def shared_dir() -> Path:
    """A folder instances can write to: they may run as an unprivileged user, who cannot
    traverse pytest's private temporary folders."""
    path = Path(tempfile.mkdtemp(prefix="openfgs-runs-"))
    os.chmod(path, 0o1777)
    return path


class Load:
    """Sends async invokes and remembers what each accepted request was asked to do."""

    def __init__(self, url: str, urn: str) -> None:
        self.url, self.urn = url, urn
        self.accepted: dict[str, str] = {}
        self.lock = threading.Lock()

    def send(self, count: int, seed: int) -> None:
        rng = random.Random(seed)
        client = FunctionGraphClient(self.url, CREDENTIAL, timeout=30)
        try:
            for _ in range(count):
                mode = rng.choice(MODES)
                reply = client.json(
                    "POST", f"/functions/{self.urn}/invocations-async", body={"mode": mode}
                )
                with self.lock:
                    self.accepted[reply["request_id"]] = mode
        finally:
            client.close()

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.accepted)


def list_all(client: FunctionGraphClient, urn: str, *, quiet: bool = True) -> dict[str, str]:
    """Every record, paging with the window's end fixed.

    While requests are being accepted, a record whose accept time precedes the end bound may
    commit between two pages and shift the offsets by one (offset paging, as FunctionGraph
    has it); only a listing taken with no accepts under way (``quiet``) must be free of repeats.
    """
    end = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    window = {"query_begin_time": "2000-01-01T00:00:00", "query_end_time": end, "limit": "500"}
    listed: dict[str, str] = {}
    marker = 0
    while True:
        page = client.json(
            "GET", f"/functions/{urn}/async-invocations", query={**window, "marker": str(marker)}
        )
        for record in page["invocations"]:
            assert not quiet or record["request_id"] not in listed, "a record was listed twice"
            listed[record["request_id"]] = record["status"]
        if not page["invocations"]:
            return listed
        marker = page["next_marker"]


def check_every_accepted_is_listed(client: FunctionGraphClient, load: Load, urn: str) -> None:
    before = load.snapshot()
    listed = list_all(client, urn, quiet=False)
    missing = [rid for rid in before if rid not in listed]
    assert not missing, f"{len(missing)} accepted requests are not listed"


def start(serve: Serve, data_dir: Path, runs: Path) -> ServeProcess:
    return serve.start(
        data_dir, retry_backoff_seconds="0.05", worker_concurrency="16", lease_seconds="60"
    )


def run_phase(load: Load, client: FunctionGraphClient, urn: str, count: int, seed: int) -> None:
    senders = [threading.Thread(target=load.send, args=(count, seed + i)) for i in range(3)]
    for sender in senders:
        sender.start()
    while any(sender.is_alive() for sender in senders):
        check_every_accepted_is_listed(client, load, urn)
    for sender in senders:
        sender.join()


def cancel_some(client: FunctionGraphClient, urn: str, ids: list[str]) -> set[str]:
    canceled = set()
    for request_id in ids:
        try:
            client.request("POST", f"/functions/{urn}/cancel", body={"request_id": request_id})
            canceled.add(request_id)
        except ApiFailure as exc:
            assert exc.status == 400 and exc.error_code == "FSS.0400"  # it had ended already
    return canceled


def test_every_accepted_request_ends_once_and_never_runs_after(
    serve: Serve, tmp_path: Path
) -> None:
    runs = shared_dir()
    data_dir = tmp_path / "data"
    service = start(serve, data_dir, runs)
    sdk = sdk_client(service.url)
    create_function(sdk, "chaos", HANDLER, timeout=3)
    client = FunctionGraphClient(service.url, CREDENTIAL)
    urn = client.urn("chaos")
    client.request(
        "PUT",
        f"/functions/{urn}/config",
        body={
            "func_name": "chaos",
            "runtime": "Python3.9",
            "timeout": 3,
            "handler": "index.handler",
            "memory_size": 128,
            "user_data": json.dumps({"RUNS_DIR": str(runs)}),
        },
    )
    client.request(
        "PUT",
        f"/functions/{urn}/async-invoke-config",
        body={
            "max_async_retry_attempts": 2,
            "max_async_event_age_in_seconds": 3600,
        },
    )
    load = Load(service.url, urn)

    run_phase(load, client, urn, 400, seed=1)
    canceled = cancel_some(client, urn, list(load.snapshot())[-60:])
    service.kill()  # mid-run: many WAIT, some RUNNING
    client.close()

    service = start(serve, data_dir, runs)
    client = FunctionGraphClient(service.url, CREDENTIAL)
    load.url = service.url
    check_every_accepted_is_listed(client, load, urn)
    run_phase(load, client, urn, 300, seed=100)
    canceled |= cancel_some(client, urn, list(load.snapshot())[-40:])

    def settled() -> dict[str, str] | None:
        check_every_accepted_is_listed(client, load, urn)
        listed = list_all(client, urn)
        return listed if all(listed[rid] in TERMINAL for rid in load.accepted) else None

    listed = wait_for(settled, timeout=240, interval=0.5)
    assert len(load.accepted) == 2100
    assert set(listed) == set(load.accepted)
    for request_id, mode in load.accepted.items():
        expected = {
            "ok": {"SUCCESS"},
            "slow": {"SUCCESS"},
            "flaky": {"SUCCESS", "FAIL"},
            "fail": {"FAIL"},
            "timeout": {"FAIL"},
        }[mode]
        if request_id in canceled:
            expected = expected | {"FAIL", "DISCARD"}
        assert listed[request_id] in expected, (request_id, mode, listed[request_id])
    client.close()
    service.stop()
    assert_no_run_after_terminal(data_dir / "openfgs.db", runs)


def assert_no_run_after_terminal(database: Path, runs: Path) -> None:
    with sqlite3.connect(database) as conn:
        ended = dict(conn.execute("SELECT request_id, end_time FROM invocations"))
    late = []
    for mark in runs.iterdir():
        request_id = mark.name.split(".")[0]
        # A mark is empty when its instance was killed between creating and writing it (the
        # service was killed and its instances with it): its creation time stands for it.
        text = mark.read_text()
        started_ms = (float(text) if text else mark.stat().st_mtime) * 1000
        if started_ms > ended[request_id] + 1:
            late.append(request_id)
    assert not late, f"{len(late)} attempts started after their record ended: {late[:3]}"
