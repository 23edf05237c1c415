"""``python -m bench simulate``: a small cluster on one PostgreSQL database under a steady load.

N API nodes (``openfgs serve --no-worker``) and M worker nodes (``openfgs worker``) share one
fresh schema. The load is open-loop: request k is due at ``start + k / rate`` whatever the
answers before it did, goes to API node ``k mod N`` on a free keep-alive connection, and its
latency is counted from the time it was due — so a stalled server shows as latency, not as a
slower offer (no coordinated omission). After the window the run waits for the records to
settle and checks every 202 against the database: a request answered 202 whose record is
missing or not terminal after the drain deadline is *lost*, and there must be none.

Dispatch (accepted → attempt started) and end to end (accepted → ended) come from the records'
own times, ``start_time``, ``attempt_started_at`` and ``end_time``: millisecond resolution.

Beside the latencies it measures what the capacity model needs (docs/scaling.md): the CPU each
tier spent per accepted invocation (from ``/proc``: the API processes, the workers with their
instances, the PostgreSQL backends the nodes opened — found by ``application_name`` — and the
load generator), the claim calls, the rows inserted and updated, the WAL — the cluster's and,
read back with ``pg_waldump``, the part that went to the records' tables and indexes — and the
bytes the records take on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg

from bench.loadgen import Client, HttpError, run
from bench.machine import describe, git_commit
from bench.procs import (
    RESULTS,
    Process,
    Resources,
    postgres_available,
    schema_url,
    terminate_on_sigterm,
    wait_until,
)
from bench.service import Service, descendants, service_env, start_service
from bench.service import cpu_ticks as process_ticks
from bench.stats import percentile
from bench.workloads import EVENT, TERMINAL
from openfgs.auth.service import new_credential
from openfgs.models import Credential

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WORKER_START_SECONDS = 60.0


@dataclass(frozen=True)
class Plan:
    """What to run: the cluster's shape and the offered load."""

    api: int = 4
    workers: int = 4
    seconds: float = 300.0
    rate: float = 150.0  # what this project's 2-core machines sustain with 4 + 4 (docs/scaling.md)
    warmup: float = 5.0
    drain: float = 120.0
    connections: int = 64  # keep-alive connections per API node
    pool_size: int = 4  # OPENFGS_DATABASE_POOL_SIZE of each node


@dataclass
class Cluster:
    """The started nodes and how to reach their database."""

    apis: list[Service]
    workers: list[Process]
    database_url: str
    application_name: str


@dataclass
class Answer:
    """One request: when it was due (s after the start), how long until answered, what."""

    due: float
    latency_ms: float
    status: int
    request_id: str


@dataclass
class Offered:
    """What the load generator did."""

    started_at: float  # epoch seconds of the first due time
    answers: list[Answer] = field(default_factory=list)
    broken: int = 0  # requests whose connection broke before an answer
    peak_busy: int = 0  # most connections in use at once, over all nodes


# -- the cluster ------------------------------------------------------------------------------


def start_cluster(res: Resources, plan: Plan) -> Cluster:
    """Start the API nodes (the first one alone: it migrates the schema), then the workers."""
    name = f"openfgs_sim_{os.getpid()}"
    # The nodes' backends are found by their application_name (CPU), and count the calls of
    # the claim walk (pg_stat_user_functions): one call per claim.
    url = (
        schema_url(res.new_schema("simulate"))
        + f"%20-ctrack_functions%3Dpl&application_name={name}"
    )
    credential = new_credential()
    env = {"OPENFGS_DATABASE_POOL_SIZE": str(plan.pool_size)}

    def api(index: int) -> Service:
        return start_service(
            res, "postgres", worker=False, env=env, database_url=url,
            credential=credential, tag=f"api{index}",
        )  # fmt: skip

    first = api(0)
    with ThreadPoolExecutor(max_workers=max(plan.api, plan.workers)) as pool:
        apis = [first, *pool.map(api, range(1, plan.api))]
        workers = list(
            pool.map(lambda i: start_worker(res, url, credential, env, i), range(plan.workers))
        )
    return Cluster(apis, workers, url, name)


