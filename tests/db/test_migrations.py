"""Migrations over a database that has data: the upgrade to expiring credits (0004) gives every
asset that exists its breakage account with its slots, and the ledger verifies after it."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from support import maintenance, with_database
from wallet.db import migrate
from wallet.ledger import verify
from wallet.ledger.limits import SLOT_COUNT

BEFORE_EXPIRING_CREDITS = "0003"
ASSETS_AT_0003 = """
INSERT INTO asset (code, name) VALUES ('GOLD', 'Gold Coins'), ('GEMS', 'Gems');
INSERT INTO account (id, asset, kind)
SELECT gen_random_uuid(), code, kind FROM asset, unnest(ARRAY['treasury', 'bonus', 'revenue']) AS kind;
INSERT INTO account_slot (account_id, slot)
SELECT a.id, n FROM account a, generate_series(0, 31) AS n WHERE a.kind <> 'user';
INSERT INTO account (id, asset, kind, owner_id) VALUES (gen_random_uuid(), 'GEMS', 'user', 'player-1');
"""


async def _system_accounts(url: str) -> list[tuple[str, str, int]]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        rows = await connection.fetch(
            """
            SELECT a.asset, a.kind, count(s.slot) AS slots FROM account a
            LEFT JOIN account_slot s ON s.account_id = a.id
            WHERE a.kind <> 'user' GROUP BY a.asset, a.kind ORDER BY a.asset, a.kind
            """
        )
        result = await verify.verify(connection)
        assert result.ok, result.problems
        return [(row["asset"], row["kind"], row["slots"]) for row in rows]
    finally:
        await connection.close()


def test_the_upgrade_to_expiring_credits_gives_existing_assets_a_breakage_account(server_url: str) -> None:
    name = f"wallet_migration_{uuid.uuid4().hex[:16]}"
    maintenance(server_url, f"CREATE DATABASE {name}")
    url = with_database(server_url, name)
    try:
        migrate.upgrade(url, BEFORE_EXPIRING_CREDITS)
        maintenance(url, ASSETS_AT_0003)
        migrate.upgrade(url)
        kinds = ("bonus", "breakage", "revenue", "treasury")
        expected = [(asset, kind, SLOT_COUNT) for asset in ("GEMS", "GOLD") for kind in kinds]
        assert asyncio.run(_system_accounts(url)) == expected
    finally:
        maintenance(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
