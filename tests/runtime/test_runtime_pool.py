"""Pooling: warm reuse, limits, isolation of failures, cancel, reaping and shutdown.

Every test here runs with forked and with spawned instances.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable
from pathlib import Path

import anyio
import pytest

from openfgs.models import ErrorCode
from openfgs.runtime import InstancePool, RunResult
from tests.runtime.runtime_support import children_of, make_function, pid_alive
from tests.support import wait_for_async

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[True, False], ids=["fork", "spawn"])
def fork(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


# Returns a token naming its instance (its own pid is 1: it has a PID namespace of its own);
# with {"loop": dir} it writes the token to dir/pid and then spins until killed;
# with {"crash": "exit"|"segv"|"sys.exit"} it takes the instance down.
WORKER = """
import ctypes, os, sys, time

INSTANCE = os.urandom(8).hex()

def handler(event, context):
    event = event or {}
    if "loop" in event:
        with open(os.path.join(event["loop"], "pid"), "w") as f:
            f.write(INSTANCE)
        while True:
            pass
    if event.get("crash") == "exit":
        print("about to exit")
        os._exit(3)
    if event.get("crash") == "segv":
        ctypes.string_at(0)
    if event.get("crash") == "sys.exit":
        sys.exit(5)
    return {"pid": INSTANCE}