def start_worker(
    res: Resources, url: str, credential: Credential, env: dict[str, str], index: int
) -> Process:
    """``openfgs worker`` on ``url``; waits until it logs that it runs."""
    argv = [
        sys.executable, "-m", "openfgs.cli", "worker",
        "--database-url", url, "--data-dir", str(res.path(f"worker{index}-data")),
    ]  # fmt: skip
    # Info level for the one start-up line it is waited on; a worker logs no line per invocation.
    process = res.start(
        f"worker{index}", argv, env=service_env(credential, {**env, "OPENFGS_LOG_LEVEL": "info"})
    )

    def running() -> bool:
        if not process.alive():
            raise RuntimeError(f"openfgs worker exited:\n{process.tail()}")
        return " running" in process.tail(50)

    wait_until(running, WORKER_START_SECONDS, f"openfgs worker {index}")
    return process


def stop_cluster(res: Resources, cluster: Cluster) -> None:
    """Stop every node and wait for their backends to end: a backend hands its statistics
    (rows written, claim calls) to the server when it exits, otherwise up to 10 s late."""
    for process in [*cluster.workers, *(s.process for s in cluster.apis)]:
        res.stop(process)

    def ended() -> bool:
        with psycopg.connect(cluster.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND pid <> pg_backend_pid()",
                (cluster.application_name,),
            ).fetchone()
        return row is not None and row[0] == 0

    wait_until(ended, 30, "the nodes' PostgreSQL backends to end")


# -- the open-loop load -----------------------------------------------------------------------


class Connection(Protocol):
    """A keep-alive connection of bench.loadgen: one request in flight at a time."""

    closed: bool

    async def send(self, raw: bytes) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class Node:
    """One API node as the load generator sees it: a signer and a fixed pool of connections."""

    def __init__(self, service: Service) -> None:
        self.client = Client(service.port, service.credential)
        self.path = service.path("noop", "invocations-async")
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def open(self, connections: int) -> None:
        for connection in await self.client.connect(connections):
            self.idle.put_nowait(connection)

    def request(self) -> bytes:
        return self.client.request_bytes("POST", self.path, body=EVENT)

    async def release(self, connection: Connection) -> None:
        if connection.closed:  # replaced, so the pool keeps its size
            (connection,) = await self.client.connect(1)
        self.idle.put_nowait(connection)


async def offer(nodes: Sequence[Node], rate: float, seconds: float) -> Offered:
    """Send ``rate × seconds`` requests, each at its due time, spread over ``nodes``."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.1
    offered = Offered(started_at=time.time() + 0.1)
    pending: set[asyncio.Task[None]] = set()
    busy = 0

    async def send(node: Node, due: float) -> None:
        nonlocal busy
        connection = await node.idle.get()
        busy += 1
        offered.peak_busy = max(offered.peak_busy, busy)
        try:
            status, body = await connection.send(node.request())
        except HttpError:
            offered.broken += 1
            return
        finally:
            busy -= 1
            await node.release(connection)
        request_id = json.loads(body).get("request_id", "") if status == 202 else ""
        latency = (time.perf_counter() - due) * 1000
        offered.answers.append(Answer(due - start, latency, status, request_id))

    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(nodes[k % len(nodes)], due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return offered


async def drive(cluster: Cluster, plan: Plan) -> Offered:
    nodes = [Node(service) for service in cluster.apis]
    for node in nodes:
        await node.open(plan.connections)
    try:
        return await offer(nodes, plan.rate, plan.warmup + plan.seconds)
    finally:
        for node in nodes:
            node.client.close()


# -- CPU, WAL and rows ------------------------------------------------------------------------


def cpu_ticks(pids: Iterable[int]) -> int:
    """User + system clock ticks of ``pids``, with those of their children already reaped."""
    return sum(process_ticks(pid, reaped=True) or 0 for pid in pids)


def with_descendants(pids: Iterable[int]) -> list[int]:
    return [p for pid in pids for p in (pid, *(child for child, _ in descendants(pid)))]


def machine_ticks() -> tuple[int, int]:
    """(all, busy) clock ticks of every CPU since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), sum(values) - values[3] - values[4]


