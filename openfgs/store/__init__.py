"""Storage backends behind one interface."""

from __future__ import annotations

from pathlib import Path

from openfgs.settings import Settings
from openfgs.store.base import Store
from openfgs.store.sqlite import SqliteStore


def create_store(settings: Settings) -> Store:
    """The backend the settings name: PostgreSQL for a ``postgresql://`` URL, else SQLite."""
    if settings.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("PostgreSQL support is not available in this build yet")
    if settings.database_url.startswith("sqlite:///"):
        return SqliteStore(Path(settings.database_url.removeprefix("sqlite:///")))
    return SqliteStore(settings.database_path)


__all__ = ["Store", "create_store"]
