"""Where the server's time goes: py-spy and per-thread CPU, under the accept or e2e load.

``python -m bench profile [--workload accept] [--backend sqlite] [--seconds 10]``:

- ``accept`` starts an API-only service, measures the accept rate without a profiler, then
  again while py-spy samples the server, and prints the CPU each server thread used (cores),
  the functions the main thread spends its samples in (self and inclusive), and the rate of a
  trivial endpoint (``GET /docs``) on the same server;
- ``e2e`` starts a service with its worker and samples it while 20,000 no-op invocations are
  accepted and run, with the CPU of its threads and of the instances.

The collapsed stacks are kept in ``bench/results/profile-<workload>-<backend>.txt``
(flamegraph.pl input).
"""

from __future__ import annotations

import collections
import os
import subprocess
import time
from pathlib import Path

from bench import peers
from bench.loadgen import Client, closed_loop, fixed_count, run
from bench.procs import RESULTS, Resources
from bench.service import Service, cpu_ticks, descendants, start_service, stat_fields
from bench.workloads import EVENT

CLOCK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds used so far by each thread of ``pid``."""
    used = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = stat_fields(task / "stat")
        if fields is not None:
            used[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK
    return used


def cores_by_thread(
    before: dict[int, float], after: dict[int, float], wall: float, names: dict[int, str]
) -> tuple[dict[int, float], list[str]]:
    """Cores each thread used between two ``thread_cpu`` readings, and one line per name."""
    busy = {tid: (after.get(tid, 0) - before.get(tid, 0)) / wall for tid in after}
    by_name: collections.Counter[str] = collections.Counter()
    for tid, cores in busy.items():
        by_name[names.get(tid, "(no Python frames sampled)")] += cores
    lines = [f"  {cores:4.2f}  {name}" for name, cores in by_name.most_common() if cores > 0.005]
    return busy, lines


def summarize(raw: Path, top: int = 25) -> tuple[dict[int, str], str]:
    """Thread names by id, and the main thread's top functions (self and inclusive)."""
    names: dict[int, str] = {}
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        head = frames[0]  # "thread (1234): MainThread"
        tid = int(head[head.index("(") + 1 : head.index(")")])
        name = head.split(":", 1)[1].strip() if ":" in head else ""
        names[tid] = name
        if name != "MainThread" or len(frames) < 2:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n
    lines = [f"main thread: {total} samples", "", "self (top functions):"]
    lines += [f"  {100 * n / total:5.1f} %  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive (frames below the ASGI entry, top):"]
    skip = (
        "runpy",
        "openfgs/cli/",
        "uvicorn/server.py",
        "asyncio/runners.py",
        "uvicorn/_compat.py",
    )
    shown = [(f, n) for f, n in inclusive.most_common() if not any(s in f for s in skip)]
    lines += [f"  {100 * n / total:5.1f} %  {f}" for f, n in shown[: top * 2]]
    return names, "\n".join(lines)


def spy_argv(spy: Path, pid: int, seconds: float, raw: Path) -> list[str]:
    """py-spy sampling ``pid`` at 100 Hz for ``seconds``, every thread, collapsed stacks."""
    return [
        str(spy),
        "record",
        f"--pid={pid}",
        f"--duration={int(seconds)}",
        "--rate=100",
        "--format=raw",
        f"--output={raw}",
        "--threads",
        "--nonblocking",
    ]


async def _rate(service: Service, seconds: float, clients: int, path: str | None = None) -> float:
    client = Client(service.port, service.credential)
    target = path or service.path("noop", "invocations-async")
    if path is None:
        make = lambda: client.request_bytes("POST", target, body=EVENT)  # noqa: E731
    else:
        make = lambda: client.request_bytes("GET", target, signed=False)  # noqa: E731
    result = await closed_loop(client, make, clients=clients, duration=seconds, warmup=1.0)
    client.close()
    return result.rate


def profile_accept(res: Resources, backend: str, seconds: float, clients: int) -> str:
    spy = peers.py_spy()
    service = start_service(
        res,
        backend,
        worker=False,
        env={"OPENFGS_MAX_WAITING_PER_FUNCTION": "1000000000"},
        tag="profile",
    )
    service.deploy("noop", "noop")
    pid = service.process.pid
    plain = _as_float(run(_rate(service, seconds, clients)))
    before, began = thread_cpu(pid), time.monotonic()
    _as_float(run(_rate(service, seconds, clients)))
    after, wall = thread_cpu(pid), time.monotonic() - began
    raw = RESULTS / f"profile-accept-{backend}.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen(
        spy_argv(spy, pid, seconds, raw),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    profiled = _as_float(run(_rate(service, seconds - 1.5, clients)))
    recorder.wait(60)
    trivial = _as_float(run(_rate(service, min(seconds, 5.0), clients, "/docs")))
    res.stop(service.process)
    names, functions = summarize(raw)
    busy, threads = cores_by_thread(before, after, wall, names)
    return "\n".join(
        [
            f"accept on {backend}, {clients} clients: {plain:,.0f} req/s without the profiler, "
            f"{profiled:,.0f} req/s under py-spy (100 Hz)",
            f"same server, GET /docs (no auth, no database): {trivial:,.0f} req/s",
            f"server CPU by thread (cores, without the profiler, total {sum(busy.values()):.2f}):",
            *threads,
            "",
            functions,
            "",
            f"collapsed stacks: {raw}",
        ]
    )


def _as_float(value: object) -> float:
    assert isinstance(value, float)
    return value


def profile_e2e(res: Resources, backend: str, seconds: float, clients: int) -> str:
    """py-spy on a service (with its worker) while it accepts and runs no-op invocations."""
    spy = peers.py_spy()
    service = start_service(res, backend, worker=True, tag="profile_e2e")
    service.deploy("noop", "noop")
    pid = service.process.pid
    raw = RESULTS / f"profile-e2e-{backend}.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    count = 20_000

    async def drive() -> float:
        client = Client(service.port, service.credential)
        path = service.path("noop", "invocations-async")
        load = await fixed_count(
            client,
            lambda: client.request_bytes("POST", path, body=EVENT),
            clients=clients,
            count=count,
        )
        client.close()
        return load.seconds

    before, began = thread_cpu(pid), time.monotonic()
    children_before = sum(_process_cpu(p) for p, _ in descendants(pid))
    recorder = subprocess.Popen(
        spy_argv(spy, pid, seconds, raw),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    accept_seconds = _as_float(run(drive()))
    recorder.wait(120)
    after, wall = thread_cpu(pid), time.monotonic() - began
    children_cpu = sum(_process_cpu(p) for p, _ in descendants(pid)) - children_before
    res.stop(service.process)
    names, functions = summarize(raw)
    _, threads = cores_by_thread(before, after, wall, names)
    return "\n".join(
        [
            f"end to end on {backend}: {count:,} accepted in {accept_seconds:.1f} s while the "
            f"worker ran them; py-spy for the first {seconds:.0f} s",
            f"server CPU by thread over {wall:.1f} s (cores, under the profiler):",
            *threads,
            f"  {children_cpu / wall:4.2f}  instances and template (child processes)",
            "",
            functions,
            "",
            f"collapsed stacks: {raw}",
        ]
    )


def _process_cpu(pid: int) -> float:
    return (cpu_ticks(pid) or 0) / CLOCK
