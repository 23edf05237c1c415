"""The ``openfgs`` client commands against a live server: deploy, list, invoke, invocations."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from openfgs.models import Credential
from tests.support import CREDENTIAL, cli_in_process, free_port, wait_for

from .conftest import SERVE, Serve, ServeProcess, clean_env, openfgs

pytestmark = pytest.mark.slow

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def handler_source(version: int) -> str:
    return textwrap.dedent(
        f"""
        def handler(event, context):
            return {{"version": {version}, "event": event}}
        """
    )


def write_function(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.py").write_text(handler_source(version))
    return folder


class Cli:
    """Runs ``openfgs`` in this process with the server's endpoint and credential set."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        code = cli_in_process(list(args))
        out, err = self._capsys.readouterr()
        return code, out, err

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0, (args, out, err)
        return out


@pytest.fixture
def cli(server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    for name in list(os.environ):
        if name.startswith("OPENFGS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENFGS_ENDPOINT", server.url)
    monkeypatch.setenv("OPENFGS_PROJECT_ID", server.settings.project_id)
    monkeypatch.setenv("OPENFGS_ACCESS_KEY", server.settings.access_key)
    monkeypatch.setenv("OPENFGS_SECRET_KEY", server.settings.secret_key)
    return Cli(capsys)


def invoke_result(cli: Cli, name: str, data: str) -> Any:
    out = cli.ok("fn", "invoke", name, "--data", data)
    return json.loads(out)


def test_deploy_creates_then_updates_the_code(cli: Cli, tmp_path: Path) -> None:
    folder = write_function(tmp_path / "fn", 1)
    created = cli.ok("fn", "deploy", str(folder), "--name", "cli-fn")
    function_urn = f"urn:fss:cn-north-4:{CREDENTIAL.project_id}:function:default:cli-fn:latest"
    assert created.startswith(f"created {function_urn} "), created
    assert invoke_result(cli, "cli-fn", '{"k": "v"}') == {"version": 1, "event": {"k": "v"}}

    write_function(folder, 2)
    updated = cli.ok("fn", "deploy", str(folder), "--name", "cli-fn")
    assert updated.startswith(f"updated {function_urn} "), updated
    digests = [re.search(r"digest (\w+)", text) for text in (created, updated)]
    assert digests[0] and digests[1] and digests[0].group(1) != digests[1].group(1)
    assert invoke_result(cli, "cli-fn", '{"k": "v"}') == {"version": 2, "event": {"k": "v"}}


def test_fn_list_shows_the_deployed_function(cli: Cli, tmp_path: Path) -> None:
    cli.ok("fn", "deploy", str(write_function(tmp_path / "fn", 1)), "--name", "listed-fn")
    lines = cli.ok("fn", "list").splitlines()
    assert lines[0].split()[:3] == ["NAME", "PACKAGE", "RUNTIME"]
    rows = [line.split() for line in lines[1:]]
    assert ["listed-fn", "default", "Python3.9"] in [row[:3] for row in rows]


def test_async_invoke_prints_a_request_id_that_invocations_list_shows(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("fn", "deploy", str(write_function(tmp_path / "fn", 1)), "--name", "async-fn")
    out = cli.ok("fn", "invoke", "async-fn", "--async", "--data", '{"k": "v"}')
    request_id = out.strip()
    assert UUID.fullmatch(request_id), out

    def listed_as_success() -> str | None:
        table = cli.ok("invocations", "list", "async-fn", "--status", "SUCCESS", "--since", "30m")
        return table if request_id in table else None

    table = wait_for(listed_as_success, 30, interval=0.2).splitlines()
    assert table[0].split()[:2] == ["REQUEST", "ID"]
    (row,) = [line.split() for line in table[1:] if line.startswith(request_id)]
    assert row[1] == "SUCCESS"
    assert table[-1] == "1 of 1 shown"


def test_missing_credentials_exit_non_zero_with_a_message(tmp_path: Path) -> None:
    # An empty data dir: no credential profile to fall back on.
    env = clean_env(endpoint="http://127.0.0.1:9", data_dir=str(tmp_path))
    result = openfgs("fn", "list", env=env)
    assert result.returncode == 2
    assert "OPENFGS_ACCESS_KEY" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_api_error_exits_non_zero_with_the_fss_code(server: Any) -> None:
    env = clean_env(CREDENTIAL, endpoint=server.url)
    invoke = openfgs("fn", "invoke", "no-such-fn", "--data", "{}", env=env)
    assert invoke.returncode != 0
    assert "FSS.1051" in invoke.stderr, invoke.stderr  # sync invoke of a missing function
    assert "Traceback" not in invoke.stderr
    listing = openfgs("invocations", "list", "no-such-fn", env=env)
    assert listing.returncode != 0
    assert "FSS.0404" in listing.stderr, listing.stderr


# -- settings as flags, the credential profile, configuration errors --------------------------


def spawn_serve(serve: Serve, data_dir: Path, *flags: str, env: dict[str, str]) -> ServeProcess:
    """``openfgs serve`` with extra flags, killed at teardown like the fixture's own."""
    port = free_port()
    number = len(serve.processes)
    out, err = serve.tmp_path / f"flags-{number}.out", serve.tmp_path / f"flags-{number}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*SERVE, "--data-dir", str(data_dir), "--port", str(port), *flags],
            env=env,
            cwd=serve.tmp_path,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    started = ServeProcess(process, f"http://127.0.0.1:{port}", data_dir, out, err)
    serve.processes.append(started)
    return started


def status_of_unfinished_headers(url: str, size: int) -> int:
    """Send a request line and ``size`` bytes of a header that never ends; the answer's status."""
    address = httpx.URL(url)
    assert address.port is not None
    with socket.create_connection((address.host, address.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size)
        try:
            answer = sock.recv(64)
        except TimeoutError:
            return 0  # still waiting for the rest: under the limit
    return int(answer.split()[1])


def test_a_setting_given_as_a_flag_takes_effect_over_its_variable(
    serve: Serve, tmp_path: Path
) -> None:
    env = clean_env(CREDENTIAL, max_header_bytes="65536", header_read_timeout_seconds="30")
    flags = ("--max-header-bytes", "2048", "--header-read-timeout-seconds", "1.5")
    started = spawn_serve(serve, tmp_path / "data", *flags, env=env)
    started.wait_healthy()
    # The flag's 2048 bytes, not the variable's 65536: 431 as soon as the headers pass it.
    assert status_of_unfinished_headers(started.url, 4000) == 431
    # The flag's 1.5 s for headers, not the variable's 30 s: 408 within the socket's 10 s.
    assert status_of_unfinished_headers(started.url, 100) == 408
    started.stop()


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """An ``openfgs`` command run from ``cwd``, as in another terminal on the same machine."""
    return subprocess.run(
        [sys.executable, "-m", "openfgs.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_first_start_writes_a_private_profile_that_client_commands_use(
    serve: Serve, tmp_path: Path
) -> None:
    data_dir = tmp_path / ".openfgs"  # the default data dir of the folder serve runs in
    started = serve.start(data_dir, credential=None)
    wait_for(lambda: "deployed the demo function" in started.stdout(), 60)
    printed = started.printed_credential()
    assert printed is not None, started.stdout()
    profile = data_dir / "credentials"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    assert f"also saved in {profile} (mode 0600)" in started.stdout()
    assert started.stdout().count(printed.secret_key) == 1
    assert printed.secret_key not in started.stderr()

    # Another terminal in the same folder: no OPENFGS_* variable at all.
    no_variables = clean_env()
    invoked = run_cli(
        "fn", "invoke", "hello", "--data", '{"name": "you"}', cwd=tmp_path, env=no_variables
    )
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(json.loads(invoked.stdout)["body"])["message"] == "hello, you"

    # A variable beats the profile (here a wrong endpoint), and a flag beats the variable.
    wrong = clean_env(endpoint="http://127.0.0.1:9")
    unreachable = run_cli("fn", "list", cwd=tmp_path, env=wrong)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("openfgs: cannot reach http://127.0.0.1:9: ")
    assert "Traceback" not in unreachable.stderr
    listed = run_cli("fn", "list", "--endpoint", started.url, cwd=tmp_path, env=wrong)
    assert listed.returncode == 0, listed.stderr
    assert "hello" in listed.stdout
    other = Credential(printed.project_id, "NOSUCHACCESSKEY00001", "x" * 40)
    refused = run_cli("fn", "list", cwd=tmp_path, env=clean_env(other, endpoint=started.url))
    assert "APIGW.0301" in refused.stderr, refused.stderr  # the variables' credential was used

    # Readable by the group: refused, as ssh refuses such a key, and nothing else is tried.
    profile.chmod(0o640)
    blocked = run_cli("fn", "invoke", "hello", cwd=tmp_path, env=no_variables)
    assert blocked.returncode == 2
    assert blocked.stderr.startswith(f"openfgs: {profile} is open to other users (mode 0640)")
    assert "Traceback" not in blocked.stderr and blocked.stdout == ""
    started.stop()


def test_a_restart_prints_no_secret_and_keeps_the_profile(serve: Serve, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = serve.start(data_dir, credential=None)
    wait_for(lambda: "deployed the demo function" in first.stdout(), 60)
    written = (data_dir / "credentials").read_bytes()
    first.stop()
    again = serve.start(data_dir, credential=None)
    assert again.exports() == {}
    assert "saved" not in again.stdout()
    assert (data_dir / "credentials").read_bytes() == written
    again.stop()


def test_a_bad_setting_ends_the_command_with_its_message_and_status_2(tmp_path: Path) -> None:
    flagged = openfgs(
        "serve", "--instance-user", "nobody", "--data-dir", str(tmp_path), env=clean_env()
    )
    assert flagged.returncode == 2
    assert flagged.stderr.strip().splitlines()[-1] == (
        "openfgs: OPENFGS_INSTANCE_USER: expected uid:gid or 'self', not 'nobody'"
    )
    variable = openfgs("fn", "list", env=clean_env(port="eighty"))
    assert variable.returncode == 2
    assert variable.stderr.startswith("openfgs: OPENFGS_PORT: invalid literal"), variable.stderr
    for result in (flagged, variable):
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_a_credential_serve_cannot_ensure_ends_it_with_status_2(
    serve: Serve, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    serve.start(data_dir).stop()  # the store now holds CREDENTIAL
    clash = Credential(CREDENTIAL.project_id, CREDENTIAL.access_key, "another-secret-key-0000001")
    refused = serve.spawn(data_dir, credential=clash)
    assert refused.wait_exit() == 2
    assert (
        f"openfgs: access key {CREDENTIAL.access_key} exists with another secret or project"
        in refused.stderr()
    )
    assert "Traceback" not in refused.stderr()
    assert not refused.healthy()


def test_publish_alias_and_invoke_a_qualified_name(cli: Cli, tmp_path: Path) -> None:
    folder = write_function(tmp_path / "fn", 1)
    cli.ok("fn", "deploy", str(folder), "--name", "cli-ver")
    assert cli.ok("fn", "publish", "cli-ver", "--version", "v1").strip() == "v1"
    cli.ok("fn", "deploy", str(write_function(folder, 2)), "--name", "cli-ver")
    assert re.fullmatch(r"v\d{8}-\d{6}", cli.ok("fn", "publish", "cli-ver").strip())
    alias_urn = cli.ok("fn", "alias", "set", "cli-ver", "prod", "v1").strip()
    assert alias_urn.endswith(":cli-ver:!prod"), alias_urn
    assert invoke_result(cli, "cli-ver:prod", "{}")["version"] == 1
    assert invoke_result(cli, "cli-ver:!prod", "{}")["version"] == 1
    assert invoke_result(cli, "cli-ver:v1", "{}")["version"] == 1
    assert invoke_result(cli, "cli-ver", "{}")["version"] == 2

    cli.ok("fn", "alias", "set", "cli-ver", "prod", "v1", "--weight", "latest=100")
    assert invoke_result(cli, "cli-ver:prod", "{}")["version"] == 2
    rows = cli.ok("fn", "alias", "list", "cli-ver").splitlines()
    assert rows[1].split()[:3] == ["prod", "v1", '{"latest":']
    code, _, err = cli("fn", "alias", "set", "cli-ver", "prod", "v1", "--weight", "half")
    assert code != 0 and "VERSION=PERCENT" in err
    cli.ok("fn", "alias", "delete", "cli-ver", "prod")
    assert cli.ok("fn", "alias", "list", "cli-ver").splitlines()[1:] == []


def test_triggers_create_list_disable_enable_delete(cli: Cli, tmp_path: Path) -> None:
    folder = write_function(tmp_path / "fn", 1)
    cli.ok("fn", "deploy", str(folder), "--name", "cli-trig")
    timer_id = cli.ok("triggers", "create", "cli-trig", "--cron", "0 0 12 * * *").strip()
    assert UUID.fullmatch(timer_id), timer_id
    rate_id = cli.ok("triggers", "create", "cli-trig", "--rate", "5m", "--trigger-name", "r5")
    http_id, url = cli.ok(
        "triggers", "create", "cli-trig", "--http", "/cli", "--auth", "NONE"
    ).split()
    assert url.endswith("/cli")
    reply = httpx.get(url, timeout=30)
    assert reply.status_code == 502  # the function's answer is not an API Gateway response
    rows = [line.split() for line in cli.ok("triggers", "list", "cli-trig").splitlines()[1:]]
    assert [row[:3] for row in rows] == [
        [timer_id, "TIMER", "ACTIVE"],
        [rate_id.strip(), "TIMER", "ACTIVE"],
        [http_id, "DEDICATEDGATEWAY", "ACTIVE"],
    ]
    cli.ok("triggers", "disable", "cli-trig", timer_id)
    assert "DISABLED" in cli.ok("triggers", "list", "cli-trig").splitlines()[1]
    cli.ok("triggers", "enable", "cli-trig", timer_id)
    assert "ACTIVE" in cli.ok("triggers", "list", "cli-trig").splitlines()[1]
    cli.ok("triggers", "delete", "cli-trig", timer_id)
    assert len(cli.ok("triggers", "list", "cli-trig").splitlines()) == 3
    code, _, err = cli("triggers", "create", "cli-trig", "--cron", "not a cron")
    assert code != 0 and "FSS.1109" in err


def test_invoke_with_a_saved_test_event(cli: Cli, tmp_path: Path) -> None:
    cli.ok("fn", "deploy", str(write_function(tmp_path / "fn", 1)), "--name", "cli-ev")
    event_id = cli.ok("fn", "events", "save", "cli-ev", "greeting", "--data", '{"k": "v"}').strip()
    assert UUID.fullmatch(event_id), event_id
    out = cli.ok("fn", "invoke", "cli-ev", "--event", "greeting")
    assert json.loads(out) == {"version": 1, "event": {"k": "v"}}

    # Saving again replaces the content; every qualifier of the function sees the event.
    again = cli.ok("fn", "events", "save", "cli-ev", "greeting", "--data", "[1, 2]").strip()
    assert again == event_id
    cli.ok("fn", "publish", "cli-ev", "--version", "v1")
    assert json.loads(cli.ok("fn", "invoke", "cli-ev:v1", "--event", "greeting"))["event"] == [1, 2]
    lines = cli.ok("fn", "events", "list", "cli-ev").splitlines()
    assert lines[0].split() == ["NAME", "ID", "LAST", "MODIFIED", "(UTC)"]
    assert [line.split()[:2] for line in lines[1:]] == [["greeting", event_id]]

    code, _, err = cli("fn", "invoke", "cli-ev", "--event", "missing")
    assert code == 2 and "no test event 'missing'" in err
    code, _, err = cli("fn", "events", "save", "cli-ev", "9bad", "--data", "{}")
    assert code == 1 and "FSS.0400" in err
    with pytest.raises(SystemExit) as exited:  # argparse: the two are exclusive
        cli("fn", "invoke", "cli-ev", "--event", "greeting", "--data", "{}")
    assert exited.value.code == 2
    cli.ok("fn", "events", "delete", "cli-ev", "greeting")
    assert cli.ok("fn", "events", "list", "cli-ev").splitlines()[1:] == []
