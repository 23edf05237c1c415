"""One function instance: a child process running the bootstrap, seen from the service.

The process is forked by the template (``template.py``) or, when that is not possible, spawned
as ``sys.executable -I -S bootstrap.py``. Either way it runs in its own session, control group
and namespaces (the pool's ``Sandbox``), so stopping it ends anything user code started; before
importing user code it writes its limits into its group, drops to its user, takes the config
frame's environment (built from scratch: nothing of the service's own environment reaches user
code, and nothing of the function's reaches a privileged process) and enters its code
directory (see ``bootstrap.enter_sandbox``). Its HOME/TMPDIR is a private directory made by
the pool.

Memory: the child caps its address space (RLIMIT_AS) at ``memory_size`` + 512 MB. Address space
is not resident memory: the interpreter, shared libraries and thread stacks reserve far more
than they touch (a bare interpreter maps ~15 MB, each thread 8 MB of stack), so the 512 MB
headroom keeps ordinary code working while an allocation well past ``memory_size`` still raises
MemoryError. ``MALLOC_ARENA_MAX=2`` stops glibc from reserving 64 MB per thread, which would
otherwise eat the headroom in threaded code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from openfgs.models import ErrorCode, cpu_millicores
from openfgs.runtime import bootstrap
from openfgs.runtime.cgroups import Group, Limits
from openfgs.runtime.environment import env_name_problem
from openfgs.runtime.families import (
    HTTP,
    NODE_BOOTSTRAP,
    PYTHON,
    RuntimeFamily,
    family_of,
    node_executable,
)
from openfgs.runtime.isolation import User
from openfgs.runtime.output import Output, OutputCollector
from openfgs.runtime.sandbox import START_ENV, Sandbox
from openfgs.runtime.template import Forker
from openfgs.runtime.types import FunctionSpec, RunResult

ADDRESS_SPACE_HEADROOM_MB = 512
# Importing the module may take longer than a short-timeout function is allowed to run.
MIN_LOAD_SECONDS = 30.0
# How long output may trail the frame it belongs to, and how long a dying process may take to
# be reported after its pipes closed.
OUTPUT_GRACE_SECONDS = 2.0
EXIT_GRACE_SECONDS = 2.0
MAX_HEADER_BYTES = 1 << 20
# What node writes when V8's heap reached its limit, just before it aborts.
V8_HEAP_EXHAUSTED = "JavaScript heap out of memory"
# Where an HTTP function's server listens, in its own network namespace (FunctionGraph's rule).
HTTP_PORT = 8000
OWN_NETWORK = bootstrap.OWN_NETWORK
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

BOOTSTRAP = Path(bootstrap.__file__)

_STATUS_CODES = {
    bootstrap.OK: ErrorCode.OK,
    bootstrap.FUNCTION_ERROR: ErrorCode.FUNCTION_ERROR,
    bootstrap.INITIALIZER_FAILED: ErrorCode.INITIALIZER_FAILED,
    bootstrap.OUT_OF_MEMORY: ErrorCode.OUT_OF_MEMORY,
    bootstrap.RESULT_TOO_LARGE: ErrorCode.RESULT_TOO_LARGE,
}
# After these the instance is in a known state and may serve again.
_REUSABLE = frozenset({bootstrap.OK, bootstrap.FUNCTION_ERROR, bootstrap.RESULT_TOO_LARGE})


class ProtocolError(Exception):
    """The instance sent something that is not a frame of ours."""


class RuntimeUnavailable(Exception):
    """What a function's runtime needs is not on this host (node, say): its invocations fail."""


# What a broken instance looks like from the service: pipe errors, EOF, garbage.
_BROKEN = (OSError, EOFError, ValueError, ProtocolError)


def environment(spec: FunctionSpec, code_dir: Path, home: Path) -> dict[str, str]:
    """The instance's whole environment: FunctionGraph's RUNTIME_* variables and user_data."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:{SAFE_PATH}",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(home),
        "MALLOC_ARENA_MAX": "2",
        "RUNTIME_PROJECT_ID": spec.project_id,
        "RUNTIME_FUNC_NAME": spec.name,
        "RUNTIME_FUNC_VERSION": spec.version,
        "RUNTIME_PACKAGE": spec.package,
        "RUNTIME_HANDLER": spec.handler,
        "RUNTIME_TIMEOUT": str(spec.timeout),
        "RUNTIME_USERDATA": json.dumps(spec.user_data),
        "RUNTIME_CPU": str(cpu_millicores(spec.memory_size)),
        "RUNTIME_MEMORY": str(spec.memory_size),
        "RUNTIME_CODE_ROOT": str(code_dir),
    }
    for key, value in spec.user_data.items():
        # Names that steer the loader, the interpreter or the runtime are refused at create and
        # update; one stored anyway is skipped rather than failing every start.
        if env_name_problem(key) is None and "\0" not in value:
            env[key] = value
    return env


class ChildProcess(Protocol):
    """The process behind an instance, however it was started."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def exited(self) -> bool: ...

    def kill(self) -> None:
        """SIGKILL it and its process group."""

    async def wait(self) -> None:
        """Until it has exited."""


