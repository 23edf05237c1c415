"""Code packages: inline and zip, unpacked once per digest, never outside their directory."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import anyio
import pytest
from runtime_support import make_function, zip_package

from openfgs.models import ErrorCode
from openfgs.runtime import InstancePool, RunResult
from openfgs.runtime.code import CodePackageError, check_member, unpack

pytestmark = pytest.mark.anyio


async def test_zip_with_a_sub_package(pool: InstancePool) -> None:
    package = zip_package(
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": """
                from helpers import shout
                from pkg import data

                def handler(event, context):
                    return shout(data.WORD)
            """,
            "pkg/data.py": "WORD = 'hello'\n",
            "helpers.py": "def shout(text):\n    return text.upper()\n",
        }
    )
    fn = make_function(package, code_type="zip", handler="pkg.mod.handler")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.ok, result
    assert json.loads(result.result) == "HELLO"


@pytest.mark.parametrize("name", ["../evil.py", "pkg/../../evil.py", "/tmp/evil.py"])
async def test_zip_path_traversal_is_a_fail_result(
    pool: InstancePool, base: Path, work_dir: Path, name: str
) -> None:
    package = zip_package({"index.py": "def handler(e, c):\n    return 1\n", name: "x = 1\n"})
    fn = make_function(package, code_type="zip")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message == f"code package entry {name!r} escapes the code directory"
    assert not (base / "evil.py").exists()
    assert not (work_dir / "evil.py").exists()
    assert not (work_dir / "code" / fn.spec.code_digest).exists()


async def test_not_a_zip_is_a_fail_result(pool: InstancePool) -> None:
    fn = make_function(b"definitely not a zip", code_type="zip")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message.startswith("code package is not a valid zip archive")


async def test_unknown_code_type_is_a_fail_result(pool: InstancePool) -> None:
    fn = make_function("def handler(e, c):\n    return 1\n", code_type="jar")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message == "unsupported code_type 'jar'"


async def test_unsafe_digest_is_refused(pool: InstancePool) -> None:
    fn = make_function("def handler(e, c):\n    return 1\n", code_digest="../../etc")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message == "invalid code digest '../../etc'"
    assert fn.loads == []


async def test_concurrent_cold_starts_load_the_package_once(pool: InstancePool) -> None:
    fn = make_function("def handler(e, c):\n    return 1\n")
    results: list[RunResult] = []

    async def one(n: int) -> None:
        results.append(await pool.invoke(fn.spec, b"{}", f"r{n}", fn.load))

    async with anyio.create_task_group() as tasks:
        for n in range(3):
            tasks.start_soon(one, n)
    assert [r.ok for r in results] == [True, True, True]
    assert len(fn.loads) == 1


def test_unpack_leaves_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "abc123"
    unpack(zip_package({"a/b.py": "x = 1\n"}), "zip", target)
    assert (target / "a" / "b.py").read_text() == "x = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["abc123"]
    # A second unpack of the same digest (another process won the race) is harmless.
    unpack(zip_package({"a/b.py": "x = 1\n"}), "zip", target)
    assert [p.name for p in tmp_path.iterdir()] == ["abc123"]


def test_failed_unpack_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(CodePackageError):
        unpack(zip_package({"ok.py": "", "../bad.py": ""}), "zip", tmp_path / "abc")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name", ["..", "../x", "a/../../x", "/abs", "\\\\server\\x", "..\\x", "C:\\x", "C:x"]
)
def test_check_member_rejects_escapes(tmp_path: Path, name: str) -> None:
    with pytest.raises(CodePackageError):
        check_member(name, tmp_path)


@pytest.mark.parametrize("name", ["index.py", "a/b/c.py", "a/./b.py", "dir/", "a..b.py"])
def test_check_member_accepts_plain_names(tmp_path: Path, name: str) -> None:
    check_member(name, tmp_path)


def test_symlink_entries_are_written_as_plain_files(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16  # a symlink, as `zip -y` stores it
        archive.writestr(link, "/etc/passwd")
    unpack(buffer.getvalue(), "zip", tmp_path / "abc")
    assert not (tmp_path / "abc" / "link").is_symlink()
    assert (tmp_path / "abc" / "link").read_text() == "/etc/passwd"
