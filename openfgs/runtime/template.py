"""The template: a warm interpreter that forks new instances, seen from the service.

Starting a Python interpreter and importing the bootstrap costs tens of milliseconds; forking a
process that has already done it costs about one. The template is started once per pool (lazily,
by the first cold start, and again whenever it has died) and forks instances on request; see
``bootstrap.Template`` for its side of the socket. It forks each instance ahead of need, into
its namespaces and control group (a *standby*), so a cold start only hands it its pipes.

A forked instance is the template's child, not the service's, so the service cannot ``wait()``
for it. It holds a pidfd instead (signals through it cannot hit a recycled pid) and learns the
exit code from the template, which reaps its children and reports each exit. If the template
dies, its instances die with it (their parent-death signal) and their exit codes are unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from openfgs.runtime import bootstrap
from openfgs.runtime.sandbox import START_ENV

log = logging.getLogger("openfgs.runtime")

BOOTSTRAP = Path(bootstrap.__file__)
# Interpreter start-up plus the bootstrap's imports; far more means something is wrong.
START_TIMEOUT_SECONDS = 10.0
# A fork takes about a millisecond; a template this slow is stuck and gets replaced.
FORK_TIMEOUT_SECONDS = 5.0
# After the template failed to start, cold starts spawn interpreters for this long.
RETRY_SECONDS = 30.0


def fork_supported() -> bool:
    """Whether this platform has what forking instances needs."""
    return all(
        (
            hasattr(os, "fork"),
            hasattr(os, "pidfd_open"),
            hasattr(signal, "pidfd_send_signal"),
            hasattr(socket, "send_fds"),
            hasattr(socket, "SOCK_SEQPACKET"),
        )
    )


class TemplateError(Exception):
    """The template is not there, or did not fork."""


class ForkedProcess:
    """An instance forked by the template: a pid, a pidfd, and the exit the template reports."""

    def __init__(self, pid: int, pidfd: int, group: str = "") -> None:
        self.pid = pid
        self.group = group  # its control group's name under the pool's parents ("" for none)
        self.returncode: int | None = None  # None also when it exited unseen with its template
        self.exited = False
        self._pidfd = pidfd
        self._done = asyncio.Event()
        self._watching = False

    def kill(self) -> None:
        """SIGKILL the instance and everything in its process group."""
        if not self.exited:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            # Whoever kills it does not need its exit code, and must not wait on a template
            # that may be the reason it is being killed.
            self.watch_pidfd()
        # Its children share its process group; the group outlives the instance itself.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def wait(self) -> None:
        """Until the instance has exited."""
        await self._done.wait()

    def set_exited(self, returncode: int | None) -> None:
        if self.exited:
            return
        self.exited = True
        self.returncode = returncode
        if self._watching:
            asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._done.set()

    def watch_pidfd(self) -> None:
        """Notice the exit through the pidfd: for when no template is left to report it."""
        if self.exited or self._watching:
            return
        self._watching = True
        asyncio.get_running_loop().add_reader(self._pidfd, self.set_exited, None)


class Template:
    """One running template process and the service's end of its socket."""

    def __init__(self, process: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self._process = process
        self._sock = sock
        # Requests awaiting an answer: the instance and the descriptors that came with it.
        self._forks: list[asyncio.Future[tuple[ForkedProcess, list[int]]]] = []
        self._instances: dict[int, ForkedProcess] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.alive = True

    @property
    def pid(self) -> int:
        """The template's process id."""
        return self._process.pid

    @classmethod
    async def start(cls, run_as: tuple[int, int] | None, sandbox: dict[str, Any]) -> Template:
        """Start a template for instances that will run as ``run_as`` (their paths are checked
        for that user) in ``sandbox`` (``Sandbox.options``); wait until it is ready."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        options = json.dumps({"run_as": run_as, "sandbox": sandbox})
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                str(BOOTSTRAP),
                "template",
                str(theirs.fileno()),
                options,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                env=START_ENV,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # the service's terminal signals are not for it
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        template = cls(process, ours)
        asyncio.get_running_loop().add_reader(ours.fileno(), template._readable)
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await template._ready
        except BaseException:
            await template.close()
            raise
        return template

    async def fork(self, fds: tuple[int, int, int]) -> ForkedProcess:
        """Have the template fork an instance holding ``fds`` (request, reply, log pipe ends)."""
        instance, extra = await self._request(b'{"fork": true}', list(fds))
        for fd in extra:
            os.close(fd)
        return instance

    async def fork_node(self, memory_size: int) -> tuple[ForkedProcess, tuple[int, int, int]]:
        """A started node instance for a function of ``memory_size`` MB (its heap is sized
        at start) and the service's ends of its pipes (request write, reply read, log read):
        node cannot be handed pipes, so it comes with its own."""
        request = {"fork": True, "program": "node", "memory_size": memory_size}
        instance, pipes = await self._request(json.dumps(request).encode(), [])
        if len(pipes) != 3:
            for fd in pipes:
                os.close(fd)
            instance.kill()
            raise TemplateError(f"expected 3 pipes with a node instance, got {len(pipes)}")
        return instance, (pipes[0], pipes[1], pipes[2])

    async def _request(self, message: bytes, fds: list[int]) -> tuple[ForkedProcess, list[int]]:
        if not self.alive:
            raise TemplateError("the template has exited")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[ForkedProcess, list[int]]] = loop.create_future()
        try:
            socket.send_fds(self._sock, [message], fds)
        except OSError as exc:  # including a full socket buffer: the template is not reading
            raise TemplateError(f"cannot reach the template: {exc}") from exc
        self._forks.append(future)
        try:
            async with asyncio.timeout(FORK_TIMEOUT_SECONDS):
                return await future
        except TimeoutError:
            raise TemplateError("the template did not fork in time") from None

    async def close(self) -> None:
        """Stop the template; instances it forked die with it."""
        self._lost()
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        await self._process.wait()

    def _readable(self) -> None:
        while self.alive:
            try:
                message, fds, _, _ = socket.recv_fds(self._sock, 4096, 4, socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message:
                for fd in fds:
                    os.close(fd)
                self._lost()
                return
            self._dispatch(json.loads(message), fds)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        if "exited" in message:
            instance = self._instances.pop(int(message["exited"]), None)
            if instance is not None:
                instance.set_exited(message["returncode"])
            return
        if "ready" in message:
            if not self._ready.done():
                if message.get("problem"):  # it cannot make instances: spawn them instead
                    self._ready.set_exception(TemplateError(str(message["problem"])))
                else:
                    self._ready.set_result(None)
            return
        future = self._forks.pop(0) if self._forks else None
        if "forked" in message and fds:
            instance = ForkedProcess(int(message["forked"]), fds[0], str(message.get("group", "")))
            # Registered before anyone can miss its exit report, which may come next.
            self._instances[instance.pid] = instance
            if future is None or future.done():  # its requester gave up: nobody will stop it
                instance.kill()
                for fd in fds[1:]:
                    os.close(fd)
            else:
                future.set_result((instance, fds[1:]))
            return
        for fd in fds:
            os.close(fd)
        if future is not None and not future.done():
            future.set_exception(TemplateError(str(message.get("error", message))))

    def _lost(self) -> None:
        """The socket closed or the template is going: nothing more will come from it."""
        if not self.alive:
            return
        self.alive = False
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        self._sock.close()
        error = TemplateError("the template exited")
        for future in self._forks:
            if not future.done():
                future.set_exception(error)
        self._forks.clear()
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved here when start() is no longer waiting
        for instance in self._instances.values():
            instance.watch_pidfd()
        self._instances.clear()


class Forker:
    """Forks instances from a template that it starts when first needed and replaces when dead.

    ``fork()`` returns None whenever no template can do it, and the caller spawns instead.
    """

    def __init__(self, run_as: tuple[int, int] | None, sandbox: dict[str, Any]) -> None:
        self._run_as = run_as
        self._sandbox = sandbox
        self._template: Template | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0

    @property
    def template_pid(self) -> int | None:
        """The running template's process id, if there is one."""
        template = self._template
        return template.pid if template is not None and template.alive else None

    async def fork(self, fds: tuple[int, int, int]) -> ForkedProcess | None:
        """A forked instance holding ``fds``, or None when forking is not possible now."""
        template = await self._running_template()
        if template is None:
            return None
        try:
            return await template.fork(fds)
        except TemplateError as exc:
            log.warning("instance template failed, replacing it: %s", exc)
            await self._retire(template)
            return None

    async def fork_node(
        self, memory_size: int
    ) -> tuple[ForkedProcess, tuple[int, int, int]] | None:
        """A started node instance with its pipes, or None when no template can give one."""
        template = await self._running_template()
        if template is None:
            return None
        try:
            return await template.fork_node(memory_size)
        except TemplateError as exc:
            log.warning("instance template could not give a node instance: %s", exc)
            if not template.alive:
                await self._retire(template)
            return None

    async def close(self) -> None:
        """Stop the template (after the pool has stopped its instances)."""
        async with self._lock:
            template, self._template = self._template, None
        if template is not None:
            await template.close()

    async def _running_template(self) -> Template | None:
        async with self._lock:
            if self._template is not None and self._template.alive:
                return self._template
            if self._template is not None:  # it died: collect it and start another
                await self._template.close()
                self._template = None
            if time.monotonic() < self._retry_at:
                return None
            try:
                self._template = await Template.start(self._run_as, self._sandbox)
            except (OSError, TemplateError, TimeoutError) as exc:
                log.warning("cannot start the instance template, spawning instead: %s", exc)
                self._retry_at = time.monotonic() + RETRY_SECONDS
            return self._template

    async def _retire(self, template: Template) -> None:
        async with self._lock:
            if self._template is template:
                self._template = None
        await template.close()
