"""Fixtures shared by every test folder; the helpers behind them live in ``tests/support.py``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import LiveServer, database_url, make_settings, sdk_client, start_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def passable_dir() -> Iterator[Path]:
    """A directory every user can pass through (not list): function instances, running as
    users of their own, reach a data directory inside it as they would in production —
    pytest's own temporary directories are closed to them."""
    root = Path(tempfile.mkdtemp(prefix="openfgs-test-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from start_server(make_settings(tmp_path / "data"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on each backend: tests that use it run on SQLite and on PostgreSQL."""
    with database_url(request.param) as url:
        yield from start_server(make_settings(tmp_path / "data", database_url=url))


@pytest.fixture
def sdk(server: LiveServer) -> Any:
    return sdk_client(server.url)
