"""Storage backends behind one interface."""

from __future__ import annotations

from pathlib import Path

from openfgs.settings import Settings
from openfgs.store.base import Store
from openfgs.store.postgres import PostgresStore
from openfgs.store.sqlite import SqliteStore

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def create_store(settings: Settings) -> Store:
    """The backend the settings name: PostgreSQL for a ``postgresql://`` URL, else SQLite."""
    if settings.database_url.startswith(POSTGRES_SCHEMES):
        return PostgresStore(settings.database_url, pool_size=settings.database_pool_size)
    if settings.database_url.startswith("sqlite:///"):
        return SqliteStore(Path(settings.database_url.removeprefix("sqlite:///")))
    return SqliteStore(settings.database_path)


__all__ = ["Store", "create_store"]
