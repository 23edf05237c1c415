"""Attempted escapes from the sandbox, each of which must fail, and containment of functions
that misbehave, while another function's invocations keep succeeding.

These need root (a user per function, control groups, namespaces) and are skipped without it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from openfgs.models import ErrorCode
from openfgs.runtime import InstancePool, RunResult
from openfgs.runtime.cgroups import group_dir
from openfgs.runtime.sandbox import SandboxPolicy
from tests.runtime.runtime_support import children_of, make_function, pid_alive
from tests.support import wait_for_async

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs the tests run as root"),
]

SECRET = "hunter2-do-not-leak"

# Keeps a secret in its environment, its HOME and an exec'd child (exec makes a process
# dumpable again), and stays warm with that child running.
VICTIM = """
import os, subprocess

INSTANCE = os.urandom(8).hex()
children = []

def handler(event, context):
    if not children:
        children.append(subprocess.Popen(["sleep", "600"]))
        with open(os.path.join(os.environ["HOME"], "secret"), "w") as f:
            f.write(os.environ["DB_PASSWORD"])
    return {"home": os.environ["HOME"], "instance": INSTANCE}
"""

# Looks for every process it can see and tries everything it can on the pids it is given.
ATTACKER = """
import ctypes, os, signal

libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17

def attempt(action):
    try:
        action()
        return "ok"
    except Exception as exc:
        return type(exc).__name__

def read(path):
    with open(path, "rb") as f:
        return f.read()

def ptrace(pid):
    if libc.ptrace(PTRACE_ATTACH, pid, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "ptrace")
    libc.ptrace(PTRACE_DETACH, pid, 0, 0)

def plant(path):
    with open(path, "w") as f:
        f.write("planted")

def text(path):
    try:
        return read(path).decode(errors="replace")
    except OSError:
        return ""

def visible():
    seen = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            seen.append({
                "pid": int(entry),
                "uid": os.stat("/proc/" + entry).st_uid,
                "environ": text("/proc/%s/environ" % entry),
                "cmdline": text("/proc/%s/cmdline" % entry),
            })
    return seen

def handler(event, context):
    pids, home = event["pids"], event["home"]
    outcome = {
        "uid": os.getuid(),
        "visible": visible(),
        "environ": [attempt(lambda p=p: read("/proc/%d/environ" % p)) for p in pids],
        "mem": [attempt(lambda p=p: open("/proc/%d/mem" % p, "rb").close()) for p in pids],
        "ptrace": [attempt(lambda p=p: ptrace(p)) for p in pids],
        "kill": [attempt(lambda p=p: os.kill(p, signal.SIGKILL)) for p in pids],
        "home": [
            attempt(lambda: os.listdir(home)),
            attempt(lambda: read(home + "/secret")),
            attempt(lambda: plant(home + "/planted")),
        ],
    }
    attempt(lambda: os.kill(-1, signal.SIGKILL))  # every process it may signal
    return outcome
