"""The one table: medians of repeated runs, targets, peers and ratios, as Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.stats import median
from bench.workloads import Sample

Results = dict[tuple[str, str], list[Sample]]  # (workload, backend or peer) → repetitions


@dataclass(frozen=True)
class Metric:
    """One row of the table for each backend."""

    workload: str
    key: str
    label: str
    higher_is_better: bool = True
    target: float | None = None
    target_backends: tuple[str, ...] = ("sqlite", "postgres")
    peer_workload: str | None = None  # the peers' workload with the same key, if any
    digits: int = 1
    ratio_of: str | None = None  # a ratio row: openfgs ÷ this peer on ``key``


METRICS: tuple[Metric, ...] = (
    Metric("accept", "rate", "accepts/s, 64 clients, durable", True, 5000, ("sqlite",), "enqueue", 0),
    Metric("accept", "rate", "accepts/s ÷ Celery enqueues/s", True, 3, ("sqlite",), "enqueue", 2, "celery"),
    Metric("accept", "p50_ms", "accept latency p50 (ms)", False, None, (), "enqueue"),
    Metric("accept", "p99_ms", "accept latency p99 (ms)", False, 50, ("sqlite",), "enqueue"),
    Metric("accept", "http_ceiling_rate", "same server, GET /docs req/s (no auth, no DB)", True, None, (), None, 0),
    Metric("procs", "rate_1", "accepts/s at 1 process, 64 clients, durable", True, None, (), None, 0),
    Metric("procs", "rate", "accepts/s at 2 processes, 64 clients, durable", True, None, (), "enqueue", 0),
    Metric("procs", "rate", "accepts/s at 2 processes ÷ Celery enqueues/s", True, 3, ("sqlite", "postgres"), "enqueue", 2, "celery"),
    Metric("procs", "p99_ms", "accept latency p99 at 2 processes (ms)", False, 50, ("sqlite",), "enqueue"),
    Metric("procs", "cpu_us_1", "CPU µs per 202 at 1 process (service + database)", False, None, (), None, 0),
    Metric("procs", "cpu_us", "CPU µs per 202 at 2 processes (service + database); peers: CPU µs per enqueue (client + Redis)", False, None, (), "enqueue", 0),
    Metric("procs", "cpu_us", "CPU µs per 202 ÷ Celery CPU µs per enqueue", False, 1, ("sqlite", "postgres"), "enqueue", 2, "celery"),
    Metric("procs", "primary_cpu_us", "of which the primary process, at 2 processes", False, None, (), None, 0),
    Metric("procs", "database_cpu_us", "of which the database (PostgreSQL backends; peers: Redis)", False, None, (), "enqueue", 0),
    Metric("e2e", "rate", "end to end invocations/s", True, 2000, ("sqlite",), "e2e", 0),
    Metric("e2e", "rate", "end to end ÷ Celery", True, 2, ("sqlite",), "e2e", 2, "celery"),
    Metric("dispatch", "p50_ms", "dispatch 202 → handler start p50 (ms)", False, 1, peer_workload="dispatch", digits=2),
    Metric("dispatch", "p99_ms", "dispatch 202 → handler start p99 (ms)", False, 5, peer_workload="dispatch", digits=2),
    Metric("dispatch", "request_p50_ms", "request sent → handler start p50 (ms)", False, None, (), "dispatch", 2),
    Metric("dispatch", "request_p99_ms", "request sent → handler start p99 (ms)", False, None, (), "dispatch", 2),
    Metric("timer", "p50_ms", "timer scheduled time → invocation accepted p50 (ms)", False, None, (), digits=1),
    Metric("timer", "p99_ms", "timer scheduled time → invocation accepted p99 (ms)", False, 1000, digits=1),
    Metric("timer", "max_ms", "timer scheduled time → invocation accepted, worst (ms)", False, None, (), digits=1),
    Metric("query", "default_p99_ms", "default list (last hour) p99 (ms)", False, 5, digits=2),
    Metric("query", "default_p50_ms", "default list p50 (ms)", False, None, (), digits=2),
    Metric("query", "status_7d_p99_ms", "7-day window + status p99 (ms)", False, 50, digits=2),
    Metric("query", "status_7d_p50_ms", "7-day window + status p50 (ms)", False, None, (), digits=2),
    Metric("query", "deep_page_p99_ms", "deep page (marker 100,000) p99 (ms)", False, 50, digits=2),
    Metric("query", "deep_page_p50_ms", "deep page p50 (ms)", False, None, (), digits=2),
    Metric("memory", "idle_rss_mb", "service RSS idle (MB)", False, 80),
    Metric("memory", "warm_rss_mb", "service RSS with the warm instances (MB)", False, None, ()),
    Metric("memory", "instances_pss_mb", "the warm instances' PSS, total (MB)", False, None, ()),
    Metric("memory", "template_pss_mb", "the instance template's PSS (MB)", False, None, ()),
    Metric("memory", "instances", "warm instances", True, None, (), digits=0),
)  # fmt: skip
PEER_NAMES = {"celery": "Celery", "rq": "RQ"}


@dataclass
class Report:
    """Everything one run produced."""

    machine: dict[str, str]
    results: Results
    backends: Sequence[str]
    peers: Sequence[str]
    notes: list[str] = field(default_factory=list)
    runtime_output: str = ""
    runtime_rows: list[tuple[str, str]] = field(default_factory=list)
    command: str = ""
    seconds: float = 0.0


def figure(results: Results, workload: str, who: str, key: str) -> float:
    """The median over repetitions of ``key``, or NaN when it was not measured."""
    samples = results.get((workload, who), [])
    return median([s[key] for s in samples if key in s])


def _fmt(value: float, digits: int) -> str:
    if value != value or math.isinf(value):
        return "—"
    return f"{value:,.{digits}f}"


def _target_text(metric: Metric) -> str:
    assert metric.target is not None
    sign = "≥" if metric.higher_is_better else "≤"
    suffix = "×" if metric.ratio_of else ""
    return f"{sign} {metric.target:,g}{suffix}"


def verdict(metric: Metric, value: float) -> str:
    """``met`` or ``missed`` with how far off, in percent of the target."""
    assert metric.target is not None
    if value != value:
        return "—"
    if metric.higher_is_better:
        if value >= metric.target:
            return "met"
        return f"**missed** ({value / metric.target:.0%} of target)"
    if value <= metric.target:
        return "met"
    return f"**missed** ({value / metric.target:.1f}× the target)"


def rows(report: Report) -> list[list[str]]:
    out = []
    for metric in METRICS:
        if metric.ratio_of and metric.ratio_of not in report.peers:
            continue
        for backend in report.backends:
            if (metric.workload, backend) not in report.results:
                continue
            value = figure(report.results, metric.workload, backend, metric.key)
            peer_values = {
                peer: figure(report.results, metric.peer_workload, peer, metric.key)
                if metric.peer_workload
                else float("nan")
                for peer in report.peers
            }  # fmt: skip
            if metric.ratio_of:
                base = peer_values.get(metric.ratio_of, float("nan"))
                value = value / base if base == base and base else float("nan")
                peer_values = {peer: float("nan") for peer in report.peers}
            target = metric.target if backend in metric.target_backends else None
            shown = Metric(**{**metric.__dict__, "target": target})
            row = [
                metric.workload,
                metric.label,
                backend,
                _fmt(value, metric.digits) + ("×" if metric.ratio_of else ""),
                _target_text(shown) if target is not None else "",
                verdict(shown, value) if target is not None else "",
            ]
            for peer in report.peers:
                row.append(_fmt(peer_values[peer], metric.digits))
            for peer in report.peers:
                peer_value = peer_values[peer]
                ratio = value / peer_value if peer_value == peer_value and peer_value else None
                row.append(f"{ratio:.2f}×" if ratio is not None and ratio == ratio else "")
            out.append(row)
    for label, value in report.runtime_rows:
        out.append(["runtime", label, "—", value, "", ""] + [""] * (2 * len(report.peers)))
    return out


def table(report: Report) -> str:
    header = ["workload", "figure", "backend", "openfgs", "target", "met"]
    header += [PEER_NAMES.get(p, p) for p in report.peers]
    header += [f"openfgs ÷ {PEER_NAMES.get(p, p)}" for p in report.peers]
    body = rows(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def render(report: Report) -> str:
    """The whole printout: machine, table, notes and the runtime part."""
    parts = ["## Machine", ""]
    parts += [f"- {key}: {value}" for key, value in report.machine.items()]
    parts += ["", "## Results (medians of repeated runs)", "", table(report), ""]
    parts += [
        "Ratios are openfgs ÷ peer: above 1 is better for rates, worse for latencies. Targets "
        "stated for SQLite only (accept, end to end) are not applied to PostgreSQL.",
        "",
    ]
    if report.notes:
        parts += ["Notes:", ""] + [f"- {note}" for note in report.notes] + [""]
    if report.runtime_output:
        parts += ["## Runtime (bench/runtime_bench.py)", "", "```", report.runtime_output.rstrip()]
        parts += ["```", ""]
    if report.command:
        parts += [f"Command: `{report.command}` — {report.seconds / 60:.1f} min."]
    return "\n".join(parts)


def repetition_counts(results: Mapping[tuple[str, str], list[Sample]]) -> str:
    return ", ".join(f"{w}/{b}: {len(s)}" for (w, b), s in sorted(results.items()))
