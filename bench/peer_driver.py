"""Drive one peer (Celery or RQ) through one workload; run inside the peers' virtualenv.

    python -m bench.peer_driver {celery,rq} {enqueue,e2e,dispatch} [options]

Prints one line of JSON with the figures. Workers it needs (a Celery prefork worker with
concurrency 2, or two RQ workers) are started here, in this process's session, and stopped
before it returns; the benchmark command kills the whole session if anything goes wrong.
The Redis database (``BENCH_REDIS_URL``, db 7) is flushed before and after.

Clients are ``procs`` processes of ``clients / procs`` threads each: both libraries are
blocking, and one Python process of 64 threads is bound by its GIL.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.peer_tasks import QUEUE, REDIS_URL
from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STALL_SECONDS = 60.0


# -- the two peers ----------------------------------------------------------------------------


class Peer:
    """How to enqueue, start workers and see results, for one library."""

    name = ""

    def sender(self, kind: str) -> Callable[[], str]:
        """A function that enqueues one job (``noop`` or ``fire``) and returns its id."""
        raise NotImplementedError

    def send_probe(self, port: int, token: str) -> None:
        raise NotImplementedError

    def start_workers(self) -> list[subprocess.Popen[bytes]]:
        raise NotImplementedError

    def done_count(self, ids: list[str]) -> int:
        """How many of ``ids`` have a terminal result."""
        raise NotImplementedError


class CeleryPeer(Peer):
    name = "celery"

    def sender(self, kind: str) -> Callable[[], str]:
        from bench.peer_tasks import celery_noop, celery_noop_fire

        task = celery_noop_fire if kind == "fire" else celery_noop
        return lambda: str(task.apply_async().id)

    def send_probe(self, port: int, token: str) -> None:
        from bench.peer_tasks import celery_probe

        celery_probe.apply_async((port, token))

    def start_workers(self) -> list[subprocess.Popen[bytes]]:
        argv = [
            str(BIN / "celery"),
            "-A",
            "bench.peer_tasks",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            QUEUE,
        ]
        return [_spawn(argv)]

    def done_count(self, ids: list[str]) -> int:
        conn = redis.Redis.from_url(REDIS_URL)
        total = 0
        for at in range(0, len(ids), 5000):
            keys = [f"celery-task-meta-{i}" for i in ids[at : at + 5000]]
            total += int(conn.exists(*keys))
        return total


class RqPeer(Peer):
    name = "rq"

    def _queue(self) -> Any:
        from rq import Queue

        return Queue(QUEUE, connection=redis.Redis.from_url(REDIS_URL))

    def sender(self, kind: str) -> Callable[[], str]:
        from bench.peer_tasks import noop

        queue = self._queue()
        return lambda: str(queue.enqueue(noop).id)

    def send_probe(self, port: int, token: str) -> None:
        from bench.peer_tasks import probe

        if not hasattr(self, "_probe_queue"):
            self._probe_queue = self._queue()
        self._probe_queue.enqueue(probe, port, token)

    def start_workers(self) -> list[subprocess.Popen[bytes]]:
        # SimpleWorker runs jobs in the worker process: RQ's default forks once per job.
        argv = [
            str(BIN / "rq"),
            "worker",
            "--url",
            REDIS_URL,
            "-w",
            "rq.worker.SimpleWorker",
            "--quiet",
            QUEUE,
        ]
        return [_spawn(argv), _spawn(argv)]

    def done_count(self, ids: list[str]) -> int:
        from rq.registry import FailedJobRegistry, FinishedJobRegistry

        conn = redis.Redis.from_url(REDIS_URL)
        finished = FinishedJobRegistry(QUEUE, connection=conn).count
        failed = FailedJobRegistry(QUEUE, connection=conn).count
        return int(finished + failed)


PEERS: dict[str, type[Peer]] = {"celery": CeleryPeer, "rq": RqPeer}


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr
    )


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)


def _wait_ready(peer: Peer) -> None:
    """One job through the fresh workers, so they are up and warm."""
    job = peer.sender("noop")()
    deadline = time.monotonic() + 60
    while peer.done_count([job]) < 1:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{peer.name}: workers did not run a job within 60 s")
        time.sleep(0.05)


# -- load from processes of threads -----------------------------------------------------------


def _client_process(
    peer_name: str,
    kind: str,
    threads: int,
    start_at: float,
    begin: float,
    end: float,
    quota: int,
    out: Any,
) -> None:
    """One client process: ``threads`` threads enqueue until ``end`` or until ``quota`` sent."""
    peer = PEERS[peer_name]()
    senders = [peer.sender(kind) for _ in range(threads)]
    lock = threading.Lock()
    latencies: list[float] = []
    ids: list[str] = []
    remaining = [quota]
    errors = [0]

    def loop(send: Callable[[], str]) -> None:
        while True:
            with lock:
                if quota and remaining[0] <= 0:
                    return
                remaining[0] -= 1
            sent = time.perf_counter()
            if sent >= end:
                return
            try:
                job = send()
            except Exception:
                errors[0] += 1
                continue
            done = time.perf_counter()
            if sent >= begin and done <= end:
                latencies.append((done - sent) * 1000)
                if quota:
                    ids.append(job)

    while time.perf_counter() < start_at:
        time.sleep(0.001)
    cpu: list[float] = []
    sent_all = threading.Event()
    meter = threading.Thread(target=_cpu_in_window, args=(begin, end, _own_cpu, cpu, sent_all))
    workers = [threading.Thread(target=loop, args=(s,)) for s in senders]
    for worker in [meter, *workers]:
        worker.start()
    for worker in workers:
        worker.join()
    sent_all.set()
    meter.join()
    out.send({"latencies": latencies, "ids": ids, "errors": errors[0], "cpu": sum(cpu)})
    out.close()


def _own_cpu() -> float:
    """User + system CPU seconds of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _redis_cpu() -> float:
    """User + system CPU seconds of the Redis server (its ``INFO cpu``)."""
    info = redis.Redis.from_url(REDIS_URL).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _cpu_in_window(
    begin: float, end: float, read: Callable[[], float], into: list[float], done: threading.Event
) -> None:
    """Append the CPU seconds ``read`` counts between ``begin`` and ``end`` (perf_counter),
    or until ``done`` is set (a load of a fixed count: nothing is appended before ``begin``)."""
    if done.wait(max(0.0, begin - time.perf_counter())):
        return
    before = read()
    done.wait(max(0.0, end - time.perf_counter()))
    into.append(read() - before)


