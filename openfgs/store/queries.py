"""Named SQL queries: the shared ones in ``sql/queries.sql``, each dialect's own beside them."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
SHARED = "queries"


def query_blocks(file: str) -> list[tuple[str, str]]:
    """The ``(name, sql)`` blocks of ``sql/<file>.sql`` in file order, repeats included."""
    text = resources.files("openfgs.store").joinpath(f"sql/{file}.sql").read_text()
    parts = _NAME.split(text)
    blocks = []
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        ).strip()
        blocks.append((name, sql.rstrip(";")))
    return blocks


def load_queries(dialect: str) -> dict[str, str]:
    """``{name: sql}`` of one dialect: ``queries.sql`` and ``<dialect>.sql`` together, where a
    name is defined once (a second definition is an error, not an override)."""
    queries: dict[str, str] = {}
    for name, sql in query_blocks(SHARED) + query_blocks(dialect):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice for {dialect}")
        queries[name] = sql
    return queries


def migration_files(dialect: str) -> list[tuple[int, str, str]]:
    """Numbered migrations as ``(number, name, sql)``, in order."""
    folder = resources.files("openfgs.store").joinpath(f"sql/migrations/{dialect}")
    found = []
    for entry in folder.iterdir():
        name = Path(entry.name)
        if name.suffix == ".sql" and name.stem.split("_", 1)[0].isdigit():
            found.append((int(name.stem.split("_", 1)[0]), name.stem, entry.read_text()))
    return sorted(found)
