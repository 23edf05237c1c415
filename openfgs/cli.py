"""The ``openfgs`` command: run the service, manage credentials, and use the API as a client."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import re
import signal
import sys
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from openfgs.auth.service import new_credential
from openfgs.client import ApiFailure, FunctionGraphClient
from openfgs.errors import Conflict
from openfgs.models import Credential, format_time, now_ms, parse_time
from openfgs.schemas import CreateFunctionBody, FuncCode
from openfgs.services import DataDirLocked, Services
from openfgs.settings import Settings, load_settings
from openfgs.store import create_store

log = logging.getLogger("openfgs")
DEMO_FUNCTION = "hello"


def _settings(args: argparse.Namespace) -> Settings:
    keys = (
        "host",
        "port",
        "data_dir",
        "database_url",
        "endpoint",
        "project_id",
        "access_key",
        "secret_key",
    )
    overrides = {k: getattr(args, k, None) for k in keys}
    if getattr(args, "no_worker", False):
        overrides["worker"] = False
    return load_settings(**overrides)


# -- serve ------------------------------------------------------------------------------------


async def first_run(services: Services) -> None:
    """On a new store: make a credential (printed once) and deploy the demo function."""
    if not services.fresh:
        return
    s = services.settings
    if s.access_key and s.secret_key and s.project_id:
        credential = Credential(s.project_id, s.access_key, s.secret_key)
    else:
        credential = new_credential()
        await services.auth.ensure_credential(credential)
        _print_credential(credential, s)
    source = resources.files("openfgs.demo").joinpath("index.py").read_bytes()
    body = CreateFunctionBody(
        func_name=DEMO_FUNCTION,
        package="default",
        runtime="Python3.9",
        timeout=30,
        handler="index.handler",
        memory_size=128,
        code_type="inline",
        func_code=FuncCode(file=base64.b64encode(source).decode()),
        description="openfgs demo function",
    )
    try:
        function = await services.registry.create(credential.project_id, body)
    except Conflict:  # another node starting on the same new database deployed it first
        return
    urn = function.urn(s.region).qualified()
    print(f"openfgs: deployed the demo function {urn}", flush=True)


def _print_credential(credential: Credential, settings: Settings) -> None:
    print(
        "openfgs: created a credential; the secret key is shown only this once:\n"
        f"  export OPENFGS_PROJECT_ID={credential.project_id}\n"
        f"  export OPENFGS_ACCESS_KEY={credential.access_key}\n"
        f"  export OPENFGS_SECRET_KEY={credential.secret_key}\n"
        f"  export OPENFGS_ENDPOINT={settings.api_endpoint}",
        flush=True,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from openfgs.api import create_app
    from openfgs.api.server import server_config

    settings = _settings(args)
    _configure_logging(settings)
    services = Services.build(settings)
    try:
        services.lock_data_dir()
    except DataDirLocked as exc:
        print(f"openfgs: {exc}", file=sys.stderr)
        return 1
    app = create_app(services, after_start=first_run)
    server = uvicorn.Server(server_config(app, settings))
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again: let that
    # second one end the process with status 0, as a graceful stop should.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_zero)
    server.run()
    return 0 if server.started else 1


def _exit_zero(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def run_worker(settings: Settings) -> None:
    """A worker node: claims and runs async invocations until SIGTERM or SIGINT."""
    services = Services.build(settings.with_overrides(worker=True))
    await services.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker %s running", services.worker.worker_id if services.worker else "?")
    try:
        await stop.wait()
    finally:
        await services.stop()


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging(settings)
    try:
        asyncio.run(run_worker(settings))
    except DataDirLocked as exc:
        print(f"openfgs: {exc}", file=sys.stderr)
        return 1
    return 0


async def _migrate(settings: Settings) -> None:
    store = create_store(settings)
    await store.open()  # applies the numbered migrations not yet applied
    await store.close()


def cmd_db_migrate(args: argparse.Namespace) -> int:
    asyncio.run(_migrate(_settings(args)))
    print("openfgs: the database schema is up to date")
    return 0


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )


# -- credentials ------------------------------------------------------------------------------


async def _create_credential(settings: Settings, project_id: str | None) -> Credential:
    store = create_store(settings)
    await store.open()
    try:
        credential = new_credential(project_id)
        await store.insert_credential(credential, now_ms())
        return credential
    finally:
        await store.close()


def cmd_credentials_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    credential = asyncio.run(_create_credential(settings, args.new_project_id))
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


# -- client commands --------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> tuple[FunctionGraphClient, Settings]:
    settings = _settings(args)
    if not (settings.project_id and settings.access_key and settings.secret_key):
        raise SystemExit(
            "openfgs: set OPENFGS_PROJECT_ID, OPENFGS_ACCESS_KEY and OPENFGS_SECRET_KEY "
            "(or --project-id, --access-key, --secret-key)"
        )
    credential = Credential(settings.project_id, settings.access_key, settings.secret_key)
    return FunctionGraphClient(settings.api_endpoint, credential), settings


def _urn(client: FunctionGraphClient, settings: Settings, name: str, package: str) -> str:
    return client.urn(name, settings.region, package)


def zip_directory(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def cmd_fn_deploy(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    folder = Path(args.dir)
    if not folder.is_dir():
        raise SystemExit(f"openfgs: {folder} is not a directory")
    code = base64.b64encode(zip_directory(folder)).decode()
    config = {
        "func_name": args.name,
        "runtime": args.runtime,
        "timeout": args.timeout,
        "handler": args.handler,
        "memory_size": args.memory,
    }
    urn = _urn(client, settings, args.name, args.package)
    try:
        client.json("GET", f"/functions/{urn}/config")
        exists = True
    except ApiFailure as exc:
        if exc.status != 404:
            raise
        exists = False
    if exists:
        client.json("PUT", f"/functions/{urn}/config", body=config)
        result = client.json(
            "PUT",
            f"/functions/{urn}/code",
            body={"code_type": "zip", "code_filename": "code.zip", "func_code": {"file": code}},
        )
    else:
        result = client.json(
            "POST",
            "/functions",
            body={
                **config,
                "package": args.package,
                "code_type": "zip",
                "code_filename": "code.zip",
                "func_code": {"file": code},
            },
        )
    print(
        f"{'updated' if exists else 'created'} {result['func_urn']} "
        f"({result['code_size']} bytes, digest {result['digest'][:12]})"
    )
    return 0


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def cmd_fn_list(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    rows, marker = [], 0
    while True:
        page = client.json("GET", "/functions", query={"marker": str(marker)})
        rows += [
            (
                f["func_name"],
                f["package"],
                f["runtime"],
                f["handler"],
                f["memory_size"],
                f["timeout"],
                f["last_modified"],
            )
            for f in page["functions"]
        ]
        if not page["functions"] or page["next_marker"] >= page["count"]:
            break
        marker = page["next_marker"]
    print(
        _table(
            rows, ("NAME", "PACKAGE", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "LAST MODIFIED")
        )
    )
    return 0


def cmd_fn_invoke(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    try:
        event = json.loads(args.data)
    except ValueError as exc:
        raise SystemExit(f"openfgs: --data is not JSON: {exc}") from None
    urn = _urn(client, settings, args.name, args.package)
    if args.async_:
        result = client.json("POST", f"/functions/{urn}/invocations-async", body=event)
        print(result["request_id"])
        return 0
    reply = client.json(
        "POST",
        f"/functions/{urn}/invocations",
        body=event,
        headers={"X-Cff-Log-Type": "tail", "X-CFF-Request-Version": "v1"},
    )
    if args.log and reply.get("log"):
        print(reply["log"], file=sys.stderr)
    print(reply["result"])
    return 0 if reply.get("status") == 200 else 1


_RELATIVE = re.compile(r"(\d+)([smhd])")


def query_time(text: str) -> str:
    """``30m``/``2h``/``1d`` ago, or an absolute time, as FunctionGraph's query format."""
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        moment = datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        return format_time(parse_time(text))
    except ValueError:
        raise SystemExit(
            f"openfgs: not a time: {text!r} (use 30m, 2h, 1d or YYYY-MM-DDTHH:mm:ss)"
        ) from None


