"""Fixtures for runtime tests: event loops, directories instances can reach, a pool per test.

When the tests run as root, instances run as users of their own, who cannot pass through
pytest's private ``tmp_path``. Everything an instance must reach lives under ``base`` instead:
a fresh directory only root can list, holding the pool's data directory and a ``scratch``
directory anyone may write, for handlers that report through files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openfgs.runtime import InstancePool


# The service runs on uvloop where available; plain asyncio is what everyone else gets.
# They differ in how subprocesses and pipes are set up, so the runtime is tested on both.
@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


@pytest.fixture
def base(passable_dir: Path) -> Path:
    return passable_dir


@pytest.fixture
def work_dir(base: Path) -> Path:
    """The pool's work directory, inside the service's data directory ``base/data``.

    The data directory is passable but not listable, as docs/runtime.md asks of operators.
    """
    data = base / "data"
    data.mkdir()
    data.chmod(0o711)
    return data / "instances"


@pytest.fixture
def scratch(base: Path) -> Path:
    directory = base / "scratch"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


@pytest.fixture
def fork() -> bool:
    """How the pool starts instances; modules that test both override this."""
    return True


@pytest.fixture
async def pool(work_dir: Path, fork: bool) -> AsyncIterator[InstancePool]:
    pool = InstancePool(work_dir, fork=fork)
    yield pool
    await pool.close()
