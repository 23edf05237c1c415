"""Isolation when the service runs as root: each function runs as a user of its own and reaches
only its own files. (Escapes between functions are tried in test_sandbox.py.)

What holds when the service does not run as root (only the environment is scrubbed) is tested
in test_runtime_pool.py; these tests need root and are skipped without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from openfgs.models import ErrorCode
from openfgs.runtime import InstancePool, RunResult
from openfgs.runtime.isolation import FUNCTION_IDS
from openfgs.runtime.sandbox import SandboxPolicy
from tests.runtime.runtime_support import make_function

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="isolation by user needs the tests run as root"),
]

# Tries each of event["probes"] ({"what": "read"|"list"|"write", "path": ...}) and reports
# "ok" or the exception's class name for each.
PROBE = """
import os

def attempt(what, path):
    try:
        if what == "read":
            with open(path) as f:
                f.read()
        elif what == "list":
            os.listdir(path)
        elif what == "write":
            with open(path, "w") as f:
                f.write("x")
        return "ok"
    except Exception as exc:
        return type(exc).__name__

def handler(event, context):
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "euid": os.geteuid(),
        "pid": os.getpid(),
        "code": os.getcwd(),
        "home": os.environ["HOME"],
        "env": sorted(os.environ),
        "probes": [attempt(p["what"], p["path"]) for p in event.get("probes", [])],
    }
"""


def reply(result: RunResult) -> dict[str, Any]:
    assert result.ok, result
    value: dict[str, Any] = json.loads(result.result)
    return value


def is_dir(path: str) -> bool:
    return os.path.isdir(path)


def probes(*pairs: tuple[str, Path | str]) -> bytes:
    return json.dumps({"probes": [{"what": w, "path": str(p)} for w, p in pairs]}).encode()


async def test_instances_run_as_their_own_user_and_reach_only_their_own_files(
    pool: InstancePool, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENFGS_DATABASE_URL", "postgresql://service:secret@db/openfgs")
    data_dir = work_dir.parent
    other = make_function(PROBE, name="other")
    mine = make_function(PROBE + "\n# mine\n", name="mine")
    other_seen = reply(await pool.invoke(other.spec, b"{}", "r1", other.load))
    # Created by root the way a service creates its database: the data directory is the parent
    # of the pool's work directory.
    secret = data_dir / "openfgs.db"
    secret.write_text("credentials")
    secret.chmod(0o600)
    other_code = Path(other_seen["code"])
    own_code = work_dir / "code" / mine.spec.code_digest
    denied, ok = "PermissionError", "ok"
    expected: list[tuple[tuple[str, Path | str], str]] = [
        (("read", secret), denied),  # the service's database
        (("list", other_code), denied),  # another function's code
        (("read", other_code / "index.py"), denied),
        (("list", work_dir), denied),  # the pool's directories cannot be listed
        (("list", work_dir / "code"), denied),
        (("list", work_dir / "home"), denied),
        (("list", own_code), ok),  # its own code can be read, not written
        (("read", own_code / "index.py"), ok),
        (("write", own_code / "index.py"), denied),
        (("write", own_code / "new.py"), denied),
    ]
    event = probes(*(probe for probe, _ in expected))
    seen = reply(await pool.invoke(mine.spec, event, "r2", mine.load))
    assert seen["probes"] == [outcome for _, outcome in expected]
    assert seen["uid"] == seen["gid"] == seen["euid"]
    assert seen["uid"] in FUNCTION_IDS and other_seen["uid"] in FUNCTION_IDS
    assert seen["uid"] != other_seen["uid"]
    assert seen["code"] == str(own_code)
    assert not [key for key in seen["env"] if key.startswith("OPENFGS_")]


async def test_home_is_private_and_writable(pool: InstancePool) -> None:
    fn = make_function(
        """
        import os, tempfile
        def handler(event, context):
            home = os.environ["HOME"]
            with open(os.path.join(home, "state"), "w") as f:
                f.write("kept")
            with tempfile.NamedTemporaryFile() as tmp:
                in_home = os.path.dirname(tmp.name) == home
            info = os.stat(home)
            return [in_home, info.st_uid == os.getuid(), oct(info.st_mode & 0o777)]
        """
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.ok, result
    assert json.loads(result.result) == [True, True, "0o700"]


async def test_code_dirs_from_an_earlier_run_are_locked(work_dir: Path) -> None:
    old = make_function(PROBE, name="old")
    first = InstancePool(work_dir)
    try:
        old_code = Path(reply(await first.invoke(old.spec, b"{}", "r1", old.load))["code"])
    finally:
        await first.close()
    # A new run hands out groups afresh; the first one it gives is the one `old` had.
    second = InstancePool(work_dir)
    new = make_function(PROBE + "\n# new\n", name="new")
    try:
        seen = reply(await second.invoke(new.spec, probes(("list", old_code)), "r2", new.load))
        assert seen["probes"] == ["PermissionError"]
        again = reply(await second.invoke(old.spec, probes(("list", old_code)), "r3", old.load))
        assert again["probes"] == ["ok"]
    finally:
        await second.close()


async def test_run_as_none_keeps_the_service_user_when_isolation_is_relaxed(
    work_dir: Path,
) -> None:
    pool = InstancePool(work_dir, run_as=None, sandbox=SandboxPolicy(isolation="relaxed"))
    fn = make_function(PROBE)
    try:
        seen = reply(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
    finally:
        await pool.close()
    assert seen["uid"] == 0
    assert pool.run_as is None


async def test_strict_isolation_refuses_a_shared_user(work_dir: Path) -> None:
    pool = InstancePool(work_dir, run_as=(65534, 65534))
    fn = make_function(PROBE)
    try:
        result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    finally:
        await pool.close()
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert "OPENFGS_ISOLATION=relaxed" in result.error_message
    assert fn.loads == []  # nothing of the function was even unpacked
    assert pool.sandbox is not None and pool.sandbox.level == "refused"


async def test_unreachable_work_dir_moves_instance_files(tmp_path: Path) -> None:
    # pytest's tmp_path is private to root: instance users cannot pass through it.
    pool = InstancePool(tmp_path / "work")
    fn = make_function(PROBE)
    try:
        seen = reply(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
        code = seen["code"]
        assert not Path(code).is_relative_to(tmp_path)
        assert is_dir(code)
    finally:
        await pool.close()
    assert not is_dir(code)  # the stand-in directory goes with the pool


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "spawn"])
async def test_both_launchers_drop_privileges(work_dir: Path, fork: bool) -> None:
    pool = InstancePool(work_dir, fork=fork)
    fn = make_function(PROBE)
    try:
        seen = reply(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
    finally:
        await pool.close()
    assert seen["uid"] == seen["euid"]
    assert seen["uid"] in FUNCTION_IDS
