"""API keys of the demo UI: renewing revokes every older demo key and leaves other keys alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from wallet import keys


async def renew_twice_then_revoke(database_url: str) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        _, operator_secret = await keys.create(connection, "ops", {keys.Scope.READ})
        first = await keys.renew_demo_key(connection, create_new=True)
        second = await keys.renew_demo_key(connection, create_new=True)
        assert first is not None and second is not None and first != second
        assert await keys.authenticate(connection, first) is None
        current = await keys.authenticate(connection, second)
        assert current is not None
        assert current.name.startswith(keys.DEMO_KEY_NAME_PREFIX)
        assert current.scopes == {keys.Scope.ADMIN}
        assert await keys.renew_demo_key(connection, create_new=False) is None
        assert await keys.authenticate(connection, second) is None
        assert await keys.authenticate(connection, operator_secret) is not None
        names = [api_key.name for api_key in await keys.list_keys(connection)]
        assert len([name for name in names if name.startswith(keys.DEMO_KEY_NAME_PREFIX)]) == 2
    finally:
        await connection.close()


def test_renewing_the_demo_key_revokes_older_demo_keys_only(create_database: Callable[[], str]) -> None:
    asyncio.run(renew_twice_then_revoke(create_database()))


async def create_reserved(database_url: str) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        with pytest.raises(keys.KeyNameReserved):
            await keys.create(connection, keys.DEMO_KEY_NAME_PREFIX + "mine", {keys.Scope.ADMIN})
        assert await keys.list_keys(connection) == []
    finally:
        await connection.close()


def test_demo_ui_key_names_are_reserved(create_database: Callable[[], str]) -> None:
    """The next embedded start would revoke such a key: `create` refuses the name."""
    asyncio.run(create_reserved(create_database()))
