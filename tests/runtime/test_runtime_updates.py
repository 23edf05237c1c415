"""Updating a function: new code or new configuration gets new instances; the old ones go."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from openfgs.runtime import InstancePool, RunResult
from tests.runtime.runtime_support import make_function, pid_alive
from tests.support import wait_for_async

pytestmark = pytest.mark.anyio

# With {"started": path, "go": path} it creates `started` and waits for `go` before returning.
WORKER = """
import os, time

INSTANCE = os.urandom(8).hex()  # its pid is 1: it has a PID namespace of its own

def init(context):
    pass

def handler(event, context):
    if "started" in event:
        open(event["started"], "w").close()
        while not os.path.exists(event["go"]):
            time.sleep(0.005)
    return {"pid": INSTANCE, "color": context.getUserData("color")}

other_handler = handler
"""


def reply(result: RunResult) -> dict[str, Any]:
    assert result.ok, result
    value: dict[str, Any] = json.loads(result.result)
    return value


@pytest.mark.parametrize(
    "change",
    [
        {"user_data": {"color": "red"}},
        {"memory_size": 256},
        {"timeout": 11},
        {"handler": "index.other_handler"},
        {"initializer_handler": "index.init", "initializer_timeout": 5},
    ],
    ids=["user_data", "memory_size", "timeout", "handler", "initializer"],
)
async def test_config_change_gets_a_new_instance(
    pool: InstancePool, change: dict[str, Any]
) -> None:
    old = make_function(WORKER, user_data={"color": "blue"})
    new = make_function(WORKER, **{"user_data": {"color": "blue"}, **change})
    assert (new.spec.urn, new.spec.code_digest) == (old.spec.urn, old.spec.code_digest)
    old_token = reply(await pool.invoke(old.spec, b"{}", "r1", old.load))["pid"]
    (old_pid,) = pool.instance_pids()
    new_token = reply(await pool.invoke(new.spec, b"{}", "r2", new.load))["pid"]
    assert new_token != old_token
    # The idle instance of the old configuration is retired rather than kept until reaped.
    await wait_for_async(lambda: not pid_alive(old_pid), what="old instance stopped")
    assert len(pool.instance_pids()) == 1
    assert pool.instance_pids() != [old_pid]


async def test_changing_max_instances_keeps_the_instances(pool: InstancePool) -> None:
    fn = make_function(WORKER, max_instances=4)
    more = make_function(WORKER, max_instances=8)
    first = reply(await pool.invoke(fn.spec, b"{}", "r1", fn.load))["pid"]
    assert reply(await pool.invoke(more.spec, b"{}", "r2", more.load))["pid"] == first


async def test_a_running_invocation_finishes_on_the_old_config(
    pool: InstancePool, scratch: Path
) -> None:
    old = make_function(WORKER, user_data={"color": "blue"})
    new = make_function(WORKER, user_data={"color": "red"})
    started, go = scratch / "started", scratch / "go"
    results: list[RunResult] = []

    async def run_old() -> None:
        event = json.dumps({"started": str(started), "go": str(go)}).encode()
        results.append(await pool.invoke(old.spec, event, "old", old.load))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run_old)
        await wait_for_async(started.exists, what="old invocation running")
        (old_pid,) = pool.instance_pids()
        updated = reply(await pool.invoke(new.spec, b"{}", "new", new.load))
        assert updated["color"] == "red"
        go.touch()
    finished = reply(results[0])
    assert finished["color"] == "blue"
    assert finished["pid"] != updated["pid"]
    await wait_for_async(lambda: not pid_alive(old_pid), what="old instance retired")
    assert len(pool.instance_pids()) == 1
    assert reply(await pool.invoke(new.spec, b"{}", "again", new.load))["pid"] == updated["pid"]


async def test_each_function_version_has_its_own_instances(pool: InstancePool) -> None:
    one = make_function(WORKER, name="one")
    two = make_function(WORKER, name="two")
    token_one = reply(await pool.invoke(one.spec, b"{}", "r1", one.load))["pid"]
    token_two = reply(await pool.invoke(two.spec, b"{}", "r2", two.load))["pid"]
    assert token_one != token_two
    (pid_one,) = pool.instance_pids(one.spec.urn)
    (pid_two,) = pool.instance_pids(two.spec.urn)
    assert pid_one != pid_two
    assert all(pid_alive(pid) for pid in (pid_one, pid_two))
    assert os.getpid() not in pool.instance_pids()
