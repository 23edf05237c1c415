"""Runtime benchmark: cold starts, warm invocations and memory, per runtime family.

    python -m bench.runtime_bench [--small] [--only python,node,custom]

For each runtime and each way of starting instances it measures, through
``InstancePool.invoke`` as the service calls it:

- cold start: from the call that finds no instance to the handler's first line (the handler
  returns the monotonic clock — ``time.monotonic()``, ``process.hrtime`` — one clock for all
  processes on Linux), over ``--instances`` functions that share one code package (so
  unpacking is not counted); a custom runtime's bash bootstrap has no such clock, so for it
  only the whole call is given;
- warm invocation: the whole ``invoke()`` of a no-op handler on a warm instance;
- memory with ``--instances`` warm instances: the RSS of this process (the service), and the
  sum of the instances' RSS and PSS (PSS shares pages fairly among the processes using them,
  so the sum is what the instances really cost), plus the template's.

Launchers: ``fork`` (the template: a forked Python standby, or a started node standby) and
``spawn`` (a new interpreter per instance, which for Node.js then becomes node).
``--small`` runs a tiny version in a few seconds, so the test suite can check that it still
runs. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openfgs.runtime import FunctionSpec, InstancePool
from openfgs.runtime.families import code_dir_name

HANDLER = b"import time\n\ndef handler(event, context):\n    return time.monotonic()\n"
NODE_HANDLER = b"exports.handler = async () => Number(process.hrtime.bigint()) / 1e9;\n"
# FunctionGraph's sample custom runtime (bash and curl), answering "0": no clock to report.
CUSTOM_BOOTSTRAP = b"""#!/bin/bash
set -euo pipefail
while true; do
  HEADERS="$(mktemp)"
  curl -sS -LD "$HEADERS" -o /dev/null "http://$RUNTIME_API_ADDR/v1/runtime/invocation/request"
  REQUEST_ID=$(grep -Fi x-cff-request-id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  curl -sS -X POST "http://$RUNTIME_API_ADDR/v1/runtime/invocation/response/$REQUEST_ID" -d 0
done
"""


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


@dataclass(frozen=True)
class Case:
    """One runtime's function: its runtime string, handler and code package."""

    runtime: str
    handler: str
    code_type: str
    code: bytes
    clock: bool = True  # the handler returns the monotonic clock

    @property
    def digest(self) -> str:
        raw = hashlib.sha512(self.code).hexdigest()
        return code_dir_name(raw, self.code_type, self.runtime)


CASES = {
    "python": Case("Python3.9", "index.handler", "inline", HANDLER),
    "node": Case("Node.js20.15", "index.handler", "inline", NODE_HANDLER),
    "custom": Case(
        "Custom", "bootstrap", "zip", _zip({"bootstrap": CUSTOM_BOOTSTRAP}), clock=False
    ),
}
LAUNCHERS = {"python": ("fork", "spawn"), "node": ("fork", "spawn"), "custom": ("fork",)}
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


def spec(name: str, case: Case) -> FunctionSpec:
    return FunctionSpec(
        urn=f"urn:fss:bench:proj:function:default:{name}:latest",
        project_id="proj",
        package="default",
        name=name,
        version="latest",
        runtime=case.runtime,
        handler=case.handler,
        code_type=case.code_type,
        code_digest=case.digest,
        memory_size=128,
        timeout=30,
    )


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
    work_dir: Path, case: Case, fork: bool, instances: int, warm_calls: int, settle: float
) -> Figures:
    figures = Figures()
    pool = InstancePool(work_dir, fork=fork, idle_seconds=3600)

    async def load_code() -> bytes:
        return case.code

    async def invoke(name: str, request_id: str) -> str:
        result = await pool.invoke(spec(name, case), b"{}", request_id, load_code)
        if not result.ok:
            raise RuntimeError(f"{name}: {result.error_message}\n{result.log}")
        return result.result if case.clock else "nan"

    try:
        await invoke("warmup", "warmup")  # starts the template and unpacks the code
        figures.isolation = pool.sandbox.describe() if pool.sandbox is not None else ""
        await asyncio.sleep(settle)
        for n in range(instances):
            name = f"fn{n}"
            started, entered, ended = await timed(functools.partial(invoke, name, name))
            figures.cold_ms.append((entered - started) * 1000)
            figures.cold_call_ms.append((ended - started) * 1000)
            # Standbys are made while the template is idle, as between a service's cold starts.
            await asyncio.sleep(settle / 4)
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


async def main_async(
    runtimes: list[str], instances: int, warm_calls: int, settle: float
) -> dict[str, Figures]:
    base = Path(tempfile.mkdtemp(prefix="openfgs-bench-"))
    os.chmod(base, 0o711)  # instances running as users of their own must pass through
    try:
        return {
            f"{runtime} {launcher}": await run_pool(
                base / f"{runtime}-{launcher}",
                CASES[runtime],
                launcher == "fork",
                instances,
                warm_calls,
                settle,
            )
            for runtime in runtimes
            for launcher in LAUNCHERS[runtime]
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
    parser.add_argument(
        "--only", default=",".join(CASES), help=f"runtimes, comma-separated ({','.join(CASES)})"
    )
    args = parser.parse_args(argv)
    runtimes = [r for r in args.only.split(",") if r]
    unknown = set(runtimes) - set(CASES)
    if unknown:
        parser.error(f"unknown runtimes: {', '.join(sorted(unknown))}")
    instances = args.instances or (5 if args.small else 50)
    warm_calls = args.warm_calls or (200 if args.small else 2000)
    settle = 0.2 if args.small else SETTLE_SECONDS
    results = run(main_async(runtimes, instances, warm_calls, settle))
    user = "a user per function" if os.geteuid() == 0 else "the invoking user"
    first = next(iter(results.values()))
    print(
        f"openfgs runtime benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"instances run as {user} ({first.isolation}), {instances} cold starts, "
        f"{warm_calls} warm calls"
    )
    print(table(results, instances))
    rows = {}
    for name, figures in results.items():
        key = "cold_call_ms" if name.startswith("custom") else "cold_ms"
        rows[f"{name}: cold start p50 (ms)"] = round(percentile(getattr(figures, key), 0.5), 2)
        rows[f"{name}: warm invocation p50 (µs)"] = round(percentile(figures.warm_ms, 0.5) * 1000)
    print(json.dumps(rows, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