@dataclass
class Snapshot:
    """CPU spent so far by each tier and by the machine, and the cluster's WAL position."""

    tiers: dict[str, int]
    backends: dict[int, int]  # PostgreSQL backend pid → its ticks (they come and go)
    machine: tuple[int, int]
    wal_lsn: str
    at: float


def snapshot(cluster: Cluster) -> Snapshot:
    with psycopg.connect(cluster.database_url, autocommit=True) as conn:
        lsn = str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> "
            "pg_backend_pid()",
            (cluster.application_name,),
        ).fetchall()
    tiers = {
        "api": cpu_ticks(with_descendants(s.process.pid for s in cluster.apis)),
        "workers": cpu_ticks(p.pid for p in cluster.workers),
        # The function instances (and the template they fork from): what running costs.
        "instances": cpu_ticks(child for p in cluster.workers for child, _ in descendants(p.pid)),
        "load generator": cpu_ticks([os.getpid()]),
    }
    backends = {pid: cpu_ticks([pid]) for (pid,) in pids}
    return Snapshot(tiers, backends, machine_ticks(), lsn, time.monotonic())


def spent(before: Snapshot, after: Snapshot, conn: psycopg.Connection[Any]) -> dict[str, float]:
    """CPU seconds per tier, the machine's busy share and WAL bytes between two snapshots."""
    seconds = {tier: (after.tiers[tier] - before.tiers[tier]) / CLOCK_TICKS for tier in after.tiers}
    seconds["postgresql"] = (
        sum(ticks - before.backends.get(pid, 0) for pid, ticks in after.backends.items())
        / CLOCK_TICKS
    )
    all_ticks = after.machine[0] - before.machine[0]
    busy_ticks = after.machine[1] - before.machine[1]
    cores = os.cpu_count() or 1
    wall = after.at - before.at
    row = conn.execute(
        "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (after.wal_lsn, before.wal_lsn)
    ).fetchone()
    assert row is not None
    return {
        **{f"cpu_{tier}_s": value for tier, value in seconds.items()},
        "machine_busy_percent": 100.0 * busy_ticks / all_ticks if all_ticks else 0.0,
        # What the machine did beside the measured tiers: other jobs on it, and PostgreSQL's
        # own background processes (WAL writer, checkpointer, autovacuum).
        "other_busy_cores": busy_ticks / all_ticks * cores - sum(seconds.values()) / wall,
        "wal_bytes": float(row[0]),
    }


WALDUMP_LINE = re.compile(r"^rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+),")
BLOCK_REF = re.compile(r"blkref #\d+: rel \d+/\d+/(\d+)")


@contextlib.contextmanager
def retain_wal(url: str) -> Iterator[None]:
    """Keep the WAL written meanwhile from being recycled by a checkpoint (every 5 minutes by
    default), so ``pg_waldump`` can read all of a long run: a temporary replication slot, which
    PostgreSQL drops itself when this connection ends, however the run ends."""
    name = f"openfgs_sim_{os.getpid()}_wal"  # not the nodes' name: not counted as theirs
    with psycopg.connect(url, autocommit=True, application_name=name) as conn:
        conn.execute(
            "SELECT pg_create_physical_replication_slot(%s, true, true)",
            (name,),
        )
        yield


def wal_by_relation(url: str, start: str, end: str) -> dict[str, float]:
    """The WAL bytes between two positions that touched this schema's tables and indexes (and
    the commits of their transactions), read with ``pg_waldump``: on a cluster shared with other
    work the position difference alone counts theirs too. Empty when the segments are gone (a
    checkpoint recycled them) or the tool or the directory cannot be reached."""
    with psycopg.connect(url) as conn:
        data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        names = {
            str(node): str(name)
            for node, name in conn.execute(
                "SELECT pg_relation_filenode(c.oid), coalesce(t.relname || ' (toast)', c.relname) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_class t ON t.reltoastrelid = c.oid "
                "WHERE (n.nspname = current_schema() OR t.relnamespace = "
                "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())) "
                "AND pg_relation_filenode(c.oid) IS NOT NULL"
            ).fetchall()
        }
    tools = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_waldump"))
    tool = shutil.which("pg_waldump") or (str(tools[-1]) if tools else None)
    if tool is None:
        return {}
    argv = [tool, "-p", f"{data_dir}/pg_wal", "-s", start, "-e", end]
    try:
        dump = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if dump.returncode != 0:
        return {}
    return _sum_wal(dump.stdout.splitlines(), names)


