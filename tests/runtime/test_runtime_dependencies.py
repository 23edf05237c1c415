"""Dependencies in the runtime: zips merged over the code in order, unpacked once per node and
shared, and a change of dependencies never served by an instance of the old ones."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from openfgs.models import ErrorCode
from openfgs.runtime import InstancePool, RunResult
from openfgs.runtime.code import bundle_digest, merge_trees, unpack
from tests.runtime.runtime_support import (
    Function,
    make_function,
    zip_package,
)

pytestmark = pytest.mark.anyio

HANDLER = """
import os

import mylib
import shared

INSTANCE = os.urandom(8).hex()  # process ids repeat: instances have a PID namespace each


def handler(event, context):
    return {"lib": mylib.VALUE, "shared": shared.WHO, "instance": INSTANCE}
"""


class Zips:
    """Dependency zips by digest, with the loads the pool asked for."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.loads: Counter[str] = Counter()

    def add(self, files: dict[str, str]) -> str:
        data = zip_package(files)
        digest = hashlib.sha512(data).hexdigest()
        self.data[digest] = data
        return digest

    async def load(self, digest: str) -> bytes:
        self.loads[digest] += 1
        return self.data[digest]


@pytest.fixture
def zips() -> Zips:
    return Zips()


@pytest.fixture
async def pool(work_dir: Path, zips: Zips) -> AsyncIterator[InstancePool]:
    pool = InstancePool(work_dir, load_dependency=zips.load)
    yield pool
    await pool.close()


def with_dependencies(name: str, layers: tuple[str, ...], code: str = HANDLER) -> Function:
    """A zip function (``index.py`` and a ``shared.py`` of its own) listing ``layers``."""
    package = zip_package({"index.py": code, "shared.py": "WHO = 'code'\n"})
    fn = make_function(package, code_type="zip", name=name)
    spec = replace(
        fn.spec,
        code_digest=bundle_digest(fn.spec.code_digest, layers),
        package_digest=fn.spec.code_digest,
        dependencies=layers,
    )
    return replace(fn, spec=spec)


def answer(result: RunResult) -> dict[str, object]:
    assert result.ok, result
    value: dict[str, object] = json.loads(result.result)
    return value


async def test_a_dependency_is_imported_and_wins_over_the_code(
    pool: InstancePool, zips: Zips
) -> None:
    lib = zips.add({"mylib/__init__.py": "VALUE = 'one'\n", "shared.py": "WHO = 'dependency'\n"})
    other = zips.add({"mylib/__init__.py": "VALUE = 'two'\n"})
    wins = with_dependencies("wins", (lib,))
    leaves = with_dependencies("leaves", (other,))

    assert answer(await pool.invoke(wins.spec, b"{}", "r1", wins.load)) == {
        **answer(await pool.invoke(wins.spec, b"{}", "r2", wins.load)),
        "lib": "one",
        "shared": "dependency",
    }
    left = answer(await pool.invoke(leaves.spec, b"{}", "r3", leaves.load))
    assert (left["lib"], left["shared"]) == ("two", "code")


async def test_later_dependencies_win_over_earlier_ones(pool: InstancePool, zips: Zips) -> None:
    first = zips.add({"mylib/__init__.py": "VALUE = 'first'\n", "shared.py": "WHO = 'first'\n"})
    second = zips.add({"shared.py": "WHO = 'second'\n"})
    fn = with_dependencies("user", (first, second))

    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)

    assert (answer(result)["lib"], answer(result)["shared"]) == ("first", "second")


async def test_a_dependency_is_unpacked_once_for_every_function(
    pool: InstancePool, zips: Zips
) -> None:
    lib = zips.add({"mylib/__init__.py": "VALUE = 1\n", "shared.py": "WHO = 1\n"})
    one = with_dependencies("one", (lib,))
    two = with_dependencies("two", (lib,), HANDLER + "# another function\n")

    for n, fn in enumerate((one, two, one, two)):
        result = await pool.invoke(fn.spec, b"{}", f"r{n}", fn.load)
        assert answer(result)["lib"] == 1
    assert zips.loads == Counter({lib: 1})


async def test_changing_dependencies_gets_a_new_instance(pool: InstancePool, zips: Zips) -> None:
    old = zips.add({"mylib/__init__.py": "VALUE = 'old'\n", "shared.py": "WHO = 1\n"})
    new = zips.add({"mylib/__init__.py": "VALUE = 'new'\n", "shared.py": "WHO = 1\n"})
    before = with_dependencies("user", (old,))
    after = with_dependencies("user", (new,))

    first = answer(await pool.invoke(before.spec, b"{}", "r1", before.load))
    again = answer(await pool.invoke(before.spec, b"{}", "r2", before.load))
    changed = answer(await pool.invoke(after.spec, b"{}", "r3", after.load))

    assert first["instance"] == again["instance"]  # warm while nothing changes
    assert (changed["lib"], changed["instance"] != first["instance"]) == ("new", True)


async def test_sweeping_removes_a_bundle_and_its_parts_when_unused(
    pool: InstancePool, zips: Zips
) -> None:
    lib = zips.add({"mylib/__init__.py": "VALUE = 1\n", "shared.py": "WHO = 1\n"})
    fn = with_dependencies("user", (lib,))
    answer(await pool.invoke(fn.spec, b"{}", "r1", fn.load))
    spec = fn.spec
    kept = await pool.sweep_code({spec.code_digest, spec.package_digest, lib})
    removed = await pool.sweep_code(set())

    assert kept == []
    assert set(removed) == {spec.code_digest, spec.package_digest, lib}


async def test_a_pool_without_a_dependency_loader_fails_the_invocation(work_dir: Path) -> None:
    pool = InstancePool(work_dir)
    try:
        fn = with_dependencies("user", ("a" * 128,))
        result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    finally:
        await pool.close()

    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert "dependencies" in result.error_message


def test_bundle_names_are_never_code_digests() -> None:
    code = hashlib.sha512(b"x").hexdigest()
    name = bundle_digest(code, ("a" * 128,))

    assert name.startswith("bundle-") and len(name) < 128
    assert name != bundle_digest(code, ("b" * 128,))
    assert bundle_digest(code, ("a" * 128, "b" * 128)) != bundle_digest(
        code, ("b" * 128, "a" * 128)
    )


def test_merging_replaces_files_and_directories_in_order(tmp_path: Path) -> None:
    code, lib, dest = tmp_path / "code", tmp_path / "lib", tmp_path / "dest"
    unpack(zip_package({"a.py": "code", "pkg/x.py": "code", "dir/f": "code"}), "zip", code)
    unpack(zip_package({"a.py": "lib", "pkg": "a file now", "dir/g": "lib"}), "zip", lib)
    dest.mkdir()

    merge_trees([code, lib], dest)

    assert (dest / "a.py").read_text() == "lib"
    assert (dest / "pkg").read_text() == "a file now"
    assert sorted(p.name for p in (dest / "dir").iterdir()) == ["f", "g"]
    # The files are the unpacked copies' own (hard links), not copies.
    assert (dest / "a.py").stat().st_ino == (lib / "a.py").stat().st_ino
