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

import orjson

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
    deploy.add_argument(
        "dir",
        help="a folder with the code: index.py (Python), index.js (Node.js) for the default "
        "handler, or an executable bootstrap (Custom, http)",
    )
    deploy.add_argument("--name", required=True)
    deploy.add_argument("--handler", default="index.handler")
    deploy.add_argument(
        "--runtime", default="Python3.9", help="Python3.9 (default), Node.js20.15, Custom, http…"
    )
    deploy.add_argument("--timeout", type=int, default=30, help="seconds")
    deploy.add_argument("--memory", type=int, default=128, help="MB")
    deploy.set_defaults(func=cmd_fn_deploy)
    fn.add_parser("list", parents=[client], help="list functions").set_defaults(func=cmd_fn_list)
    invoke = fn.add_parser("invoke", parents=both, help="invoke a function")
    invoke.add_argument("name")
    invoke.add_argument("--async", dest="async_", action="store_true", help="queue it")
    given = invoke.add_mutually_exclusive_group()
    given.add_argument("--data", help="the event, as JSON (default {})")
    given.add_argument("--event", metavar="EVENT_NAME", help="the function's saved test event")
    invoke.add_argument("--log", action="store_true", help="print the log tail to stderr")
    invoke.set_defaults(func=cmd_fn_invoke)

    _test_event_commands(fn, both)

    publish = fn.add_parser(
        "publish", parents=both, help="publish the function's latest code and config as a version"
    )
    publish.add_argument("name")
    publish.add_argument("--version", help="its name (default: vYYYYMMDD-HHMMSS)")
    publish.add_argument("--description", default="")
    publish.set_defaults(func=cmd_fn_publish)
    alias = fn.add_parser("alias", help="aliases of a function's versions").add_subparsers(
        dest="alias_action", required=True
    )
    alias_set = alias.add_parser(
        "set", parents=both, help="point an alias at a version (made when it does not exist)"
    )
    alias_set.add_argument("name")
    alias_set.add_argument("alias")
    alias_set.add_argument("version")
    alias_set.add_argument(
        "--weight",
        metavar="VERSION=PERCENT",
        help="send this percent of invocations to another version",
    )
    alias_set.add_argument("--description")
    alias_set.set_defaults(func=cmd_fn_alias_set)
    alias_list = alias.add_parser("list", parents=both, help="a function's aliases")
    alias_list.add_argument("name")
    alias_list.set_defaults(func=cmd_fn_alias_list)
    alias_delete = alias.add_parser("delete", parents=both, help="delete an alias")
    alias_delete.add_argument("name")
    alias_delete.add_argument("alias")
    alias_delete.set_defaults(func=cmd_fn_alias_delete)

    trig = sub.add_parser("triggers", help="timer and HTTP triggers").add_subparsers(
        dest="action", required=True
    )
    create = trig.add_parser("create", parents=both, help="add a timer or an HTTP trigger")
    create.add_argument("name", help="the function: NAME or NAME:QUALIFIER")
    kind = create.add_mutually_exclusive_group(required=True)
    kind.add_argument("--cron", help="a cron expression, seconds first: '0 */5 * * * *'")
    kind.add_argument("--rate", help="a period: 5m, 1h or 1d")
    kind.add_argument("--http", metavar="PATH", help="an HTTP route, such as /hello")
    create.add_argument("--trigger-name", help="the timer's or API's name")
    create.add_argument("--user-event", help="a timer's user_event text")
    create.add_argument("--method", default="ANY", help="an HTTP route's method")
    create.add_argument("--prefix", action="store_true", help="an HTTP route matching a prefix")
    create.add_argument("--auth", choices=("IAM", "NONE"), default="IAM")
    create.add_argument("--async", dest="async_", action="store_true", help="queue HTTP calls")
    create.set_defaults(func=cmd_triggers_create)
    tlist = trig.add_parser("list", parents=both, help="a function's triggers")
    tlist.add_argument("name")
    tlist.set_defaults(func=cmd_triggers_list)
    for action, status in (("enable", "ACTIVE"), ("disable", "DISABLED")):
        change = trig.add_parser(action, parents=both, help=f"{action} a trigger")
        change.add_argument("name")
        change.add_argument("trigger_id")
        change.set_defaults(func=cmd_triggers_status, status=status)
    tdelete = trig.add_parser("delete", parents=both, help="delete a trigger")
    tdelete.add_argument("name")
    tdelete.add_argument("trigger_id")
    tdelete.set_defaults(func=cmd_triggers_delete)
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
    client = FunctionGraphClient(settings.api_endpoint, credential)
    _opened.append(client)
    return client, settings


