"""Runtime benchmark: cold starts (template fork and spawn), warm invocations, memory.

    python -m bench.runtime_bench [--small]

For each way of starting instances it measures, through ``InstancePool.invoke`` as the
service calls it:

- cold start: from the call that finds no instance to the handler's first line (the handler
  returns ``time.monotonic()``, which is one clock for all processes on Linux), over
  ``--instances`` functions that share one code package (so unpacking is not counted);
- warm invocation: the whole ``invoke()`` of a no-op handler on a warm instance;
- memory with ``--instances`` warm instances: the RSS of this process (the service), and the
  sum of the instances' RSS and PSS (PSS shares pages fairly among the processes using them,
  so the sum is what the instances really cost), plus the template's.

``--small`` runs a tiny version in a few seconds, so the test suite can check that it still
runs. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openfgs.runtime import FunctionSpec, InstancePool

HANDLER = b"import time\n\ndef handler(event, context):\n    return time.monotonic()\n"
DIGEST = hashlib.sha512(HANDLER).hexdigest()
# Time for the template to finish importing what it preloads, as it has in a running service.
SETTLE_SECONDS = 1.0


@dataclass
class Figures:
    """What one way of starting instances measured; times in milliseconds, memory in MB."""

    cold_ms: list[float] = field(default_factory=list)
    cold_call_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)
    isolation: str = ""  # what the pool's sandbox gave its instances


def spec(name: str) -> FunctionSpec:
    return FunctionSpec(
        urn=f"urn:fss:bench:proj:function:default:{name}:latest",
        project_id="proj",
        package="default",
        name=name,
        version="latest",
        runtime="Python3.9",
        handler="index.handler",
        code_type="inline",
        code_digest=DIGEST,
        memory_size=128,
        timeout=30,
    )


async def load_code() -> bytes:
    return HANDLER


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def memory_of(pid: int) -> tuple[float, float]:
    """RSS and PSS of one process, in MB (0 when it is gone)."""
    sizes = {"Rss:": 0.0, "Pss:": 0.0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                key, _, rest = line.partition(" ")
                if key in sizes:
                    sizes[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return sizes["Rss:"], sizes["Pss:"]


def measure_memory(pool: InstancePool) -> dict[str, float]:
    instances = [memory_of(pid) for pid in pool.instance_pids()]
    template = memory_of(pool.template_pid) if pool.template_pid else (0.0, 0.0)
    service_rss, service_pss = memory_of(os.getpid())
    return {
        "service RSS": service_rss,
        "service PSS": service_pss,
        "instances RSS (sum)": sum(rss for rss, _ in instances),
        "instances PSS (sum)": sum(pss for _, pss in instances),
        "template RSS": template[0],
        "template PSS": template[1],
    }


async def timed(call: Callable[[], Awaitable[str]]) -> tuple[float, float, float]:
    """(start, handler entry, end) of one invocation, on the monotonic clock."""
    started = time.monotonic()
    entered = float(await call())
    return started, entered, time.monotonic()


async def run_pool(
    work_dir: Path, fork: bool, instances: int, warm_calls: int, settle: float
) -> Figures:
    figures = Figures()
    pool = InstancePool(work_dir, fork=fork, idle_seconds=3600)

    async def invoke(name: str, request_id: str) -> str:
        result = await pool.invoke(spec(name), b"{}", request_id, load_code)
        if not result.ok:
            raise RuntimeError(f"{name}: {result.error_message}\n{result.log}")
        return result.result

    try:
        await invoke("warmup", "warmup")  # starts the template and unpacks the code
        figures.isolation = pool.sandbox.describe() if pool.sandbox is not None else ""
        await asyncio.sleep(settle)
        for n in range(instances):
            name = f"fn{n}"
            started, entered, ended = await timed(functools.partial(invoke, name, name))
            figures.cold_ms.append((entered - started) * 1000)
            figures.cold_call_ms.append((ended - started) * 1000)
        figures.memory = measure_memory(pool)
        for n in range(warm_calls):
            started, _, ended = await timed(functools.partial(invoke, "fn0", f"warm{n}"))
            figures.warm_ms.append((ended - started) * 1000)
    finally:
        await pool.close()
    return figures


def table(results: dict[str, Figures], instances: int) -> str:
    names = list(results)
    rows: list[tuple[str, list[str]]] = []

    def timing(label: str, pick: Callable[[Figures], list[float]], scale: float = 1.0) -> None:
        for name, fraction in (("p50", 0.5), ("p99", 0.99)):
            cells = [f"{percentile(pick(results[n]), fraction) * scale:.2f}" for n in names]
            rows.append((f"{label} {name}", cells))

    timing("cold start, need → handler entry (ms)", lambda f: f.cold_ms)
    timing("cold invocation, whole call (ms)", lambda f: f.cold_call_ms)
    timing("warm invocation, whole call (µs)", lambda f: f.warm_ms, 1000)
    for key in results[names[0]].memory:
        cells = [f"{results[n].memory[key]:.1f}" for n in names]
        rows.append((f"{key} with {instances} warm instances (MB)", cells))
    width = max(len(label) for label, _ in rows)
    lines = [f"{'measure':<{width}}  " + "  ".join(f"{n:>9}" for n in names)]
    lines += [f"{label:<{width}}  " + "  ".join(f"{c:>9}" for c in cells) for label, cells in rows]
    return "\n".join(lines)


async def main_async(instances: int, warm_calls: int, settle: float) -> dict[str, Figures]:
    base = Path(tempfile.mkdtemp(prefix="openfgs-bench-"))
    os.chmod(base, 0o711)  # instances running as users of their own must pass through
    try:
        return {
            launcher: await run_pool(
                base / launcher, launcher == "fork", instances, warm_calls, settle
            )
            for launcher in ("fork", "spawn")
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(coroutine: Coroutine[Any, Any, dict[str, Figures]]) -> dict[str, Figures]:
    """On uvloop, as the service runs, when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", action="store_true", help="a tiny run, in a few seconds")
    parser.add_argument("--instances", type=int, help="cold starts and warm instances (50)")
    parser.add_argument("--warm-calls", type=int, help="warm invocations (2000)")
    args = parser.parse_args(argv)
    instances = args.instances or (5 if args.small else 50)
    warm_calls = args.warm_calls or (200 if args.small else 2000)
    settle = 0.2 if args.small else SETTLE_SECONDS
    results = run(main_async(instances, warm_calls, settle))
    user = "a user per function" if os.geteuid() == 0 else "the invoking user"
    print(
        f"openfgs runtime benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"instances run as {user} ({results['fork'].isolation}), {instances} cold starts, "
        f"{warm_calls} warm calls"
    )
    print(table(results, instances))
    spread = statistics.pstdev(results["fork"].cold_ms) if instances > 1 else 0.0
    print(f"(fork cold start standard deviation: {spread:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
