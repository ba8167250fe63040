"""WALLET_STATEMENT_CACHE_SIZE=0, the setting PgBouncer's transaction pooling needs: the pool
then prepares no named statements, and a server run with it moves money correctly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest

from support import Server, assert_ledger_ok, balance, new_wallet, start_server, topup, wallet_command
from wallet import keys
from wallet.config import load_settings
from wallet.db.pool import create_pool
from wallet.ledger import accounts


@pytest.fixture(scope="module")
def uncached_server(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    database_url = create_database()
    wallet_command("db", "seed", database_url=database_url)
    log_path = tmp_path_factory.mktemp("uncached") / "server.log"
    running = start_server(database_url, log_path, env={"WALLET_STATEMENT_CACHE_SIZE": "0"})
    try:
        yield running
    finally:
        running.stop()


async def _named_statements_after_queries(database_url: str, statement_cache_size: int) -> int:
    """Run the service's own queries on a pool made as the server makes it, then count the
    named prepared statements left on that connection."""
    settings = load_settings().model_copy(update={"statement_cache_size": statement_cache_size})
    pool = await create_pool(settings, database_url)
    try:
        async with pool.acquire() as connection:
            await accounts.list_assets(connection)
            await keys.authenticate(connection, f"wk_{uuid.uuid4().hex}")
            await accounts.list_assets(connection)
            count = await connection.fetchval("SELECT count(*) FROM pg_prepared_statements")
            assert isinstance(count, int)
            return count
    finally:
        await pool.close()


@pytest.mark.parametrize(("cache_size", "named"), [(0, False), (256, True)])
def test_a_zero_statement_cache_prepares_no_named_statements(
    create_database: Callable[[], str], cache_size: int, named: bool
) -> None:
    count = asyncio.run(_named_statements_after_queries(create_database(), cache_size))
    assert (count > 0) is named, count


def test_money_moves_right_without_a_statement_cache(uncached_server: Server) -> None:
    with uncached_server.client() as client:
        source, target = new_wallet(client), new_wallet(client)
        assert topup(client, source, 100, key="uncached-topup").status_code == 201
        replay = topup(client, source, 100, key="uncached-topup")
        assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
        spent = client.post(
            f"/v1/wallets/{source}/spend", json={"amount": 30}, headers={"Idempotency-Key": "uncached-spend"}
        )
        assert spent.status_code == 201, spent.text
        moved = client.post(
            "/v1/transfers",
            json={"from_wallet_id": source, "to_wallet_id": target, "amount": 50},
            headers={"Idempotency-Key": "uncached-transfer"},
        )
        assert moved.status_code == 201, moved.text
        short = client.post(
            f"/v1/wallets/{target}/spend", json={"amount": 51}, headers={"Idempotency-Key": "uncached-short"}
        )
        assert short.status_code == 409
        history = client.get(f"/v1/wallets/{source}/transactions", params={"limit": 10})
        assert [item["type"] for item in history.json()["data"]] == ["transfer", "spend", "topup"]
        assert (balance(client, source), balance(client, target)) == (20, 50)
        assert_ledger_ok(client)
