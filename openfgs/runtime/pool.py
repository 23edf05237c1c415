"""The instance pool: which instance runs an invocation, how many exist, and when they go.

Instances are grouped per function version (``spec.urn``) and reused only for the fingerprint
they were started with: the code digest and every other field of the spec that reaches the
child. When the fingerprint changes, idle instances of the old one are retired at once and busy
ones when their invocation ends (it finishes on the old code). A function has at most
``spec.max_instances`` instances, starting or running or idle; further invocations wait for one
to come free. Idle instances are reaped after ``idle_seconds`` by a background task that starts
with the first invocation.

New instances are forked from a template process when ``fork`` is on and the platform allows
it, and spawned as new interpreters otherwise (see ``template.py``). Either way they run in
the pool's sandbox (``sandbox.py``), decided when the pool is first used: control groups left
by an earlier run of the same pool are emptied and removed then, and again when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from openfgs.models import CANCELED_MESSAGE, ErrorCode
from openfgs.runtime import cgroups
from openfgs.runtime.code import BUNDLE, DEPENDENCY, CodePackageError
from openfgs.runtime.instance import Instance, RuntimeUnavailable, fingerprint, node_argv
from openfgs.runtime.isolation import CODE_GROUPS, FUNCTION_IDS, Workspace
from openfgs.runtime.sandbox import Sandbox, SandboxPolicy, pool_tag, resolve
from openfgs.runtime.template import Forker, fork_supported
from openfgs.runtime.types import CodeLoader, DependencyLoader, FunctionSpec, RunResult

log = logging.getLogger("openfgs.runtime")

CLOSED_MESSAGE = "function invocation interrupted: the runtime is shutting down"
# FunctionGraph discards an instance whose initializer failed and tries a new one, 3 in all.
INITIALIZER_ATTEMPTS = 3


@dataclass
class _Call:
    """An invocation between ``invoke()`` and its result, for ``cancel()`` to find."""

    urn: str
    request_id: str
    fingerprint: str  # of the spec it runs with
    code_digest: str
    layers: tuple[str, ...] = ()  # a bundle's code package and dependency digests
    instance: Instance | None = None
    canceled: bool = False
    done: bool = False
    attributes: dict[str, str] = field(default_factory=dict)  # sent with the event
    earlier_log: str = ""  # of instances whose initializer failed before the one that ran


@dataclass
class _Group:
    """The instances of one function version."""

    fingerprint: str  # of the spec new instances are started from
    idle: list[Instance] = field(default_factory=list)  # most recently used last
    size: int = 0  # instances starting, running or idle
    users: int = 0  # invocations in progress
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class InstancePool:
    """Runs invocations on pooled function instances (child processes).

    ``fork``: start instances by forking a template process (when the platform can), rather
    than spawning an interpreter each time. ``run_as``: the (uid, gid) every instance runs as;
    by default ("auto") a user of its own per function, from ``function_ids``, when the service
    runs as root, else the service's own user (None). ``code_groups``: group ids, unused
    elsewhere on the host, that give each code package's instances (and no others) access to
    it (see ``isolation.py``). ``sandbox``: isolation, process limit and network of instances.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        idle_seconds: float = 300.0,
        max_log_bytes: int = 64 * 1024,
        fork: bool = True,
        run_as: tuple[int, int] | Literal["auto"] | None = "auto",
        code_groups: range = CODE_GROUPS,
        function_ids: range = FUNCTION_IDS,
        sandbox: SandboxPolicy | None = None,
        load_dependency: DependencyLoader | None = None,
    ) -> None:
        per_function = run_as == "auto" and os.geteuid() == 0
        self._workspace = Workspace(
            work_dir,
            None if run_as == "auto" else run_as,
            code_groups,
            function_ids if per_function else None,
        )
        self._work_dir = work_dir
        self._policy = sandbox or SandboxPolicy()
        self._sandbox: Sandbox | None = None
        self._preparing = asyncio.Lock()
        self._fork = fork and fork_supported()
        self._forker: Forker | None = None
        self._idle_seconds = idle_seconds
        self._max_log_bytes = max_log_bytes
        self._groups: dict[str, _Group] = {}
        self._calls: dict[str, _Call] = {}
        self._instances: set[Instance] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._load_dependency = load_dependency

    async def invoke(
        self,
        spec: FunctionSpec,
        event: bytes,
        request_id: str,
        load_code: CodeLoader,
        *,
        max_result_bytes: int = 6 * 1024 * 1024,
        invoke_type: str = "sync",
        alias: str = "",
    ) -> RunResult:
        """Run one invocation and report its outcome; failures of user code are results.

        ``invoke_type`` ("sync" or "async") and ``alias`` (the alias invoked, "" for none)
        reach the function: custom runtimes see the first, every context ``getAlias()``.

        Exceptions are the service's own trouble: ``load_code()`` failing, the pool being
        closed, or the process not starting at all.
        """
        if self._closed:
            raise RuntimeError("the instance pool is closed")
        self._start_reaper()
        call = _Call(spec.urn, request_id, fingerprint(spec), spec.code_digest)
        if spec.dependencies:
            call.layers = (spec.package_digest, *spec.dependencies)
        self._calls[request_id] = call
        group = self._groups.get(spec.urn)
        if group is None:
            group = self._groups[spec.urn] = _Group(call.fingerprint)
        group.users += 1
        try:
            call.attributes = {"invoke_type": invoke_type, "alias": alias}
            result = await self._invoke(spec, group, call, event, load_code, max_result_bytes)
        finally:
            call.done = True
            group.users -= 1
            if self._calls.get(request_id) is call:
                del self._calls[request_id]
        if call.canceled:  # cancel() said yes, so the caller gets CANCELED whatever happened
            return _failure(ErrorCode.CANCELED, CANCELED_MESSAGE, result.log)
        return result

    async def cancel(self, request_id: str) -> bool:
        """Stop the invocation ``request_id``; False when no such invocation is in progress."""
        call = self._calls.get(request_id)
        if call is None or call.done:
            return False
        call.canceled = True
        if call.instance is not None:
            await call.instance.kill(ErrorCode.CANCELED, CANCELED_MESSAGE)
        else:  # waiting for an instance: wake it so it notices
            await self._notify(self._groups[call.urn])
        return True

    def prepare(self) -> Sandbox:
        """Lay out the work directory, decide the sandbox and remove what an earlier run of
        this pool left; once. Blocking (it probes the host): the service calls it at start."""
        if self._sandbox is None:
            self._workspace.prepare()
            per_function = self._workspace.function_ids is not None
            tag = pool_tag(self._work_dir, self._workspace.exclusive)
            sandbox = resolve(self._policy, tag, per_function)
            if sandbox.cgroups is not None:
                left = sandbox.cgroups.sweep()
                if left:
                    log.warning("killed the processes of %d instances of an earlier run", left)
            (log.info if sandbox.level == "strict" else log.warning)("%s", sandbox.describe())
            if self._fork:
                options = {**sandbox.options, "node": node_argv()}
                self._forker = Forker(self._workspace.run_as, options)
            self._sandbox = sandbox
        return self._sandbox

    @property
    def sandbox(self) -> Sandbox | None:
        """What instances of this pool get; None until ``prepare()``."""
        return self._sandbox

    async def close(self) -> None:
        """Kill every instance and wait for them; invocations in flight fail as interrupted."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        instances = list(self._instances)
        await asyncio.gather(
            *(i.kill(ErrorCode.INTERRUPTED, CLOSED_MESSAGE) for i in instances),
            *(self._notify(group) for group in self._groups.values()),
        )
        self._instances.difference_update(instances)
        await asyncio.gather(*self._stopping)
        if self._forker is not None:
            await self._forker.close()
        if self._sandbox is not None and self._sandbox.cgroups is not None:
            await asyncio.to_thread(self._sandbox.cgroups.sweep)  # standbys the template left
            cgroups.remove_parents(self._sandbox.cgroups)
        self._workspace.close()

    async def sweep_code(self, keep: Collection[str]) -> list[str]:
        """Remove unpacked code whose digest is neither in ``keep`` nor in use; return those.

        Code an invocation in progress uses stays. Idle instances of removed code are
        stopped, as their files are gone.
        """
        in_use = {call.code_digest for call in self._calls.values()}
        in_use.update(digest for call in self._calls.values() for digest in call.layers)
        removed = set(self._workspace.detach_code(set(keep) | in_use))
        for group in self._groups.values():
            for instance in [i for i in group.idle if i.spec.code_digest in removed]:
                group.idle.remove(instance)
                group.size -= 1
                self._discard(instance)
        await self._workspace.purge_code()
        return sorted(removed)

    @property
    def run_as(self) -> tuple[int, int] | None:
        """The (uid, gid) instances run as; None when they run as the service's user."""
        return self._workspace.run_as

    @property
    def template_pid(self) -> int | None:
        """The process id of the running template, if there is one."""
        return self._forker.template_pid if self._forker is not None else None

    def instance_pids(self, urn: str | None = None) -> list[int]:
        """Process ids of live instances (of one function, if ``urn`` is given)."""
        return sorted(
            i.pid for i in self._instances if i.alive and (urn is None or i.spec.urn == urn)
        )

    def instance_states(self) -> dict[str, int]:
        """How many instances are starting, busy (running an invocation) and idle (metrics)."""
        idle = sum(len(group.idle) for group in self._groups.values())
        slots = sum(group.size for group in self._groups.values())
        live = len(self._instances)
        return {
            "starting": max(slots - live, 0),
            "busy": max(live - idle, 0),
            "idle": idle,
        }

    async def _invoke(
        self,
        spec: FunctionSpec,
        group: _Group,
        call: _Call,
        event: bytes,
        load_code: CodeLoader,
        max_result_bytes: int,
    ) -> RunResult:
        sandbox = await self.prepared()
        if sandbox.refusal:
            return _failure(ErrorCode.FUNCTION_ERROR, sandbox.refusal)
        try:
            code_dir = await self._code_dir(spec, load_code)
        except CodePackageError as exc:
            return _failure(ErrorCode.FUNCTION_ERROR, str(exc))
        acquired = await self._acquire(spec, group, call, code_dir)
        if isinstance(acquired, RunResult):
            return self._with_earlier_log(call, acquired)
        call.instance = acquired
        reusable = False
        try:
            result = await acquired.run(event, call.request_id, max_result_bytes, call.attributes)
            reusable = acquired.reusable
        finally:
            call.instance = None  # from here on cancel() must not kill it
            await self._release(group, acquired, reusable)
        return self._with_earlier_log(call, result)

    def _with_earlier_log(self, call: _Call, result: RunResult) -> RunResult:
        if not call.earlier_log:
            return result
        return replace(result, log=(call.earlier_log + result.log)[-self._max_log_bytes :])

    async def _code_dir(self, spec: FunctionSpec, load_code: CodeLoader) -> Path:
        """The directory ``spec``'s instances run in: its code package, or with dependencies
        the bundle of it and of each dependency (each unpacked once per node, by digest)."""
        if not spec.dependencies:
            return await self._workspace.code_dir(spec, load_code)
        load_dependency = self._load_dependency
        if load_dependency is None:
            raise CodePackageError("this runtime was given no way to load dependencies")
        package = replace(spec, code_digest=spec.package_digest, dependencies=())
        sources = [await self._workspace.code_dir(package, load_code)]
        for digest in spec.dependencies:
            layer = replace(package, code_digest=digest, code_type=DEPENDENCY)
            loader = functools.partial(load_dependency, digest)
            sources.append(await self._workspace.code_dir(layer, loader))
        manifest = json.dumps([str(source) for source in sources]).encode()

        async def load_manifest() -> bytes:
            return manifest

        return await self._workspace.code_dir(replace(spec, code_type=BUNDLE), load_manifest)

    async def prepared(self) -> Sandbox:
        """``prepare()``, off the event loop; once."""
        if self._sandbox is not None:
            return self._sandbox
        async with self._preparing:
            return await asyncio.to_thread(self.prepare)

    async def _acquire(
        self, spec: FunctionSpec, group: _Group, call: _Call, code_dir: Path
    ) -> Instance | RunResult:
        """A booted instance for ``spec``, or the FAIL result of starting one. An initializer
        that fails is given a new instance, up to FunctionGraph's three attempts."""
        for _ in range(INITIALIZER_ATTEMPTS - 1):
            acquired = await self._acquire_once(spec, group, call, code_dir)
            if not isinstance(acquired, RunResult):
                return acquired
            call.earlier_log += acquired.log  # the output of every failed attempt is kept
            if acquired.error_code != ErrorCode.INITIALIZER_FAILED:
                return acquired
        return await self._acquire_once(spec, group, call, code_dir)

    async def _acquire_once(
        self, spec: FunctionSpec, group: _Group, call: _Call, code_dir: Path
    ) -> Instance | RunResult:
        async with group.changed:
            while True:
                if call.canceled:
                    return _failure(ErrorCode.CANCELED, CANCELED_MESSAGE)
                if self._closed:
                    return _failure(ErrorCode.INTERRUPTED, CLOSED_MESSAGE)
                self._retire_stale(group, call.fingerprint)
                if instance := self._take_idle(group):
                    return instance
                # A cap below one would make every invocation wait forever.
                if group.size < max(spec.max_instances, 1):
                    group.size += 1
                    break
                await group.changed.wait()
        return await self._start(spec, group, call, code_dir)

    async def _start(
        self, spec: FunctionSpec, group: _Group, call: _Call, code_dir: Path
    ) -> Instance | RunResult:
        """Start and boot an instance in a slot already counted in ``group.size``."""
        assert self._sandbox is not None  # _invoke() prepared it
        try:
            user = self._workspace.user(spec)
            instance = await Instance.start(
                spec,
                code_dir,
                self._workspace.make_home(user),
                user,
                self._forker,
                self._max_log_bytes,
                self._sandbox,
            )
        except RuntimeUnavailable as exc:
            await self._release(group, None, False)
            return _failure(ErrorCode.FUNCTION_ERROR, str(exc))
        except BaseException:
            await self._release(group, None, False)
            raise
        self._instances.add(instance)
        call.instance = instance  # cancel() during a cold start kills it
        if self._closed:  # close() ran while the process was starting
            await instance.kill(ErrorCode.INTERRUPTED, CLOSED_MESSAGE)
        try:
            failure = await instance.boot()
        except BaseException:
            await self._release(group, instance, False)
            raise
        finally:
            call.instance = None
        if failure is not None:
            await self._release(group, instance, False)
            return failure
        return instance

    async def _release(self, group: _Group, instance: Instance | None, reusable: bool) -> None:
        """Return an instance to the idle list, or retire it and free its slot."""
        keep = (
            instance is not None
            and reusable
            and instance.alive
            and instance.fingerprint == group.fingerprint
            and not self._closed
        )
        if keep and instance is not None:
            instance.last_used = time.monotonic()
            group.idle.append(instance)
        else:
            group.size -= 1
            if instance is not None:
                self._discard(instance)
        await self._notify(group)

    def _take_idle(self, group: _Group) -> Instance | None:
        while group.idle:
            instance = group.idle.pop()
            if instance.alive:
                return instance
            group.size -= 1  # it died while idle
            self._discard(instance)
        return None

    def _retire_stale(self, group: _Group, current: str) -> None:
        # A new fingerprint means code or configuration changed: the old instances are done.
        if current == group.fingerprint:
            return
        group.fingerprint = current
        for instance in group.idle:
            group.size -= 1
            self._discard(instance)
        group.idle.clear()

    def _discard(self, instance: Instance) -> None:
        """Stop an instance in the background; ``close()`` waits for it."""
        self._instances.discard(instance)
        task = asyncio.create_task(instance.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _notify(self, group: _Group) -> None:
        async with group.changed:
            group.changed.notify_all()

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        # Checking a few times per idle period keeps an instance at most ~25% past its time.
        interval = min(max(self._idle_seconds / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            self.reap_idle()

    def reap_idle(self) -> int:
        """Stop instances idle for longer than ``idle_seconds``; returns how many."""
        cutoff = time.monotonic() - self._idle_seconds
        reaped = 0
        for urn, group in list(self._groups.items()):
            expired = [i for i in group.idle if i.last_used < cutoff or not i.alive]
            for instance in expired:
                group.idle.remove(instance)
                group.size -= 1
                self._discard(instance)
            reaped += len(expired)
            if group.size == 0 and group.users == 0:
                del self._groups[urn]
                self._workspace.release(urn)
        return reaped


def _failure(code: ErrorCode, message: str, log: str = "") -> RunResult:
    return RunResult(ok=False, error_code=code, error_message=message, log=log)
