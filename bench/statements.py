"""Round trips per invocation on PostgreSQL: what the store sends, counted by the server.

``python -m bench statements [--count 5000] [--clients 64]`` starts a service with its worker
on PostgreSQL, runs one warm-up invocation, resets ``pg_stat_statements`` and runs ``count``
async invocations of a no-op from ``clients`` connections (1: one at a time, as the dispatch
workload); then prints, per invocation, the calls of each
statement and the transactions committed. Counts do not depend on the machine's speed (the
claim batches do, a little). It needs a server with ``pg_stat_statements`` loaded
(``shared_preload_libraries``) and no other client: point ``OPENFGS_BENCH_DATABASE_URL`` at one.
"""

from __future__ import annotations

import psycopg

from bench.loadgen import Client, fixed_count, run
from bench.procs import PG_BASE_URL, Resources
from bench.service import Service, start_service
from bench.workloads import EVENT, _wait_terminal

# Statements of the measurement itself (the stats poll, the counters read), left out of the sum.
OWN = ("pg_stat_statements", "pg_stat_database", "count_invocations_by_hour", "GROUP BY status")


def _server_counts() -> tuple[dict[tuple[str, bool], tuple[int, float]], int]:
    """Calls per statement text (and whether a client sent it, or a function or trigger ran
    it), and transactions committed, in this database so far."""
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, toplevel, calls, total_exec_time FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
        commits = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert commits is not None
    found = {(str(q), bool(top)): (int(c), float(ms)) for q, top, c, ms in rows}
    return found, int(commits[0])


def _reset() -> None:
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


async def _invocations(service: Service, count: int, clients: int) -> None:
    client = Client(service.port, service.credential)
    path = service.path("noop", "invocations-async")
    await client.call(client.request_bytes("POST", path, body=EVENT))
    await _wait_terminal(client, service, 1, 60)
    _reset()
    _, commits_before = _server_counts()
    load = await fixed_count(
        client,
        lambda: client.request_bytes("POST", path, body=EVENT),
        clients=clients,
        count=count,
    )
    await _wait_terminal(client, service, count + 1, timeout=max(120.0, count / 50))
    client.close()
    if load.errors or set(load.statuses) != {202}:
        raise RuntimeError(f"statements: answers {load.statuses}, {load.errors} broken")
    calls, commits_after = _server_counts()
    print(
        f"{count} invocations; per invocation: calls (* sent by a client, - run inside the "
        "server), execution time"
    )
    sent = inside = 0.0
    busy_ms = 0.0
    for (query, top), (n, ms) in sorted(calls.items(), key=lambda item: -item[1][0]):
        if any(own in query for own in OWN):
            continue
        if top:
            sent += n / count
            busy_ms += ms
        else:
            inside += n / count
        text = " ".join(query.split())[:96]
        print(f"  {n / count:7.3f} {'*' if top else '-'} {1000 * ms / count:6.1f} µs  {text}")
    print(f"  {sent:7.3f}  statements sent (each a round trip unless pipelined)")
    print(f"  {inside:7.3f}  statements run inside functions and triggers")
    print(f"  {1000 * busy_ms / count:7.1f}  µs executing them (the server's time, per invocation)")
    print(f"  {(commits_after - commits_before) / count:7.3f}  transactions committed")


def count_statements(count: int, clients: int) -> None:
    res = Resources()
    try:
        service = start_service(res, "postgres", worker=True, tag="statements")
        service.deploy("noop", "noop")
        run(_invocations(service, count, clients))
    finally:
        res.close()