"""


def reply(result: RunResult) -> Any:
    """What the handler returned (a successful run's result, decoded)."""
    assert result.ok, result
    return json.loads(result.result)


def group_pids(pid: int) -> list[int]:
    """The processes in the control group of process ``pid`` (its instance's group)."""
    directory = group_dir(pid, "pids")
    assert directory is not None
    return [int(line) for line in (directory / "cgroup.procs").read_text().split()]


@pytest.fixture(params=[True, False], ids=["fork", "spawn"])
def fork(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_strict_isolation_is_the_default_for_root(pool: InstancePool) -> None:
    sandbox = await pool.prepared()
    assert (sandbox.level, sandbox.problems, sandbox.refusal) == ("strict", (), "")
    assert sandbox.cgroups is not None and sandbox.namespaces


async def test_a_function_cannot_reach_another_functions_processes_or_files(
    pool: InstancePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENFGS_DATABASE_URL", "postgresql://service:secret@db/openfgs")
    victim = make_function(VICTIM, name="victim", user_data={"DB_PASSWORD": SECRET})
    attacker = make_function(ATTACKER, name="attacker")
    before = reply(await pool.invoke(victim.spec, b"{}", "v1", victim.load))
    (victim_pid,) = pool.instance_pids(victim.spec.urn)
    (child,) = children_of(victim_pid)
    targets = [victim_pid, child, os.getpid()]  # the service too (its command line)
    if pool.template_pid is not None:
        targets.append(pool.template_pid)
    event = json.dumps({"pids": targets, "home": before["home"]}).encode()
    seen = reply(await pool.invoke(attacker.spec, event, "a1", attacker.load))
    for attempt in ("environ", "mem", "ptrace", "kill"):
        assert "ok" not in seen[attempt], (attempt, seen[attempt])
    assert seen["home"] == ["PermissionError"] * 3
    # It sees its own processes only: its own user, nothing of the victim's or the service's.
    assert seen["visible"] and {p["uid"] for p in seen["visible"]} == {seen["uid"]}
    for process in seen["visible"]:
        assert SECRET not in process["environ"]
        assert "postgresql" not in process["environ"] + process["cmdline"]
    # The victim is untouched, even by kill(-1, SIGKILL).
    assert pid_alive(victim_pid) and pid_alive(child)
    after = reply(await pool.invoke(victim.spec, b"{}", "v2", victim.load))
    assert after["instance"] == before["instance"]
    assert "planted" not in os.listdir(before["home"])


async def test_functions_get_users_of_their_own(pool: InstancePool) -> None:
    source = "import os\ndef handler(event, context):\n    return [os.getuid(), os.getgid()]\n"
    one = make_function(source, name="one")
    two = make_function(source, name="two")
    first = reply(await pool.invoke(one.spec, b"{}", "r1", one.load))
    second = reply(await pool.invoke(two.spec, b"{}", "r2", two.load))
    assert first[0] == first[1] and second[0] == second[1]
    assert first != second
    assert reply(await pool.invoke(one.spec, b"{}", "r3", one.load)) == first  # stable


# Its constructor, run by a process it is preloaded into, leaves a mark saying who ran it.
EVIL_SO = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ran-as-%d", MARK_DIR, (int)geteuid());
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
}
"""


@pytest.fixture
def evil_library(base: Path, scratch: Path) -> Path:
    """A library whose constructor marks ``scratch``; a path that does not exist without a C
    compiler (ld.so then complains in the log of a process it is preloaded into)."""
    library = base / "evil.so"
    compiler = shutil.which("cc")
    if compiler is not None:
        source = base / "evil.c"
        source.write_text(EVIL_SO)
        subprocess.run(
            [compiler, "-shared", "-fPIC", f'-DMARK_DIR="{scratch}"', "-o", library, source],
            check=True,
        )
        library.chmod(0o755)
    return library


@pytest.mark.parametrize("fork", [False], ids=["spawn"])
async def test_user_data_cannot_preload_code_into_a_privileged_process(
    pool: InstancePool, scratch: Path, evil_library: Path
) -> None:
    library = evil_library
    # Without a compiler the path does not exist, and ld.so complains in the log if it tries.
    user_data = {"LD_PRELOAD": str(library), "PYTHONSTARTUP": str(library), "SAFE": "yes"}
    fn = make_function(
        """
        import os, subprocess
        def handler(event, context):
            subprocess.run(["true"])
            return sorted(k for k in os.environ if k in ("LD_PRELOAD", "PYTHONSTARTUP", "SAFE"))
        """,
        user_data=user_data,
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert reply(result) == ["SAFE"]  # reserved names are skipped, the rest are set
    assert "preloaded" not in result.log
    assert os.listdir(scratch) == []


async def test_a_fork_bomb_is_contained(work_dir: Path, fork: bool) -> None:
    pool = InstancePool(work_dir, fork=fork, sandbox=SandboxPolicy(max_processes=64))
    bomb = make_function(
        """
        import os, time
        def handler(event, context):
            started = 0
            for _ in range(1000):
                try:
                    if os.fork() == 0:
                        time.sleep(600)
                        os._exit(0)
                except OSError:
                    break
                started += 1
            return started
        """,
        name="bomb",
    )
    other = make_function("def handler(event, context):\n    return 'fine'\n", name="other")
    try:
        started = reply(await pool.invoke(bomb.spec, b"{}", "b1", bomb.load))
        assert 0 < started < 64
        (instance,) = pool.instance_pids(bomb.spec.urn)
        processes = group_pids(instance)
        assert started < len(processes) <= 64
        assert reply(await pool.invoke(other.spec, b"{}", "o1", other.load)) == "fine"
    finally:
        await pool.close()
    # Killed; the kernel may still be finishing their exits after the group reads empty.
    await wait_for_async(
        lambda: not any(pid_alive(pid) for pid in processes), what="the bomb's processes gone"
    )


async def test_memory_counts_children(pool: InstancePool) -> None:
    # Three children of 100 MB each hold more than the function's 128 MB together.
    hog = make_function(
        """
        import os, time
        def handler(event, context):
            children = []
            for _ in range(3):
                pid = os.fork()
                if pid == 0:
                    block = b"x" * (100 << 20)
                    time.sleep(2)
                    os._exit(0)
                children.append(pid)
            return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        """,
        name="hog",
        memory_size=128,
        timeout=60,
    )
    other = make_function("def handler(event, context):\n    return 'fine'\n", name="other")
    result = await pool.invoke(hog.spec, b"{}", "h1", hog.load)
    if result.ok:  # the kernel killed a child: the instance itself lives on
        assert -signal.SIGKILL in json.loads(result.result)
    else:
        assert result.error_code == ErrorCode.OUT_OF_MEMORY, result
    assert reply(await pool.invoke(other.spec, b"{}", "o1", other.load)) == "fine"


async def test_memory_size_holds_for_the_instance_itself(pool: InstancePool) -> None:
    # 300 MB is within the address space cap (memory_size + 512 MB), not within memory_size.
    hog = make_function(
        """
        def handler(event, context):
            block = b"x" * (300 << 20)
            return len(block)
        """,
        name="hog",
        memory_size=128,
        timeout=60,
    )
    result = await pool.invoke(hog.spec, b"{}", "h1", hog.load)
    assert result.error_code == ErrorCode.OUT_OF_MEMORY, result
    assert result.error_message == (
        "function ran out of memory (memory_size 128 MB, children included)"
    )
    assert pool.instance_pids() == []


async def test_a_spinning_function_gets_its_cpu_share(pool: InstancePool, scratch: Path) -> None:
    spinner = make_function(
        f"""
        import os
        def handler(event, context):
            open({str(scratch / "spinning")!r}, "w").close()
            while True:
                pass
        """,
        name="spinner",
        timeout=30,
    )
    other = make_function("def handler(event, context):\n    return 'fine'\n", name="other")
    results: list[RunResult] = []

    async def spin() -> None:
        results.append(await pool.invoke(spinner.spec, b"{}", "s1", spinner.load))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(spin)
        await wait_for_async((scratch / "spinning").exists, what="spinning")
        (instance,) = pool.instance_pids(spinner.spec.urn)
        cpu = group_dir(instance, "cpu")
        assert cpu is not None
        # 128 MB gets 100 millicores: a weight of 102 where a whole CPU weighs 1024.
        assert (cpu / "cpu.shares").read_text().strip() == "102"
        assert reply(await pool.invoke(other.spec, b"{}", "o1", other.load)) == "fine"
        assert await pool.cancel("s1")
    assert results[0].error_code == ErrorCode.CANCELED
    assert not pid_alive(instance)


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"])


DAEMON = """
import os, time

def handler(event, context):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                time.sleep(1)
        os._exit(0)
    os.wait()
    return "started"
"""


async def test_a_daemon_dies_with_its_instance(pool: InstancePool, fork: bool) -> None:
    fn = make_function(DAEMON, name="daemon", timeout=5)
    assert reply(await pool.invoke(fn.spec, b"{}", "d1", fn.load)) == "started"
    (instance,) = pool.instance_pids(fn.spec.urn)
    processes = group_pids(instance)
    assert len(processes) > 1 + (not fork)  # a spawned instance waits for its namespaces
    await pool.close()
    assert not any(pid_alive(pid) for pid in processes)


async def test_a_new_pool_removes_what_an_earlier_run_left(work_dir: Path) -> None:
    first = InstancePool(work_dir)
    sandbox = first.prepare()
    assert sandbox.cgroups is not None
    await first.close()
    # What a service killed outright leaves: a group of its pool with a process in it.
    leftover = sandbox.cgroups.group("left-by-an-earlier-run")
    process = sleeper()
    try:
        for directory in leftover.dirs.values():
            directory.mkdir(parents=True)
            (directory / "cgroup.procs").write_text(str(process.pid))
        second = InstancePool(work_dir)
        second.prepare()
        await anyio.to_thread.run_sync(process.wait)  # killed, or this test times out
        assert process.returncode == -signal.SIGKILL
        assert not any(directory.exists() for directory in leftover.dirs.values())
        await second.close()
    finally:
        process.kill()
        process.wait()


async def test_no_instance_process_outlives_a_closed_pool(work_dir: Path) -> None:
    first = InstancePool(work_dir)
    fn = make_function(DAEMON, name="daemon")
    assert reply(await first.invoke(fn.spec, b"{}", "d1", fn.load)) == "started"
    (instance,) = first.instance_pids()
    processes = group_pids(instance)
    await first.close()
    second = InstancePool(work_dir)
    try:
        sandbox = second.prepare()
        assert sandbox.cgroups is not None
        assert not any(pid_alive(pid) for pid in processes)
        groups = [p for parent in sandbox.cgroups.parents.values() for p in parent.iterdir()]
        assert not [p for p in groups if p.is_dir()]
    finally:
        await second.close()


async def test_loopback_network_cannot_reach_the_service(work_dir: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fn = make_function(
        textwrap.dedent(
            f"""
            import socket
            def handler(event, context):
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
                    return "connected"
                except OSError as exc:
                    return type(exc).__name__
            """
        )
    )
    try:
        outcomes = []
        for network in ("loopback", "host"):
            pool = InstancePool(work_dir, sandbox=SandboxPolicy(network=network))
            try:
                outcomes.append(reply(await pool.invoke(fn.spec, b"{}", network, fn.load)))
            finally:
                await pool.close()
    finally:
        listener.close()
    assert outcomes == ["ConnectionRefusedError", "connected"]


async def test_a_second_live_pool_on_the_same_work_dir_leaves_the_first_alone(
    pool: InstancePool, work_dir: Path
) -> None:
    fn = make_function(VICTIM, name="victim", user_data={"DB_PASSWORD": SECRET})
    before = reply(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
    (instance,) = pool.instance_pids()
    second = InstancePool(work_dir)
    try:
        second.prepare()  # finds the first one's groups and HOMEs, and must not clean them
        assert pid_alive(instance)
        assert reply(await pool.invoke(fn.spec, b"{}", "r2", fn.load)) == before
    finally:
        await second.close()
