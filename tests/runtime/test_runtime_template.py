"""Cold starts: instances forked from the template, and the spawn path when forking is off."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from openfgs.runtime import InstancePool, RunResult
from openfgs.runtime.template import Forker
from tests.runtime.runtime_support import make_function, pid_alive
from tests.support import wait_for_async

pytestmark = pytest.mark.anyio

# Its pid is 1 and its parent 0 from where it stands (a PID namespace of its own): the tests
# look at instances from the service's side instead.
WORKER = """
import os, random, uuid

def handler(event, context):
    return {
        "pid": os.getpid(),
        "random": random.random(),
        "uuid": str(uuid.uuid4()),
    }
"""


def reply(result: RunResult) -> dict[str, Any]:
    assert result.ok, result
    value: dict[str, Any] = json.loads(result.result)
    return value


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


async def test_instances_are_forked_from_the_template(pool: InstancePool) -> None:
    one = make_function(WORKER, name="one")
    two = make_function(WORKER, name="two")
    first = reply(await pool.invoke(one.spec, b"{}", "r1", one.load))
    second = reply(await pool.invoke(two.spec, b"{}", "r2", two.load))
    template = pool.template_pid
    assert template is not None and template != os.getpid()
    assert parent_of(template) == os.getpid()
    for fn in (one, two):
        (pid,) = pool.instance_pids(fn.spec.urn)
        assert parent_of(pid) == template
        assert os.getsid(pid) == pid  # its own session, like a spawned instance
    # Forked children do not share the template's random state.
    assert first["random"] != second["random"]
    assert first["uuid"] != second["uuid"]


async def test_spawn_when_fork_is_off(work_dir: Path) -> None:
    pool = InstancePool(work_dir, fork=False)
    fn = make_function(WORKER)
    try:
        reply(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
        assert pool.template_pid is None
        (pid,) = pool.instance_pids()
        assert parent_of(pid) == os.getpid()
        assert os.getsid(pid) == pid
    finally:
        await pool.close()


async def test_a_dead_template_is_replaced(pool: InstancePool) -> None:
    one = make_function(WORKER, name="one")
    two = make_function(WORKER, name="two")
    first = reply(await pool.invoke(one.spec, b"{}", "r1", one.load))
    (first_pid,) = pool.instance_pids()
    template = pool.template_pid
    assert template is not None
    os.kill(template, signal.SIGKILL)
    # Its instances die with it, and the pool notices.
    await wait_for_async(lambda: not pid_alive(first_pid), what="instance died with template")
    await wait_for_async(lambda: pool.instance_pids() == [], what="pool noticed")
    reply(await pool.invoke(two.spec, b"{}", "r2", two.load))
    assert pool.template_pid not in (None, template)
    (second_pid,) = pool.instance_pids()
    assert parent_of(second_pid) == pool.template_pid
    again = reply(await pool.invoke(one.spec, b"{}", "r3", one.load))
    assert again["uuid"] != first["uuid"]


async def test_close_stops_the_template(work_dir: Path) -> None:
    pool = InstancePool(work_dir)
    fn = make_function(WORKER)
    reply(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
    template = pool.template_pid
    assert template is not None
    await pool.close()
    assert not pid_alive(template)
    assert pool.template_pid is None


async def test_standard_library_is_importable(pool: InstancePool) -> None:
    # Modules the template has not loaded, imported after the instance dropped privileges.
    fn = make_function(
        """
        def handler(event, context):
            import sqlite3, xml.etree.ElementTree as tree, email.mime.text, json.tool
            row = sqlite3.connect(":memory:").execute("select 41 + 1").fetchone()
            return [row[0], tree.fromstring("<a>x</a>").text, "é".encode("cp1252").hex()]
        """
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.ok, result
    assert json.loads(result.result) == [42, "x", "e9"]


async def test_a_template_that_cannot_prepare_instances_is_not_used(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Its instances' control groups would go under a directory that does not exist.
    sandbox = {"namespaces": False, "network": "host", "cgroups": {"pids": str(base / "none")}}
    forker = Forker(None, sandbox)
    pipes = [os.pipe() for _ in range(3)]
    try:
        fds = (pipes[0][0], pipes[1][1], pipes[2][1])
        assert await forker.fork(fds) is None  # the caller spawns instead
        assert forker.template_pid is None
        assert "cannot start the instance template" in caplog.text  # and waits to try again
    finally:
        await forker.close()
        for read, write in pipes:
            os.close(read)
            os.close(write)
