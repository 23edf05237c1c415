"""``openfgs deps create`` and ``openfgs deps list``, in process, against a live server."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from openfgs.cli import main
from tests.api.conftest import (
    zip_of,
)
from tests.support import (
    CREDENTIAL,
    LiveServer,
)

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    for name in list(os.environ):
        if name.startswith("OPENFGS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENFGS_ENDPOINT", server.url)
    monkeypatch.setenv("OPENFGS_PROJECT_ID", CREDENTIAL.project_id)
    monkeypatch.setenv("OPENFGS_ACCESS_KEY", CREDENTIAL.access_key)
    monkeypatch.setenv("OPENFGS_SECRET_KEY", CREDENTIAL.secret_key)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_create_then_list(run: Run, tmp_path: Path) -> None:
    command = run
    archive = tmp_path / "lib.zip"
    archive.write_bytes(zip_of({"mylib/__init__.py": "VALUE = 1\n"}))

    code, out, err = command("deps", "create", "mylib", str(archive), "--runtime", "Python3.9")
    assert code == 0, err
    assert re.match(r"created mylib version 1 \(version id [0-9a-f-]{36}, ", out), out
    archive.write_bytes(zip_of({"mylib/__init__.py": "VALUE = 2\n"}))
    code, out, err = command(
        "deps", "create", "mylib", str(archive), "--runtime", "Python3.9", "--description", "v2"
    )
    assert code == 0 and "version 2" in out, (out, err)

    code, out, err = command("deps", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "LATEST", "RUNTIME", "SIZE", "DEPENDENCY", "ID"]
    assert lines[1].split()[:3] == ["mylib", "2", "Python3.9"]


def test_errors_exit_non_zero_with_the_fss_code(run: Run, tmp_path: Path) -> None:
    command = run
    archive = tmp_path / "bad.zip"
    archive.write_bytes(b"not a zip")

    code, _, err = command("deps", "create", "lib", str(archive), "--runtime", "Python3.9")
    assert code != 0 and "FSS.1024" in err, err
    code, _, err = command(
        "deps", "create", "lib", str(tmp_path / "missing.zip"), "--runtime", "Python3.9"
    )
    assert code != 0 and "cannot read" in err, err
