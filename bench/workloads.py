"""The openfgs workloads: accept, end to end, dispatch latency and service memory.

Each function runs one repetition against a service of its own and returns its figures as a
``Sample`` (metric name → value); the command takes medians over repetitions.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import Client, closed_loop, fixed_count, run
from bench.procs import Resources
from bench.service import (
    Service,
    cpu_seconds,
    descendants,
    postgres_backends,
    pss_kb,
    rss_kb,
    service_pids,
    start_service,
)
from bench.stats import open_probe, percentile
from openfgs.client import FunctionGraphClient

Sample = dict[str, float]
EVENT = b'{"order_id": 12345, "item": "book", "quantity": 1}'
TERMINAL = ("SUCCESS", "FAIL", "DISCARD")


@dataclass(frozen=True)
class Scale:
    """How big each workload is: the full run, or the small mode the test suite uses."""

    repeat: int = 3
    clients: int = 64
    accept_seconds: float = 10.0
    accept_warmup: float = 2.0
    e2e_count: int = 20_000
    dispatch_count: int = 500
    dispatch_gap: float = 0.01
    timer_fires: int = 120
    memory_instances: int = 50
    memory_sleep: float = 3.0
    query_rows: int = 10_000_000
    query_samples: int = 200
    query_round_seconds: float = 25.0
    query_build_budget: float = 900.0

    @classmethod
    def small(cls) -> Scale:
        return cls(
            repeat=1,
            accept_seconds=1.0,
            accept_warmup=0.3,
            e2e_count=300,
            dispatch_count=20,
            timer_fires=4,
            memory_instances=4,
            memory_sleep=1.0,
            query_rows=50_000,
            query_samples=10,
            query_build_budget=120.0,
        )


# -- accept -----------------------------------------------------------------------------------


def accept(res: Resources, backend: str, scale: Scale) -> Sample:
    """Durable async accepts from ``scale.clients`` keep-alive connections (API node only)."""
    service = start_service(
        res,
        backend,
        worker=False,
        env={"OPENFGS_MAX_WAITING_PER_FUNCTION": "1000000000"},
        tag="accept",
    )
    try:
        service.deploy("noop", "noop")
        return _as_sample(run(_accept(service, scale)))
    finally:
        res.stop(service.process)


async def _accept(service: Service, scale: Scale) -> Sample:
    client = Client(service.port, service.credential)
    path = service.path("noop", "invocations-async")
    load = await closed_loop(
        client,
        lambda: client.request_bytes("POST", path, body=EVENT),
        clients=scale.clients,
        duration=scale.accept_seconds,
        warmup=scale.accept_warmup,
    )
    answered = sum(n for status, n in load.statuses.items() if status == 202)
    if answered == 0 or load.errors:
        raise RuntimeError(f"accept: answers {load.statuses}, {load.errors} broken connections")
    # A durable 202 has its row: every row the service holds was answered 202 or is in flight.
    stats = await _stats(client, service, "noop")
    # The ceiling of the HTTP layer on the same server: a page with no auth and no database.
    ceiling = await closed_loop(
        client,
        lambda: client.request_bytes("GET", "/docs", signed=False),
        clients=scale.clients,
        duration=min(scale.accept_seconds, 3.0),
        warmup=scale.accept_warmup / 2,
    )
    client.close()
    return {
        "rate": load.rate,
        "p50_ms": percentile(load.latencies_ms, 50),
        "p99_ms": percentile(load.latencies_ms, 99),
        "non_2xx": float(sum(n for s, n in load.statuses.items() if s != 202)),
        "stored": float(stats["accepted"]),
        "http_ceiling_rate": ceiling.rate,
    }


async def _stats(client: Client, service: Service, name: str) -> dict[str, int]:
    status, body = await client.call(client.request_bytes("GET", service.stats_path(name)))
    if status != 200:
        raise RuntimeError(f"stats: {status} {body[:200]!r}")
    result: dict[str, int] = json.loads(body)
    return result


def _as_sample(value: object) -> Sample:
    assert isinstance(value, dict)
    return value


# -- accept at 1 and 2 processes, and its CPU time -----------------------------------------
PROCESS_COUNTS = (1, 2)


def accept_processes(res: Resources, backend: str, scale: Scale) -> Sample:
    """Durable accepts at ``serve --processes 1`` and ``2`` (taking turns which goes first,
    repetition after repetition), and the CPU time per 202 of the service's processes —
    plus, on PostgreSQL, of the backends serving their connections.

    Keys: ``rate``/``cpu_us``/``p99_ms`` at 2 processes (the row set against Celery), and
    the same with ``_1`` at 1 process.
    """
    sample: Sample = {}
    order = PROCESS_COUNTS if _turn(backend) else tuple(reversed(PROCESS_COUNTS))
    for processes in order:
        service = start_service(
            res,
            backend,
            worker=False,
            env={"OPENFGS_MAX_WAITING_PER_FUNCTION": "1000000000"},
            tag=f"procs{processes}",
            processes=processes,
        )
        try:
            service.deploy("noop", "noop")
            figures = _as_sample(run(_accept_cpu(service, scale)))
        finally:
            res.stop(service.process)
        suffix = "" if processes == PROCESS_COUNTS[-1] else f"_{processes}"
        sample.update({f"{key}{suffix}": value for key, value in figures.items()})
    return sample


_turns: dict[str, int] = {}


def _turn(backend: str) -> bool:
    _turns[backend] = _turns.get(backend, 0) + 1
    return _turns[backend] % 2 == 1


async def _accept_cpu(service: Service, scale: Scale) -> Sample:
    client = Client(service.port, service.credential)
    path = service.path("noop", "invocations-async")
    window = asyncio.create_task(_cpu_window(service, scale.accept_warmup, scale.accept_seconds))
    load = await closed_loop(
        client,
        lambda: client.request_bytes("POST", path, body=EVENT),
        clients=scale.clients,
        duration=scale.accept_seconds,
        warmup=scale.accept_warmup,
    )
    cpu = await window
    client.close()
    answered = sum(n for status, n in load.statuses.items() if status == 202)
    if answered == 0 or load.errors:
        raise RuntimeError(f"accept: answers {load.statuses}, {load.errors} broken connections")
    return {
        "rate": load.rate,
        "p99_ms": percentile(load.latencies_ms, 99),
        "cpu_us": cpu["total"] / answered * 1e6,
        "service_cpu_us": cpu["service"] / answered * 1e6,
        # The primary's share: the process every accept passes through (its writer).
        "primary_cpu_us": cpu["primary"] / answered * 1e6,
        "database_cpu_us": cpu["database"] / answered * 1e6,
    }


async def _cpu_window(service: Service, warmup: float, duration: float) -> dict[str, float]:
    """CPU seconds spent in the measured window: the service's processes, the database's."""
    await asyncio.sleep(warmup)
    meter = _CpuMeter(service)
    await asyncio.sleep(duration)
    spent = meter.spent()
    return {**spent, "total": spent["service"] + spent["database"]}


# -- end to end -------------------------------------------------------------------------------


def end_to_end(res: Resources, backend: str, scale: Scale) -> Sample:
    """``scale.e2e_count`` async invocations of a no-op: first request → last terminal record."""
    service = start_service(res, backend, worker=True, tag="e2e")
    try:
        service.deploy("noop", "noop")
        return _as_sample(run(_end_to_end(service, scale)))
    finally:
        res.stop(service.process)


async def _wait_terminal(
    client: Client, service: Service, expected: int, timeout: float
) -> tuple[float, dict[str, int]]:
    """Poll the stats until ``expected`` records are terminal; when that was first seen."""
    deadline = time.perf_counter() + timeout
    while True:
        counts = await _stats(client, service, "noop")
        if sum(counts[s] for s in TERMINAL) >= expected:
            return time.perf_counter(), counts
        if time.perf_counter() > deadline:
            raise TimeoutError(f"end to end: {counts} after {timeout:.0f} s")
        await asyncio.sleep(0.05)  # 20 cheap reads a second beside thousands of accepts


async def _end_to_end(service: Service, scale: Scale) -> Sample:
    client = Client(service.port, service.credential)
    path = service.path("noop", "invocations-async")
    # One invocation first, so the code is unpacked and the function has a warm instance.
    await client.call(client.request_bytes("POST", path, body=EVENT))
    await _wait_terminal(client, service, 1, 60)
    poller = Client(service.port, service.credential)
    cpu = _CpuMeter(service)
    started = time.perf_counter()
    load_task = asyncio.create_task(
        fixed_count(
            client,
            lambda: client.request_bytes("POST", path, body=EVENT),
            clients=scale.clients,
            count=scale.e2e_count,
        )
    )
    finished, counts = await _wait_terminal(
        poller, service, scale.e2e_count + 1, timeout=max(120.0, scale.e2e_count / 50)
    )
    load = await load_task
    poller.close()
    client.close()
    if load.errors or set(load.statuses) != {202}:
        raise RuntimeError(f"end to end: answers {load.statuses}, {load.errors} broken")
    spent = cpu.spent()
    elapsed = finished - started
    per = 1e6 / scale.e2e_count
    return {
        "rate": scale.e2e_count / elapsed,
        "seconds": elapsed,
        "accept_seconds": load.seconds,
        "failed": float(counts["FAIL"] + counts["DISCARD"]),
        # CPU per invocation, machine-independent where rates are not: the service's processes
        # (instances included), the database server's backends, the load generator.
        "service_cpu_us": spent["service"] * per,
        "database_cpu_us": spent["database"] * per,
        "client_cpu_us": spent["client"] * per,
        "cpu_us": (spent["service"] + spent["database"] + spent["client"]) * per,
    }


class _CpuMeter:
    """CPU seconds from now on of a service's processes, of the PostgreSQL backends serving
    them, and of this process (the load generator). Processes that start meanwhile (instances,
    pooled connections) count from zero; processes that end meanwhile are not counted."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._before = self._read()
        self._client = time.process_time()

    def _read(self) -> tuple[dict[int, float], dict[int, float]]:
        pids = service_pids(self._service)
        backends = postgres_backends(pids) if self._service.backend == "postgres" else []
        return cpu_seconds(pids), cpu_seconds(backends)

    def spent(self) -> dict[str, float]:
        """Since the meter was made: ``service`` (all its processes), ``primary`` (the one
        started as the service), ``database`` and ``client``."""
        after = self._read()
        service, database = (
            sum(used - self._before[n].get(pid, 0.0) for pid, used in after[n].items())
            for n in (0, 1)
        )
        primary = self._service.process.pid
        return {
            "service": service,
            "primary": after[0].get(primary, 0.0) - self._before[0].get(primary, 0.0),
            "database": database,
            "client": time.process_time() - self._client,
        }


