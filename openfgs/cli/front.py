"""A front process of ``serve --processes N``: the API only, started by the primary.

Not a command for users: the primary (:mod:`openfgs.procs`) starts it with its settings in
``OPENFGS_*`` variables, one end of a socket pair (``--channel-fd``) and its own process id.
It listens on the same host and port as the primary (``SO_REUSEPORT``), runs no worker and no
timers, and on SQLite reads the database itself and sends every write to the primary over the
socket pair. It stops gracefully on SIGTERM (SIGINT, which Ctrl-C sends the whole group, it leaves
to the primary, which stops its fronts first), when that socket closes, and — through
the kernel's parent-death signal — when the primary dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from openfgs.cli.server import configure_logging, serve_headers
from openfgs.errors import OpenFgsError
from openfgs.metrics import share_between_processes
from openfgs.services import Services
from openfgs.settings import Settings, load_settings
from openfgs.store import Store, create_store
from openfgs.store.forward import ForwardChannel, ForwardingStore
from openfgs.store.sqlite import SqliteStore

PR_SET_PDEATHSIG = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openfgs-front", description=__doc__)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--metrics-dir", type=Path)
    args = parser.parse_args(argv)
    die_with(args.parent, signal.SIGTERM)
    channel = socket.socket(fileno=args.channel_fd)
    try:
        settings = load_settings().with_overrides(worker=False)
        configure_logging(settings)
        if args.metrics_dir is not None:
            share_between_processes(args.metrics_dir)
        return run_front(settings, args.index, channel)
    except OpenFgsError as exc:
        print(f"openfgs front {args.index}: {exc}", file=sys.stderr)
        return 1


def die_with(parent: int, signum: int) -> None:
    """Have the kernel send ``signum`` when the parent dies (Linux); exit if it did already."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        pass  # elsewhere the closed channel alone ends the front
    if os.getppid() != parent:
        os._exit(1)


class FrontServer(uvicorn.Server):
    """uvicorn stopping gracefully on SIGTERM only.

    Ctrl-C sends SIGINT to the whole process group; the primary then stops its fronts itself
    (SIGTERM), after which they would otherwise be started again as if they had died.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._stop)
        yield

    def _stop(self, signum: int, frame: Any) -> None:
        self.should_exit = True


def run_front(settings: Settings, index: int, channel: socket.socket) -> int:
    from openfgs.api import create_app
    from openfgs.api.observe import observed
    from openfgs.api.server import server_config, shared_socket

    server: FrontServer | None = None

    def primary_gone() -> None:
        if server is not None:
            server.should_exit = True

    store = front_store(settings, channel, primary_gone)
    watch = not isinstance(store, ForwardingStore)  # which reads its channel itself
    services = Services.build(settings, store=store, front=index)
    outer = [observed(services)] if settings.metrics else []
    app = create_app(services, outer=outer)
    config = server_config(app, settings, headers=serve_headers(index))
    server = FrontServer(config)
    sock = shared_socket(settings.host, settings.port, config.backlog)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve(services, server, sock, channel, watch))
    return 0 if server.started else 1


async def _serve(
    services: Services,
    server: uvicorn.Server,
    sock: socket.socket,
    channel: socket.socket,
    watch: bool,
) -> None:
    lifeline = asyncio.create_task(_watch(channel, server)) if watch else None
    try:
        await services.start()
        await server.serve(sockets=[sock])
    finally:
        if lifeline is not None:
            lifeline.cancel()
        await services.stop()


async def _watch(channel: socket.socket, server: uvicorn.Server) -> None:
    """PostgreSQL: the channel carries nothing; its end means the primary is gone."""
    channel.setblocking(False)
    loop = asyncio.get_running_loop()
    while await loop.sock_recv(channel, 1):
        pass
    server.should_exit = True


def front_store(settings: Settings, channel: socket.socket, on_lost: Callable[[], None]) -> Store:
    """SQLite: the database read-only, writes over the channel; PostgreSQL: the database."""
    store = create_store(settings)
    if isinstance(store, SqliteStore):
        return ForwardingStore(store.path, ForwardChannel(channel, on_lost=on_lost))
    return store


if __name__ == "__main__":
    sys.exit(main())
