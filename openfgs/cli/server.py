"""The server commands: serve, worker, db migrate, credentials create."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openfgs.auth.service import new_credential
from openfgs.cli.options import settings_flags, settings_from
from openfgs.errors import ConfigError
from openfgs.first_run import first_run
from openfgs.logs import TEXT_FORMAT, log_handler
from openfgs.metrics import share_between_processes
from openfgs.models import Credential, now_ms
from openfgs.procs import Fronts
from openfgs.services import Services
from openfgs.settings import Settings, settings_environ
from openfgs.store import create_store
from openfgs.store.forward import ForwardServer
from openfgs.store.sqlite import SqliteStore

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("openfgs")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    every_setting = settings_flags()
    usage = "%(prog)s [-h] [settings]"
    serve = sub.add_parser(
        "serve",
        parents=[every_setting],
        usage=usage,
        help="run the API and, unless --no-worker, a worker",
        description="Run the API and, unless --no-worker, a worker. The first start of a new "
        "store prints a credential, saves it in the data dir's profile, and deploys the demo "
        "function hello.",
    )
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser(
        "worker",
        parents=[every_setting],
        usage=usage,
        help="run a worker only (no HTTP)",
        description="Run a worker only: it claims and runs async invocations, serves no HTTP.",
    )
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="the database").add_subparsers(dest="action", required=True)
    migrate = db.add_parser(
        "migrate",
        parents=[every_setting],
        usage=usage,
        help="apply the numbered migrations not yet applied",
    )
    migrate.set_defaults(func=cmd_db_migrate)

    credentials = sub.add_parser("credentials", help="manage credentials").add_subparsers(
        dest="action", required=True
    )
    create = credentials.add_parser(
        "create",
        # The credential settings would be the one serve ensures: here they mean nothing.
        parents=[settings_flags(exclude=("project_id", "access_key", "secret_key"))],
        usage="%(prog)s [-h] [--project-id ID] [settings]",
        help="create a credential and print it as JSON",
    )
    create.add_argument(
        "--project-id", dest="new_project_id", metavar="ID", help="its project (default: a new one)"
    )
    create.set_defaults(func=cmd_credentials_create)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings.processes < 1:
        raise ConfigError(f"OPENFGS_PROCESSES: at least 1, not {settings.processes}")
    configure_logging(settings)
    metrics_dir = None
    if settings.processes > 1 and settings.metrics:
        # Counters of every process in one private directory (mode 0700), any process sums.
        metrics_dir = Path(tempfile.mkdtemp(prefix="openfgs-metrics-"))
        share_between_processes(metrics_dir)
    try:
        return _run_serve(settings, metrics_dir)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_serve(settings: Settings, metrics_dir: Path | None) -> int:
    import uvicorn

    from openfgs.api import create_app
    from openfgs.api.observe import observed
    from openfgs.api.server import first_shared_socket, server_config

    services = Services.build(settings)
    # GET /metrics and the HTTP metrics of every request (OPENFGS_METRICS).
    outer = [observed(services)] if settings.metrics else []
    app = create_app(services, after_start=partial(first_run, say=say), outer=outer)
    sock = None
    if settings.processes > 1:
        config = server_config(app, settings, headers=serve_headers(0))
        try:
            sock = first_shared_socket(settings.host, settings.port, config.backlog)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
    else:
        config = server_config(app, settings)
    server = uvicorn.Server(config)
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again: let that
    # second one end the process with status 0, as a graceful stop should.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_zero)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve(services, server, sock, metrics_dir))
    return 0 if server.started else 1


def serve_headers(index: int) -> list[tuple[str, str]]:
    """With more than one process, every answer says which one gave it (0: the primary)."""
    return [("x-openfgs-process", str(index))]


async def _serve(
    services: Services,
    server: uvicorn.Server,
    sock: socket.socket | None = None,
    metrics_dir: Path | None = None,
) -> None:
    # Started before the server, on its loop: what stops a start (a locked data dir, a
    # credential that cannot be ensured) reaches the command as itself, not as a traceback in
    # the lifespan's log. The app's lifespan finds the services started, and stops them.
    try:
        await services.start()
        if sock is None:
            await server.serve()
            return
        start_fronts(services, sock.getsockname()[1], metrics_dir)
        await server.serve(sockets=[sock])
    finally:
        await services.stop()


def start_fronts(services: Services, port: int, metrics_dir: Path | None) -> Fronts:
    """Start fronts 1..N-1 on ``port``; the services stop them first when they stop."""
    settings = services.settings
    serve_channel = None
    if isinstance(services.store, SqliteStore):  # writes travel to this process's writer
        serve_channel = ForwardServer(services.store, services.invocations.notifier.notify).serve
    fronts = Fronts(
        settings.processes,
        settings_environ(settings, port=port),
        serve_channel,
        grace_seconds=settings.shutdown_grace_seconds,
        extra_args=["--metrics-dir", str(metrics_dir)] if metrics_dir is not None else [],
    )
    fronts.start()
    services.stop_hooks.append(fronts.stop)
    services.fronts = fronts
    return fronts


def say(line: str) -> None:
    print(line, flush=True)


def _exit_zero(signum: int, frame: object) -> None:
    raise SystemExit(0)


def configure_logging(settings: Settings) -> None:
    # OPENFGS_LOG_FORMAT: text or JSON lines, with the request id (openfgs.logs).
    handler = log_handler(settings.log_format)
    if settings.processes > 1 and settings.log_format == "text":
        # With more than one process, each line says which wrote it.
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace(":", " [pid %(process)d]:", 1)))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=TEXT_FORMAT,
        handlers=[handler],
    )


async def run_worker(settings: Settings) -> None:
    """A worker node: claims and runs async invocations until SIGTERM or SIGINT."""
    services = Services.build(settings.with_overrides(worker=True))
    await services.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker %s running", services.worker.worker_id if services.worker else "?")
    metrics = await serve_worker_metrics(services) if settings.metrics_port else None
    try:
        await stop.wait()
    finally:
        if metrics is not None:
            metrics[0].should_exit = True
            await metrics[1]
        await services.stop()


async def serve_worker_metrics(services: Services) -> tuple[Any, asyncio.Task[None]]:
    """``GET /metrics`` of a worker node, on ``OPENFGS_METRICS_PORT`` (it serves no API)."""
    import uvicorn

    from openfgs.api.observe import metrics_app

    class MetricsServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the worker's own SIGTERM/SIGINT handlers stay in place

    settings = services.settings
    config = uvicorn.Config(
        metrics_app(services),
        host=settings.host,
        port=settings.metrics_port,
        lifespan="off",
        log_level="warning",
    )
    server = MetricsServer(config)
    return server, asyncio.create_task(server.serve())


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    configure_logging(settings)
    asyncio.run(run_worker(settings))
    return 0


async def migrate(settings: Settings) -> None:
    store = create_store(settings)
    await store.open()  # applies the numbered migrations not yet applied
    await store.close()


def cmd_db_migrate(args: argparse.Namespace) -> int:
    asyncio.run(migrate(settings_from(args)))
    print("openfgs: the database schema is up to date")
    return 0


async def create_credential(settings: Settings, project_id: str | None) -> Credential:
    store = create_store(settings)
    await store.open()
    try:
        credential = new_credential(project_id)
        await store.insert_credential(credential, now_ms())
        return credential
    finally:
        await store.close()


def cmd_credentials_create(args: argparse.Namespace) -> int:
    credential = asyncio.run(create_credential(settings_from(args), args.new_project_id))
    print(
        json.dumps(
            {
                "project_id": credential.project_id,
                "access_key": credential.access_key,
                "secret_key": credential.secret_key,
            }
        )
    )
    return 0
