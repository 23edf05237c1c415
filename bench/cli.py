"""``python -m bench run``, ``profile`` and ``simulate``: see docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from bench import peers as peer_venv
from bench.machine import describe, git_commit, wait_quiet
from bench.procs import (
    RESULTS,
    ROOT,
    Resources,
    postgres_available,
    redis_available,
    terminate_on_sigterm,
)
from bench.query import query
from bench.report import Report, Results, render, repetition_counts
from bench.service import BACKENDS
from bench.simulate import add_arguments as add_simulate_arguments
from bench.workloads import (
    Sample,
    Scale,
    accept,
    accept_processes,
    dispatch,
    end_to_end,
    memory,
    timer,
)

WORKLOADS = ("accept", "procs", "e2e", "dispatch", "timer", "query", "memory", "runtime")
PEER_WORKLOADS = {"accept": "enqueue", "procs": "enqueue", "e2e": "e2e", "dispatch": "dispatch"}
RUNNERS: dict[str, Callable[[Resources, str, Scale], Sample]] = {
    "accept": accept,
    "procs": accept_processes,
    "e2e": end_to_end,
    "dispatch": dispatch,
    "timer": timer,
    "memory": memory,
}
BUSY_NOTE_PERCENT = 15.0


def _csv(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)}")
        return items

    return parse


def _scale(args: argparse.Namespace) -> Scale:
    scale = Scale.small() if args.small else Scale()
    overrides = {
        "repeat": args.repeat,
        "accept_seconds": args.accept_seconds,
        "e2e_count": args.e2e_count,
        "dispatch_count": args.dispatch_count,
        "query_rows": args.query_rows,
    }
    return replace(scale, **{k: v for k, v in overrides.items() if v is not None})


class Run:
    """One benchmark run: what to measure, and what was measured."""

    def __init__(self, args: argparse.Namespace, res: Resources) -> None:
        self.args = args
        self.res = res
        self.scale = _scale(args)
        self.backends: list[str] = args.backend
        self.peers: list[str] = [] if args.no_peers else list(peer_venv.PEERS)
        self.results: Results = {}
        self.notes: list[str] = []
        self.failed = False
        # Seconds the whole run may spend waiting for other work on the machine to stop.
        self.quiet_budget = (
            args.quiet_wait if args.quiet_wait is not None else (0.0 if args.small else 120.0)
        )

    def log(self, text: str) -> None:
        print(f"bench: {text}", file=sys.stderr, flush=True)

    def measure(self, workload: str, who: str, rep: int, call: Callable[[], object]) -> None:
        busy = 0.0
        if self.quiet_budget > 0 or not self.args.small:
            waited = time.monotonic()
            busy = wait_quiet(min(10.0, self.quiet_budget))
            self.quiet_budget = max(0.0, self.quiet_budget - (time.monotonic() - waited))
        began = time.monotonic()
        try:
            outcome = call()
        except Exception as exc:
            self.failed = True
            self.notes.append(f"{workload} on {who} failed: {type(exc).__name__}: {exc}")
            self.log(f"{workload} {who} #{rep + 1} FAILED\n{traceback.format_exc()}")
            return
        samples = outcome if isinstance(outcome, list) else [outcome]
        for sample in samples:
            sample["busy_before_percent"] = busy
        self.results.setdefault((workload, who), []).extend(samples)
        shown = {k: round(v, 2) for k, v in samples[0].items()}
        self.log(f"{workload} {who} #{rep + 1} ({time.monotonic() - began:.0f} s): {shown}")
        if busy > BUSY_NOTE_PERCENT:
            self.notes.append(
                f"{workload} on {who}, repetition {rep + 1}: the machine was {busy:.0f} % busy "
                "with other work just before it"
            )

    def run_workload(self, workload: str) -> None:
        for backend in self.backends:
            if workload == "query":
                self.measure("query", backend, 0, lambda b=backend: query(self.res, b, self.scale))
                continue
            runner = RUNNERS[workload]
            for rep in range(self.scale.repeat):
                self.measure(
                    workload,
                    backend,
                    rep,
                    lambda b=backend, r=runner: r(self.res, b, self.scale),  # type: ignore[misc]
                )
        peer_workload = PEER_WORKLOADS.get(workload)
        if peer_workload is None:
            return
        for peer in self.peers:
            if (peer_workload, peer) in self.results:
                continue  # accept and procs set the same enqueue figures against their rows
            procs = 0 if not self.args.small else 2
            for rep in range(self.scale.repeat):
                self.measure(
                    peer_workload,
                    peer,
                    rep,
                    lambda p=peer, n=procs: peer_venv.run_peer(
                        self.res, p, peer_workload, self.scale, n
                    ),
                )
                done = self.results.get((peer_workload, peer), [])
                if peer_workload == "enqueue" and done and "procs" in done[-1]:
                    procs = int(done[-1]["procs"])  # the best layout found by the first run

    def runtime(self) -> tuple[str, list[tuple[str, str]]]:
        """Run bench/runtime_bench.py (cold start, the pool) and bench/warm_overhead.py (warm
        sync invocation over a trivial endpoint); keep what they print."""
        small = self.args.small
        outputs, rows = [], []
        for module, extra in (
            ("bench.runtime_bench", ["--small"] if small else []),
            ("bench.warm_overhead", ["--rounds", "1", "--per-round", "20"] if small else []),
        ):
            text, found = self._run_script(module, extra)
            outputs.append(text)
            rows += found
        return "\n\n".join(outputs), rows

    def _run_script(self, module: str, extra: list[str]) -> tuple[str, list[tuple[str, str]]]:
        argv = [sys.executable, "-m", module, *extra]
        self.log("runtime: " + " ".join(argv[1:]))
        try:
            result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            self.failed = True
            self.notes.append(f"runtime: {module} ran longer than 15 min")
            return "", []
        if result.returncode != 0:
            self.failed = True
            self.notes.append(f"runtime: {module} exited {result.returncode}")
            return result.stdout + result.stderr[-3000:], []
        rows, text = [], []
        for line in result.stdout.splitlines():
            parsed = _json_object(line)
            if parsed is None:
                text.append(line)
            else:  # a machine-readable line: {"label": value, ...} becomes table rows
                rows += [(str(k), str(v)) for k, v in parsed.items()]
        return "\n".join(text), rows


def _json_object(line: str) -> dict[str, object] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def cmd_run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    workloads = args.only or list(WORKLOADS)
    if "postgres" in args.backend and not postgres_available():
        print("bench: PostgreSQL does not answer at 127.0.0.1:5432", file=sys.stderr)
        return 2
    with terminate_on_sigterm():
        res = Resources(keep_logs=args.keep_logs)
        run = Run(args, res)
        try:
            if run.peers and not redis_available():
                run.notes.append("peers skipped: Redis does not answer at 127.0.0.1:6379")
                run.peers = []
            if run.peers and any(w in PEER_WORKLOADS for w in workloads):
                peer_venv.ensure_venv()
            machine = describe(peer_venv.versions() if run.peers else {})
            runtime_output, runtime_rows = "", []
            for workload in workloads:
                if workload == "runtime":
                    runtime_output, runtime_rows = run.runtime()
                else:
                    run.run_workload(workload)
        finally:
            res.close()
            if args.keep_logs:
                run.log(f"the services' logs are kept in {res.workdir}")
    _query_notes(run)
    if git_commit() != machine["openfgs"]:
        run.notes.append(
            f"openfgs changed while the benchmark ran ({machine['openfgs']} → {git_commit()}): "
            "each service ran the code as it was when it started"
        )
    report = Report(
        machine=machine,
        results=run.results,
        backends=args.backend,
        peers=run.peers,
        notes=run.notes,
        runtime_output=runtime_output,
        runtime_rows=runtime_rows,
        command="python -m bench " + shlex.join(sys.argv[1:]),
        seconds=time.monotonic() - began,
    )
    text = render(report)
    print(text, flush=True)
    _save(args, run.scale, report, text)
    run.log(f"repetitions: {repetition_counts(run.results)}")
    return 1 if run.failed else 0


def _query_notes(run: Run) -> None:
    for backend in run.backends:
        samples = run.results.get(("query", backend), [])
        if not samples:
            continue
        first = samples[0]
        made = "reused from the cache" if first.get("cached") else "built"
        run.notes.append(
            f"query on {backend}: {first['rows']:,.0f} records {made} "
            f"({first['build_seconds']:.0f} s to build); counts: default "
            f"{first['default_count']:,.0f}, 7-day + status {first['status_7d_count']:,.0f}, "
            f"deep page {first['deep_page_count']:,.0f}"
        )
        if first["rows"] < run.scale.query_rows:
            run.notes.append(
                f"query on {backend}: the build was cut short by its time box "
                f"({first['rows']:,.0f} of {run.scale.query_rows:,} records)"
            )


def _save(args: argparse.Namespace, scale: Scale, report: Report, text: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "small" if args.small else "full"
    (RESULTS / f"last-{name}.md").write_text(text + "\n")
    payload = {
        "machine": report.machine,
        "notes": report.notes,
        "results": {f"{w}/{b}": samples for (w, b), samples in report.results.items()},
        "runtime_output": report.runtime_output,
        "command": report.command,
        "seconds": report.seconds,
        "scale": asdict(scale),
    }
    path = Path(args.json) if args.json else RESULTS / f"last-{name}.json"
    path.write_text(json.dumps(payload, indent=1))


def cmd_profile(args: argparse.Namespace) -> int:
    from bench.profile import profile_accept, profile_e2e

    profile = profile_accept if args.workload == "accept" else profile_e2e
    with terminate_on_sigterm():
        res = Resources()
        try:
            print(profile(res, args.backend, args.seconds, args.clients))
        finally:
            res.close()
    return 0


def cmd_statements(args: argparse.Namespace) -> int:
    from bench.statements import count_statements

    with terminate_on_sigterm():
        count_statements(args.count, args.clients)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the workloads and print the table")
    run.add_argument("--small", action="store_true", help="tiny sizes: checks the harness runs")
    run.add_argument("--only", type=_csv(WORKLOADS), help=f"some of {','.join(WORKLOADS)}")
    run.add_argument(
        "--backend", type=_csv(BACKENDS), default=list(BACKENDS), help="sqlite,postgres"
    )
    run.add_argument("--no-peers", action="store_true", help="skip Celery and RQ")
    run.add_argument("--repeat", type=int, help="repetitions (3; small: 1)")
    run.add_argument("--accept-seconds", type=float, help="accept measurement window (10)")
    run.add_argument("--e2e-count", type=int, help="end-to-end invocations (20000)")
    run.add_argument("--dispatch-count", type=int, help="dispatch invocations (500)")
    run.add_argument("--query-rows", type=int, help="records in the query store (10000000)")
    run.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds the run may spend in all waiting for an idle machine, at most 10 before "
        "each repetition (120; small: 0)",
    )
    run.add_argument("--keep-logs", action="store_true", help="keep the services' logs")
    run.add_argument("--json", help="where to write the raw results (bench/results/last-*.json)")
    run.set_defaults(func=cmd_run)
    profile = sub.add_parser("profile", help="py-spy the server under a load")
    profile.add_argument("--workload", choices=("accept", "e2e"), default="accept")
    profile.add_argument("--backend", choices=BACKENDS, default="sqlite")
    profile.add_argument("--seconds", type=float, default=10.0)
    profile.add_argument("--clients", type=int, default=64)
    profile.set_defaults(func=cmd_profile)
    statements = sub.add_parser(
        "statements", help="PostgreSQL statements and commits per invocation (pg_stat_statements)"
    )
    statements.add_argument("--count", type=int, default=5000)
    statements.add_argument("--clients", type=int, default=64)
    statements.set_defaults(func=cmd_statements)
    simulate = sub.add_parser(
        "simulate", help="API and worker processes on one PostgreSQL under a steady load"
    )
    simulate.set_defaults(func=add_simulate_arguments(simulate))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
