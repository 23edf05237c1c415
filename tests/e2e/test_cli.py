"""The ``openfgs`` client commands against a live server: deploy, list, invoke, invocations."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from openfgs.cli import main

from .conftest import CREDENTIAL, clean_env, openfgs, wait_for

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
        code = main(list(args))
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


def test_missing_credentials_exit_non_zero_with_a_message() -> None:
    result = openfgs("fn", "list", env=clean_env(endpoint="http://127.0.0.1:9"))
    assert result.returncode != 0
    assert "OPENFGS_ACCESS_KEY" in result.stderr, result.stderr
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
