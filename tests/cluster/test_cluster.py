"""Two API nodes and two workers as real processes against one PostgreSQL database.

Thousands of async invocations are spread over both API nodes; one worker and one API node are
killed with SIGKILL mid-load. Afterwards every request that got a 202 is listed, terminal, and
was never run by two workers at once; both API nodes give the same answer.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openfgs.client import ClientError, FunctionGraphClient
from openfgs.models import Credential
from tests.support import database_url as fresh_database
from tests.support import free_port, wait_for

CRED = Credential("0123456789abcdef0123456789abcdef", "CLUSTERACCESSKEY0001", "c" * 40)
TERMINAL = {"SUCCESS", "FAIL", "DISCARD"}
HANDLER = """
import os, time, uuid

def handler(event, context):
    mark = os.path.join(os.environ["RUNS_DIR"], context.getRequestID() + "." + uuid.uuid4().hex)
    start = time.time()
    time.sleep(event.get("sleep", 0.01))
    with open(mark, "w") as out:
        out.write(f"{start} {time.time()}")
    return {"ok": True}
"""

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_database("postgres") as url:
        yield url


def shared_dir() -> Path:
    """A folder instances can write to: they may run as an unprivileged user, who cannot
    traverse pytest's private temporary folders."""
    path = Path(tempfile.mkdtemp(prefix="openfgs-runs-"))
    os.chmod(path, 0o1777)
    return path


class Node:
    """One ``openfgs`` process."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        with log.open("w") as out:  # the child writes to its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "openfgs.cli", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[dict[str, Any]]:
    runs = shared_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENFGS_")}
    env.update(
        OPENFGS_DATABASE_URL=database_url,
        OPENFGS_PROJECT_ID=CRED.project_id,
        OPENFGS_ACCESS_KEY=CRED.access_key,
        OPENFGS_SECRET_KEY=CRED.secret_key,
        OPENFGS_LEASE_SECONDS="3",
        OPENFGS_POLL_INTERVAL="0.5",
        OPENFGS_WORKER_CONCURRENCY="4",
    )
    nodes: list[Node] = []
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        args = ["serve", "--no-worker", "--port", str(port), "--data-dir", str(tmp_path / f"a{i}")]
        nodes.append(Node(args, env, tmp_path / f"api{i}.log"))
    for i in range(2):
        nodes.append(
            Node(["worker", "--data-dir", str(tmp_path / f"w{i}")], env, tmp_path / f"w{i}.log")
        )
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for url in urls:
        wait_for(functools.partial(_healthy, url), 60, 0.1, f"{url} healthy")
    try:
        yield {"urls": urls, "nodes": nodes, "runs": runs}
    finally:
        for node in nodes:
            node.kill()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _deploy(client: FunctionGraphClient, runs: Path) -> str:
    client.json(
        "POST",
        "/functions",
        body={
            "func_name": "marker",
            "package": "default",
            "runtime": "Python3.9",
            "timeout": 30,
            "handler": "index.handler",
            "memory_size": 128,
            "code_type": "inline",
            "user_data": json.dumps({"RUNS_DIR": str(runs)}),
            "func_code": {"file": base64.b64encode(HANDLER.encode()).decode()},
        },
    )
    return client.urn("marker")


def _send(urls: list[str], urn: str, count: int, accepted: list[str]) -> None:
    """Like a client behind a load balancer: a node that fails is skipped for the next."""
    clients = [FunctionGraphClient(url, CRED, timeout=10) for url in urls]
    try:
        for i in range(count):
            for client in (clients[i % 2], clients[(i + 1) % 2]):
                try:
                    reply = client.json("POST", f"/functions/{urn}/invocations-async", body={})
                except ClientError:
                    continue  # no 202, nothing promised: try the other node
                accepted.append(reply["request_id"])
                break
    finally:
        for client in clients:
            client.close()


def _list_all(url: str, urn: str) -> dict[str, str]:
    client = FunctionGraphClient(url, CRED, timeout=30)
    seen: dict[str, str] = {}
    marker = 0
    begin = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3600))
    try:
        while True:
            page = client.json(
                "GET",
                f"/functions/{urn}/async-invocations",
                query={"marker": str(marker), "limit": "500", "query_begin_time": begin},
            )
            for record in page["invocations"]:
                assert record["request_id"] not in seen, "a record listed twice"
                seen[record["request_id"]] = record["status"]
            if not page["invocations"]:
                return seen
            marker = page["next_marker"]
    finally:
        client.close()


def test_cluster_survives_killed_nodes(cluster: dict[str, Any]) -> None:
    urls, nodes, runs = cluster["urls"], cluster["nodes"], cluster["runs"]
    admin = FunctionGraphClient(urls[0], CRED)
    urn = _deploy(admin, runs)
    admin.close()
    per_thread, accepted = 600, list[str]()
    senders = [
        threading.Thread(
            target=_send, args=(urls[i % 2 :] + urls[: i % 2], urn, per_thread, accepted)
        )
        for i in range(4)
    ]
    for sender in senders:
        sender.start()
    wait_for(lambda: len(accepted) > 800, 60, 0.1, "a first part accepted")
    nodes[2].kill()  # a worker, mid-run
    nodes[1].kill()  # the second API node, mid-load
    for sender in senders:
        sender.join(120)
    assert len(accepted) >= 2300, len(accepted)

    def all_terminal() -> dict[str, str] | None:
        listed = _list_all(urls[0], urn)
        done = all(listed.get(rid) in TERMINAL for rid in accepted)
        return listed if done else None

    listed = wait_for(all_terminal, 180, 0.1, "every accepted request terminal")
    assert set(accepted) <= set(listed)
    assert all(listed[rid] == "SUCCESS" for rid in accepted), {
        s: sum(1 for v in listed.values() if v == s) for s in set(listed.values())
    }
    _assert_never_concurrent(runs)
    # Either API node gives the same answer: start the killed one again and compare.
    restarted = Node(nodes[1].args, nodes[1].env, nodes[1].log.with_suffix(".2.log"))
    nodes.append(restarted)
    wait_for(lambda: _healthy(urls[1]), 60, 0.1, "restarted API node healthy")
    assert _list_all(urls[1], urn) == _list_all(urls[0], urn) == listed


def _assert_never_concurrent(runs: Path) -> None:
    by_request: dict[str, list[tuple[float, float]]] = {}
    for mark in runs.iterdir():
        text = mark.read_text()
        if not text:  # its worker was killed between creating and writing it: no span known
            continue
        start, end = map(float, text.split())
        by_request.setdefault(mark.name.split(".")[0], []).append((start, end))
    for request_id, spans in by_request.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"{request_id} ran on two workers at once"
