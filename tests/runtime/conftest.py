"""Fixtures for runtime tests: the event loops the service runs on, and a pool per test."""

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
async def pool(tmp_path: Path) -> AsyncIterator[InstancePool]:
    pool = InstancePool(tmp_path / "work")
    yield pool
    await pool.close()
