"""Code packages: inline and zip, unpacked once per digest, never outside their directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from openfgs.models import ErrorCode
from openfgs.runtime import InstancePool, RunResult
from openfgs.runtime.code import (
    CodePackageError,
    CodeStore,
    check_member_name,
    check_zip,
    unpack,
)
from tests.runtime.runtime_support import make_function, pid_alive, zip_package
from tests.support import wait_for_async
from tests.zips import HANDLER, zip_cases

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
    "name",
    [
        "..",
        "../x",
        "a/../../x",
        "/abs",
        "\\\\server\\x",
        "..\\x",
        "a\\b.py",
        "C:\\x",
        "C:x",
        "C:/x.txt",
        "a\x00b.py",
        "a\nb.py",
        "x" * 256,
        "a/" * 600 + "b",
    ],
)
def test_check_member_name_rejects_escapes(name: str) -> None:
    with pytest.raises(CodePackageError):
        check_member_name(name)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("index.py", ("index.py",)),
        ("a/b/c.py", ("a", "b", "c.py")),
        ("a/./b.py", ("a", "b.py")),
        ("./a//b.py", ("a", "b.py")),
        ("dir/", ("dir",)),
        ("a..b.py", ("a..b.py",)),
        ("a/C:b", ("a", "C:b")),
        (".", ()),
    ],
)
def test_check_member_name_gives_the_path_below_the_code_directory(
    name: str, parts: tuple[str, ...]
) -> None:
    assert check_member_name(name) == parts


@pytest.mark.parametrize("case", sorted(zip_cases()))
def test_what_the_check_accepts_unpacks_and_what_it_refuses_does_not(
    tmp_path: Path, case: str
) -> None:
    package = zip_cases()[case]
    target = tmp_path / "code" / "abc"
    if package.refused:
        with pytest.raises(CodePackageError):
            check_zip(package.data, verify=True)
        with pytest.raises(CodePackageError):
            unpack(package.data, "zip", target)
        assert not target.exists()
    else:
        check_zip(package.data, verify=True)
        unpack(package.data, "zip", target)
        assert (target / "index.py").read_text() == HANDLER
    assert [p.name for p in (tmp_path / "code").iterdir()] == ([] if package.refused else ["abc"])


def test_unpack_writes_each_entry_where_the_check_puts_it(tmp_path: Path) -> None:
    unpack(zip_cases()["dot directory"].data, "zip", tmp_path / "a")
    unpack(zip_cases()["empty components"].data, "zip", tmp_path / "b")
    unpack(zip_cases()["executable"].data, "zip", tmp_path / "c")
    assert (tmp_path / "a" / "lib" / "util.py").read_text() == "x = 1\n"
    assert (tmp_path / "b" / "lib" / "util.py").read_text() == "x = 1\n"
    assert (tmp_path / "c" / "tool.sh").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "c" / "index.py").stat().st_mode & 0o777 == 0o644


def test_a_zip_bomb_is_refused_by_what_it_declares(tmp_path: Path) -> None:
    # Declared sizes are summed before anything is read or written.
    package = zip_cases()["declares over the unpack bound"].data
    with pytest.raises(CodePackageError, match="unpacks to more than"):
        check_zip(package)


# -- removal ------------------------------------------------------------------------------


async def test_sweep_removes_code_not_kept_and_it_unpacks_again(
    pool: InstancePool, work_dir: Path
) -> None:
    gone = make_function("def handler(e, c):\n    return 'gone'\n", name="gone")
    kept = make_function("def handler(e, c):\n    return 'kept'\n", name="kept")
    for fn in (gone, kept):
        assert (await pool.invoke(fn.spec, b"{}", f"r-{fn.spec.name}", fn.load)).ok
    gone_pid = pool.instance_pids(gone.spec.urn)[0]

    removed = await pool.sweep_code({kept.spec.code_digest})

    assert removed == [gone.spec.code_digest]
    assert sorted(p.name for p in (work_dir / "code").iterdir()) == [kept.spec.code_digest]
    # Its idle instance is stopped (its files are gone); the kept one's stays.
    await wait_for_async(lambda: not pid_alive(gone_pid), what="the idle instance stopped")
    assert pool.instance_pids(gone.spec.urn) == []
    assert len(pool.instance_pids(kept.spec.urn)) == 1
    # Used again, the code is unpacked again and runs (as its own user, when root).
    again = await pool.invoke(gone.spec, b"{}", "r-again", gone.load)
    assert (again.ok, json.loads(again.result)) == (True, "gone")
    assert len(gone.loads) == 2


async def test_sweep_keeps_code_an_invocation_is_running(
    pool: InstancePool, work_dir: Path, scratch: Path
) -> None:
    fn = make_function(
        """
        import os, time
        def handler(event, context):
            open(os.path.join(event, "started"), "w").close()
            while not os.path.exists(os.path.join(event, "go")):
                time.sleep(0.005)
            with open(os.path.join(os.environ["RUNTIME_CODE_ROOT"], "index.py")) as own:
                return len(own.read())
        """
    )
    event = json.dumps(str(scratch)).encode()
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await pool.invoke(fn.spec, event, "r1", fn.load))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await wait_for_async(lambda: (scratch / "started").exists(), what="the handler started")
        assert await pool.sweep_code(set()) == []
        (scratch / "go").touch()
    assert results[0].ok, results[0]
    assert (work_dir / "code" / fn.spec.code_digest).is_dir()

    # Once nothing runs it, the next sweep removes it.
    assert await pool.sweep_code(set()) == [fn.spec.code_digest]
    assert list((work_dir / "code").iterdir()) == []


async def test_code_store_leaves_a_digest_being_unpacked(tmp_path: Path) -> None:
    store = CodeStore(tmp_path)
    fn = make_function("def handler(e, c):\n    return 1\n")
    other = make_function("def handler(e, c):\n    return 2\n")
    await store.ensure(other.spec, other.load)
    loading = anyio.Event()
    release = anyio.Event()

    async def slow_load() -> bytes:
        loading.set()
        await release.wait()
        return fn.package

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(store.ensure, fn.spec, slow_load)
        await loading.wait()
        assert store.detach(set()) == [other.spec.code_digest]
        release.set()
    await store.purge()
    assert os.listdir(tmp_path) == [fn.spec.code_digest]
