"""Fixtures for runtime tests: the anyio backend and a pool in a temporary work dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openfgs.runtime import InstancePool


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[InstancePool]:
    pool = InstancePool(tmp_path / "work")
    yield pool
    await pool.close()