# -- dispatch latency -------------------------------------------------------------------------


def dispatch(res: Resources, backend: str, scale: Scale) -> Sample:
    """On an idle service: accept → handler start, over sequential invocations."""
    service = start_service(res, backend, worker=True, tag="dispatch")
    try:
        return _as_sample(run(_dispatch(service, scale)))
    finally:
        res.stop(service.process)


async def _dispatch(service: Service, scale: Scale) -> Sample:
    transport, probe, port = await open_probe()
    service.deploy("probe", "probe", {"BENCH_UDP_PORT": str(port)})
    client = Client(service.port, service.credential)
    path = service.path("probe", "invocations-async")
    from_accept, from_request = [], []
    try:
        for i in range(scale.dispatch_count + 10):  # the first ten warm the instance
            sent = time.time_ns()
            status, body = await client.call(client.request_bytes("POST", path, body=EVENT))
            accepted = time.time_ns()
            if status != 202:
                raise RuntimeError(f"dispatch: {status} {body[:200]!r}")
            started = await probe.wait(json.loads(body)["request_id"], timeout=30)
            if i >= 10:
                from_accept.append((started - accepted) / 1e6)
                from_request.append((started - sent) / 1e6)
            await asyncio.sleep(scale.dispatch_gap)  # let the record finish: the service idles
    finally:
        transport.close()
        client.close()
    return {
        "p50_ms": percentile(from_accept, 50),
        "p99_ms": percentile(from_accept, 99),
        "request_p50_ms": percentile(from_request, 50),
        "request_p99_ms": percentile(from_request, 99),
    }


