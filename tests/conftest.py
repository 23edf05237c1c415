"""Fixtures shared by every test folder; the helpers behind them live in ``tests/support.py``."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    BACKENDS,
    LiveServer,
    ServerFactory,
    close_sdk_clients,
    database_url,
    empty_projects,
    live_server,
    make_settings,
    sdk_client,
)

SLOW_TIMEOUT = 120  # seconds, for tests with real processes; pyproject's default is for the rest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` start, stop and kill real processes: they get ``SLOW_TIMEOUT``
    unless they set a timeout of their own."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    yield
    close_sdk_clients()


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


@pytest.fixture(scope="module")
def backend() -> str:
    """The store of the test's live servers. Folders and modules whose tests run on each store
    override it: ``@pytest.fixture(scope="module", params=BACKENDS)`` returning
    ``request.param``."""
    return "sqlite"


@pytest.fixture
def make_server(backend: str, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start live servers with settings over the test defaults (``make_settings``), each with a
    database (on ``backend``) and a data directory of its own; all stopped at teardown."""
    with contextlib.ExitStack() as stack:
        count = 0

        def make(*, data_dir: Path | None = None, **overrides: Any) -> LiveServer:
            nonlocal count
            count += 1
            url = stack.enter_context(database_url(backend))
            directory = data_dir or tmp_path / f"data-{count}"
            settings = make_settings(directory, database_url=url, **overrides)
            live: LiveServer = stack.enter_context(live_server(settings))
            return live

        yield make


@pytest.fixture
def server(make_server: ServerFactory) -> LiveServer:
    """A live server with the test defaults."""
    return make_server()


@pytest.fixture(scope="module")
def module_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server with the test defaults for a whole module (per backend), for modules
    whose tests need only empty projects, not a new service: such a module overrides ``server``
    with ``shared_server``."""
    with database_url(backend) as url:
        data_dir = tmp_path_factory.mktemp("shared") / "data"
        with live_server(make_settings(data_dir, database_url=url)) as live:
            yield live


@pytest.fixture
def shared_server(module_server: LiveServer) -> Iterator[LiveServer]:
    """``module_server``, emptied after each test (``empty_projects``)."""
    yield module_server
    empty_projects(module_server)


@pytest.fixture(params=BACKENDS)
def any_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on each store, for single tests of a module that otherwise runs on one."""
    with (
        database_url(request.param) as url,
        live_server(make_settings(tmp_path / "any", database_url=url)) as live,
    ):
        yield live


@pytest.fixture
def sdk(server: LiveServer) -> Any:
    return sdk_client(server.url)
