"""Nodes starting together on a new database all ensure the same credential: none fails."""

from __future__ import annotations

import asyncio

import pytest

from openfgs.auth.service import Authenticator, new_credential
from openfgs.errors import ConfigError
from openfgs.store.base import Store

from .conftest import Backend

pytestmark = pytest.mark.anyio


async def test_concurrent_nodes_ensure_one_credential(backend: Backend) -> None:
    stores: list[Store] = [backend.new_store() for _ in range(4)]
    for store in stores:
        await store.open()
    try:
        credential = new_credential()
        nodes = [Authenticator(s, skew_seconds=900, token_ttl_seconds=60) for s in stores]
        # Every node looks before any inserts: the insert is where they meet.
        created = await asyncio.gather(*(node.ensure_credential(credential) for node in nodes))
        assert sorted(created) == [False, False, False, True]
        assert await stores[0].get_credential(credential.access_key) == credential

        other = new_credential(credential.project_id)
        clash = type(credential)(credential.project_id, credential.access_key, other.secret_key)
        with pytest.raises(ConfigError):
            await nodes[1].ensure_credential(clash)
    finally:
        for store in stores:
            await store.close()