def _load(
    peer: Peer, kind: str, procs: int, clients: int, warmup: float, duration: float, quota: int
) -> dict[str, Any]:
    """Run ``clients`` closed-loop clients over ``procs`` processes; merge what they saw."""
    context = multiprocessing.get_context("fork")
    start_at = time.perf_counter() + 0.5  # every process connected and waiting
    begin, end = start_at + warmup, start_at + warmup + duration
    pipes, children = [], []
    for n in range(procs):
        threads = clients // procs + (1 if n < clients % procs else 0)
        share = quota // procs + (1 if n < quota % procs else 0) if quota else 0
        receive, send = context.Pipe(duplex=False)
        child = context.Process(
            target=_client_process,
            args=(peer.name, kind, threads, start_at, begin, end, share, send),
        )
        child.start()
        send.close()
        pipes.append(receive)
        children.append(child)
    redis_cpu: list[float] = []
    loaded = threading.Event()
    meter = threading.Thread(
        target=_cpu_in_window, args=(begin, end, _redis_cpu, redis_cpu, loaded)
    )
    meter.start()
    merged: dict[str, Any] = {"latencies": [], "ids": [], "errors": 0, "start_at": start_at}
    merged["client_cpu"] = 0.0
    for receive in pipes:
        part = receive.recv()
        merged["latencies"] += part["latencies"]
        merged["ids"] += part["ids"]
        merged["errors"] += part["errors"]
        merged["client_cpu"] += part["cpu"]
    for child in children:
        child.join()
    loaded.set()
    meter.join()
    merged["redis_cpu"] = sum(redis_cpu)
    return merged


# -- the workloads ----------------------------------------------------------------------------


