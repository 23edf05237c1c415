"""The peers' tasks: a no-op and a probe that reports when it started, for Celery and for RQ.

Imported inside the peers' own virtualenv (``bench/results/peers-venv``) by the Celery worker
(``-A bench.peer_tasks``), the RQ workers (``bench.peer_tasks.noop``) and the peer driver; it
imports nothing of openfgs.
"""

from __future__ import annotations

import os
import socket
import time

from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
QUEUE = "bench"

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    # Enough pooled producer connections for every client thread of a process.
    broker_pool_limit=64,
    worker_hijack_root_logger=False,
)
_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def noop() -> None:
    """The no-op job (RQ)."""


def probe(port: int, token: str) -> None:
    """Tell the driver, over UDP, when this job started (``time.time_ns()``)."""
    started = time.time_ns()
    _udp.sendto(f"{token} {started}".encode(), ("127.0.0.1", port))


@app.task(name="bench.noop")
def celery_noop() -> None:
    """The no-op task whose result the end-to-end run waits for."""


@app.task(name="bench.noop_fire", ignore_result=True)
def celery_noop_fire() -> None:
    """The no-op task the enqueue run sends: no result, so no result subscription per call."""


@app.task(name="bench.probe", ignore_result=True)
def celery_probe(port: int, token: str) -> None:
    probe(port, token)