def _sum_wal(lines: Iterable[str], names: dict[str, str]) -> dict[str, float]:
    by_name: dict[str, float] = {}
    ours: set[str] = set()
    commits: list[tuple[str, int]] = []
    for line in lines:
        match = WALDUMP_LINE.match(line)
        if match is None:
            continue
        rmgr, size, xid = match.group(1), int(match.group(2)), match.group(3)
        block = BLOCK_REF.search(line)
        if block is not None and block.group(1) in names:
            name = names[block.group(1)]
            by_name[name] = by_name.get(name, 0.0) + size
            ours.add(xid)
        elif rmgr == "Transaction":
            commits.append((xid, size))
    by_name["commit records"] = float(sum(size for xid, size in commits if xid in ours))
    return by_name


# -- settling and checking --------------------------------------------------------------------


@dataclass
class Settling:
    """How the records settled after the load stopped."""

    seconds: float  # until every answered record was terminal (or the deadline)
    backlog: int  # records waiting or running when the load stopped
    statuses: dict[str, int]  # records by status at the end


def wait_settled(url: str, answered: int, timeout: float) -> Settling:
    """Poll the records' statuses until every answered one is terminal, or the deadline."""
    began = time.monotonic()
    deadline = began + timeout
    backlog = -1
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = conn.execute("SELECT status, count(*) FROM invocations GROUP BY status")
            counts = {str(status): int(n) for status, n in rows.fetchall()}
            terminal = sum(counts.get(s, 0) for s in TERMINAL)
            if backlog < 0:
                backlog = sum(counts.values()) - terminal
            if terminal >= answered or time.monotonic() > deadline:
                return Settling(time.monotonic() - began, backlog, counts)
            time.sleep(0.2)


def read_records(url: str) -> dict[str, tuple[str, int, int | None, int | None]]:
    """request_id → (status, start_time, attempt_started_at, end_time), times in epoch ms."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT request_id, status, start_time, attempt_started_at, end_time FROM invocations"
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def table_figures(url: str) -> dict[str, float]:
    """Rows inserted and updated in each table, HOT updates, and the records' bytes on disk —
    each table with its day partitions summed (the partitioned table itself holds no rows)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT coalesce(p.relname, s.relname) AS name, sum(s.n_tup_ins), "
            "sum(s.n_tup_upd), sum(s.n_tup_hot_upd) FROM pg_stat_user_tables s "
            "LEFT JOIN pg_inherits i ON i.inhrelid = s.relid "
            "LEFT JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE s.schemaname = current_schema() "
            "AND coalesce(p.relname, s.relname) IN ('invocations', 'invocation_attempts') "
            "GROUP BY 1"
        ).fetchall()
        size = conn.execute(
            "SELECT (SELECT sum(pg_total_relation_size(relid)) "
            "FROM pg_partition_tree('invocations')), "
            "(SELECT sum(pg_total_relation_size(relid)) "
            "FROM pg_partition_tree('invocation_attempts')), "
            "(SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('invocations'))"
        ).fetchone()
        claims = conn.execute(
            "SELECT calls, total_time FROM pg_stat_user_functions "
            "WHERE schemaname = current_schema() AND funcname = 'openfgs_pick_due_window'"
        ).fetchone()
    assert size is not None
    out = {"bytes_invocations_total": float(size[0]), "bytes_attempts_total": float(size[1])}
    if claims is not None:
        out["claims"], out["claim_walk_ms_total"] = float(claims[0]), float(claims[1])
    out["bytes_invocations_heap"] = float(size[2])
    for name, inserted, updated, hot in rows:
        out[f"{name}_inserted"] = float(inserted)
        out[f"{name}_updated"] = float(updated)
        out[f"{name}_hot_updated"] = float(hot)
    return out


# -- the figures ------------------------------------------------------------------------------


