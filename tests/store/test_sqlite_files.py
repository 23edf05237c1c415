"""The embedded database is private to the service's user (function instances run as another)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from openfgs.store.sqlite import SqliteStore


@pytest.mark.anyio
async def test_database_files_are_private(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "openfgs.db")
    await store.open()
    try:
        await store.count_credentials()
        for name in ("openfgs.db", "openfgs.db-wal"):
            mode = stat.S_IMODE((tmp_path / "data" / name).stat().st_mode)
            assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    finally:
        await store.close()