def cmd_invocations_list(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    query = {"limit": str(args.limit)}
    if args.status:
        query["status"] = args.status.upper()
    if args.since:
        query["query_begin_time"] = query_time(args.since)
    if args.until:
        query["query_end_time"] = query_time(args.until)
    urn = _urn(client, settings, args.name, args.package)
    page = client.json("GET", f"/functions/{urn}/async-invocations", query=query)
    rows = [
        (
            r["request_id"],
            r["status"],
            r["start_time"],
            r["end_time"] or "-",
            r["error_code"],
            r["error_message"][:60],
        )
        for r in page["invocations"]
    ]
    print(_table(rows, ("REQUEST ID", "STATUS", "START (UTC)", "END (UTC)", "CODE", "MESSAGE")))
    print(f"{len(rows)} of {page['count']} shown")
    return 0


def cmd_invocations_show(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    detail = client.json("GET", f"/async-invocations/{args.request_id}", section="openfgs")
    for key in (
        "request_id",
        "func_urn",
        "status",
        "error_code",
        "error_message",
        "start_time",
        "end_time",
        "attempt",
        "max_attempts",
        "rerun_of",
    ):
        print(f"{key:14} {detail[key]}")
    rows = [
        (
            a["attempt"],
            a["outcome"],
            a["start_time"],
            a["end_time"] or "-",
            a["worker_id"],
            a["error_code"],
            a["error_message"][:60],
        )
        for a in detail["attempts"]
    ]
    if rows:
        print()
        print(
            _table(
                rows,
                ("ATTEMPT", "OUTCOME", "START (UTC)", "END (UTC)", "WORKER", "CODE", "MESSAGE"),
            )
        )
    return 0


def cmd_invocations_cancel(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    urn = _urn(client, settings, args.name, args.package)
    client.request("POST", f"/functions/{urn}/cancel", body={"request_id": args.request_id})
    print(f"canceled {args.request_id}")
    return 0


def cmd_invocations_rerun(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    body: dict[str, Any] = {"limit": args.limit}
    if args.status:
        body["status"] = args.status.upper()
    if args.since:
        body["query_begin_time"] = query_time(args.since)
    if args.until:
        body["query_end_time"] = query_time(args.until)
    urn = _urn(client, settings, args.name, args.package)
    result = client.json("POST", f"/functions/{urn}/rerun", body=body, section="openfgs")
    print(
        _table(
            [(r["request_id"], r["rerun_of"]) for r in result["reruns"]],
            ("NEW REQUEST ID", "RERUN OF"),
        )
    )
    print(f"{result['count']} queued again")
    return 0


# -- parser -----------------------------------------------------------------------------------


def _client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="server URL (OPENFGS_ENDPOINT)")
    parser.add_argument("--project-id", help="OPENFGS_PROJECT_ID")
    parser.add_argument("--access-key", help="OPENFGS_ACCESS_KEY")
    parser.add_argument("--secret-key", help="OPENFGS_SECRET_KEY")
    parser.add_argument("--package", default="default", help="function package (app)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openfgs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API and the worker")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", type=Path)
    serve.add_argument("--database-url")
    serve.add_argument("--no-worker", action="store_true", help="API only")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a worker only (no HTTP)")
    worker.add_argument("--data-dir", type=Path)
    worker.add_argument("--database-url")
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    migrate = db.add_parser("migrate", help="apply the numbered migrations")
    migrate.add_argument("--data-dir", type=Path)
    migrate.add_argument("--database-url")
    migrate.set_defaults(func=cmd_db_migrate)

    creds = sub.add_parser("credentials", help="manage credentials").add_subparsers(
        dest="action", required=True
    )
    create = creds.add_parser("create", help="create a credential and print it as JSON")
    create.add_argument("--project-id", dest="new_project_id")
    create.add_argument("--data-dir", type=Path)
    create.add_argument("--database-url")
    create.set_defaults(func=cmd_credentials_create)

    fn = sub.add_parser("fn", help="functions").add_subparsers(dest="action", required=True)
    deploy = fn.add_parser("deploy", help="create or update a function from a directory")
    deploy.add_argument("dir")
    deploy.add_argument("--name", required=True)
    deploy.add_argument("--handler", default="index.handler")
    deploy.add_argument("--runtime", default="Python3.9")
    deploy.add_argument("--timeout", type=int, default=30)
    deploy.add_argument("--memory", type=int, default=128)
    deploy.set_defaults(func=cmd_fn_deploy)
    listing = fn.add_parser("list", help="list functions")
    listing.set_defaults(func=cmd_fn_list)
    invoke = fn.add_parser("invoke", help="invoke a function")
    invoke.add_argument("name")
    invoke.add_argument("--async", dest="async_", action="store_true")
    invoke.add_argument("--data", default="{}", help="the event, as JSON")
    invoke.add_argument("--log", action="store_true", help="print the log tail to stderr")
    invoke.set_defaults(func=cmd_fn_invoke)
    for p in (deploy, listing, invoke):
        _client_flags(p)

    inv = sub.add_parser("invocations", help="async invocation records").add_subparsers(
        dest="action", required=True
    )
    inv_list = inv.add_parser("list", help="list a function's async invocations")
    inv_list.add_argument("name")
    inv_list.add_argument(
        "--status",
        choices=[
            "WAIT",
            "RUNNING",
            "SUCCESS",
            "FAIL",
            "DISCARD",
            "wait",
            "running",
            "success",
            "fail",
            "discard",
        ],
    )
    inv_list.add_argument("--since", help="30m, 2h, 1d or YYYY-MM-DDTHH:mm:ss (UTC)")
    inv_list.add_argument("--until")
    inv_list.add_argument("--limit", type=int, default=100)
    inv_list.set_defaults(func=cmd_invocations_list)
    show = inv.add_parser("show", help="one async invocation with its attempts")
    show.add_argument("request_id")
    show.set_defaults(func=cmd_invocations_show)
    cancel = inv.add_parser("cancel", help="cancel a waiting or running async invocation")
    cancel.add_argument("name")
    cancel.add_argument("request_id")
    cancel.set_defaults(func=cmd_invocations_cancel)
    rerun = inv.add_parser("rerun", help="queue FAIL/DISCARD invocations of a window again")
    rerun.add_argument("name")
    rerun.add_argument("--status", choices=["FAIL", "DISCARD", "fail", "discard"])
    rerun.add_argument("--since", help="30m, 2h, 1d or YYYY-MM-DDTHH:mm:ss (UTC)")
    rerun.add_argument("--until")
    rerun.add_argument("--limit", type=int, default=100)
    rerun.set_defaults(func=cmd_invocations_rerun)
    for p in (inv_list, show, cancel, rerun):
        _client_flags(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ApiFailure as exc:
        print(f"openfgs: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