# The API clients client commands opened: ``main`` closes them when the command returns (a
# process would at its exit, but ``main`` may be called by a process that goes on).
_opened: list[FunctionGraphClient] = []


def close_clients() -> None:
    while _opened:
        _opened.pop().close()


def _urn(client: FunctionGraphClient, settings: Settings, name: str, package: str) -> str:
    """The URN of ``NAME`` (latest) or ``NAME:QUALIFIER``: a version, an alias (``!`` may be
    left out when the function has an alias of that name), or ``latest``."""
    name, _, qualifier = name.partition(":")
    if not qualifier or qualifier == "latest" or qualifier.startswith("!"):
        return client.urn(name, settings.region, package, qualifier or "latest")
    base = client.urn(name, settings.region, package, None)
    aliases = client.json("GET", f"/functions/{base}/aliases")
    if any(alias.get("name") == qualifier for alias in aliases or []):
        qualifier = f"!{qualifier}"
    return client.urn(name, settings.region, package, qualifier)


def _unqualified(args: argparse.Namespace) -> tuple[FunctionGraphClient, str]:
    """A client and the unqualified URN of the function ``args.name`` (versions, aliases)."""
    client, settings = _client(args)
    return client, client.urn(args.name, settings.region, args.package, None)


def _weights(text: str | None) -> dict[str, int]:
    if not text:
        return {}
    version, _, percent = text.partition("=")
    if not version or not percent.isdigit():
        raise UsageError(f"--weight {text!r}: expected VERSION=PERCENT, such as v2=10")
    return {version: int(percent)}


def cmd_fn_publish(args: argparse.Namespace) -> int:
    client, base = _unqualified(args)
    body = {"version": args.version, "description": args.description}
    created = client.json("POST", f"/functions/{base}/versions", body=body)
    print(created["version"])
    return 0


def cmd_fn_alias_set(args: argparse.Namespace) -> int:
    client, base = _unqualified(args)
    body: dict[str, Any] = {
        "version": args.version,
        "additional_version_weights": _weights(args.weight),
    }
    if args.description is not None:
        body["description"] = args.description
    names = {alias["name"] for alias in client.json("GET", f"/functions/{base}/aliases") or []}
    if args.alias in names:
        alias = client.json("PUT", f"/functions/{base}/aliases/{args.alias}", body=body)
    else:
        alias = client.json("POST", f"/functions/{base}/aliases", body={"name": args.alias, **body})
    print(alias["alias_urn"])
    return 0


def cmd_fn_alias_list(args: argparse.Namespace) -> int:
    client, base = _unqualified(args)
    aliases = client.json("GET", f"/functions/{base}/aliases") or []
    rows = [
        (a["name"], a["version"], json.dumps(a["additional_version_weights"]), a["description"])
        for a in aliases
    ]
    print(_table(rows, ("ALIAS", "VERSION", "WEIGHTS", "DESCRIPTION")))
    return 0


def cmd_fn_alias_delete(args: argparse.Namespace) -> int:
    client, base = _unqualified(args)
    client.json("DELETE", f"/functions/{base}/aliases/{args.alias}")
    return 0


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
        event = json.loads("{}" if args.data is None else args.data)
    except ValueError as exc:
        raise UsageError(f"--data is not JSON: {exc}") from None
    urn = _urn(client, settings, args.name, args.package)
    if args.event is not None:
        # Parsed as the server checked it when it was saved (orjson: nesting up to 1024).
        event = orjson.loads(base64.b64decode(_test_event(client, urn, args.event)["content"]))
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


# -- test events ------------------------------------------------------------------------------


def _test_event_commands(
    fn: argparse._SubParsersAction[argparse.ArgumentParser], both: list[argparse.ArgumentParser]
) -> None:
    events = fn.add_parser("events", help="a function's saved test events").add_subparsers(
        dest="events_action", required=True
    )
    listing = events.add_parser("list", parents=both, help="a function's test events")
    listing.add_argument("name")
    listing.set_defaults(func=cmd_fn_events_list)
    save = events.add_parser("save", parents=both, help="create or replace a test event")
    save.add_argument("name")
    save.add_argument("event")
    save.add_argument("--data", required=True, help="the event, as JSON")
    save.set_defaults(func=cmd_fn_events_save)
    delete = events.add_parser("delete", parents=both, help="delete a test event")
    delete.add_argument("name")
    delete.add_argument("event")
    delete.set_defaults(func=cmd_fn_events_delete)


