"""The store conformance fixtures: one ``store`` per backend, each on a database of its own.

A backend is a generator that yields a :class:`Backend` bound to a fresh database and cleans it
up afterwards. Adding one (PostgreSQL: a database made per test) is one entry in ``BACKENDS``;
every test in this folder then runs against it too.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openfgs.store.base import Store
from openfgs.store.forward import ForwardChannel, ForwardingStore, ForwardServer
from openfgs.store.postgres import PostgresStore
from openfgs.store.sqlite import SqliteStore
from tests.support import database_url


@dataclass(frozen=True)
class Backend:
    """A backend under test, bound to one test's database."""

    name: str
    new_store: Callable[[], Store]  # another, unopened store on that same database


def sqlite_backend(tmp_path: Path) -> Iterator[Backend]:
    path = tmp_path / "openfgs.db"
    yield Backend("sqlite", lambda: SqliteStore(path))


class ForwardedStore(ForwardingStore):
    """A front's store and, in the same event loop, the primary it forwards its writes to
    (``serve --processes N``): the whole conformance suite runs through the channel."""

    def __init__(self, path: Path) -> None:
        self.primary = SqliteStore(path)
        self._primary_end, front_end = socket.socketpair()
        super().__init__(path, ForwardChannel(front_end))
        self.wakes = 0

    async def open(self) -> None:
        import asyncio

        await self.primary.open()
        server = ForwardServer(self.primary, self._wake)
        self._serving = asyncio.create_task(server.serve(self._primary_end))
        await super().open()

    async def close(self) -> None:
        await super().close()
        await self._serving
        await self.primary.close()

    def _wake(self) -> None:
        self.wakes += 1


def forwarded_backend(tmp_path: Path) -> Iterator[Backend]:
    path = tmp_path / "openfgs.db"
    yield Backend("forwarded", lambda: ForwardedStore(path))


def postgres_backend(tmp_path: Path) -> Iterator[Backend]:
    """A schema of its own in the test database, dropped afterwards."""
    with database_url("postgres") as url:
        yield Backend("postgres", lambda: PostgresStore(url, pool_size=4))


BACKENDS = [
    pytest.param(sqlite_backend, id="sqlite"),
    pytest.param(forwarded_backend, id="forwarded"),
    pytest.param(postgres_backend, id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    make: Callable[[Path], Iterator[Backend]] = request.param
    yield from make(tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    store = backend.new_store()
    await store.open()
    try:
        yield store
    finally:
        await store.close()
