"""Per-asset totals past 64 bits stay exact, in the ledger and over HTTP (no 500)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg

from support import start_server
from wallet.ledger import accounts, balances
from wallet.ledger.limits import BALANCE_MAX


async def fill_two_wallets_to_the_limit(database_url: str) -> list[balances.AssetBalances]:
    """Two BIG wallets at the balance limit and the treasury's matching debt in two slots, written
    directly: no posting could get there in a test's time (10^15 per top-up)."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await accounts.create_asset(connection, "BIG", "Big numbers")
        first, _ = await accounts.create_wallet(connection, "big-1", "BIG")
        second, _ = await accounts.create_wallet(connection, "big-2", "BIG")
        await connection.execute(
            "UPDATE account SET balance = $1 WHERE id = ANY($2::uuid[])", BALANCE_MAX, [first.id, second.id]
        )
        await connection.execute(
            """
            UPDATE account_slot SET balance = $1
            WHERE slot IN (0, 1)
                AND account_id = (SELECT id FROM account WHERE asset = 'BIG' AND kind = 'treasury')
            """,
            -BALANCE_MAX,
        )
        return await balances.asset_balances(connection)
    finally:
        await connection.close()


def test_totals_past_64_bits_stay_exact(create_database: Callable[[], str], tmp_path: Path) -> None:
    database_url = create_database()
    totals = {item.asset: item for item in asyncio.run(fill_two_wallets_to_the_limit(database_url))}
    big = totals["BIG"]
    assert big.user_total == 2 * BALANCE_MAX > 2**63
    assert big.system == {"treasury": -2 * BALANCE_MAX, "bonus": 0, "revenue": 0, "breakage": 0}
    assert big.wallet_count == 2
    assert big.total == 0
    server = start_server(database_url, tmp_path / "server.log")
    try:
        with server.client() as client:
            response = client.get("/v1/ledger/balances")
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [big.to_document()]