"""


def pid_of(result: RunResult) -> str:
    """The token of the instance that ran ``result``."""
    assert result.ok, result
    token: str = json.loads(result.result)["pid"]
    return token


def only_pid(pool: InstancePool, urn: str | None = None) -> int:
    """The process id of the one live instance (of ``urn``)."""
    pids = pool.instance_pids(urn)
    assert len(pids) == 1, pids
    return pids[0]


async def test_warm_instance_is_reused(pool: InstancePool) -> None:
    fn = make_function(WORKER)
    first = pid_of(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
    second = pid_of(await pool.invoke(fn.spec, b"{}", "r2", fn.load))
    assert first == second
    assert len(pool.instance_pids()) == 1
    assert len(fn.loads) == 1  # the package was fetched once


async def test_new_digest_gets_a_new_instance(pool: InstancePool) -> None:
    old = make_function(WORKER)
    new = make_function(WORKER + "\n# changed\n")
    assert old.spec.urn == new.spec.urn
    old_token = pid_of(await pool.invoke(old.spec, b"{}", "r1", old.load))
    old_pid = only_pid(pool)
    new_token = pid_of(await pool.invoke(new.spec, b"{}", "r2", new.load))
    assert new_token != old_token
    # The old code's idle instance is retired rather than kept until reaped.
    await wait_for_async(lambda: not pid_alive(old_pid), what="old instance stopped")
    assert only_pid(pool) != old_pid


async def test_max_instances_is_respected(pool: InstancePool, scratch: Path) -> None:
    fn = make_function(
        """
        import os, time
        INSTANCE = os.urandom(8).hex()
        def handler(event, context):
            running = os.path.join(event, "running")
            mine = os.path.join(running, context.getRequestID())
            open(mine, "w").close()
            seen = len(os.listdir(running))
            while not os.path.exists(os.path.join(event, "go")):
                time.sleep(0.005)
            os.remove(mine)
            return {"pid": INSTANCE, "seen": seen}
        """,
        max_instances=2,
    )
    (scratch / "running").mkdir(mode=0o777)
    (scratch / "running").chmod(0o777)  # whatever the umask
    event = json.dumps(str(scratch)).encode()
    results: list[RunResult] = []

    async def one(n: int) -> None:
        results.append(await pool.invoke(fn.spec, event, f"r{n}", fn.load))

    async with anyio.create_task_group() as tasks:
        for n in range(5):
            tasks.start_soon(one, n)
        await wait_for_async(lambda: len(os.listdir(scratch / "running")) == 2)
        assert len(pool.instance_pids(fn.spec.urn)) == 2
        (scratch / "go").touch()
    values = [json.loads(r.result) for r in results]
    assert len(values) == 5
    assert max(v["seen"] for v in values) == 2
    assert len({v["pid"] for v in values}) == 2


# How an instance is killed is covered for both by the cancel tests; the timeout is the same.
@pytest.mark.parametrize("fork", [True], ids=["fork"])
async def test_timeout_kills_only_that_instance(pool: InstancePool, scratch: Path) -> None:
    fn = make_function(WORKER, timeout=1)
    loop_event = json.dumps({"loop": str(scratch)}).encode()
    with anyio.fail_after(10):
        looping, quick = await _gather(
            pool.invoke(fn.spec, loop_event, "r1", fn.load),
            pool.invoke(fn.spec, b"{}", "r2", fn.load),
        )
    assert looping.error_code == ErrorCode.TIMEOUT
    assert looping.error_message == "function timed out after 1s"
    assert looping.duration_ms >= 1000
    survivor = pid_of(quick)
    assert survivor != (scratch / "pid").read_text()
    survivor_pid = only_pid(pool)  # the looping one is gone
    assert pid_of(await pool.invoke(fn.spec, b"{}", "r3", fn.load)) == survivor
    assert only_pid(pool) == survivor_pid


@pytest.mark.parametrize(
    ("crash", "message", "in_log"),
    [
        ("exit", "function instance exited with code 3", "about to exit"),
        ("segv", "function instance was killed by signal 11 (SIGSEGV)", "Segmentation fault"),
        ("sys.exit", "function instance exited with code 5", ""),
    ],
)
async def test_crash_is_reported_and_the_pool_still_serves(
    pool: InstancePool, crash: str, message: str, in_log: str
) -> None:
    fn = make_function(WORKER)
    before = pid_of(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
    before_pid = only_pid(pool)
    event = json.dumps({"crash": crash}).encode()
    result = await pool.invoke(fn.spec, event, "r2", fn.load)
    assert result.error_code == ErrorCode.INSTANCE_CRASHED
    assert result.error_message == message
    assert in_log in result.log
    assert not pid_alive(before_pid)
    after = pid_of(await pool.invoke(fn.spec, b"{}", "r3", fn.load))
    assert after != before


async def test_cancel_a_running_invocation(pool: InstancePool, scratch: Path) -> None:
    fn = make_function(WORKER)
    results: list[RunResult] = []

    async def run() -> None:
        event = json.dumps({"loop": str(scratch)}).encode()
        results.append(await pool.invoke(fn.spec, event, "doomed", fn.load))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await wait_for_async((scratch / "pid").exists, what="handler running")
        doomed = only_pid(pool)
        assert await pool.cancel("doomed")
    assert results[0].error_code == ErrorCode.CANCELED
    assert results[0].error_message == "function invocation canceled"
    assert not pid_alive(doomed)
    assert not await pool.cancel("doomed")
    assert not await pool.cancel("never-seen")
    assert pid_of(await pool.invoke(fn.spec, b"{}", "r2", fn.load))


async def test_cancel_an_invocation_waiting_for_an_instance(
    pool: InstancePool, scratch: Path
) -> None:
    fn = make_function(WORKER, max_instances=1)
    results: dict[str, RunResult] = {}

    async def run(request_id: str, event: bytes) -> None:
        results[request_id] = await pool.invoke(fn.spec, event, request_id, fn.load)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run, "busy", json.dumps({"loop": str(scratch)}).encode())
        await wait_for_async((scratch / "pid").exists, what="handler running")
        tasks.start_soon(run, "waiting", b"{}")
        # cancel() says no until the call has reached the pool.
        await wait_for_async(lambda: pool.cancel("waiting"), what="queued call canceled")
        await wait_for_async(lambda: "waiting" in results, what="waiting call finished")
        assert await pool.cancel("busy")
    assert results["waiting"].error_code == ErrorCode.CANCELED
    assert results["busy"].error_code == ErrorCode.CANCELED


async def test_environment_is_scrubbed(pool: InstancePool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFGS_SECRET_KEY", "s3cret-value")
    monkeypatch.setenv("PYTHONPATH", "/service/only")
    fn = make_function(
        """
        import os, sys
        def handler(event, context):
            return {
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "path0": sys.path[0],
                "home_is_dir": os.path.isdir(os.environ["HOME"]),
            }
        """,
        user_data={"GREETING": "hi", "RUNTIME_EXTRA": "x"},
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    seen = json.loads(result.result)
    env = seen["env"]
    assert not [key for key in env if key.startswith("OPENFGS_")]
    assert "s3cret-value" not in json.dumps(env)
    assert "PYTHONPATH" not in env
    assert env["GREETING"] == "hi"
    assert env["RUNTIME_FUNC_NAME"] == "fn"
    assert json.loads(env["RUNTIME_USERDATA"]) == {"GREETING": "hi", "RUNTIME_EXTRA": "x"}
    assert seen["cwd"] == env["RUNTIME_CODE_ROOT"] == seen["path0"]
    assert Path(seen["cwd"]).name == fn.spec.code_digest
    assert seen["home_is_dir"]
    assert env["HOME"] != seen["cwd"]
    allowed = {"GREETING", "PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "MALLOC_ARENA_MAX"}
    assert {key for key in env if not key.startswith("RUNTIME_")} == allowed


async def test_protocol_pipes_are_not_inherited(pool: InstancePool) -> None:
    fn = make_function(
        """
        import os
        def handler(event, context):
            inheritable = []
            for fd in map(int, os.listdir("/proc/self/fd")):
                try:
                    if os.get_inheritable(fd):
                        inheritable.append(fd)
                except OSError:  # the directory listing's own descriptor
                    pass
            return sorted(inheritable)
        """
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    # Only stdin/stdout/stderr would reach a subprocess the handler starts.
    assert json.loads(result.result) == [0, 1, 2]


async def test_idle_instances_are_reaped(work_dir: Path) -> None:
    pool = InstancePool(work_dir, idle_seconds=0.2)
    fn = make_function(WORKER)
    try:
        token = pid_of(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
        pid = only_pid(pool)
        await wait_for_async(lambda: not pid_alive(pid), what="idle instance reaped")
        assert pool.instance_pids() == []
        again = pid_of(await pool.invoke(fn.spec, b"{}", "r2", fn.load))
        assert again != token
    finally:
        await pool.close()


async def test_close_kills_everything(work_dir: Path, scratch: Path) -> None:
    pool = InstancePool(work_dir)
    idle = make_function(WORKER, name="idle")
    busy = make_function(WORKER, name="busy")
    pid_of(await pool.invoke(idle.spec, b"{}", "r1", idle.load))
    idle_pid = only_pid(pool)
    results: list[RunResult] = []

    async def run() -> None:
        event = json.dumps({"loop": str(scratch)}).encode()
        results.append(await pool.invoke(busy.spec, event, "r2", busy.load))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await wait_for_async((scratch / "pid").exists, what="handler running")
        busy_pid = only_pid(pool, busy.spec.urn)
        await pool.close()
    assert not pid_alive(idle_pid)
    assert not pid_alive(busy_pid)
    assert results[0].error_code == ErrorCode.INTERRUPTED
    assert pool.instance_pids() == []
    with pytest.raises(RuntimeError):
        await pool.invoke(idle.spec, b"{}", "r3", idle.load)


async def test_grandchildren_die_with_their_instance(pool: InstancePool, scratch: Path) -> None:
    fn = make_function(
        f"""
        import subprocess, time
        def handler(event, context):
            child = subprocess.Popen(["sleep", "60"])
            with open({str(scratch / "child")!r}, "w") as f:
                f.write(str(child.pid))
            time.sleep(60)
        """
    )
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await pool.invoke(fn.spec, b"{}", "r1", fn.load))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await wait_for_async((scratch / "child").exists, what="grandchild started")
        (child,) = children_of(only_pid(pool))
        assert await pool.cancel("r1")
    assert results[0].error_code == ErrorCode.CANCELED
    await wait_for_async(lambda: not pid_alive(child), what="grandchild killed")


async def _gather(*awaitables: Awaitable[RunResult]) -> list[RunResult]:
    results: dict[int, RunResult] = {}

    async def one(index: int, awaitable: Awaitable[RunResult]) -> None:
        results[index] = await awaitable

    async with anyio.create_task_group() as tasks:
        for index, awaitable in enumerate(awaitables):
            tasks.start_soon(one, index, awaitable)
    return [results[i] for i in range(len(awaitables))]