def figures(
    plan: Plan,
    offered: Offered,
    records: dict[str, tuple[str, int, int | None, int | None]],
) -> dict[str, float]:
    """Rates, latencies and losses; only requests due after the warm-up are timed."""
    timed = [a for a in offered.answers if a.due >= plan.warmup]
    accepted = [a for a in timed if a.status == 202]
    window_ms = (offered.started_at + plan.warmup) * 1000
    window_end_ms = window_ms + plan.seconds * 1000
    finished = sum(
        1 for r in records.values() if r[3] is not None and window_ms <= r[3] < window_end_ms
    )
    dispatch, end_to_end = [], []
    for answer in accepted:
        _, start, began, ended = records.get(answer.request_id, ("", 0, None, None))
        if start >= window_ms and began is not None and ended is not None:
            dispatch.append(float(began - start))
            end_to_end.append(float(ended - start))
    answered = [a.request_id for a in offered.answers if a.status == 202]
    lost = sum(1 for rid in answered if records.get(rid, ("",))[0] not in TERMINAL)
    latencies = [a.latency_ms for a in timed]
    return {
        "offered_rate": len(timed) / plan.seconds if plan.seconds else 0.0,
        "accepted_rate": len(accepted) / plan.seconds if plan.seconds else 0.0,
        "finished_rate": finished / plan.seconds if plan.seconds else 0.0,
        "non_202": float(sum(1 for a in offered.answers if a.status != 202)),
        "broken": float(offered.broken),
        "peak_connections_busy": float(offered.peak_busy),
        "accept_p50_ms": percentile(latencies, 50),
        "accept_p99_ms": percentile(latencies, 99),
        "accept_max_ms": max(latencies, default=float("nan")),
        "dispatch_p50_ms": percentile(dispatch, 50),
        "dispatch_p99_ms": percentile(dispatch, 99),
        "e2e_p50_ms": percentile(end_to_end, 50),
        "e2e_p99_ms": percentile(end_to_end, 99),
        "answered_202": float(len(answered)),
        "lost": float(lost),
    }


def per_invocation(result: dict[str, float]) -> dict[str, float]:
    """CPU µs and WAL bytes per accepted invocation of the window, and disk bytes per record."""
    done = result["answered_202"] or 1.0
    out = {
        f"{key[4:-2]}_cpu_us": value / done * 1e6
        for key, value in result.items()
        if key.startswith("cpu_") and key.endswith("_s")
    }
    out["wal_bytes_per_invocation"] = result["wal_bytes"] / done
    if "wal_ours" in result:
        out["wal_ours_per_invocation"] = result["wal_ours"] / done
    if result.get("claims"):
        out["invocations_per_claim"] = result["answered_202"] / result["claims"]
        out["claim_call_ms"] = result["claim_walk_ms_total"] / result["claims"]
    writes = ("invocations_inserted", "invocations_updated", "invocation_attempts_inserted")
    out["row_writes_per_invocation"] = sum(result.get(k, 0.0) for k in writes) / done
    if result.get("invocations_updated"):
        out["hot_update_percent"] = (
            100.0 * result["invocations_hot_updated"] / result["invocations_updated"]
        )
    records = result.get("invocations_inserted", 0.0) or 1.0
    out["disk_bytes_per_record"] = (
        result["bytes_invocations_total"] + result["bytes_attempts_total"]
    ) / records
    return out


# -- the report -------------------------------------------------------------------------------