# -- timers -----------------------------------------------------------------------------------


def timer(res: Resources, backend: str, scale: Scale) -> Sample:
    """On an idle service: a timer firing every second; its scheduled time → the accept of its
    invocation (the fire's own record, written in the same transaction), over
    ``scale.timer_fires`` fires."""
    service = start_service(res, backend, worker=True, tag="timer")
    try:
        service.deploy("ticked", "noop")
        client = FunctionGraphClient(service.endpoint, service.credential, timeout=60)
        try:
            client.json(
                "POST",
                f"/triggers/{service.urn('ticked')}",
                body={
                    "trigger_type_code": "TIMER",
                    "event_data": {
                        "name": "tick",
                        "schedule_type": "Cron",
                        "schedule": "* * * * * *",
                    },
                },
            )
        finally:
            client.close()
        deadline = time.monotonic() + scale.timer_fires * 1.5 + 30
        while len(delays := _fire_delays(service)) < scale.timer_fires + 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timer: {len(delays)} fires")
            time.sleep(0.5)
        kept = delays[2:]  # the first two may fire while the service still warms
        return {
            "fires": float(len(kept)),
            "p50_ms": percentile(kept, 50),
            "p99_ms": percentile(kept, 99),
            "max_ms": max(kept),
        }
    finally:
        res.stop(service.process)