class SpawnedProcess:
    """An instance started as a new interpreter: the service's own child."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def exited(self) -> bool:
        return self._process.returncode is not None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)

    async def wait(self) -> None:
        await self._process.wait()


def out_of_memory(spec: FunctionSpec) -> str:
    """The message of an instance whose group went over its memory (children included)."""
    return f"function ran out of memory (memory_size {spec.memory_size} MB, children included)"


def describe_exit(returncode: int | None) -> str:
    """Why an instance went away, for ``error_message``."""
    if returncode is None:
        return "function instance stopped answering (its reply pipe closed)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"function instance was killed by signal {-returncode} ({name})"
    return f"function instance exited with code {returncode}"


class Instance:
    """A started child process serving one function version, one invocation at a time."""

    def __init__(
        self,
        spec: FunctionSpec,
        process: ChildProcess,
        channel: _Channel,
        output: OutputCollector,
        home: Path,
        max_log_bytes: int,
        group: Group | None = None,
    ) -> None:
        self.spec = spec
        self.fingerprint = fingerprint(spec)
        self.last_used = time.monotonic()
        self.reusable = True
        self._process = process
        self._channel = channel
        self._output = output
        self._home = home
        self._group = group
        self._max_log_bytes = max_log_bytes
        self._pending = Output()  # output not yet reported: startup, or between invocations
        self._final = Output()  # output collected while stopping
        self._fate: tuple[ErrorCode, str] | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The child's process id (also its process group and session id)."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the instance can still take an invocation."""
        return self._stopping is None and not self._process.exited

    @classmethod
    async def start(
        cls,
        spec: FunctionSpec,
        code_dir: Path,
        home: Path,
        user: User | None,
        forker: Forker | None,
        max_log_bytes: int,
        sandbox: Sandbox,
    ) -> Instance:
        """Start the child and send its configuration; call ``boot()`` next.

        ``home`` becomes the instance's: it is removed when the instance stops.
        """
        marker = f"\0\x1bopenfgs:{secrets.token_hex(16)}\0".encode()
        env = environment(spec, code_dir, home)
        family = family_of(spec.runtime) or PYTHON
        config = _config(spec, marker, code_dir, env, user, sandbox, family)
        first_frame = _Channel.frame(config, b"")
        try:
            if family.program == "node":
                launched = await _launch_node(
                    spec.memory_size, sandbox, forker, marker, max_log_bytes, first_frame
                )
            else:
                launched = await _launch(
                    code_dir, sandbox, forker, marker, max_log_bytes, first_frame
                )
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        process, group, channel, output, unsent = launched
        instance = cls(spec, process, channel, output, home, max_log_bytes, group)
        if unsent:
            try:
                await channel.send_frame(unsent)
            except _BROKEN:
                pass  # it died at once; boot() reports how
        return instance

    async def boot(self) -> RunResult | None:
        """Wait for the module to load and the initializer to finish; a FAIL result if not."""
        spec = self.spec
        load_seconds = max(float(spec.timeout), MIN_LOAD_SECONDS)
        stages = [(load_seconds, ErrorCode.FUNCTION_ERROR, "function module did not load")]
        if spec.initializer_handler:
            init_seconds = float(spec.initializer_timeout or spec.timeout)
            stages.append((init_seconds, ErrorCode.INITIALIZER_FAILED, "initializer timed out"))
        for seconds, code, late in stages:
            try:
                async with asyncio.timeout(seconds):
                    header, _ = await self._channel.receive(0)
            except TimeoutError:
                return await self._fail(code, f"{late} after {seconds:g}s")
            except _BROKEN:
                return await self._fail(*await self._crash())
            await self._collect_output()
            status = str(header.get("status"))
            if status != bootstrap.OK:
                reported = _STATUS_CODES.get(status, ErrorCode.FUNCTION_ERROR)
                return await self._fail(reported, str(header.get("message", "")))
        return None

    async def run(
        self,
        event: bytes,
        request_id: str,
        max_result_bytes: int,
        attributes: dict[str, str] | None = None,
    ) -> RunResult:
        """Run one invocation within the function's timeout; ``attributes`` go with it
        (``invoke_type``, ``alias``)."""
        header = {
            **(attributes or {}),
            "request_id": request_id,
            "max_result_bytes": max_result_bytes,
        }
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.spec.timeout):
                await self._channel.send(header, event)
                reply, body = await self._channel.receive(max_result_bytes)
        except TimeoutError:
            elapsed = (time.monotonic() - started) * 1000
            message = f"function timed out after {self.spec.timeout}s"
            return await self._fail(ErrorCode.TIMEOUT, message, elapsed)
        except _BROKEN:
            return await self._fail(*await self._crash())
        self.last_used = time.monotonic()
        await self._collect_output()
        return self._result(reply, body)

    async def kill(self, code: ErrorCode, message: str) -> None:
        """Stop the instance; an invocation in flight fails with ``code`` and ``message``."""
        if self._fate is None and self._stopping is None:
            self._fate = (code, message)
        await self.stop()

    async def stop(self) -> None:
        """Kill the process group and release pipes and HOME; safe to call any number of times."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        self._process.kill()
        if self._group is not None:  # whatever it started dies with it, daemons included
            await asyncio.to_thread(self._group.kill)
        await self._process.wait()
        self._channel.close()
        self._final = await self._output.drain(OUTPUT_GRACE_SECONDS)
        await self._output.close()
        if self._group is not None:
            await asyncio.to_thread(self._group.remove)
        await asyncio.to_thread(shutil.rmtree, self._home, True)

    async def _collect_output(self) -> None:
        segment = await self._output.next_segment(OUTPUT_GRACE_SECONDS)
        self._pending = self._pending.then(segment, self._max_log_bytes)

    def _take_log(self) -> str:
        log, self._pending = self._pending, Output()
        return log.text()

    async def _crash(self) -> tuple[ErrorCode, str]:
        # The pipes close while the process exits; give the exit a moment to be reported so
        # the message can name the exit code or signal.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), EXIT_GRACE_SECONDS)
        if self._group is not None and self._group.oom_killed():
            return ErrorCode.OUT_OF_MEMORY, out_of_memory(self.spec)
        return ErrorCode.INSTANCE_CRASHED, describe_exit(self._process.returncode)

    async def _fail(self, code: ErrorCode, message: str, duration_ms: float = 0.0) -> RunResult:
        await self.stop()
        self.reusable = False
        if self._fate is not None:
            code, message = self._fate
        self._pending = self._pending.then(self._final, self._max_log_bytes)
        log = self._take_log()
        node = (family_of(self.spec.runtime) or PYTHON).program == "node"
        if node and code == ErrorCode.INSTANCE_CRASHED and V8_HEAP_EXHAUSTED in log:
            # V8 aborts when the heap reaches its limit (sized for memory_size); as process 1
            # of its namespace node then dies of SIGSEGV rather than SIGABRT.
            code, message = ErrorCode.OUT_OF_MEMORY, out_of_memory(self.spec)
        return RunResult(
            ok=False, error_code=code, error_message=message, log=log, duration_ms=duration_ms
        )

    def _result(self, reply: dict[str, Any], body: bytes) -> RunResult:
        status = str(reply.get("status"))
        # A runtime whose user process died answering (a custom runtime's bootstrap) says so.
        self.reusable = status in _REUSABLE and reply.get("reusable", True) is not False
        ok = status == bootstrap.OK
        return RunResult(
            ok=ok,
            result=body.decode("utf-8", "replace") if ok else "",
            error_code=_STATUS_CODES.get(status, ErrorCode.FUNCTION_ERROR),
            error_message=str(reply.get("message", "")),
            error_result="" if ok else body.decode("utf-8", "replace"),
            log=self._take_log(),
            duration_ms=float(reply.get("duration_ms", 0.0)),
            memory_used_mb=round(float(reply.get("maxrss_kb", 0)) / 1024, 1),
        )


class _Channel:
    """The service's end of the protocol pipes."""

    def __init__(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
        self._writer = writer
        self._reader = reader
        self._read_transport: asyncio.BaseTransport | None = None

    @classmethod
    async def connect(cls, request_fd: int, reply_fd: int) -> _Channel:
        """Wrap the write end of the request pipe and the read end of the reply pipe."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(reply_fd, "rb", buffering=0)
        )
        write_transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
            os.fdopen(request_fd, "wb", buffering=0),
        )
        channel = cls(asyncio.StreamWriter(write_transport, protocol, None, loop), reader)
        channel._read_transport = read_transport
        return channel

    @staticmethod
    def frame(header: dict[str, Any], body: bytes) -> bytes:
        """One frame on the wire."""
        encoded = json.dumps(header).encode()
        return bootstrap.FRAME.pack(len(encoded), len(body)) + encoded + body

    async def send(self, header: dict[str, Any], body: bytes) -> None:
        """Write one frame and wait until the pipe took it."""
        await self.send_frame(self.frame(header, body))

    async def send_frame(self, data: bytes) -> None:
        """Write encoded frame bytes and wait until the pipe took them."""
        self._writer.write(data)
        await self._writer.drain()

    async def receive(self, max_body: int) -> tuple[dict[str, Any], bytes]:
        """Read one frame; a frame larger than expected is a protocol error."""
        header_size, body_size = bootstrap.FRAME.unpack(
            await self._reader.readexactly(bootstrap.FRAME.size)
        )
        if header_size > MAX_HEADER_BYTES or body_size > max_body:
            raise ProtocolError(f"oversized frame ({header_size}, {body_size})")
        header = json.loads(await self._reader.readexactly(header_size))
        if not isinstance(header, dict):
            raise ProtocolError("frame header is not an object")
        return header, await self._reader.readexactly(body_size)

    def close(self) -> None:
        """Close both pipes; the instance sees EOF on its request pipe."""
        self._writer.close()
        if self._read_transport is not None:
            self._read_transport.close()


# Every field but max_instances, which is the pool's business, not the child's.
_FINGERPRINTED = tuple(
    field.name for field in dataclasses.fields(FunctionSpec) if field.name != "max_instances"
)


def fingerprint(spec: FunctionSpec) -> str:
    """What an instance was started from: every field of ``spec`` that reaches the child.

    Instances are reused only for an equal fingerprint, so changing code or configuration
    (handler, memory, timeout, user data, initializer, ...) gets new instances.
    """
    values = [getattr(spec, name) for name in _FINGERPRINTED]
    return hashlib.blake2b(json.dumps(values, sort_keys=True).encode()).hexdigest()


def _config(
    spec: FunctionSpec,
    marker: bytes,
    code_dir: Path,
    env: dict[str, str],
    user: User | None,
    sandbox: Sandbox,
    family: RuntimeFamily,
) -> dict[str, Any]:
    millicores = cpu_millicores(spec.memory_size)
    limits: dict[str, dict[str, str]] = {}
    if sandbox.cgroups is not None:
        limits = sandbox.cgroups.limit_files(
            Limits(spec.memory_size, millicores, sandbox.max_processes)
        )
    return {
        "handler": spec.handler,
        "initializer": spec.initializer_handler,
        "initializer_timeout": spec.initializer_timeout or spec.timeout,
        "timeout": spec.timeout,
        "memory_size": spec.memory_size,
        "cpu": millicores,
        "function_name": spec.name,
        "version": spec.version,
        "package": spec.package,
        "project_id": spec.project_id,
        "user_data": spec.user_data,
        "marker": marker.decode(),
        # node and whatever a custom runtime starts reserve gigabytes of address space they
        # never touch: their memory is the control group's to limit.
        "address_space_mb": spec.memory_size + ADDRESS_SPACE_HEADROOM_MB
        if family.program == "python"
        else 0,
        "runtime": spec.runtime,
        "program": family.program,
        "network": OWN_NETWORK if family is HTTP else "",
        "http_port": HTTP_PORT,
        "region": spec.urn.split(":")[2] if spec.urn.count(":") > 2 else "",
        "alias": "",
        "code_dir": str(code_dir),
        "env": env,
        "user": None if user is None else user.as_config(),
        "cgroup_limits": limits,
    }


async def _launch(
    code_dir: Path | None,
    sandbox: Sandbox,
    forker: Forker | None,
    marker: bytes,
    max_log_bytes: int,
    first_frame: bytes,
    node: dict[str, Any] | None = None,
) -> tuple[ChildProcess, Group | None, _Channel, OutputCollector, bytes]:
    """Start the process; returns what of ``first_frame`` still has to be sent."""
    # Our own pipes rather than stdout=PIPE: asyncio's Process.wait() would otherwise also wait
    # for every grandchild holding the output pipe to exit.
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    output_read, output_write = os.pipe()
    child_ends = (request_read, reply_write, output_write)
    # Whatever fits in the pipe now is there when the child starts, saving a round trip.
    os.set_blocking(request_write, False)
    try:
        unsent = first_frame[os.write(request_write, first_frame) :]
    except BlockingIOError:
        unsent = first_frame
    process: ChildProcess | None = None
    group: Group | None = None
    try:
        if forker is not None:
            forked = await forker.fork(child_ends)
            if forked is not None and forked.group and sandbox.cgroups is not None:
                group = sandbox.cgroups.group(forked.group)
            process = forked
        if process is None:
            process, group = await _spawn(code_dir, sandbox, child_ends, node)
    except BaseException:
        for fd in (request_write, reply_read, output_read):
            os.close(fd)
        raise
    finally:
        for fd in child_ends:
            os.close(fd)
    channel, output = await _connect(
        process, (request_write, reply_read, output_read), marker, max_log_bytes
    )
    return process, group, channel, output, unsent


async def _launch_node(
    memory_size: int,
    sandbox: Sandbox,
    forker: Forker | None,
    marker: bytes,
    max_log_bytes: int,
    first_frame: bytes,
) -> tuple[ChildProcess, Group | None, _Channel, OutputCollector, bytes]:
    """A node instance: a started standby from the template (which comes with its pipes),
    else a spawned bootstrap that becomes node (node's own start-up is then on the path)."""
    forked = await forker.fork_node(memory_size) if forker is not None else None
    if forked is None:
        argv = node_argv()
        if not argv:
            raise RuntimeUnavailable("Node.js functions need node on this host's PATH")
        spawned = {"node": argv, "memory_size": memory_size}
        return await _launch(None, sandbox, None, marker, max_log_bytes, first_frame, spawned)
    process, ends = forked
    group = None
    if process.group and sandbox.cgroups is not None:
        group = sandbox.cgroups.group(process.group)
    channel, output = await _connect(process, ends, marker, max_log_bytes)
    return process, group, channel, output, first_frame


async def _connect(
    process: ChildProcess, ends: tuple[int, int, int], marker: bytes, max_log_bytes: int
) -> tuple[_Channel, OutputCollector]:
    """The service's ends of a started instance's pipes (request, reply, output) on the loop;
    the process is killed when they cannot be."""
    request_write, reply_read, output_read = ends
    try:
        channel = await _Channel.connect(request_write, reply_read)
        output = await OutputCollector.connect(output_read, marker, max_log_bytes)
    except BaseException:
        process.kill()
        raise
    return channel, output


def node_argv() -> list[str]:
    """How a node instance starts: node and the Node.js bootstrap; [] without node."""
    node = node_executable()
    return [node, str(NODE_BOOTSTRAP)] if node else []


async def _spawn(
    code_dir: Path | None,
    sandbox: Sandbox,
    child_ends: tuple[int, int, int],
    node: dict[str, Any] | None = None,
) -> tuple[SpawnedProcess, Group | None]:
    """A new interpreter, in a control group the pool makes for it (off the fast path);
    with ``node`` (its argv and memory size), it becomes node once in its namespaces."""
    group = None
    if sandbox.cgroups is not None:
        group = await asyncio.to_thread(sandbox.cgroups.create, f"s{secrets.token_hex(8)}")
    options = {**sandbox.options, "group": {} if group is None else _strs(group.dirs)}
    if node:
        options.update(node)
    request_read, reply_write, output_write = child_ends
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # no PYTHON* variables, no user site, no script dir on sys.path
            "-S",  # no site-packages: the service's packages are not the function's
            str(BOOTSTRAP),
            str(request_read),
            str(reply_write),
            json.dumps(options),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output_write,
            stderr=output_write,
            cwd=code_dir or "/",
            # The interpreter starts as the service's user: user_data (LD_PRELOAD, say) must
            # not steer it. The instance takes its environment from the config frame, after
            # dropping privileges.
            env=START_ENV,
            pass_fds=(request_read, reply_write),
            start_new_session=True,
        )
    except BaseException:
        if group is not None:
            await asyncio.to_thread(group.remove)
        raise
    return SpawnedProcess(process), group


def _strs(paths: dict[str, Path]) -> dict[str, str]:
    return {key: str(path) for key, path in paths.items()}