ROWS: tuple[tuple[str, str, int], ...] = (
    ("offered_rate", "offered async invocations/s (open loop)", 0),
    ("accepted_rate", "accepted (202) /s", 0),
    ("finished_rate", "finished /s (records that ended inside the window)", 0),
    ("non_202", "answers other than 202", 0),
    ("broken", "requests whose connection broke", 0),
    ("peak_connections_busy", "most client connections busy at once (of the pool)", 0),
    ("accept_p50_ms", "accept latency p50 (ms, from the due time)", 1),
    ("accept_p99_ms", "accept latency p99 (ms, from the due time)", 1),
    ("accept_max_ms", "accept latency max (ms, from the due time)", 1),
    ("dispatch_p50_ms", "dispatch p50: accepted → attempt started (ms, records)", 0),
    ("dispatch_p99_ms", "dispatch p99: accepted → attempt started (ms, records)", 0),
    ("e2e_p50_ms", "end to end p50: accepted → ended (ms, records)", 0),
    ("e2e_p99_ms", "end to end p99: accepted → ended (ms, records)", 0),
    ("answered_202", "202 answers (warm-up included)", 0),
    ("backlog_at_end", "records waiting or running when the load stopped", 0),
    ("drain_seconds", "seconds from the last request until every record was terminal", 1),
    ("lost", "lost: a 202 whose record is missing or not terminal after the drain", 0),
    ("claims", "claims (calls of the claim walk)", 0),
    ("invocations_per_claim", "invocations per claim", 1),
    ("claim_call_ms", "claim walk per call, its turn on the claim lock included (ms)", 2),
    ("api_cpu_us", "CPU per invocation, API nodes (µs)", 0),
    ("workers_cpu_us", "CPU per invocation, worker processes (µs)", 0),
    ("instances_cpu_us", "CPU per invocation, their function instances (µs)", 0),
    ("postgresql_cpu_us", "CPU per invocation, the nodes' PostgreSQL backends (µs)", 0),
    ("load generator_cpu_us", "CPU per invocation, the load generator (µs)", 0),
    ("row_writes_per_invocation", "rows inserted or updated per invocation", 2),
    ("hot_update_percent", "updates of a record that were HOT (no index entries), %", 0),
    ("wal_bytes_per_invocation", "WAL bytes per invocation (whole PostgreSQL cluster)", 0),
    ("wal_ours_per_invocation", "WAL bytes per invocation, this run's relations (pg_waldump)", 0),
    ("disk_bytes_per_record", "bytes on disk per record (tables + indexes, after the run)", 0),
    ("machine_busy_percent", "machine busy during the run (% of all cores)", 0),
    ("other_busy_cores", "cores busy with anything else (other jobs, PostgreSQL's own)", 2),
)


def sustained(plan: Plan, result: dict[str, float]) -> str:
    """Whether the cluster kept up: accepted what was offered and finished what it accepted."""
    kept = (
        result["accepted_rate"] >= 0.99 * result["offered_rate"]
        and result["finished_rate"] >= 0.97 * result["accepted_rate"]
        and result["backlog_at_end"] < plan.rate
        and result["dispatch_p99_ms"] < 1000
    )
    verdict = "**sustained**" if kept else "**not sustained**"
    return (
        f"{verdict} at {plan.rate:,g}/s (sustained: accepted ≥ 99 % of the offer, finished ≥ 97 % "
        "of the accepts inside the window, dispatch p99 under a second, and less than one "
        "second of load waiting or running when it stopped)."
    )


def render(plan: Plan, outcome: Outcome) -> str:
    lines = ["| figure | value |", "|---|---|"]
    for key, label, digits in ROWS:
        value = outcome.result.get(key, float("nan"))
        shown = "—" if value != value else f"{value:,.{digits}f}"
        lines.append(f"| {label} | {shown} |")
    shown_statuses = ", ".join(f"{s} {n:,}" for s, n in sorted(outcome.statuses.items()))
    lines.append(f"| records by status at the end | {shown_statuses} |")
    head = (
        f"{plan.api} API + {plan.workers} worker processes on one PostgreSQL database, "
        f"{plan.rate:,g} requests/s offered for {plan.seconds:g} s after {plan.warmup:g} s of "
        f"warm-up (pool {plan.pool_size} connections a node, {plan.connections} client "
        "connections an API node)."
    )
    parts = [head, "", *lines, "", sustained(plan, outcome.result)]
    if outcome.wal:
        parts += ["", "WAL bytes per invocation by relation (pg_waldump):", ""]
        parts += ["| relation | bytes |", "|---|---|"]
        parts += [f"| {name} | {size:,.0f} |" for name, size in outcome.wal.items()]
    return "\n".join(parts)


# -- the command ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a run measured: the figures, the records by status, WAL bytes by relation."""

    result: dict[str, float]
    statuses: dict[str, int]
    wal: dict[str, float]  # per accepted invocation; empty when pg_waldump could not read it