def _fire_delays(service: Service) -> list[float]:
    """fired_at − scheduled_at of each fire, in scheduled order (ms)."""
    sql = "SELECT fired_at - scheduled_at FROM trigger_fires ORDER BY scheduled_at"
    if service.database_url:
        import psycopg

        with psycopg.connect(service.database_url) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        assert service.data_dir is not None
        with sqlite3.connect(f"file:{service.data_dir / 'openfgs.db'}?mode=ro", uri=True) as conn:
            rows = conn.execute(sql).fetchall()
    return [float(delay) for (delay,) in rows]


# -- memory -----------------------------------------------------------------------------------


def memory(res: Resources, backend: str, scale: Scale) -> Sample:
    """The service's RSS when idle, and with ``scale.memory_instances`` warm instances."""
    service = start_service(res, backend, worker=True, tag="memory")
    try:
        service.deploy("sleep", "sleep")
        time.sleep(1.0)
        idle = rss_kb(service.process.pid)
        return {"idle_rss_mb": idle / 1024, **_as_sample(run(_warm(service, scale)))}
    finally:
        res.stop(service.process)


async def _warm(service: Service, scale: Scale) -> Sample:
    """Start the instances with as many concurrent sync invocations that each sleep a while."""
    client = Client(service.port, service.credential)
    path = service.path("sleep", "invocations")
    body = json.dumps({"seconds": scale.memory_sleep}).encode()
    load = await fixed_count(
        client,
        lambda: client.request_bytes("POST", path, body=body),
        clients=scale.memory_instances,
        count=scale.memory_instances,
    )
    client.close()
    if set(load.statuses) != {200}:
        raise RuntimeError(f"memory: answers {load.statuses}")
    await asyncio.sleep(0.5)
    pid = service.process.pid
    processes = descendants(pid)
    helpers = [p for p, parent in processes if parent == pid and _is_template(p)]
    instances = [p for p, _ in processes if p not in helpers]
    return {
        "instances": float(len(instances)),
        "warm_rss_mb": rss_kb(pid) / 1024,
        "instances_pss_mb": sum(pss_kb(p) for p in instances) / 1024,
        "instances_rss_mb": sum(rss_kb(p) for p in instances) / 1024,
        "template_pss_mb": sum(pss_kb(p) for p in helpers) / 1024,
    }


def _is_template(pid: int) -> bool:
    """The runtime's template process (it forks the instances), if the runtime has one."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"template" in argv
