"""The client commands: functions, dependencies and async invocations, through the signed
HTTP API."""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import sys
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from openfgs.cli.options import CLIENT_SETTINGS, UsageError, settings_flags, settings_from
from openfgs.client import ApiFailure, FunctionGraphClient
from openfgs.errors import ConfigError
from openfgs.models import Credential, format_time, parse_time
from openfgs.profile import profile_path, with_profile
from openfgs.settings import Settings

STATUSES = ("WAIT", "RUNNING", "SUCCESS", "FAIL", "DISCARD")
TIME_HELP = "30m, 2h, 1d ago, or YYYY-MM-DDTHH:mm:ss (UTC)"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = settings_flags(
        only=CLIENT_SETTINGS,
        note=" When none of the credential is given, it is read from the profile the first "
        "serve of the data dir wrote there (credentials, mode 0600), with its endpoint.",
    )
    package = argparse.ArgumentParser(add_help=False)
    package.add_argument("--package", default="default", help="the function's package (app)")
    both = [client, package]

    fn = sub.add_parser("fn", help="functions").add_subparsers(dest="action", required=True)
    deploy = fn.add_parser(
        "deploy", parents=both, help="create or update a function from a directory"
    )
    deploy.add_argument("dir", help="a folder with the code, index.py for the default handler")
    deploy.add_argument("--name", required=True)
    deploy.add_argument("--handler", default="index.handler")
    deploy.add_argument("--runtime", default="Python3.9")
    deploy.add_argument("--timeout", type=int, default=30, help="seconds")
    deploy.add_argument("--memory", type=int, default=128, help="MB")
    deploy.set_defaults(func=cmd_fn_deploy)
    fn.add_parser("list", parents=[client], help="list functions").set_defaults(func=cmd_fn_list)
    invoke = fn.add_parser("invoke", parents=both, help="invoke a function")
    invoke.add_argument("name")
    invoke.add_argument("--async", dest="async_", action="store_true", help="queue it")
    invoke.add_argument("--data", default="{}", help="the event, as JSON")
    invoke.add_argument("--log", action="store_true", help="print the log tail to stderr")
    invoke.set_defaults(func=cmd_fn_invoke)

    deps = sub.add_parser("deps", help="dependencies").add_subparsers(dest="action", required=True)
    create = deps.add_parser(
        "create", parents=[client], help="add a version of a dependency from a zip file"
    )
    create.add_argument("name", help="the dependency; a new name starts at version 1")
    create.add_argument("zipfile", help="the zip, e.g. the contents of a site-packages folder")
    create.add_argument("--runtime", required=True, help="e.g. Python3.9")
    create.add_argument("--description", default=None)
    create.set_defaults(func=cmd_deps_create)
    deps.add_parser("list", parents=[client], help="list dependencies").set_defaults(
        func=cmd_deps_list
    )

    inv = sub.add_parser("invocations", help="async invocation records").add_subparsers(
        dest="action", required=True
    )
    listing = inv.add_parser("list", parents=both, help="list a function's async invocations")
    _window_flags(listing, STATUSES)
    listing.set_defaults(func=cmd_invocations_list)
    show = inv.add_parser("show", parents=[client], help="one async invocation and its attempts")
    show.add_argument("request_id")
    show.set_defaults(func=cmd_invocations_show)
    cancel = inv.add_parser(
        "cancel", parents=both, help="cancel a waiting or running async invocation"
    )
    cancel.add_argument("name")
    cancel.add_argument("request_id")
    cancel.set_defaults(func=cmd_invocations_cancel)
    rerun = inv.add_parser(
        "rerun", parents=both, help="queue the failed or discarded invocations of a window again"
    )
    _window_flags(rerun, ("FAIL", "DISCARD"))
    rerun.set_defaults(func=cmd_invocations_rerun)


def _window_flags(parser: argparse.ArgumentParser, statuses: Sequence[str]) -> None:
    parser.add_argument("name")
    parser.add_argument("--status", type=str.upper, choices=statuses)
    parser.add_argument("--since", help=TIME_HELP)
    parser.add_argument("--until", help=TIME_HELP)
    parser.add_argument("--limit", type=int, default=100)


def _client(args: argparse.Namespace) -> tuple[FunctionGraphClient, Settings]:
    settings = with_profile(settings_from(args))
    if not (settings.project_id and settings.access_key and settings.secret_key):
        raise ConfigError(
            "no credential: set OPENFGS_PROJECT_ID, OPENFGS_ACCESS_KEY and OPENFGS_SECRET_KEY "
            "(or --project-id, --access-key, --secret-key), or run this with the data dir of "
            f"the openfgs serve that printed it (no profile in {profile_path(settings)})"
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
        raise UsageError(f"{folder} is not a directory")
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
        raise UsageError(f"--data is not JSON: {exc}") from None
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


def cmd_deps_create(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    try:
        data = Path(args.zipfile).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.zipfile}: {exc.strerror or exc}") from None
    body = {
        "depend_type": "zip",
        "depend_file": base64.b64encode(data).decode(),
        "runtime": args.runtime,
        "name": args.name,
    }
    if args.description is not None:
        body["description"] = args.description
    made = client.json("POST", "/dependencies/version", body=body)
    print(
        f"created {made['name']} version {made['version']} (version id {made['id']}, "
        f"dependency id {made['dep_id']}, {made['size']} bytes)"
    )
    return 0


def cmd_deps_list(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    rows, marker = [], 0
    while True:
        page = client.json("GET", "/dependencies", query={"marker": str(marker)})
        rows += [
            (d["name"], d["version"], d["runtime"], d["size"], d["id"])
            for d in page["dependencies"]
        ]
        if not page["dependencies"] or page["next_marker"] >= page["count"]:
            break
        marker = page["next_marker"]
    print(_table(rows, ("NAME", "LATEST", "RUNTIME", "SIZE", "DEPENDENCY ID")))
    return 0


_RELATIVE = re.compile(r"(\d+)([smhd])")


def query_time(text: str) -> str:
    """30m, 2h or 1d ago, or an absolute time, in FunctionGraph's query format."""
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        moment = datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        return format_time(parse_time(text))
    except ValueError:
        raise UsageError(f"not a time: {text!r} (use 30m, 2h, 1d or YYYY-MM-DDTHH:mm:ss)") from None


def window(args: argparse.Namespace) -> dict[str, Any]:
    """The status, time window and limit given to invocations list or rerun."""
    selection: dict[str, Any] = {"limit": args.limit}
    if args.status:
        selection["status"] = args.status
    if args.since:
        selection["query_begin_time"] = query_time(args.since)
    if args.until:
        selection["query_end_time"] = query_time(args.until)
    return selection


def cmd_invocations_list(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    query = {key: str(value) for key, value in window(args).items()}
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
    urn = _urn(client, settings, args.name, args.package)
    result = client.json("POST", f"/functions/{urn}/rerun", body=window(args), section="openfgs")
    print(
        _table(
            [(r["request_id"], r["rerun_of"]) for r in result["reruns"]],
            ("NEW REQUEST ID", "RERUN OF"),
        )
    )
    print(f"{result['count']} queued again")
    return 0