def enqueue(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """Closed-loop enqueue rate of a no-op (no worker running), best client layout."""
    layouts = [args.procs] if args.procs else [1, 2, 4]
    best: dict[str, Any] = {}
    for procs in layouts:
        _flush()
        trial = len(layouts) > 1
        result = _load(
            peer,
            "fire",
            procs,
            args.clients,
            args.warmup / 2 if trial else args.warmup,
            min(args.duration, 3.0) if trial else args.duration,
            0,
        )
        seconds = min(args.duration, 3.0) if trial else args.duration
        rate = len(result["latencies"]) / seconds
        if not best or rate > best["rate"]:
            best = {"rate": rate, "procs": procs, "result": result}
    if len(layouts) > 1:  # measure the winner for the full duration
        _flush()
        result = _load(peer, "fire", best["procs"], args.clients, args.warmup, args.duration, 0)
        best["result"], best["rate"] = result, len(result["latencies"]) / args.duration
    latencies = best["result"]["latencies"]
    enqueued = max(len(latencies), 1)
    client_cpu, redis_cpu = best["result"]["client_cpu"], best["result"]["redis_cpu"]
    return {
        "rate": best["rate"],
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "procs": float(best["procs"]),
        "errors": float(best["result"]["errors"]),
        # CPU per enqueue in the window: the client processes' and the Redis server's.
        "cpu_us": (client_cpu + redis_cpu) / enqueued * 1e6,
        "database_cpu_us": redis_cpu / enqueued * 1e6,
    }


def end_to_end(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """``count`` no-op jobs from 64 clients, first enqueue → last result stored."""
    workers = peer.start_workers()
    try:
        _wait_ready(peer)
        result = _load(peer, "noop", args.procs or 2, args.clients, 0.0, 3600.0, args.count)
        started, ids = result["start_at"], result["ids"]
        if len(ids) != args.count:
            raise RuntimeError(f"{peer.name}: {len(ids)} of {args.count} enqueued")
        expected = args.count + (1 if peer.name == "rq" else 0)  # RQ counts the warm-up job
        done, progressed, last = 0, time.monotonic(), -1
        while (done := peer.done_count(ids)) < expected:
            if done != last:
                progressed, last = time.monotonic(), done
            elif time.monotonic() - progressed > STALL_SECONDS:
                alive = [w.poll() is None for w in workers]
                raise TimeoutError(
                    f"{peer.name}: {done} of {expected} results, none new for "
                    f"{STALL_SECONDS:.0f} s (workers alive: {alive})"
                )
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        _stop(workers)
    return {"rate": args.count / elapsed, "seconds": elapsed}


def dispatch(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """On idle workers: enqueue → task start, over sequential jobs."""
    workers = peer.start_workers()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(30)
    port = udp.getsockname()[1]
    from_enqueue, from_call = [], []
    try:
        _wait_ready(peer)
        for i in range(args.count + 10):  # the first ten warm up
            token = f"t{i}"
            sent = time.time_ns()
            peer.send_probe(port, token)
            enqueued = time.time_ns()
            while True:
                data = udp.recv(256).decode().split()
                if data[0] == token:
                    break
            started = int(data[1])
            if i >= 10:
                from_enqueue.append((started - enqueued) / 1e6)
                from_call.append((started - sent) / 1e6)
            time.sleep(args.gap)
    finally:
        udp.close()
        _stop(workers)
    return {
        "p50_ms": percentile(from_enqueue, 50),
        "p99_ms": percentile(from_enqueue, 99),
        "request_p50_ms": percentile(from_call, 50),
        "request_p99_ms": percentile(from_call, 99),
    }


def _flush() -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("workload", choices=["enqueue", "e2e", "dispatch"])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--procs", type=int, default=0, help="client processes (0: try 1, 2, 4)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--gap", type=float, default=0.01)
    args = parser.parse_args()
    peer = PEERS[args.peer]()
    run = {"enqueue": enqueue, "e2e": end_to_end, "dispatch": dispatch}[args.workload]
    _flush()
    try:
        figures = run(peer, args)
    finally:
        _flush()
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