def simulate(res: Resources, plan: Plan) -> Outcome:
    """Run the plan and measure it."""
    cluster = start_cluster(res, plan)
    cluster.apis[0].deploy("noop", "noop")
    with retain_wal(cluster.database_url):
        before = snapshot(cluster)
        offered = run(drive(cluster, plan))
        assert isinstance(offered, Offered)
        answered = sum(1 for a in offered.answers if a.status == 202)
        settling = wait_settled(cluster.database_url, answered, plan.drain)
        after = snapshot(cluster)  # after the drain: the work of every accepted invocation
        stop_cluster(res, cluster)
        wal = wal_by_relation(cluster.database_url, before.wal_lsn, after.wal_lsn)
    records = read_records(cluster.database_url)
    result = figures(plan, offered, records)
    result["drain_seconds"] = settling.seconds
    result["backlog_at_end"] = float(settling.backlog)
    with psycopg.connect(cluster.database_url, autocommit=True) as conn:
        result.update(spent(before, after, conn))
    result.update(table_figures(cluster.database_url))
    if wal:
        result["wal_ours"] = sum(wal.values())
    result.update(per_invocation(result))
    per = {name: size / (result["answered_202"] or 1.0) for name, size in sorted(wal.items())}
    return Outcome(result, settling.statuses, per)


def cmd_simulate(args: argparse.Namespace) -> int:
    plan = Plan(
        api=args.api, workers=args.workers, seconds=args.seconds, rate=args.rate,
        warmup=args.warmup, drain=args.drain, connections=args.connections,
        pool_size=args.pool_size,
    )  # fmt: skip
    if not postgres_available():
        print("bench: PostgreSQL does not answer at 127.0.0.1:5432", file=sys.stderr)
        return 2
    machine = describe({})
    with terminate_on_sigterm():
        res = Resources(keep_logs=args.keep_logs)
        try:
            outcome = simulate(res, plan)
        finally:
            res.close()
    if git_commit() != machine["openfgs"]:
        machine["openfgs"] += f" (changed while running: now {git_commit()})"
    text = "\n".join(
        [
            "## Machine", "", *(f"- {k}: {v}" for k, v in machine.items()), "",
            "## Simulated run", "", render(plan, outcome), "", f"Command: `{_command()}`",
        ]
    )  # fmt: skip
    print(text, flush=True)
    payload = {"plan": asdict(plan), "machine": machine, **asdict(outcome), "command": _command()}
    save(args.json, text, payload)
    result = outcome.result
    return 0 if result["lost"] == 0 and result["answered_202"] > 0 else 1


def _command() -> str:
    return "python -m bench " + shlex.join(sys.argv[1:])


def save(json_path: str | None, text: str, payload: dict[str, Any]) -> None:
    """The table in last-simulate.md; the raw figures in a dated JSON (or ``json_path``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "last-simulate.md").write_text(text + "\n")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(json_path) if json_path else RESULTS / f"simulate-{stamp}.json"
    path.write_text(json.dumps(payload, indent=1))


def add_arguments(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The ``simulate`` options; returns the command to run."""
    plan = Plan()
    parser.add_argument("--api", type=int, default=plan.api, help="API processes (4)")
    parser.add_argument("--workers", type=int, default=plan.workers, help="worker processes (4)")
    parser.add_argument("--seconds", type=float, default=plan.seconds, help="measured (300)")
    parser.add_argument("--rate", type=float, default=plan.rate, help="requests/s offered (150)")
    parser.add_argument("--warmup", type=float, default=plan.warmup, help="unmeasured s first")
    parser.add_argument("--drain", type=float, default=plan.drain, help="s to settle (120)")
    parser.add_argument("--connections", type=int, default=plan.connections,
                        help="client connections per API node (64)")  # fmt: skip
    parser.add_argument("--pool-size", type=int, default=plan.pool_size,
                        help="each node's database pool (4)")  # fmt: skip
    parser.add_argument("--keep-logs", action="store_true", help="keep the nodes' logs")
    parser.add_argument("--json", help="where to write the raw figures")
    return cmd_simulate