def _test_event(client: FunctionGraphClient, urn: str, name: str) -> Any:
    """The saved test event ``name`` of the function at ``urn``, with its content."""
    listed = client.json("GET", f"/functions/{urn}/events")["events"]
    found = next((event for event in listed if event["name"] == name), None)
    if found is None:
        raise UsageError(f"the function has no test event {name!r}")
    return client.json("GET", f"/functions/{urn}/events/{found['id']}")


def cmd_fn_events_list(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    urn = _urn(client, settings, args.name, args.package)
    listed = client.json("GET", f"/functions/{urn}/events")["events"]
    rows = [(e["name"], e["id"], format_time(int(e["last_modified"]) * 1000)) for e in listed]
    print(_table(rows, ("NAME", "ID", "LAST MODIFIED (UTC)")))
    return 0


def cmd_fn_events_save(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    try:
        json.loads(args.data)
    except ValueError as exc:
        raise UsageError(f"--data is not JSON: {exc}") from None
    urn = _urn(client, settings, args.name, args.package)
    content = base64.b64encode(args.data.encode()).decode()
    listed = client.json("GET", f"/functions/{urn}/events")["events"]
    found = next((e for e in listed if e["name"] == args.event), None)
    if found is None:
        body = {"name": args.event, "content": content}
        saved = client.json("POST", f"/functions/{urn}/events", body=body)
    else:
        body = {"content": content}
        saved = client.json("PUT", f"/functions/{urn}/events/{found['id']}", body=body)
    print(saved["id"])
    return 0


def cmd_fn_events_delete(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    urn = _urn(client, settings, args.name, args.package)
    event = _test_event(client, urn, args.event)
    client.json("DELETE", f"/functions/{urn}/events/{event['id']}")
    return 0


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


# -- triggers ---------------------------------------------------------------------------------


def cmd_triggers_create(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    urn = _urn(client, settings, args.name, args.package)
    if args.http:
        body: dict[str, Any] = {
            "trigger_type_code": "DEDICATEDGATEWAY",
            "event_data": {
                "name": args.trigger_name or f"api_{args.name.partition(':')[0].replace('-', '_')}",
                "path": args.http,
                "req_method": args.method.upper(),
                "match_mode": "SWA" if args.prefix else "NORMAL",
                "auth": args.auth,
                "func_info": {"invocation_type": "async" if args.async_ else "sync"},
            },
        }
    else:
        data = {
            "name": args.trigger_name or "timer",
            "schedule_type": "Cron" if args.cron else "Rate",
            "schedule": args.cron or args.rate,
        }
        if args.user_event is not None:
            data["user_event"] = args.user_event
        body = {"trigger_type_code": "TIMER", "event_data": data}
    created = client.json("POST", f"/triggers/{urn}", body=body)
    url = created["event_data"].get("invoke_url")
    print(created["trigger_id"] + (f" {url}" if url else ""))
    return 0


def cmd_triggers_list(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    urn = _urn(client, settings, args.name, args.package)
    rows = []
    for trigger in client.json("GET", f"/triggers/{urn}") or []:
        data = trigger["event_data"]
        what = data.get("schedule") or f"{data.get('req_method')} {data.get('invoke_url')}"
        rows.append(
            (trigger["trigger_id"], trigger["trigger_type_code"], trigger["trigger_status"], what)
        )
    print(_table(rows, ("TRIGGER", "TYPE", "STATUS", "SCHEDULE / ROUTE")))
    return 0


def _find_trigger(client: FunctionGraphClient, urn: str, trigger_id: str) -> dict[str, Any]:
    for trigger in client.json("GET", f"/triggers/{urn}") or []:
        if trigger["trigger_id"] == trigger_id:
            found: dict[str, Any] = trigger
            return found
    raise UsageError(f"no trigger {trigger_id!r} on this function")


def cmd_triggers_status(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    urn = _urn(client, settings, args.name, args.package)
    trigger = _find_trigger(client, urn, args.trigger_id)
    path = f"/triggers/{urn}/{trigger['trigger_type_code']}/{args.trigger_id}"
    client.json("PUT", path, body={"trigger_status": args.status})
    return 0


def cmd_triggers_delete(args: argparse.Namespace) -> int:
    client, settings = _client(args)
    urn = _urn(client, settings, args.name, args.package)
    trigger = _find_trigger(client, urn, args.trigger_id)
    client.json("DELETE", f"/triggers/{urn}/{trigger['trigger_type_code']}/{args.trigger_id}")
    return 0
