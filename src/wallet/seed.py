"""The seed data: assets GOLD and POINTS with their system accounts, and a few demo wallets."""

from __future__ import annotations

from wallet.ledger import accounts
from wallet.types import Connection

ASSETS = (("GOLD", "Gold Coins"), ("POINTS", "Reward Points"))
DEMO_OWNERS = ("demo-alice", "demo-bob")


async def seed(connection: Connection) -> list[str]:
    """Create what is missing; safe to run any number of times. Returns what it created."""
    created: list[str] = []
    for code, name in ASSETS:
        _, asset_created = await accounts.create_asset(connection, code, name)
        if asset_created:
            created.append(f"asset {code}")
    for owner_id in DEMO_OWNERS:
        for code, _ in ASSETS:
            wallet, wallet_created = await accounts.create_wallet(connection, owner_id, code)
            if wallet_created:
                created.append(f"wallet {wallet.id} ({owner_id}, {code})")
    return created


async def is_empty(connection: Connection) -> bool:
    return not await connection.fetchval("SELECT EXISTS (SELECT FROM asset)")
