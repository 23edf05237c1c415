"""Named SQL queries, loaded from one ``.sql`` file per dialect."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(dialect: str) -> dict[str, str]:
    """Return ``{name: sql}`` from ``sql/<dialect>.sql``."""
    text = resources.files("openfgs.store").joinpath(f"sql/{dialect}.sql").read_text()
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        ).strip()
        queries[name] = sql.rstrip(";")
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
