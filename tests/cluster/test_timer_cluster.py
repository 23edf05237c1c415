"""A timer on a cluster of two API nodes and two workers on one PostgreSQL database: every
scheduled time fires once, whichever node fires it, while nodes are killed and restarted;
after every node was down, only the most recent missed time fires."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from openfgs.client import FunctionGraphClient
from tests.cluster.test_cluster import (
    CRED,
    Node,
    _deploy,
    _healthy,
    cluster,  # noqa: F401 - the fixture
    database_url,  # noqa: F401 - the fixture
)
from tests.support import (
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]


def fires(url: str) -> list[tuple[int, str]]:
    """``(scheduled_at, request_id)`` of every fire, from the database itself."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT scheduled_at, request_id FROM trigger_fires ORDER BY scheduled_at"
        ).fetchall()
    return [(int(scheduled), str(request_id)) for scheduled, request_id in rows]


def invocation_ids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT request_id FROM invocations").fetchall()
    return [str(request_id) for (request_id,) in rows]


def fired_after(url: str, moment_ms: int, count: int, timeout: float = 30) -> None:
    wait_for(
        lambda: len([s for s, _ in fires(url) if s > moment_ms]) >= count,
        timeout,
        what=f"{count} fires after {moment_ms}",
    )


def restart(node: Node) -> Node:
    return Node(node.args, node.env, node.log)


def test_each_scheduled_time_fires_once_across_killed_and_restarted_nodes(
    cluster: dict[str, Any],  # noqa: F811
    database_url: str,  # noqa: F811
) -> None:
    urls, nodes = cluster["urls"], cluster["nodes"]
    with FunctionGraphClient(urls[0], CRED) as admin:
        urn = _deploy(admin, cluster["runs"])
        created = admin.json(
            "POST",
            f"/triggers/{urn}",
            body={
                "trigger_type_code": "TIMER",
                "event_data": {"name": "tick", "schedule_type": "Cron", "schedule": "* * * * * *"},
            },
        )
    assert created["trigger_status"] == "ACTIVE"
    fired_after(database_url, 0, 3)

    # An API node and a worker die mid-schedule; the others keep it going.
    now = int(time.time() * 1000)
    nodes[0].kill()
    nodes[2].kill()
    fired_after(database_url, now + 1000, 3)
    nodes[0], nodes[2] = restart(nodes[0]), restart(nodes[2])
    wait_for(lambda: _healthy(urls[0]), 60, what="the restarted node healthy")
    fired_after(database_url, int(time.time() * 1000), 3)

    recorded = fires(database_url)
    scheduled = [s for s, _ in recorded]
    assert len(scheduled) == len(set(scheduled)), "a scheduled time fired twice"
    assert scheduled == list(range(scheduled[0], scheduled[-1] + 1, 1000)), "a time was skipped"
    request_ids = [r for _, r in recorded]
    assert sorted(request_ids) == sorted(invocation_ids(database_url))

    # Every node down for a few scheduled times: on restart only the most recent one fires.
    for node in nodes:
        node.kill()
    down_since = max(s for s, _ in fires(database_url))
    wait_for(lambda: time.time() * 1000 > down_since + 4500, 10, what="time passing")
    nodes[1] = restart(nodes[1])
    wait_for(lambda: _healthy(urls[1]), 60, what="a node healthy again")
    fired_after(database_url, int(time.time() * 1000), 2)
    with psycopg.connect(database_url) as conn:
        late = conn.execute(
            "SELECT scheduled_at FROM trigger_fires "
            "WHERE scheduled_at > %s AND fired_at - scheduled_at > 1000",
            (down_since,),
        ).fetchall()
    assert len(late) <= 1, f"missed times fired: {late}"  # the most recent one at most
    after = [s for s, _ in fires(database_url) if s > down_since]
    assert after == list(range(after[0], after[-1] + 1, 1000))
    assert after[0] >= down_since + 3000, "the times missed while every node was down fired"
